"""The systemd side: sd_notify over real sockets, the unit checked by systemd's own tools, the
documented install steps followed in a scratch root, and the daemon driven through the unit's own
ExecStart/ExecReload lines by a test acting as the service manager.

There is no running systemd here, so nothing is started by systemd itself.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lmwatch import sdnotify

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "lmwatch.service"
OPERATIONS = REPO / "docs" / "operations.md"
INSTALLED_LMWATCH = "/opt/lmwatch/venv/bin/lmwatch"
INSTALLED_CONFIG = "/etc/lmwatch/config.yaml"
LMWATCH = Path(sys.executable).parent / "lmwatch"

tools = pytest.mark.tools


# --- sd_notify ---------------------------------------------------------------------------------


@pytest.fixture
def path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    yield sock
    sock.close()


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"lmwatch-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield sock
    sock.close()


def test_notify_is_a_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.notify_watchdog() is False


def test_ready_with_status_reaches_a_path_socket(path_socket: socket.socket) -> None:
    assert sdnotify.notify_ready("serving on http://127.0.0.1:9234; a=up") is True
    assert path_socket.recv(4096) == b"READY=1\nSTATUS=serving on http://127.0.0.1:9234; a=up"


def test_watchdog_reaches_an_abstract_socket(abstract_socket: socket.socket) -> None:
    assert sdnotify.notify_watchdog() is True
    assert abstract_socket.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (sdnotify.notify_stopping, b"STOPPING=1"),
        (lambda: sdnotify.notify_ready("two\nlines"), b"READY=1\nSTATUS=two lines"),
        (lambda: sdnotify.notify("A=1", "B=2"), b"A=1\nB=2"),
    ],
)
def test_each_helper_sends_its_assignments(
    path_socket: socket.socket, send: Callable[[], bool], expected: bytes
) -> None:
    """A newline in a status would start a new assignment, so it is flattened."""
    assert send() is True
    assert path_socket.recv(4096) == expected


def test_reloading_carries_the_monotonic_clock(abstract_socket: socket.socket) -> None:
    """systemd ≥ 253 matches RELOADING=1 to its reload request by CLOCK_MONOTONIC in microseconds."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.notify_reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, stamp = abstract_socket.recv(4096).decode().split("\n")
    assert reloading == "RELOADING=1"
    assert stamp.startswith("MONOTONIC_USEC=")
    assert before <= int(stamp.removeprefix("MONOTONIC_USEC=")) <= after


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.notify_ready("x") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.notify_ready("x") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    """Half of WATCHDOG_USEC, and only for the process WATCHDOG_PID names (not an inheriting child)."""
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            own = os.getpid()
            monkeypatch.setenv(name, {"self": str(own), "other": str(own + 1)}.get(value, value))
    assert sdnotify.watchdog_interval() == expected


# --- the unit file -----------------------------------------------------------------------------


