"""lmwatch: watch, measure and route across local LLM servers (LM Studio first)."""

__version__ = "0.1.0"
