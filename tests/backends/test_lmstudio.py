"""LM Studio's quirks on the flavour table: which versions speak the agent APIs, and the
`json_object` rewrite, seen end to end through the openai SDK against the simulated server
(which, like LM Studio, refuses `json_object`)."""

from __future__ import annotations

import json

import openai
import pytest

from lmwatch.backends import flavour as flavour_named
from lmwatch.backends.base import JSON_OBJECT_SCHEMA
from lmwatch.simulator import SimModel, SimSettings
from lmwatch.versions import version_tuple
from tests.api.fleets import fleet

MODEL = "qwen2.5-coder-7b-instruct"


@pytest.mark.parametrize(
    ("flavour", "version", "apis"),
    [
        ("lmstudio-v1", "0.4.12", {"responses", "messages"}),
        ("lmstudio-v1", "0.4.0", {"responses"}),
        ("lmstudio-v1", None, {"responses"}),
        ("lmstudio-v1", "0.4.4+1", {"responses", "messages"}),
        ("lmstudio-v0", "0.3.29", {"responses"}),
        ("lmstudio-v0", "0.3.28", set()),
        ("lmstudio-v0", None, set()),
        ("openai", "0.4.12", set()),
    ],
)
def test_which_server_versions_speak_which_api(flavour: str, version: str | None, apis: set[str]) -> None:
    assert flavour_named(flavour).apis(version) == apis


def test_versions_compare_as_numbers() -> None:
    assert version_tuple("0.3.10") > version_tuple("0.3.9")
    assert version_tuple("0.4.4+1") == (0, 4, 4)
    assert version_tuple("1.0.0-beta") == (1, 0, 0)


def test_json_object_becomes_a_schema_only_where_it_is_refused() -> None:
    body = {"model": MODEL, "messages": [], "response_format": {"type": "json_object"}}
    assert flavour_named("lmstudio-v1").rewrite(body) == {**body, "response_format": JSON_OBJECT_SCHEMA}
    assert flavour_named("openai").rewrite(body) is None
    assert flavour_named("lmstudio-v0").rewrite({**body, "response_format": {"type": "text"}}) is None


@pytest.mark.parametrize("flavour", ["0.4", "0.3"])
async def test_json_mode_works_through_lmstudio(flavour: str) -> None:
    studio = SimSettings(flavour=flavour, models=[SimModel(id=MODEL)])  # type: ignore[arg-type]
    async with fleet({"studio": studio}) as f:
        client = f.client()
        answer = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Give me a JSON object"}],
            response_format={"type": "json_object"},
        )
        assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Give me a JSON object"}],
            response_format={"type": "json_object"},
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert isinstance(json.loads(text), dict)
        translated = await client.responses.create(
            model=MODEL, input="Give me a JSON object", text={"format": {"type": "json_object"}}
        )
        assert isinstance(json.loads(translated.output_text), dict)
        with pytest.raises(openai.BadRequestError) as refused:  # what LM Studio itself answers, still relayed
            await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "x"}],
                response_format={"type": "xml"},  # type: ignore[typeddict-item]
            )
    assert "must be 'json_schema' or 'text'" in refused.value.message
