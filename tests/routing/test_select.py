"""Candidate selection over registry snapshots: every route reason, id form, filter and tier order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lmwatch.api.errors import api_error
from lmwatch.config import RoutingConfig, parse_config
from lmwatch.errors import DomainError
from lmwatch.failures import FailureReason
from lmwatch.registry import ModelInfo, ModelType, ProbeResult, Registry, Snapshot
from lmwatch.routing.capabilities import Capabilities
from lmwatch.routing.request import Endpoint, parse_request
from lmwatch.routing.select import Plan, PlanMemo, choose_task, plan_request

LLM, VLM, EMB = ModelType.LLM, ModelType.VLM, ModelType.EMBEDDINGS


def model(model_id: str, kind: ModelType = LLM, loaded: bool = True, **extra: Any) -> ModelInfo:
    instances = extra.pop("instance_ids", (model_id,) if loaded else ())
    return ModelInfo(id=model_id, model_type=kind, loaded=loaded, instance_ids=instances, **extra)


def fleet(backends: dict[str, list[ModelInfo]], down: tuple[str, ...] = (), draining: tuple[str, ...] = ()) -> Snapshot:
    text = "backends: [" + ", ".join(f"{{name: {n}, url: 'http://{n}:1234'}}" for n in backends) + "]"
    registry = Registry()
    registry.configure_backends(parse_config(text, env={}).config.backends)
    for name, models in backends.items():
        registry.record_success(name, ProbeResult(flavour="lmstudio-v1", models=tuple(models), duration=0.01))
        if name in down:
            registry.record_failure(name, FailureReason.CONNECT, "refused", 0.01)
        if name in draining:
            registry.set_draining(name, True)
    return registry.snapshot()


def routing(yaml_text: str = "") -> RoutingConfig:
    return parse_config(yaml_text, env={}).config.routing


def plan(
    snap: Snapshot,
    body: dict[str, Any],
    config: RoutingConfig | None = None,
    task: str | None = None,
    endpoint: Endpoint = Endpoint.CHAT,
    local_only: bool = False,
) -> Plan:
    config = config or routing()
    req = parse_request(endpoint, json.dumps(body).encode(), config.default_model)
    task = task or choose_task(config, snap, req, None) or "research"
    return plan_request(snap, config, Capabilities(config), req, task, local_only)


def tiers(p: Plan) -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [(t.route.value, t.label, [(x.backend, x.model) for x in t.targets]) for t in p.tiers]


def chat(model_id: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model_id, "messages": [{"role": "user", "content": "hi"}], **extra}


CODERS = {
    "a": [model("deepseek-coder-v2-lite-instruct@q4_k_m"), model("qwen2.5-coder-7b-instruct"), model("mistral-7b")],
    "b": [model("qwen2.5-coder-7b-instruct"), model("nomic-embed-text-v1.5", EMB), model("phi-3-mini-4k")],
}


def test_explicit_id_goes_to_every_backend_that_has_it_loaded() -> None:
    p = plan(fleet(CODERS), chat("qwen2.5-coder-7b-instruct"))
    assert tiers(p) == [
        (
            "explicit",
            "qwen2.5-coder-7b-instruct",
            [("a", "qwen2.5-coder-7b-instruct"), ("b", "qwen2.5-coder-7b-instruct")],
        )
    ]


def test_explicit_id_in_lm_studio_forms_sends_the_backends_own_id() -> None:
    snap = fleet({"a": [model("qwen/qwen3-14b", quantization="Q6_K")], "b": [model("qwen3-14b@q4_k_m")]})
    assert tiers(plan(snap, chat("qwen3-14b")))[0][2] == [("a", "qwen/qwen3-14b"), ("b", "qwen3-14b@q4_k_m")]
    assert tiers(plan(snap, chat("qwen3-14b@q6_k")))[0][2] == [("a", "qwen/qwen3-14b")]
    assert tiers(plan(snap, chat("lmstudio-community/qwen3-14b@q4_k_m")))[0][2] == [("b", "qwen3-14b@q4_k_m")]


def test_duplicate_instances_are_separate_targets_and_addressable() -> None:
    snap = fleet({"a": [model("gemma-3-1b", instance_ids=("gemma-3-1b", "gemma-3-1b:2"))]})
    assert tiers(plan(snap, chat("gemma-3-1b")))[0][2] == [("a", "gemma-3-1b"), ("a", "gemma-3-1b:2")]
    assert tiers(plan(snap, chat("gemma-3-1b:2")))[0][2] == [("a", "gemma-3-1b:2")]


def test_unknown_id_is_404_naming_the_closest_ids() -> None:
    with pytest.raises(DomainError) as caught:
        plan(fleet(CODERS), chat("qwen2.5-coder-7b-instrukt"))
    assert api_error(caught.value).status == 404
    assert caught.value.code == "model_not_found"
    assert "qwen2.5-coder-7b-instruct" in caught.value.message


def test_unloaded_model_is_used_only_when_jit_is_allowed() -> None:
    snap = fleet({"a": [model("mistral-7b", loaded=False)]})
    p = plan(snap, chat("mistral-7b"))
    assert p.tiers == () and "no healthy backend has 'mistral-7b' loaded" in p.unavailable
    jit = plan(snap, chat("mistral-7b"), routing("routing: {allow_jit: true}"))
    assert tiers(jit) == [("explicit", "mistral-7b (load on demand)", [("a", "mistral-7b")])]


def test_down_and_draining_backends_give_no_candidates() -> None:
    snap = fleet(CODERS, down=("a",), draining=("b",))
    p = plan(snap, chat("qwen2.5-coder-7b-instruct"))
    assert p.tiers == ()
    assert "a: down" in p.unavailable and "b: draining" in p.unavailable


def test_alias_maps_one_name_to_different_ids_per_backend() -> None:
    config = routing("""
