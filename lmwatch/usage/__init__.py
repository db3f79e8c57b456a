"""Usage analytics: one row per `/v1` request in an SQLite file, and the reports read from it."""
