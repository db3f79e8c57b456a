"""HTTP surfaces beyond the core: the OpenAI-compatible /v1 router and the admin API."""
