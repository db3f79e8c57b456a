"""The embedding cache over real HTTP: per input text, only misses go upstream, answers stay in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmwatch.simulator import SimSettings
from lmwatch.simulator.generation import embedding
from tests.api.fleets import fleet, models

MODEL = "text-embedding-nomic-embed-text-v1.5"
SIM = SimSettings(models=models(MODEL, kind="embeddings"))
CACHE = {"enabled": True, "timeout": 5}
"""A long store time limit: on a loaded machine a lookup of 1,000 keys may pass the default's 2.75 s,
and the batch would be a bypass."""


@pytest.mark.parametrize("batch_size", [64, 2000])
async def test_re_embedding_mostly_unchanged_chunks_sends_only_the_changed(tmp_path: Path, batch_size: int) -> None:
    extra = {"state_dir": str(tmp_path), "cache": CACHE}
    async with fleet({"studio": SIM}, routing={"embedding_batch_size": batch_size}, extra=extra) as f:
        stats = f.sims["studio"].state.stats
        client = f.client()
        chunks = [f"chunk number {i} of the document" for i in range(1000)]
        first = await client.embeddings.with_raw_response.create(model=MODEL, input=chunks)
        assert (first.headers["x-lmwatch-cache"], first.headers["x-lmwatch-cache-hits"]) == ("miss", "0/1000")
        assert f.daemon.services.cache is not None
        await f.daemon.services.cache.settled()
        assert stats.embedded_inputs_total == 1000
        edited = [c if i % 10 else f"{c}, edited" for i, c in enumerate(chunks)]
        second = await client.embeddings.with_raw_response.create(model=MODEL, input=edited)
        assert second.headers["x-lmwatch-cache-hits"] == "900/1000"
        assert stats.embedded_inputs_total == 1100
        got = second.parse()
        assert [d.index for d in got.data] == list(range(1000))
        before = first.parse().data
        for i in (1, 2, 999):  # unchanged chunks: the stored vectors
            assert got.data[i].embedding == before[i].embedding
        assert got.data[0].embedding == pytest.approx(list(embedding(edited[0])))  # an edited chunk: fresh
        await f.daemon.services.cache.settled()
        again = await client.embeddings.with_raw_response.create(model=MODEL, input=edited)
        assert (again.headers["x-lmwatch-cache"], again.headers["x-lmwatch-route"]) == ("hit", "cache")
        assert stats.embedded_inputs_total == 1100
        assert f.metric("lmwatch_cache_requests_total", kind="embedding", result="hit") == 900 + 1000
        assert f.metric("lmwatch_cache_errors_total") == 0


async def test_an_input_given_twice_is_stored_once(tmp_path: Path) -> None:
    extra = {"state_dir": str(tmp_path), "cache": CACHE}
    async with fleet({"studio": SIM}, extra=extra) as f:
        client = f.client()
        first = await client.embeddings.with_raw_response.create(model=MODEL, input=["same", "other", "same"])
        assert first.headers["x-lmwatch-cache"] == "miss"
        assert f.daemon.services.cache is not None
        await f.daemon.services.cache.settled()
        again = await client.embeddings.with_raw_response.create(model=MODEL, input=["same", "same"])
        assert (again.headers["x-lmwatch-cache"], again.headers["x-lmwatch-cache-hits"]) == ("hit", "2/2")
        assert f.metric("lmwatch_cache_errors_total") == 0
