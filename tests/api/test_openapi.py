"""The OpenAPI 3.1 document at `/openapi.json`: valid (openapi-spec-validator), covering every route the
daemon serves outside `/v1`, and true: schemathesis fuzzes a running demo from it and finds no 5xx
and no answer (status, content type, body) that the document does not describe."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp
from openapi_spec_validator import validate

from lmwatch.api.openapi import document
from lmwatch.daemon import Daemon
from lmwatch.simulator import RunningSimulator
from tests.daemons import backend_yaml, config_file, daemon_for
from tests.demos import running_demo

SCHEMATHESIS_SECONDS = 25
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def test_the_served_document_is_valid_openapi_3_1(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        async with http.get(daemon.url + "/openapi.json") as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            served = await resp.json()
        assert served == document()
        validate(served)
        assert served["openapi"] == "3.1.0"
        assert _routes(daemon) == {(m, p) for p, ops in served["paths"].items() for m in ops}


def _routes(daemon: Daemon) -> set[tuple[str, str]]:
    """What the app serves besides `/v1` (OpenAI's and Anthropic's API) and the console's static files."""
    routes = set()
    for route in daemon.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or path.startswith(("/v1", "/console/")):
            continue
        routes.add((route.method.lower(), path))
    return routes


def test_request_models_reject_what_the_handlers_reject() -> None:
    """The load body's schema is the model the handler validates with: no hand-kept copy to drift."""
    schemas = document()["components"]["schemas"]
    load = schemas["LoadModel"]
    assert load["required"] == ["model"] and load["additionalProperties"] is False
    assert load["properties"]["context_length"]["anyOf"][0] == {"minimum": 1, "type": "integer"}
    assert schemas["BackendConfig"]["properties"]["poll_interval"]["maximum"] > 0


async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(tmp_path: Path) -> None:
    async with running_demo() as demo:
        proc = await asyncio.create_subprocess_exec(
            *(str(Path(sys.executable).parent / "schemathesis"), "run", f"{demo.url}/openapi.json"),
            *("--checks", CHECKS, "--max-examples", "5", "--max-time", str(SCHEMATHESIS_SECONDS)),
            *("--workers", "1", "--seed", "1", "--generation-database", "none", "--request-timeout", "30"),
            "--no-color",
            cwd=tmp_path,  # its caches and reports stay out of the checkout
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), SCHEMATHESIS_SECONDS + 60)
        text = out.decode()
        failures = text.find("FAILURES")  # absent when schemathesis itself failed: then show its last lines
        assert proc.returncode == 0, text[failures:][:6000] if failures >= 0 else text[-6000:]
        assert "22 selected / 22 total" in text and " passed" in text
        async with aiohttp.ClientSession() as http, http.get(demo.url + "/readyz") as resp:
            assert resp.status == 200  # and the daemon is still fine afterwards
        await demo.stop()
    running = demo.text.split("lmwatch.daemon: stopping")[0]  # what the fuzzing caused, not the shutdown
    ours = [f for f in re.findall(r'File "([^"]+)"', running) if "/lmwatch/" in f]
    at = running.find(ours[0]) if ours else 0
    assert not ours, f"lmwatch code in a traceback the fuzzing caused:\n{running[at - 1500 : at + 2500]}"