def unit_settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; repeated keys (ExecReload=, DeviceAllow=) all kept."""
    settings: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.append((section, key.strip(), value.strip()))
    return settings


def values(key: str) -> list[str]:
    return [v for _, k, v in unit_settings(UNIT.read_text()) if k == key]


def test_unit_declares_readiness_reload_restart_and_sandboxing() -> None:
    def one(key: str) -> str:
        found = values(key)
        assert len(found) == 1, f"{key}= set {len(found)} times"
        return found[0]

    assert one("Type") == "notify"
    assert one("WatchdogSec")
    assert one("Restart") == "on-failure"
    assert one("ExecStart") == f"{INSTALLED_LMWATCH} run --config {INSTALLED_CONFIG}"
    assert values("ExecReload")[-1] == "/bin/kill -HUP $MAINPID"
    assert one("DynamicUser") == "yes"
    for directory in ("StateDirectory", "ConfigurationDirectory", "LogsDirectory"):
        assert one(directory) == "lmwatch"
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
    }.items():
        assert one(key) == value, key
    assert "AF_UNIX" in one("RestrictAddressFamilies")  # the notify socket
    assert "@system-service" in values("SystemCallFilter")
    allowed = " ".join(values("DeviceAllow"))
    assert "nvidia-frontend" in allowed and "nvidia-uvm" in allowed
    assert values("ProtectProc") in ([], ["default"]), "ProtectProc=invisible hides the model servers"
    assert values("PrivateDevices") in ([], ["no"]), "PrivateDevices=yes hides the GPUs"
    assert int(one("LimitNOFILE")) >= 16384, "two sockets per stream: 1,024 runs out at ~500 streams"


def runnable_copy(tmp_path: Path) -> Path:
    """The unit with its ExecStart binary pointing at a real executable: verify checks it exists."""
    unit = tmp_path / "lmwatch.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_LMWATCH, shutil.which("true") or "/bin/true"))
    return unit


@tools
def test_unit_verifies_without_a_word(tmp_path: Path) -> None:
    """`systemd-analyze verify` exits 0 on some warnings (unknown keys, bad values), so stderr must be empty."""
    unit = runnable_copy(tmp_path)
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert (run.returncode, run.stderr) == (0, "")

    unit.write_text(unit.read_text().replace("[Install]", "ProtectEverything=yes\n\n[Install]"))
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert "Unknown key" in run.stderr, "the stderr check would not catch a typo"


@tools
def test_unit_exposure_is_at_most_2() -> None:
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", run.stdout + run.stderr)
    assert score is not None, run.stdout + run.stderr
    assert float(score.group(1)) <= 2.0
    assert run.returncode == 0, run.stderr


# --- the documented install, in a scratch root -------------------------------------------------


def install_steps() -> list[str]:
    """The command lines of the first sh block under "## Install" in docs/operations.md."""
    section = OPERATIONS.read_text().split("\n## Install\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def source_copy(tmp_path: Path) -> Path:
    """A clean copy of the checkout, so pip's build leaves nothing behind in the work tree."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(".git", ".venv*", "*.egg-info", "__pycache__", ".*_cache", "build"),
    )
    return src


@tools
@pytest.mark.timeout(600)
def test_install_steps_work_in_a_scratch_root(tmp_path: Path) -> None:
    """Every documented step runs, with absolute paths moved under a scratch root; only `systemctl`
    is skipped. A step this test does not know fails it, so the docs and the test move together."""
    root = tmp_path / "root"
    # What a real root already has: the unit directory, and the OS's own units (sysinit.target, ...)
    # that verify loads along with lmwatch's.
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    src = source_copy(tmp_path)

    def moved(arg: str) -> str:
        return str(root) + arg if arg.startswith("/") else arg

    def run(cmd: list[str], cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=500)
        assert done.returncode == 0, f"{shlex.join(cmd)}\n{done.stdout}\n{done.stderr}"
        return done

    skipped = []
    for line in install_steps():
        cmd = shlex.split(line)
        if cmd[0] == "sudo":
            cmd = cmd[1:]
        env = dict(os.environ)
        if cmd[0] == "env":  # `env NAME=VALUE ... command`
            while "=" in cmd[1]:
                name, _, value = cmd.pop(1).partition("=")
                env[name] = value
            cmd = cmd[1:]
        if cmd[0] == "systemctl":
            skipped.append(shlex.join(cmd))  # needs a running systemd
        elif cmd[:3] == ["python3", "-m", "venv"]:
            run([sys.executable, "-m", "venv", *map(moved, cmd[3:])])
        elif cmd[0].endswith("/bin/pip") and cmd[1] == "install":
            run([moved(cmd[0]), *cmd[1:]], cwd=src, env=env)
        elif cmd[0] == "install":
            run([cmd[0], *map(moved, cmd[1:])])
        elif cmd[0] == INSTALLED_LMWATCH and cmd[1] == "check-config":
            assert "OK" in run([moved(cmd[0]), "check-config", moved(cmd[2])]).stdout
        elif cmd[:2] == ["systemd-analyze", "verify"]:
            done = run(["systemd-analyze", "verify", f"--root={root}", *cmd[2:]])
            assert done.stderr == "", done.stderr
        else:
            pytest.fail(f"this test does not know how to follow the documented step {line!r}")

    assert (root / INSTALLED_LMWATCH.lstrip("/")).is_file()
    installed_python = root / Path(INSTALLED_LMWATCH).parent.relative_to("/") / "python"
    run([str(installed_python), "-c", "import uvloop"])  # the documented install takes the `fast` extra
    done = run([str(installed_python), "-P", "-c", "from lmwatch import build; print(build.kind())"], cwd=tmp_path)
    assert done.stdout.strip() == "mypyc"  # and compiles the request path (LMWATCH_MYPYC=1)
    assert (root / "etc/systemd/system/lmwatch.service").read_text() == UNIT.read_text()
    assert skipped[-1] == "systemctl enable --now lmwatch"


