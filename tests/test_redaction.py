"""The Redactor: every form of a secret, a reload replacing the set, and no secret shared between
two daemons in one process."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from urllib.parse import quote

from lmwatch.logs import TEXT_FORMAT, RedactingFilter
from lmwatch.redaction import REDACTED, Redactor, basic_credentials, strip_userinfo
from tests.daemons import config_file, daemon_for, write

SECRET = "s3cret/with+chars=0a1b"


def test_every_form_of_a_secret_is_redacted() -> None:
    redactor = Redactor([SECRET, basic_credentials("ops", SECRET)])
    encoded = base64.b64encode(SECRET.encode()).decode().rstrip("=")
    basic = base64.b64encode(f"ops:{SECRET}".encode()).decode().rstrip("=")
    text = f"raw {SECRET} url {quote(SECRET, safe='')} b64 {encoded}== basic {basic}"
    assert redactor.redact(text) == f"raw {REDACTED} url {REDACTED} b64 {REDACTED}== basic {REDACTED}"


def test_userinfo_is_stripped_even_when_no_secret_is_known() -> None:
    assert Redactor().redact("see http://ops:never-seen@host:1/v1") == "see http://***@host:1/v1"
    assert strip_userinfo("a@b and http://u:p@h") == "a@b and http://***@h"


def test_a_secret_inside_another_is_replaced_after_the_longer_one() -> None:
    redactor = Redactor(["abcdefgh", "xx-abcdefgh-yy"])
    assert redactor.redact("got xx-abcdefgh-yy and abcdefgh") == "got *** and ***"


def test_replace_keeps_the_previous_set_one_generation() -> None:
    redactor = Redactor(["first-secret-1"])
    redactor.add(["added-secret-2"])
    redactor.replace(["second-secret-3"])
    assert redactor.redact("first-secret-1 added-secret-2 second-secret-3") == "*** *** ***"
    redactor.replace(["third-secret-4"])
    assert redactor.redact("first-secret-1 second-secret-3 third-secret-4") == "first-secret-1 *** ***"
    assert "first-secret-1" not in redactor and "third-secret-4" in redactor


def client_keys_config(tmp_path: Path, key: str) -> Path:
    write(tmp_path / "client.key", key + "\n")
    return config_file(tmp_path, f"clients: {{keys: [{{name: ci, key_file: {tmp_path / 'client.key'}}}]}}\n")


def logged_through(redactor: Redactor, text: str) -> str:
    """`text` as a log handler filtered by `redactor` writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter(redactor))
    log = logging.getLogger("lmwatch.test.redaction")
    log.addHandler(handler)
    try:
        log.warning("%s", text)
    finally:
        log.removeHandler(handler)
    return out.getvalue()


async def test_two_daemons_in_one_process_keep_their_own_secrets_and_a_reload_replaces_them(tmp_path: Path) -> None:
    key_a, key_b = "sk-daemon-a-key-000000000001", "sk-daemon-b-key-000000000002"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        daemon_for(client_keys_config(tmp_path / "a", key_a)) as a,
        daemon_for(client_keys_config(tmp_path / "b", key_b)) as b,
    ):
        line = f"a={key_a} b={key_b}"
        assert key_a not in logged_through(a.holder.redactor, line) and key_b in logged_through(a.holder.redactor, line)
        assert key_b not in logged_through(b.holder.redactor, line) and key_a in logged_through(b.holder.redactor, line)

        rotated = "sk-daemon-a-rotated-key-0003"
        write(tmp_path / "a" / "client.key", rotated + "\n")
        assert await a.reload() == []
        assert rotated not in logged_through(a.holder.redactor, f"now {rotated}")
        assert rotated in logged_through(b.holder.redactor, f"now {rotated}")  # b never read it
        write(tmp_path / "a" / "client.key", "sk-daemon-a-third-key-00004\n")
        assert await a.reload() == []
        assert a.holder.redactor.redact(f"{key_a} {rotated}") == f"{key_a} ***"  # two reloads ago: forgotten
