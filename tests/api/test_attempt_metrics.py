"""A backend failing behind a successful failover shows in lmwatch_backend_attempts_total: the
request-level series counts a request only under the backend that finally served it."""

from __future__ import annotations

import aiohttp

from lmwatch.simulator import SimSettings
from tests.api.fleets import fleet, models

REQUESTS = 6


async def test_attempts_count_every_backend_tried_with_its_outcome() -> None:
    flaky = SimSettings(models=models("qwen-7b"), error_rate=1.0)
    steady = SimSettings(models=models("qwen-7b"))
    routing = {
        "aliases": {"m": [{"backend": "flaky", "model": "qwen-7b"}, {"backend": "steady", "model": "qwen-7b"}]},
        "breaker": {"failures": 100},
    }
    options = {"flaky": {"retry_attempts": 1}}
    async with fleet({"flaky": flaky, "steady": steady}, routing=routing, **options) as f:
        async with aiohttp.ClientSession() as http:
            for _ in range(REQUESTS):
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                async with http.post(f.url + "/v1/chat/completions", json=body) as resp:
                    assert resp.status == 200, await resp.text()
        attempts = "lmwatch_backend_attempts_total"
        assert f.sims["flaky"].state.stats.errors_total == REQUESTS
        assert f.metric(attempts, backend="flaky", model="qwen-7b", outcome="failure") == REQUESTS
        assert f.metric(attempts, backend="flaky", outcome="success") == 0
        assert f.metric(attempts, backend="steady", model="qwen-7b", outcome="success") == REQUESTS
        assert f.metric("lmwatch_requests_total", backend="flaky") == 0  # what the old error ratio read
        assert f.metric("lmwatch_requests_total", backend="steady", code="200") == REQUESTS
