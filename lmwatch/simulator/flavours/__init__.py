"""The table of simulated servers: `--flavour` name → the `SimFlavour` class that imitates it.

A new simulated server is one module here plus one line in `SIM_FLAVOURS`; `SimSettings`, the
`--flavour` choices and the route table all read it.
"""

from __future__ import annotations

from typing import Final

from lmwatch.classpath import load_class
from lmwatch.simulator.flavours.base import SimFlavour

SIM_FLAVOURS: Final[dict[str, str]] = {
    "0.4": "lmwatch.simulator.flavours.lmstudio_0_4:LMStudio04",
    "0.3": "lmwatch.simulator.flavours.lmstudio_0_3:LMStudio03",
    "openai": "lmwatch.simulator.flavours.openai_server:OpenAIServer",
}
"""Flavour name → `module:Class` of its `SimFlavour` subclass."""


def sim_flavour(name: str) -> SimFlavour:
    """A `SimFlavour` for the table name `name`."""
    return load_class(SIM_FLAVOURS[name], SimFlavour)()


__all__ = ["SIM_FLAVOURS", "SimFlavour", "sim_flavour"]
