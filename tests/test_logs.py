"""Logging: JSON lines carry the structured fields; secrets never reach the output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from lmwatch.logs import REDACTED, RedactingFilter, register_secrets, setup_logging

SECRET = "sk-lm-Zz9Yy8Xx:Ww7Vv6Uu5Tt4Ss3Rr2Qq1"


@pytest.fixture(autouse=True)
def clean_secrets() -> Iterator[None]:
    saved = set(RedactingFilter.secrets)
    yield
    RedactingFilter.secrets.clear()
    RedactingFilter.secrets.update(saved)
    logging.getLogger().handlers.clear()


def test_json_lines_carry_context(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "json")
    logging.getLogger("lmwatch.test").info(
        "backend %s down", "box", extra={"event": "backend_health", "backend": "box"}
    )
    entry = json.loads(capsys.readouterr().err.strip())
    assert entry["message"] == "backend box down"
    assert entry["event"] == "backend_health" and entry["backend"] == "box"
    assert entry["level"] == "info" and entry["logger"] == "lmwatch.test"


def test_secrets_are_redacted_in_messages_args_context_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("debug", "text")
    register_secrets([SECRET])
    log = logging.getLogger("lmwatch.test")
    log.warning("token was %s", SECRET, extra={"header": f"Bearer {SECRET}"})
    try:
        raise ValueError(f"upstream said {SECRET}")
    except ValueError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert err.count(REDACTED) >= 2 and "ValueError" in err


def test_short_strings_are_not_treated_as_secrets() -> None:
    register_secrets(["abc"])
    assert "abc" not in RedactingFilter.secrets
