"""Every `lmwatch_` metric: declared as `Family` values, one module per concern, registered in one
table (`table.py`), rendered for `/metrics` with cached per-backend rows (`fleet.py`, `text.py`).

Kept free of imports so that any part of lmwatch can import a family declaration from here.
"""
