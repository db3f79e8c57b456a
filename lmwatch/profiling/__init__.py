"""Measured model profiles: how fast each loaded model reads prompts and generates, kept in SQLite."""
