"""`lmwatch simulate`: run a simulated LM Studio server in the foreground until SIGINT/SIGTERM.

The lead CLI wires `add_arguments` and `run`; `python -m lmwatch.simulator.command` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from pydantic import ByteSize, TypeAdapter, ValidationError

from lmwatch.simulator.flavours import SIM_FLAVOURS
from lmwatch.simulator.models_file import ModelsFileError, load_models_file
from lmwatch.simulator.server import start_simulator
from lmwatch.simulator.settings import SimModel, SimSettings

PROG = "lmwatch simulate"


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 0..65535 (0 = pick a free port)")
    return value


def _byte_size(text: str) -> int:
    """`24GiB`, `16 GB`, `1000000`: pydantic's ByteSize parser (the one lmwatch's config uses)."""
    try:
        return int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError:
        raise argparse.ArgumentTypeError("must be a size such as 24GiB, 16GB or a number of bytes") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, required=True, help="port; 0 picks a free one (printed)")
    parser.add_argument("--flavour", choices=SIM_FLAVOURS, default="0.4", help="server to imitate (default 0.4)")
    parser.add_argument("--models", type=Path, metavar="FILE", help="YAML file with a `models:` list")
    parser.add_argument(
        "--model", action="append", default=[], metavar="ID", help="add a loaded LLM with this id (repeatable)"
    )
    parser.add_argument("--ttft", type=float, default=0.0, metavar="S", help="seconds before the first token")
    parser.add_argument("--tokens-per-second", type=float, default=0.0, metavar="N", help="0 = no pacing")
    parser.add_argument(
        "--prompt-tokens-per-second", type=float, default=0.0, metavar="N", help="prompt processing speed; 0 = instant"
    )
    parser.add_argument("--max-tokens-default", type=int, default=16, metavar="N")
    parser.add_argument(
        "--answer-tokens", type=int, default=0, metavar="N", help="answers end on their own after N tokens"
    )
    parser.add_argument("--error-rate", type=float, default=0.0, metavar="R", help="fraction answered 500")
    parser.add_argument("--stall-rate", type=float, default=0.0, metavar="R", help="fraction of streams stalled")
    parser.add_argument("--stall-seconds", type=float, default=3600.0, metavar="S")
    parser.add_argument("--drop-rate", type=float, default=0.0, metavar="R", help="fraction of streams cut")
    parser.add_argument("--api-token-env", metavar="VAR", help="require this env var's value as bearer token")
    parser.add_argument("--no-jit", action="store_true", help="disable just-in-time model loading")
    parser.add_argument("--no-auto-evict", action="store_true", help="keep earlier JIT-loaded models")
    parser.add_argument("--parallel", type=int, default=4, metavar="N", help="parallel slots per instance")
    parser.add_argument("--load-seconds", type=float, default=0.0, metavar="S", help="time a model load takes")
    parser.add_argument(
        "--memory", type=_byte_size, default=0, metavar="SIZE", help="GPU memory budget, e.g. 24GiB (default: none)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed for fault injection")
    parser.add_argument("--version", default="", metavar="V", help="LM Studio version to report")


def build_settings(args: argparse.Namespace) -> SimSettings:
    """Settings from parsed options; raises `ValueError` with a user-facing message."""
    models: list[SimModel] | None = None
    if args.models is not None:
        models = load_models_file(args.models)
    if args.model:
        models = list(models or [])
        known = {m.id for m in models}
        for model_id in args.model:
            if model_id in known:
                raise ValueError(f"--model {model_id}: duplicate model id")
            known.add(model_id)
            models.append(SimModel(id=model_id, type="llm"))
    token: str | None = None
    if args.api_token_env:
        token = os.environ.get(args.api_token_env) or None
        if token is None:
            raise ValueError(f"--api-token-env: environment variable {args.api_token_env} is not set or empty")
    options: dict[str, object] = {
        "flavour": args.flavour,
        "ttft": args.ttft,
        "tokens_per_second": args.tokens_per_second,
        "prompt_tokens_per_second": args.prompt_tokens_per_second,
        "max_tokens_default": args.max_tokens_default,
        "answer_tokens": args.answer_tokens,
        "error_rate": args.error_rate,
        "stall_rate": args.stall_rate,
        "stall_seconds": args.stall_seconds,
        "drop_rate": args.drop_rate,
        "api_token": token,
        "jit": not args.no_jit,
        "auto_evict": not args.no_auto_evict,
        "parallel": args.parallel,
        "load_seconds": args.load_seconds,
        "memory_bytes": args.memory,
        "seed": args.seed,
        "version": args.version,
    }
    if models is not None:
        options["models"] = models
    return SimSettings(**options)  # type: ignore[arg-type]  # values checked by SimSettings


def banner(settings: SimSettings, url: str, loaded: int) -> str:
    server = f"LM Studio {settings.version}" if settings.dialect.lmstudio else "OpenAI-compatible server"
    return f"lmwatch simulator ({server}) listening on {url} with {len(settings.models)} models ({loaded} loaded)"


async def _serve(settings: SimSettings, host: str, port: int) -> int:
    try:
        sim = await start_simulator(settings, host=host, port=port)
    except OSError as exc:
        print(f"{PROG}: error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        loaded = sum(1 for m in settings.models if sim.state.catalogue.is_loaded(m.id))
        print(banner(settings, sim.url, loaded), flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await sim.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop, 2 for bad options or a bad models file."""
    try:
        settings = build_settings(args)
    except ModelsFileError as exc:
        print(f"{PROG}: error: --models {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(settings, args.host, args.port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Serve a simulated LM Studio API (no GPU needed).")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
