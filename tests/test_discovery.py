"""Backend files (Prometheus file_sd style): backends appear, change and disappear live; a broken
file is reported (log, /admin/backends, metric) and ignored while the rest keep working."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from lmwatch.daemon import Daemon
from lmwatch.discovery import parse_backend_file
from lmwatch.registry import Health, Snapshot
from lmwatch.simulator import RunningSimulator, SimSettings, start_simulator
from tests.daemons import admin, backend_yaml, config_file, daemon_for, metric_value, write


@pytest.fixture
async def sims() -> AsyncIterator[list[RunningSimulator]]:
    servers = [await start_simulator(SimSettings(), port=0) for _ in range(3)]
    yield servers
    for server in servers:
        await server.stop()


def names(*wanted: str) -> Callable[[Snapshot], bool]:
    return lambda snap: set(snap.backends) == set(wanted)


def up(name: str) -> Callable[[Snapshot], bool]:
    return lambda snap: name in snap.backends and snap.backends[name].health is Health.UP


def listing(*entries: str) -> str:
    return "".join(f"- {e}\n" for e in entries)


async def files_doc(http: aiohttp.ClientSession, daemon: Daemon) -> dict[str, dict[str, object]]:
    _, answer = await admin(http, daemon, "GET", "/admin/backends")
    return {Path(str(f["path"])).name: f for f in answer["discovery"]["files"]}


async def scrape(http: aiohttp.ClientSession, daemon: Daemon) -> str:
    async with http.get(daemon.url + "/metrics") as resp:
        return await resp.text()


async def test_backends_appear_change_and_disappear_live(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession
) -> None:
    one, two, three = sims
    directory = tmp_path / "backends.d"
    directory.mkdir()
    write(directory / "one.yaml", listing(backend_yaml("d1", one.url)))
    config = config_file(
        tmp_path,
        f"backends: [{backend_yaml('static', three.url)}]\n"
        "backend_files: ['backends.d/*.yaml']\n"  # relative to the config file's directory
        "backend_files_interval: 0.1\n",
    )
    async with daemon_for(config) as daemon:
        snap = daemon.registry.snapshot()
        assert set(snap.backends) == {"static", "d1"}
        assert snap.backends["d1"].health is Health.UP  # discovered before the first poll round

        write(directory / "two.yaml", listing(backend_yaml("d2", two.url, labels="{zone: b}")))
        await daemon.registry.wait_for(up("d2"), timeout=5)

        write(directory / "one.yaml", listing(backend_yaml("d1", two.url), backend_yaml("d3", one.url)))
        snap = await daemon.registry.wait_for(
            lambda s: "d3" in s.backends and s.backends["d1"].url == two.url, timeout=5
        )
        assert snap.backends["d2"].config.labels == {"zone": "b"}

        (directory / "two.yaml").unlink()
        await daemon.registry.wait_for(names("static", "d1", "d3"), timeout=5)

        _, answer = await admin(http, daemon, "GET", "/admin/backends")
        origins = {b["name"]: b["origin"] for b in answer["backends"]}
        assert origins == {
            "static": "config",
            "d1": f"file:{directory / 'one.yaml'}",
            "d3": f"file:{directory / 'one.yaml'}",
        }
        text = await scrape(http, daemon)
        assert metric_value(text, "lmwatch_backend_file_valid", [("file", str(directory / "one.yaml"))]) == 1.0
        assert metric_value(text, "lmwatch_backend_file_backends", [("file", str(directory / "one.yaml"))]) == 2.0
        assert metric_value(text, "lmwatch_backend_file_valid", [("file", str(directory / "two.yaml"))]) is None


async def test_a_broken_file_is_reported_and_ignored_while_the_rest_keep_working(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    one, two, _ = sims
    write(tmp_path / "one.yaml", listing(backend_yaml("d1", one.url)))
    write(tmp_path / "two.yaml", listing(backend_yaml("d2", two.url)))
    config = config_file(tmp_path, f"backend_files: ['{tmp_path}/one.yaml', '{tmp_path}/t*.yaml']\n")
    async with daemon_for(config) as daemon:
        discovery = daemon.control.discovery
        assert set(daemon.registry.snapshot().backends) == {"d1", "d2"}

        with caplog.at_level(logging.ERROR, logger="lmwatch.discovery"):
            write(tmp_path / "one.yaml", "- {name: d1, url: [unclosed\n")
            await discovery.scan()
        assert any("one.yaml" in r.getMessage() and "invalid YAML" in r.getMessage() for r in caplog.records)
        assert any("last valid version stays in force" in r.getMessage() for r in caplog.records)
        files = await files_doc(http, daemon)
        assert files["one.yaml"]["valid"] is False
        assert "invalid YAML" in str(files["one.yaml"]["problems"])
        assert files["one.yaml"]["backends"] == ["d1"]  # the last valid version stays in force
        assert files["two.yaml"]["valid"] is True
        assert set(daemon.registry.snapshot().backends) == {"d1", "d2"}
        text = await scrape(http, daemon)
        assert metric_value(text, "lmwatch_backend_file_valid", [("file", str(tmp_path / "one.yaml"))]) == 0.0

        write(tmp_path / "two.yaml", listing(backend_yaml("d2", two.url), backend_yaml("d4", one.url)))
        await discovery.scan()
        await daemon.registry.wait_for(up("d4"), timeout=5)  # the rest keep working

        write(tmp_path / "one.yaml", listing(backend_yaml("d1", one.url), backend_yaml("d5", two.url)))
        await discovery.scan()
        assert set(daemon.registry.snapshot().backends) == {"d1", "d2", "d4", "d5"}
        assert (await files_doc(http, daemon))["one.yaml"]["valid"] is True


async def test_a_file_that_was_never_valid_contributes_nothing(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession
) -> None:
    one = sims[0]
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "bad.yaml", listing(backend_yaml("ok", one.url), '{name: x, url: "nope", colour: red}'))
    write(tmp_path / "d" / "worse.yaml", "{name: x}\n")
    config = config_file(tmp_path, f"backend_files: ['{tmp_path}/d/*.yaml']\n")
    async with daemon_for(config) as daemon:
        assert daemon.registry.snapshot().backends == {}
        files = await files_doc(http, daemon)
        assert files["bad.yaml"]["problems"] == [
            "[1].url: Input should be a valid URL, relative URL without a base (got 'nope')",
            "[1].colour: unknown key (check the spelling; see config.yaml for every key)",
        ]
        assert files["bad.yaml"]["backends"] == []
        assert files["worse.yaml"]["problems"] == [
            "(top level): must be a list of backend entries (like `backends:` in the config), got dict"
        ]


async def test_names_used_elsewhere_make_the_file_an_error(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession
) -> None:
    one, two, _ = sims
    write(tmp_path / "a.yaml", listing(backend_yaml("static", two.url), backend_yaml("extra", two.url)))
    write(tmp_path / "b.yaml", listing(backend_yaml("dup", one.url)))
    write(tmp_path / "c.yaml", listing(backend_yaml("dup", two.url), backend_yaml("c-only", two.url)))
    config = config_file(
        tmp_path, f"backends: [{backend_yaml('static', one.url)}]\nbackend_files: ['{tmp_path}/[abc].yaml']\n"
    )
    async with daemon_for(config) as daemon:
        snap = daemon.registry.snapshot()
        assert set(snap.backends) == {"static", "dup"}
        assert snap.backends["static"].url == one.url and snap.backends["dup"].url == one.url
        files = await files_doc(http, daemon)
        assert files["a.yaml"]["valid"] is False
        assert "static (config)" in str(files["a.yaml"]["problems"])
        assert files["c.yaml"]["valid"] is False
        assert f"dup (file:{tmp_path / 'b.yaml'})" in str(files["c.yaml"]["problems"])
        assert files["b.yaml"]["valid"] is True
        text = await scrape(http, daemon)
        assert metric_value(text, "lmwatch_backend_file_valid", [("file", str(tmp_path / "a.yaml"))]) == 0.0
        assert metric_value(text, "lmwatch_backend_file_backends", [("file", str(tmp_path / "a.yaml"))]) == 0.0

        # a runtime-added backend cannot take a discovered name, and the clash clears once b.yaml goes
        status, _ = await admin(http, daemon, "POST", "/admin/backends", {"name": "dup", "url": two.url})
        assert status == 409
        (tmp_path / "b.yaml").unlink()
        await daemon.control.discovery.scan()
        snap = await daemon.registry.wait_for(up("c-only"), timeout=5)
        assert snap.backends["dup"].url == two.url


def test_parse_backend_file() -> None:
    entries, problems = parse_backend_file("- {name: a, url: 'http://h:1'}\n- {name: b, url: 'http://h:2/v1'}\n")
    assert problems == [] and [e.name for e in entries] == ["a", "b"] and entries[1].base_url == "http://h:2"
    assert parse_backend_file("") == ((), [])
    assert parse_backend_file("# only a comment\n") == ((), [])
    _, problems = parse_backend_file("- {name: a, url: 'http://h:1'}\n- {name: a, url: 'http://h:2'}\n")
    assert problems == ["[1].name: backend name 'a' is used twice in this file"]
    _, problems = parse_backend_file("- {name: 'bad name!', url: 'http://h:1', api_token: 'sekrit-token-value'}\n")
    assert problems[0].startswith("[0].name: String should match pattern")
    assert problems[1] == "[0].api_token: unknown key (check the spelling; see config.yaml for every key)"
    assert "sekrit" not in str(problems)


async def test_reload_changes_the_patterns(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession
) -> None:
    one, two, _ = sims
    write(tmp_path / "first.yaml", listing(backend_yaml("f1", one.url)))
    write(tmp_path / "second.yaml", listing(backend_yaml("s1", two.url)))
    config = config_file(tmp_path, f"backend_files: ['{tmp_path}/first.yaml']\n")
    async with daemon_for(config) as daemon:
        assert set(daemon.registry.snapshot().backends) == {"f1"}
        write(config, config.read_text().replace("first.yaml", "second.yaml"))
        status, answer = await admin(http, daemon, "POST", "/admin/reload")
        assert status == 200 and answer["backends"] == ["s1"]
        assert set(daemon.registry.snapshot().backends) == {"s1"}
        files = await files_doc(http, daemon)
        assert list(files) == ["second.yaml"]


async def test_secrets_of_file_and_runtime_backends_are_redacted(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession
) -> None:
    one, two, _ = sims
    file_password, file_token, runtime_password = "file-url-pass-0a1b2c", "file-token-value-3d4e5f", "api-pass-6g7h8i"
    write(tmp_path / "token", file_token + "\n")
    authed = one.url.replace("http://", f"http://user:{file_password}@")
    write(
        tmp_path / "one.yaml",
        listing(backend_yaml("d1", authed), backend_yaml("d2", two.url, api_token_file=tmp_path / "token")),
    )
    config = config_file(tmp_path, f"backend_files: ['{tmp_path}/one.yaml']\n")
    async with daemon_for(config) as daemon:
        url = two.url.replace("http://", f"http://user:{runtime_password}@")
        status, _ = await admin(http, daemon, "POST", "/admin/backends", {"name": "r1", "url": url})
        assert status == 201
        for secret in (file_password, file_token, runtime_password):
            assert daemon.holder.redactor.redact(f"a {secret} b") == "a *** b"
