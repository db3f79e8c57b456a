"""The OpenAPI 3.1 document of `/admin` and lmwatch's own endpoints, served at `/openapi.json`.

Generated at start from the classes of lmwatch/api/contract.py and the config's BackendConfig (the
models that validate the requests, and the types the answers are built with), plus the table below
of which operation takes and answers what. `/v1` is OpenAI's (and Anthropic's) API, documented by
them, and not part of it. A test checks that every route the app serves outside `/v1` is listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from lmwatch import __version__
from lmwatch.api import contract
from lmwatch.config import BackendConfig
from lmwatch.routing.request import Endpoint
from lmwatch.usage.log import GROUPS

REF = "#/components/schemas/{model}"
ANY = TypeAdapter(dict[str, Any])
"""An answer (or body) of the lifecycle and profile calls, not typed in contract.py yet: any JSON object."""
OPENAPI_DOCUMENT = web.AppKey("lmwatch_openapi", dict)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answers: dict[int, Any]
    """Status -> the answer's type (JSON), or a media type string for a non-JSON answer."""
    body: Any = None
    body_required: bool = True
    query: dict[str, list[str]] = field(default_factory=dict)
    """Query parameters, each with its allowed values."""

    @property
    def admin(self) -> bool:
        return self.path.startswith("/admin/")


OPERATIONS = (
    Operation("get", "/", "the operator console (a web page)", {200: "text/html"}),
    Operation("get", "/healthz", "alive: the event loop answers", {200: contract.Alive}),
    Operation(
        "get", "/readyz", "ready once the first poll round is done", {200: contract.Readiness, 503: contract.Readiness}
    ),
    Operation("get", "/status", "the fleet: backends, models, host, requests", {200: contract.Status}),
    Operation("get", "/metrics", "Prometheus metrics", {200: "text/plain"}),
    Operation("get", "/openapi.json", "this document", {200: "application/json"}),
    Operation("get", "/admin/backends", "every backend with origin, in-flight, breakers", {200: contract.Backends}),
    Operation("post", "/admin/backends", "add a backend until the next reload", {201: contract.Added}, BackendConfig),
    Operation("delete", "/admin/backends/{name}", "remove a backend until the next reload", {200: contract.Removed}),
    Operation("post", "/admin/backends/{name}/drain", "stop new requests to a backend", {200: contract.Drained}),
    Operation("post", "/admin/backends/{name}/undrain", "resume a drained backend", {200: contract.Drained}),
    Operation("post", "/admin/backends/{name}/models/load", "load a model", {200: contract.Loaded}, contract.LoadModel),
    Operation(
        "post", "/admin/backends/{name}/models/unload", "unload a model", {200: contract.Unloaded}, contract.UnloadModel
    ),
    Operation("post", "/admin/backends/{name}/swap", "swap one loaded model for another", {200: ANY}, contract.Swap),
    Operation(
        "get",
        "/admin/fit",
        "where a model would fit (GPU memory, context)",
        {200: ANY},
        query={"model": [], "context_length": []},
    ),
    Operation("post", "/admin/profile", "measure a model's speed on a backend", {200: ANY}, ANY),
    Operation("get", "/admin/models", "models by task, as routing ranks them", {200: ANY}, query={"task": []}),
    Operation(
        "get",
        "/admin/usage",
        "tokens, requests and cost avoided since a time, grouped",
        {200: ANY},
        query={"since": [], "by": list(GROUPS)},
    ),
    Operation("post", "/admin/poll", "probe now", {200: contract.Polled}, contract.Poll, body_required=False),
    Operation("post", "/admin/reload", "re-read the config file", {200: contract.Reloaded}),
    Operation(
        "post",
        "/admin/route/explain",
        "where a request would be routed, and why",
        {200: contract.Explanation},
        contract.ExplainRequest,
        query={"endpoint": [e.value for e in Endpoint]},
    ),
    Operation("get", "/admin/routing/preferences", "task -> model family patterns", {200: contract.Preferences}),
    Operation(
        "put",
        "/admin/routing/preferences",
        "replace the preferences until the next reload",
        {200: contract.Preferences},
        TypeAdapter(dict[str, list[str]]),
    ),
)


def setup(app: web.Application) -> None:
    app[OPENAPI_DOCUMENT] = document()
    app.router.add_get("/openapi.json", serve)


async def serve(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_DOCUMENT])


def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lmwatch",
            "version": __version__,
            "description": "lmwatch's own endpoints and its admin API. `/v1` follows OpenAI's and Anthropic's APIs.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the admin token; without one configured, loopback clients need none",
                }
            },
        },
    }


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    name = op.path.strip("/").replace("/", "_").replace("{", "").replace("}", "") or "console"
    operation: dict[str, Any] = {"operationId": f"{op.method}_{name}".replace(".", "_"), "summary": op.summary}
    parameters = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for p in _path_parameters(op.path)
    ]
    parameters += [
        {"name": q, "in": "query", "required": False, "schema": {"type": "string", **({"enum": v} if v else {})}}
        for q, v in op.query.items()
    ]
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": _schema(op.body, schemas, "validation")}},
        }
    responses: dict[str, Any] = {}
    for status, answer in op.answers.items():
        if isinstance(answer, str):
            content = {answer: {"schema": {"type": "object"} if answer.endswith("json") else {"type": "string"}}}
        else:
            content = {"application/json": {"schema": _schema(answer, schemas, "serialization")}}
        responses[str(status)] = {"description": op.summary if status < 300 else "not ready", "content": content}
    responses["default"] = {
        "description": "an error, in OpenAI's shape",
        "content": {"application/json": {"schema": _schema(contract.Error, schemas, "serialization")}},
    }
    operation["responses"] = responses
    if op.admin:
        operation["security"] = [{"adminToken": []}, {}]
        operation["tags"] = ["admin"]
    return operation


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _schema(source: Any, schemas: dict[str, Any], mode: JsonSchemaMode) -> dict[str, Any]:
    """A $ref to the source's schema under components (added there with the schemas it uses)."""
    adapter = source if isinstance(source, TypeAdapter) else TypeAdapter(source)
    generated: dict[str, Any] = adapter.json_schema(ref_template=REF, mode=mode)
    schemas.update(generated.pop("$defs", {}))
    title = generated.get("title")
    if not isinstance(title, str):  # an inline type (the preferences mapping)
        return generated
    schemas[title] = generated
    return {"$ref": REF.format(model=title)}
