"""Reading credentials: every problem of the key sources named with its path and never the key,
and which addresses count as loopback (for `/admin` without a token, and for `server.host`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmwatch.config import ClientsConfig
from lmwatch.credentials import host_is_loopback, is_loopback, load_client_keys
from tests.daemons import CLIENT_KEY, write

KEY_ENV = "LMWATCH_TEST_ALICE_KEY"


def test_key_sources_report_every_problem_with_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "short.key", "tiny\n")
    write(tmp_path / "keys.yaml", '- {name: ci, key: "short"}\n- {name: alice, key: "' + CLIENT_KEY + '"}\n')
    monkeypatch.delenv("LMWATCH_TEST_UNSET", raising=False)
    clients = ClientsConfig.model_validate(
        {
            "keys": [
                {"name": "alice", "key_env": KEY_ENV},
                {"name": "bob", "key_env": "LMWATCH_TEST_UNSET"},
                {"name": "carol", "key_file": str(tmp_path / "short.key")},
                {"name": "dave", "key_file": str(tmp_path / "missing.key")},
            ],
            "keys_file": str(tmp_path / "keys.yaml"),
        }
    )
    with pytest.raises(Exception) as failed:
        load_client_keys(clients, {KEY_ENV: CLIENT_KEY})
    problems: list[str] = failed.value.problems  # type: ignore[attr-defined]
    assert problems[0] == "clients.keys[1].key_env: environment variable LMWATCH_TEST_UNSET is not set"
    assert problems[1].startswith("clients.keys[2].key_file: the key of carol is shorter than 16 characters")
    assert problems[2].startswith(f"clients.keys[3].key_file: cannot read {tmp_path / 'missing.key'}")
    assert problems[3] == (
        f"clients.keys_file ({tmp_path / 'keys.yaml'}): [0].key: String should have at least 16 characters"
    )
    assert problems[4] == "clients.keys_file[1].name: 'alice' is already the name of clients.keys[0]"
    assert problems[5].startswith("clients.keys_file[1]: the same key is also given to clients.keys[0]")
    assert all("short" not in p.split(": ", 1)[1] or "shorter" in p for p in problems)
    assert not any(CLIENT_KEY in p for p in problems)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        (None, False),
        ("example.org", False),
    ],
)
def test_loopback_addresses(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.2", False),
    ],
)
def test_loopback_listen_hosts(host: str, loopback: bool) -> None:
    assert host_is_loopback(host) is loopback
