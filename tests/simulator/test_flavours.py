"""A new simulated server is one module plus one line in `SIM_FLAVOURS`: this one is defined here alone.

Registered in the table (nothing else is edited), it is accepted by `SimSettings` and `--flavour`, its
routes are served (one of its own beside the shared `/v1`), and its error wording is what clients get.
"""

from __future__ import annotations

import argparse

import aiohttp
import pytest
from aiohttp import web

from lmwatch.simulator import SimSettings, start_simulator
from lmwatch.simulator.app import Handlers
from lmwatch.simulator.command import add_arguments, build_settings
from lmwatch.simulator.errors import SimError
from lmwatch.simulator.flavours import SIM_FLAVOURS
from lmwatch.simulator.flavours.base import Route, SimFlavour, openai_routes
from lmwatch.simulator.server import RunningSimulator

NAME = "tapir"


class TapirServer(SimFlavour):
    """Lists models at `/tapir/models`, says 418 to unknown routes, and is not LM Studio."""

    default_version = "7.1"
    lmstudio = False

    def routes(self, h: Handlers) -> list[Route]:
        async def tapir_models(request: web.Request) -> web.Response:
            return web.json_response({"served": sorted(m.id for m in h.catalogue.listed_models())})

        return [*openai_routes(h), Route("GET", "/tapir/models", tapir_models)]

    def unknown_route(self, method: str, path: str) -> SimError:
        return SimError(418, {"tapir": f"no {path} here"})


@pytest.fixture
def tapir_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SIM_FLAVOURS, NAME, f"{__name__}:TapirServer")


async def get(session: aiohttp.ClientSession, sim: RunningSimulator, path: str) -> tuple[int, object]:
    async with session.get(sim.url + path) as resp:
        return resp.status, await resp.json()


@pytest.mark.usefixtures("tapir_registered")
async def test_a_simulated_flavour_defined_in_a_test_serves_its_routes_and_wording() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = build_settings(parser.parse_args(["--port", "0", "--flavour", NAME, "--model", "tapir-1b"]))
    assert (settings.flavour, settings.version, type(settings.dialect)) == (NAME, "7.1", TapirServer)
    sim = await start_simulator(settings, host="127.0.0.1", port=0)
    try:
        async with aiohttp.ClientSession() as session:
            assert await get(session, sim, "/tapir/models") == (200, {"served": ["tapir-1b"]})
            status, models = await get(session, sim, "/v1/models")
            assert status == 200 and isinstance(models, dict) and models["data"][0]["id"] == "tapir-1b"
            assert await get(session, sim, "/api/v0/models") == (418, {"tapir": "no /api/v0/models here"})
            assert await get(session, sim, "/lmstudio-greeting") == (418, {"tapir": "no /lmstudio-greeting here"})
    finally:
        await sim.stop()


def test_without_the_table_line_the_flavour_is_refused() -> None:
    with pytest.raises(ValueError, match=r"flavour must be one of 0\.4, 0\.3, openai$"):
        SimSettings(flavour=NAME)
