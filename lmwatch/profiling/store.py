"""Profiles on disk: one SQLite file in the state directory (`<state_dir>/profiles.sqlite3`).

Blocking sqlite3 calls, so callers run them off the event loop (`asyncio.to_thread`). A missing file
is an empty store (it is created on the first save); a broken file or row is logged and skipped,
never fatal: profiles are an optimisation, the daemon serves without them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from lmwatch.registry import ModelProfile, ModelType, ThroughputPoint

log = logging.getLogger("lmwatch.profiling")

FILENAME = "profiles.sqlite3"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    measured_at REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (backend, model)
)
"""


class StoreError(Exception):
    """The profile file could not be read or written (the message says which and why)."""


class ProfileStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILENAME

    def load(self) -> list[ModelProfile]:
        """Every stored profile (rows that cannot be read are logged and left out)."""
        if not self.path.exists():
            return []
        try:
            with closing(sqlite3.connect(self.path)) as db:
                rows = db.execute("SELECT backend, model, data FROM profiles").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from None
        profiles = []
        for backend, model, data in rows:
            try:
                profiles.append(decode(json.loads(data)))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("skipped the stored profile of %s on %s: %s", model, backend, exc)
        return profiles

    def save(self, profiles: list[ModelProfile]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path)) as db, db:
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.executemany(
                    "INSERT OR REPLACE INTO profiles (backend, model, measured_at, data) VALUES (?, ?, ?, ?)",
                    [(p.backend, p.model, p.measured_at, json.dumps(encode(p))) for p in profiles],
                )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot write {self.path}: {exc}") from None


def encode(profile: ModelProfile) -> dict[str, Any]:
    data = dataclasses.asdict(profile)
    data["model_type"] = profile.model_type.value
    return data


def decode(data: dict[str, Any]) -> ModelProfile:
    """A profile from its JSON form; unknown keys (a newer lmwatch wrote them) are ignored."""
    known = {f.name for f in dataclasses.fields(ModelProfile)}
    values = {k: v for k, v in data.items() if k in known}
    values["model_type"] = ModelType(values["model_type"])
    values["throughput"] = tuple(ThroughputPoint(**point) for point in values.get("throughput") or ())
    return ModelProfile(**values)
