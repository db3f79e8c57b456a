"""The `lmwatch` command: run the daemon, check a config, run simulated LM Studio servers, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from lmwatch import __version__, build, event_loop
from lmwatch.config import ConfigError, LoadedConfig, load_config
from lmwatch.logs import setup_logging
from lmwatch.redaction import Redactor

Command = Callable[[argparse.Namespace], int]


def _report(exc: ConfigError, outcome: str) -> None:
    """Every problem on its own `file: path: message` line, then how many and what it meant."""
    for problem in exc.problems:
        print(f"{exc.source}: {problem}", file=sys.stderr)
    print(f"{exc.source}: {len(exc.problems)} problem(s); {outcome}", file=sys.stderr)


def _load_or_report(path: str) -> LoadedConfig | None:
    """Load a config, or print every problem (one `file: path: message` line each) to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        _report(exc, "nothing was started")
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args.file)
    if loaded is None:
        return 1
    for warning in loaded.warnings:
        print(f"{args.file}: warning: {warning}")
    config = loaded.config
    print(f"{args.file}: OK ({len(config.backends)} backends, listening on {config.server.host}:{config.server.port})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args.config)
    if loaded is None:
        return 1
    redactor = Redactor()  # the daemon's, given to the log handler too
    setup_logging(redactor, loaded.config.logging.level, loaded.config.logging.format)
    from lmwatch.daemon import CannotListen, Daemon

    async def main() -> None:
        await Daemon(loaded, redactor=redactor).run_until_signalled()

    try:
        event_loop.run(main())
    except ConfigError as exc:  # secrets the config names cannot be read, or /admin would be unprotected
        _report(exc, "lmwatch did not start")
        return 1
    except (event_loop.EventLoopError, CannotListen) as exc:
        print(f"lmwatch: error: {exc}; lmwatch did not start", file=sys.stderr)
        return 1
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from lmwatch.simulator.command import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmwatch",
        description="Watch, measure and route across LM Studio and other local OpenAI-compatible servers.",
    )
    parser.add_argument("--version", action="version", version=f"lmwatch {__version__} ({build.kind()} build)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon", description="Run the lmwatch daemon.")
    run.add_argument("--config", required=True, metavar="FILE", help="the YAML config file (see config.yaml)")
    run.set_defaults(func=cmd_run)

    check = commands.add_parser(
        "check-config",
        help="validate a config file",
        description="Validate a config file: prints every problem with its key path and exits 1, or OK and exits 0.",
    )
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_check_config)

    from lmwatch.simulator.command import add_arguments as add_simulator_arguments

    simulate = commands.add_parser(
        "simulate",
        help="run a simulated LM Studio server",
        description="Run a simulated LM Studio (or plain OpenAI-compatible) server for trying lmwatch without a GPU.",
    )
    add_simulator_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)

    from lmwatch.demo import add_arguments as add_demo_arguments
    from lmwatch.demo import run as run_demo

    demo = commands.add_parser(
        "demo",
        help="run the daemon against three simulated servers",
        description="Start three simulated LM Studio servers and the daemon watching them; prints the URLs to open.",
    )
    add_demo_arguments(demo)
    demo.set_defaults(func=run_demo)

    from lmwatch.control_cli import add_commands as add_control_commands

    add_control_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Command = args.func
    return func(args)
