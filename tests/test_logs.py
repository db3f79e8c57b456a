"""Logging: JSON lines carry the structured fields; secrets never reach the output."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lmwatch.logs import TEXT_FORMAT, RedactingFilter, setup_logging
from lmwatch.redaction import REDACTED, Redactor
from tests.daemons import daemon_for, write

SECRET = "sk-lm-Zz9Yy8Xx:Ww7Vv6Uu5Tt4Ss3Rr2Qq1"


@pytest.fixture(autouse=True)
def clean_handlers() -> Iterator[None]:
    yield
    logging.getLogger().handlers.clear()


def test_json_lines_carry_context(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(Redactor(), "info", "json")
    logging.getLogger("lmwatch.test").info(
        "backend %s down", "box", extra={"event": "backend_health", "backend": "box"}
    )
    entry = json.loads(capsys.readouterr().err.strip())
    assert entry["message"] == "backend box down"
    assert entry["event"] == "backend_health" and entry["backend"] == "box"
    assert entry["level"] == "info" and entry["logger"] == "lmwatch.test"


def test_secrets_are_redacted_in_messages_args_context_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(Redactor([SECRET]), "debug", "text")
    log = logging.getLogger("lmwatch.test")
    log.warning("token was %s", SECRET, extra={"header": f"Bearer {SECRET}"})
    try:
        raise ValueError(f"upstream said {SECRET}")
    except ValueError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert err.count(REDACTED) >= 2 and "ValueError" in err


def test_a_json_line_keeps_the_traceback_in_its_own_field_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(Redactor([SECRET]), "info", "json")
    try:
        raise ValueError(f"upstream said {SECRET}")
    except ValueError:
        logging.getLogger("lmwatch.test").exception("answering %s failed", "/v1/chat/completions")
    err = capsys.readouterr().err
    entry = json.loads(err.strip())
    assert entry["message"] == "answering /v1/chat/completions failed"
    assert entry["exception"].startswith("Traceback") and f"ValueError: upstream said {REDACTED}" in entry["exception"]
    assert SECRET not in err


def test_short_strings_are_not_treated_as_secrets() -> None:
    assert "abc" not in Redactor(["abc"])


# --- the canary: every secret source, every encoding, every output surface -----------------------

URL_PASSWORD = "canary-url-password-5b1d"
ENV_TOKEN = "canary-env-token-0c3e9a77"
FILE_TOKEN = "canary-file-token-first-4aa1"
ROTATED_TOKEN = "canary-file-token-rotated-97be"
CLIENT = "canary-client-key-62f0d8c1"
ADMIN = "canary-admin-token-e81b55"


def forms(secret: str, user: str | None = None) -> list[str]:
    """What must never appear: the secret, its base64 and (for URL credentials) the Basic value."""
    found = [secret, base64.b64encode(secret.encode()).decode().rstrip("=")]
    if user is not None:
        found.append(base64.b64encode(f"{user}:{secret}".encode()).decode().rstrip("="))
    return found


def echoing(model: str, status: int = 500) -> web.Application:
    """A backend that repeats what it was sent: the Authorization header, decoded when it is Basic,
    and the request body; in an error answer, in a stream's error event and (for 401) on probes."""

    def echo(request: web.Request, body: bytes) -> str:
        auth = request.headers.get("Authorization", "")
        decoded = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
        return f"you sent {auth!r} ({decoded}) and {body.decode(errors='replace')}"

    async def models(request: web.Request) -> web.StreamResponse:
        if status == 401:
            return web.json_response({"error": {"message": echo(request, b"")}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if b'"stream": true' not in body:
            return web.json_response({"error": {"message": echo(request, body)}}, status=status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}}], "model": model}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(f"data: {json.dumps({'error': {'message': echo(request, body)}})}\n\n".encode())
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def test_a_canary_secret_from_every_source_never_reaches_any_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("lmwatch.config.TOKEN_FILE_TTL_SECONDS", 0.0)  # every request re-reads the file
    monkeypatch.setenv("CANARY_BACKEND_TOKEN", ENV_TOKEN)
    redactor = Redactor()  # the daemon's: its log handlers redact with it
    setup_logging(redactor, "debug", "json")
    text_log = io.StringIO()
    text_handler = logging.StreamHandler(text_log)
    text_handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    text_handler.addFilter(RedactingFilter(redactor))
    logging.getLogger().addHandler(text_handler)
    token_file = write(tmp_path / "backend.token", FILE_TOKEN)
    write(tmp_path / "client.key", CLIENT)
    write(tmp_path / "admin.token", ADMIN)
    async with AsyncExitStack() as stack:
        urls = {}
        for name, status in (("basic", 500), ("env", 500), ("file", 500), ("refusing", 401)):
            server = TestServer(echoing(f"{name}-model", status), host="127.0.0.1")
            await stack.enter_async_context(server)
            urls[name] = str(server.make_url("")).rstrip("/")
        with_password = urls["basic"].replace("http://", f"http://ops:{URL_PASSWORD}@")
        refusing = urls["refusing"].replace("http://", f"http://ops:{URL_PASSWORD}@")
        body = f"""
server: {{port: 0}}
state_dir: {tmp_path / "state"}
admin: {{token_file: {tmp_path / "admin.token"}}}
clients: {{keys: [{{name: ci, key_file: {tmp_path / "client.key"}}}]}}
audit: {{requests: true, prompts: true}}
backends:
  - {{name: basic, url: "{with_password}", retry_attempts: 1, poll_interval: 60}}
  - {{name: env, url: "{urls["env"]}", api_token_env: CANARY_BACKEND_TOKEN, retry_attempts: 1, poll_interval: 60}}
  - {{name: file, url: "{urls["file"]}", api_token_file: {token_file}, retry_attempts: 1, poll_interval: 60}}
  - {{name: refusing, url: "{refusing}", retry_attempts: 1, poll_interval: 60}}
"""
        config = write(tmp_path / "lmwatch.yaml", body)
        daemon = await stack.enter_async_context(daemon_for(config, redactor))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        seen: list[str] = []
        client = {"Authorization": f"Bearer {CLIENT}"}
        admin = {"Authorization": f"Bearer {ADMIN}"}
        prompt = f"my key is {CLIENT}, the admin's {base64.b64encode(ADMIN.encode()).decode()}"

        async def call(method: str, path: str, headers: dict[str, str], **kwargs: Any) -> None:
            async with http.request(method, daemon.url + path, headers=headers, **kwargs) as resp:
                seen.append(f"{path} {resp.status} {dict(resp.headers)} {await resp.text()}")

        for model in ("basic-model", "env-model", "file-model"):
            for stream in (False, True):
                chat = {"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]}
                await call("POST", "/v1/chat/completions", client, json=chat)
            if model == "file-model":
                write(token_file, ROTATED_TOKEN)  # rotated: the next request sends (and gets echoed) the new one
                await call("POST", "/v1/chat/completions", client, json={**chat, "stream": False})
                await call("POST", "/v1/chat/completions", client, json=chat)
        bad_url = f"http://ops:{URL_PASSWORD}@127.0.0.1:99999"
        await call("POST", "/admin/backends", admin, json={"name": "added", "url": bad_url})
        write(config, body + f'  - {{name: broken, url: "{bad_url}"}}\n')
        await call("POST", "/admin/reload", admin)
        for path in ("/status", "/metrics", "/admin/backends", "/admin/routing/preferences"):
            await call("GET", path, admin)
        await call("GET", "/v1/models", {"Authorization": f"Bearer {ADMIN}"})  # a wrong key: 401
        async with http.get(daemon.url + "/status") as resp:
            status = await resp.json()
        refused = next(b for b in status["backends"] if b["name"] == "refusing")
        assert (refused["reason"], refused["last_error"]) == ("auth", "auth")  # no text the backend wrote
        assert "you sent" not in json.dumps(status)
    seen.append(capsys.readouterr().err)
    seen.append(text_log.getvalue())
    seen.append((tmp_path / "state" / "audit.jsonl").read_text())
    everything = "\n".join(seen)
    assert "you sent" in everything and "refused" in everything  # the echoes did happen
    assert '"broken' in everything or "backends[4].url" in everything  # and so did the refused reload
    for secret, user in (
        (URL_PASSWORD, "ops"),
        (ENV_TOKEN, None),
        (FILE_TOKEN, None),
        (ROTATED_TOKEN, None),
        (CLIENT, None),
        (ADMIN, None),
    ):
        for form in forms(secret, user):
            assert form not in everything, (secret, form, everything[max(0, everything.find(form) - 300) :][:600])