routing:
  aliases:
    coder: [{backend: b, model: qwen2.5-coder-7b-instruct}, deepseek-coder-v2-lite-instruct@q4_k_m]
""")
    assert tiers(plan(fleet(CODERS), chat("coder"), config)) == [
        ("explicit", "qwen2.5-coder-7b-instruct", [("b", "qwen2.5-coder-7b-instruct")]),
        ("explicit", "deepseek-coder-v2-lite-instruct@q4_k_m", [("a", "deepseek-coder-v2-lite-instruct@q4_k_m")]),
    ]


def test_auto_walks_preferences_then_capabilities_then_anything() -> None:
    p = plan(fleet(CODERS), chat(), task="coding")
    assert tiers(p) == [
        ("preference", "deepseek-coder", [("a", "deepseek-coder-v2-lite-instruct@q4_k_m")]),
        ("capability", "qwen2.5-coder", [("a", "qwen2.5-coder-7b-instruct"), ("b", "qwen2.5-coder-7b-instruct")]),
        ("capability", "mistral-7b", [("a", "mistral-7b")]),
        ("capability", "phi-3-mini", [("b", "phi-3-mini-4k")]),
    ]


def test_auto_with_no_known_family_still_uses_a_loaded_model() -> None:
    p = plan(fleet({"a": [model("some-new-model-2b")]}), chat(), task="creative")
    assert tiers(p) == [("capability", "any loaded model", [("a", "some-new-model-2b")])]


def test_task_model_id_and_header_choose_the_task() -> None:
    snap, config = fleet(CODERS), routing()
    req = parse_request(Endpoint.CHAT, json.dumps(chat("task:analysis")).encode(), "auto")
    assert choose_task(config, snap, req, None) == "analysis"
    assert choose_task(config, snap, req, "Creative") == "creative"
    with pytest.raises(DomainError) as caught:
        choose_task(config, snap, req, "gardening")
    assert api_error(caught.value).status == 400
    bad = parse_request(Endpoint.CHAT, json.dumps(chat("task:gardening")).encode(), "auto")
    with pytest.raises(DomainError) as caught:
        choose_task(config, snap, bad, None)
    assert api_error(caught.value).status == 404


def test_images_go_only_to_vision_models() -> None:
    snap = fleet(
        {
            "a": [model("qwen2.5-coder-7b-instruct"), model("google/gemma-3-4b", VLM)],
            "b": [model("llava-v1.6-mistral-7b")],
        }
    )
    png = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAAB"
        "JRU5ErkJggg=="
    )
    body = {
        "model": "auto",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": png}},
                ],
            }
        ],
    }
    assert [t[2] for t in tiers(plan(snap, body, task="research"))] == [
        [("a", "google/gemma-3-4b")],
        [("b", "llava-v1.6-mistral-7b")],
    ]


def test_tools_prefer_models_trained_for_tool_use() -> None:
    snap = fleet(
        {
            "a": [model("deepseek-coder-6.7b"), model("qwen2.5-coder-7b", tool_use=False)],
            "b": [model("mistral-7b", tool_use=True)],
        }
    )
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    order = [t[2][0] for t in tiers(plan(snap, chat(tools=tools), task="coding"))]
    # qwen2.5-coder is a tool-use family in the table; deepseek-coder is not
    assert order == [("a", "qwen2.5-coder-7b"), ("b", "mistral-7b"), ("a", "deepseek-coder-6.7b")]


def test_embeddings_use_embedding_models_only() -> None:
    p = plan(fleet(CODERS), {"model": "auto", "input": ["x"]}, endpoint=Endpoint.EMBEDDINGS, task="embeddings")
    assert tiers(p) == [("capability", "nomic-embed", [("b", "nomic-embed-text-v1.5")])]


def test_capability_table_and_task_roles_are_overridable() -> None:
    config = routing("""
