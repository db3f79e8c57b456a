"""Request routing: which backend and model serve a request, and in what order to fall back."""