# --- the daemon under a fake service manager ---------------------------------------------------


class FakeManager:
    """Collects notifications the way systemd does: datagrams on a socket named in NOTIFY_SOCKET,
    read as they come (by a thread), so a slow test step never lets the socket's queue fill up and
    the daemon's messages bounce (EAGAIN) as they would not with systemd."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = path
        self._received: queue.Queue[bytes] = queue.Queue()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self._received.put(self.sock.recv(4096))
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self._reader.join()
        self.sock.close()

    async def expect(self, wanted: Callable[[dict[str, str]], bool], timeout: float = 20.0) -> dict[str, str]:
        """The next notification `wanted` accepts; those before it (watchdog pings) are skipped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("no matching notification")
            try:
                data = await asyncio.to_thread(self._received.get, True, remaining)
            except queue.Empty:
                raise TimeoutError("no matching notification") from None
            message = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            if wanted(message):
                return message


def unit_command(line: str, mapping: dict[str, str]) -> list[str]:
    for old, new in mapping.items():
        line = line.replace(old, new)
    return shlex.split(line)


async def test_daemon_follows_the_units_notify_contract(tmp_path: Path) -> None:
    """Through the unit's own ExecStart and ExecReload lines: READY=1 after the first poll round,
    WATCHDOG=1 at half of WATCHDOG_USEC, a reload that a broken config stops before the SIGHUP,
    RELOADING=1 then READY=1 around a good one, STOPPING=1 and exit 0 on SIGTERM."""
    from lmwatch.simulator import SimSettings, start_simulator

    sim = await start_simulator(SimSettings(), port=0)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: 0}}\n"
        f"backends: [{{name: sim-a, url: '{sim.url}', poll_interval: 0.5}}]\n"
        f"sampling: {{gpu: 'off'}}\n"
    )
    manager = FakeManager(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "400000"}
    mapping = {INSTALLED_LMWATCH: str(LMWATCH), INSTALLED_CONFIG: str(config)}
    log = (tmp_path / "lmwatch.log").open("w")
    proc = await asyncio.create_subprocess_exec(
        *unit_command(values("ExecStart")[0], mapping), env=env, stdout=log, stderr=log
    )
    try:
        ready = await manager.expect(lambda m: "READY" in m)
        assert ready["READY"] == "1"
        assert re.fullmatch(r"serving on http://127\.0\.0\.1:\d+; sim-a=up", ready["STATUS"])
        for _ in range(2):
            await manager.expect(lambda m: m.get("WATCHDOG") == "1", timeout=5)

        async def reload() -> list[int]:
            codes = []
            for line in values("ExecReload"):
                cmd = unit_command(line.replace("$MAINPID", str(proc.pid)), mapping)
                step = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=log)
                codes.append(await step.wait())
                if codes[-1]:
                    break  # systemd stops at the first failing ExecReload= line
            return codes

        assert await reload() == [0, 0]
        reloading = await manager.expect(lambda m: "RELOADING" in m)
        assert int(reloading["MONOTONIC_USEC"]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        await manager.expect(lambda m: m.get("READY") == "1")

        good = config.read_text()
        config.write_text(good + "surprise: 1\n")
        assert await reload() == [1], "a broken config must fail the reload before SIGHUP"
        config.write_text(good)

        proc.send_signal(signal.SIGTERM)
        await manager.expect(lambda m: m.get("STOPPING") == "1")
        assert await asyncio.wait_for(proc.wait(), 40) == 0
    except BaseException:
        log.flush()
        print((tmp_path / "lmwatch.log").read_text())
        raise
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        manager.close()
        log.close()
        await sim.stop()