routing:
  preferences: {}
  capabilities:
    house-coder: {match: [mistral-7b], roles: [coding]}
  task_roles: {coding: [coding]}
""")
    assert [t[1] for t in tiers(plan(fleet(CODERS), chat(), config, task="coding"))] == [
        "house-coder",
        "qwen2.5-coder",
        "deepseek-coder",
        "any loaded model",
    ]


def test_cloud_comes_last_only_when_allowed_keyed_and_not_local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    config = routing("""
routing:
  cloud:
    allowed: true
    providers:
      - {name: first, base_url: 'https://one.example/v1', api_key_env: ONE_KEY, models: {default: big}}
      - {name: nokey, base_url: 'https://two.example/v1', api_key_env: MISSING_KEY, models: {default: big}}
      - {name: other, base_url: 'https://three.example/v1', api_key_env: ONE_KEY, models: {coding: coder}}
""")
    monkeypatch.setenv("ONE_KEY", "sk-test-123456")
    monkeypatch.delenv("MISSING_KEY", raising=False)
    p = plan(fleet(CODERS), chat("mistral-7b"), config, task="coding")
    assert tiers(p)[-1] == ("cloud", "cloud", [("cloud:first", "big"), ("cloud:other", "coder")])
    assert p.tiers[-1].targets[0].url == "https://one.example/v1"
    assert tiers(plan(fleet(CODERS), chat("mistral-7b"), config, local_only=True))[-1][0] == "explicit"
    assert all(t[0] != "cloud" for t in tiers(plan(fleet(CODERS), chat("mistral-7b"))))


def test_concurrency_cap_comes_from_config_then_server_then_default() -> None:
    snap = fleet({"a": [model("x", parallel=2)], "b": [model("x")]})
    caps = {t.backend: t.cap for t in plan(snap, chat("x")).tiers[0].targets}
    assert caps == {"a": 2, "b": 4}


def test_a_plan_holds_across_polls_that_change_only_timings_and_not_past_a_real_change() -> None:
    """A fleet polled every second publishes a snapshot per poll: the memo's plan survives those
    that only refresh probe timings and counts, and is made afresh once routing facts change."""
    text = "backends: [{name: a, url: 'http://a:1234'}, {name: b, url: 'http://b:1234'}]"
    registry = Registry()
    registry.configure_backends(parse_config(text, env={}).config.backends)
    models = (model("qwen2.5-7b-instruct"),)
    for name in ("a", "b"):
        registry.record_success(name, ProbeResult(flavour="lmstudio-v1", models=models, duration=0.01))
    config = routing()
    req = parse_request(Endpoint.CHAT, json.dumps(chat("qwen2.5-7b-instruct")).encode(), config.default_model)
    memo, caps = PlanMemo(), Capabilities(config)
    first = memo.plan(registry.snapshot(), config, caps, req, "research", False)
    registry.record_success("a", ProbeResult(flavour="lmstudio-v1", models=models, duration=0.02))  # timings only
    assert memo.plan(registry.snapshot(), config, caps, req, "research", False) is first
    registry.record_failure("b", FailureReason.TIMEOUT, "timed out", 5.0)  # b goes down: a routing fact
    down = memo.plan(registry.snapshot(), config, caps, req, "research", False)
    assert [t.backend for t in first.tiers[0].targets] == ["a", "b"]
    assert [t.backend for t in down.tiers[0].targets] == ["a"]
    registry.record_failure("b", FailureReason.TIMEOUT, "timed out", 5.0)  # still down: counts only
    snap = registry.snapshot()
    assert memo.plan(snap, config, caps, req, "research", False) is down
    assert snap.routes is registry.snapshot().routes
    registry.record_success("b", ProbeResult(flavour="lmstudio-v1", models=models, duration=0.01))
    assert registry.snapshot().routes is not snap.routes
    assert memo.plan(registry.snapshot(), config, caps, req, "research", False) == first
