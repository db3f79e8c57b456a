"""The operator commands that talk to a running daemon over HTTP (its `/admin` API).

    lmwatch status                      backends: state, models loaded, in-flight, breaker
    lmwatch models                      every model on every backend
    lmwatch drain NAME | undrain NAME   stop / resume sending new requests to a backend
    lmwatch load NAME MODEL             load a model (LM Studio 0.4+); unload NAME MODEL
    lmwatch reload                      re-read the daemon's config file
    lmwatch route --explain "prompt"    where a request would go, and why (nothing is sent)
    lmwatch top [--once]                a live view: backends, models, in-flight, tokens/s, GPUs (lmwatch/top.py)
    lmwatch profile [--backend B] [--model M] [--force]   measure the loaded models
    lmwatch compare [--task T [--since 7d]]   the loaded models side by side: profiles, per-task numbers
    lmwatch usage [--since 7d] [--by model|backend|key|task|day]   requests, tokens, local share, $ saved

Every command takes `--url` (or LMWATCH_URL; default http://127.0.0.1:9234), `--token` (or
LMWATCH_ADMIN_TOKEN) and `--json` (print the daemon's answer as is). Failures print one line to
stderr and exit 1: no daemon at the URL, a missing or wrong token, or the daemon's own error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from lmwatch.admin_client import DEFAULT_URL, TOKEN_ENV, URL_ENV, CliError, call, short, table
from lmwatch.top import add_arguments as add_top_arguments
from lmwatch.top import cmd_top
from lmwatch.usage.log import GROUPS


def _loaded(backend: dict[str, Any]) -> str:
    """The loaded models; those of a down backend are what it last reported, so they are marked stale."""
    models = [m for m in backend.get("models", []) if m.get("loaded")]
    text = short([m["id"] for m in models])
    return f"{text} (stale)" if any(m.get("stale") for m in models) else text


def _state(backend: dict[str, Any]) -> str:
    state = str(backend.get("health", "?"))
    return f"{state},draining" if backend.get("draining") else state


def _breaker(backend: dict[str, Any]) -> str:
    states = [str(b.get("state")) for b in backend.get("breakers", [])]
    for worst in ("open", "half_open"):
        if worst in states:
            return f"{worst} ({states.count(worst)})"
    return "closed"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


# --- commands ------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    data = call(args, "GET", "/admin/backends")
    if args.json:
        _print_json(data)
        return 0
    rows = [
        [
            b["name"],
            _state(b),
            _loaded(b),
            str(b.get("inflight", 0)),
            _breaker(b),
            str(b.get("origin", "config")),
        ]
        for b in data.get("backends", [])
    ]
    if rows:
        print(table(rows, ["BACKEND", "STATE", "MODELS LOADED", "IN-FLIGHT", "BREAKER", "ORIGIN"]))
    else:
        print("no backends configured")
    for file in data.get("discovery", {}).get("files", []):
        if not file.get("valid"):
            print(f"backend file {file['path']}: " + "; ".join(file.get("problems", [])), file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    data = call(args, "GET", "/admin/backends")
    if args.json:
        _print_json([{"backend": b["name"], **m} for b in data.get("backends", []) for m in b.get("models", [])])
        return 0
    rows = [
        [
            m["id"],
            b["name"],
            str(m.get("model_type", "")),
            "yes" if m.get("loaded") else "no",
            str(m.get("loaded_context_length") or m.get("max_context_length") or "-"),
        ]
        for b in data.get("backends", [])
        for m in b.get("models", [])
    ]
    print(table(rows, ["MODEL", "BACKEND", "TYPE", "LOADED", "CONTEXT"]) if rows else "no models known")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    data = call(args, "POST", f"/admin/backends/{_segment(args.name)}/{'drain' if args.drain else 'undrain'}")
    if args.json:
        _print_json(data)
    elif args.drain:
        print(f"{args.name} is draining: no new requests; {data.get('inflight', 0)} in flight finish normally")
    else:
        print(f"{args.name} takes requests again")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"model": args.model}
    if getattr(args, "context_length", None):
        body["context_length"] = args.context_length
    verb = "load" if args.load else "unload"
    data = call(args, "POST", f"/admin/backends/{_segment(args.name)}/models/{verb}", body)
    if args.json:
        _print_json(data)
    elif args.load:
        print(f"loaded {args.model} on {args.name}")
    else:
        print(f"unloaded {', '.join(data.get('unloaded') or [args.model])} from {args.name}")
    return 0


def cmd_swap(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"old": args.old, "new": args.new}
    if args.context_length:
        body["context_length"] = args.context_length
    data = call(args, "POST", f"/admin/backends/{_segment(args.name)}/swap", body)
    if args.json:
        _print_json(data)
        return 0
    steps = []
    if data.get("load_seconds") is not None:
        steps.append(f"loaded {args.new} in {data['load_seconds']:.1f} s")
    if data.get("warm_up_seconds") is not None:
        steps.append(f"warmed up in {data['warm_up_seconds']:.2f} s")
    running = data.get("running_at_switch", 0)
    steps.append(f"{running} request{'' if running == 1 else 's'} on {args.old} finished first")
    if not data.get("drained", True):
        steps[-1] = f"{args.old} was unloaded after lifecycle.drain_timeout with requests still running"
    print(f"swapped {args.old} for {args.new} on {args.name}: " + ", ".join(steps))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    query = f"model={urllib.parse.quote(args.model, safe='')}"
    if args.context_length:
        query += f"&context_length={args.context_length}"
    data = call(args, "GET", f"/admin/fit?{query}")
    if args.json:
        _print_json(data)
        return 0
    rows = []
    for fit in data.get("backends", []):
        verdict = {True: "yes", False: "no", None: "unknown"}[fit.get("fits")]
        if fit.get("loaded"):
            verdict = "loaded"
        most = fit.get("max_context_length")
        rows.append([fit["backend"], verdict, str(most) if most else "-", fit.get("reason", "")])
    print(table(rows, ["BACKEND", "FITS", "MAX-CONTEXT", "WHY"]))
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    query = urllib.parse.urlencode({"since": args.since, "by": args.by})
    data = call(args, "GET", f"/admin/usage?{query}")
    if args.json:
        _print_json(data)
        return 0
    print(usage_table(data))
    return 0


def usage_table(data: dict[str, Any]) -> str:
    """The `lmwatch usage` table: one line per group, then the totals."""
    by = str(data.get("by", "model"))
    header = [by.upper(), "REQUESTS", "TOKENS IN", "TOKENS OUT", "LOCAL", "CACHE HITS", "SAVED $"]

    def line(row: dict[str, Any]) -> list[str]:
        share = row.get("local_share")
        return [
            str(row.get(by)),
            str(row["requests"]),
            str(row["prompt_tokens"]),
            str(row["completion_tokens"]),
            f"{share:.0%}" if share is not None else "-",
            str(row["cache_hits"]),
            f"{row['cost_avoided_dollars']:.4f}",
        ]

    rows = [line(r) for r in data.get("rows", [])]
    totals = dict(data["totals"], **{by: "total"})
    return table([*rows, line(totals)], header) + f"\nsince {data.get('since_text', '?')} ago"


def cmd_reload(args: argparse.Namespace) -> int:
    data = call(args, "POST", "/admin/reload")
    if args.json:
        _print_json(data)
    else:
        backends = data.get("backends", [])
        print(f"config reloaded: {len(backends)} backends ({', '.join(backends) or 'none'})")
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"model": args.model, "messages": [{"role": "user", "content": args.explain}]}
    data = call(args, "POST", "/admin/route/explain", body)
    if args.json:
        _print_json(data)
        return 0
    scores = ", ".join(
        f"{task} {score:g}" for task, score in sorted(data.get("scores", {}).items(), key=lambda i: -i[1])
    )
    print(f"task: {data.get('task')} (from the {data.get('task_source')})" + (f"; scores: {scores}" if scores else ""))
    if data.get("task_reasons"):
        print("  because: " + ", ".join(data["task_reasons"]))
    candidates = data.get("candidates", [])
    task_score = data.get("scores", {}).get(data.get("task"))
    for_task = f" for {data.get('task')}" + (f" (classifier score {task_score:g})" if task_score is not None else "")
    if candidates:
        print("candidates, in order:")
        for i, c in enumerate(candidates, 1):
            decision = c.get("decision") or ("kept" if c.get("usable", True) else "skipped")
            print(f"  {i}. {c['backend']} / {c['model']}: {decision}{for_task}; {c['reason']}")
            if c.get("fit") or c.get("speed"):
                print(f"     {_fit_and_speed(c.get('fit') or {}, c.get('speed') or {})}")
            print(f"     {_profile_line(c.get('profile'))}")
    for excluded in data.get("excluded", []):
        print(f"  not considered: {excluded['backend']} ({excluded['reason']})")
    for passed in data.get("passed_over", []):
        print(f"  passed over: {passed['backend']} / {passed['model']} ({passed['capability']})")
    chosen = data.get("chosen")
    if chosen:
        print(f"chosen: {chosen['backend']} / {chosen['model']}")
    else:
        print(f"chosen: none ({data.get('unavailable') or 'no usable candidate'})")
    return 0


def _fit_and_speed(fit: dict[str, Any], speed: dict[str, Any]) -> str:
    """`fits: ~120 of 8192 tokens; expected 2.1 s (profile: TTFT 0.104 s, 99.9 tok/s)`"""
    context = fit.get("context_length")
    held = f"of {context} tokens" if context else "tokens (context not reported)"
    text = f"{'fits' if fit.get('fits', True) else 'does not fit'}: ~{fit.get('needed_tokens', '?')} {held}"
    if speed.get("expected_seconds") is not None:
        text += (
            f"; expected {speed['expected_seconds']:.1f} s ({speed.get('source')}: TTFT "
            f"{_num(speed.get('ttft_seconds'), 3)} s, {_num(speed.get('tokens_per_second'))} tok/s)"
        )
    else:
        text += "; speed not measured yet"
    return text


def _profile_line(profile: dict[str, Any] | None) -> str:
    """`profile: TTFT 0.250 s short / 0.900 s long, prompt 800.0 tok/s, generation 50.0 tok/s, peak 180.0 tok/s @4`"""
    if not profile:
        return "profile: not measured (run `lmwatch profile`)"
    peak = profile.get("peak_tokens_per_second")
    return (
        f"profile: TTFT {_num(profile.get('ttft_short_seconds'), 3)} s short / "
        f"{_num(profile.get('ttft_long_seconds'), 3)} s long, prompt {_num(profile.get('prompt_tokens_per_second'))}"
        f" tok/s, generation {_num(profile.get('generation_tokens_per_second'))} tok/s"
        + (f", peak {peak:.1f} tok/s @{profile.get('peak_concurrency')}" if peak else "")
    )


def _num(value: Any, digits: int = 1) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def _speeds(profile: dict[str, Any] | None) -> list[str]:
    """TTFT short / long, prompt and generation tokens/s, peak throughput (at its concurrency)."""
    if not profile:
        return ["-"] * 5
    peak = max(profile.get("throughput") or [], key=lambda p: p["tokens_per_second"], default=None)
    return [
        _num(profile.get("ttft_short_seconds"), 3),
        _num(profile.get("ttft_long_seconds"), 3),
        _num(profile.get("prompt_tokens_per_second")),
        _num(profile.get("generation_tokens_per_second")),
        f"{peak['tokens_per_second']:.1f} @{peak['concurrency']}" if peak else "-",
    ]


SPEED_HEADER = ["TTFT S", "TTFT L", "PROMPT TOK/S", "GEN TOK/S", "PEAK TOK/S"]


def cmd_profile(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"force": args.force}
    for key in ("backend", "model", "tokens"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    data = call(args, "POST", "/admin/profile", body)
    if args.json:
        _print_json(data)
        return 0
    results = data.get("results", [])
    rows = [[r["backend"], r["model"], r["outcome"], *_speeds(r.get("profile"))] for r in results]
    print(table(rows, ["BACKEND", "MODEL", "OUTCOME", *SPEED_HEADER]))
    for r in results:
        if r.get("reason"):
            print(f"  {r['backend']} / {r['model']}: {r['reason']}")
    return 1 if any(r["outcome"] == "failed" for r in results) else 0


def _task_numbers(usage: dict[str, Any] | None) -> list[str]:
    """How the task's requests went to a model (the usage log): requests, mean seconds, TTFT, tok/s."""
    if not usage:
        return ["0", "-", "-", "-"]
    return [
        str(usage["requests"]),
        _num(usage.get("mean_latency_seconds"), 3),
        _num(usage.get("mean_ttft_seconds"), 3),
        _num(usage.get("completion_tokens_per_second")),
    ]


def cmd_compare(args: argparse.Namespace) -> int:
    query = f"?task={urllib.parse.quote(args.task)}&since={urllib.parse.quote(args.since)}" if args.task else ""
    data = call(args, "GET", "/admin/models" + query)
    models = [m for m in data.get("models", []) if m.get("loaded") and args.backend in (None, m["backend"])]
    if args.json:
        _print_json(models)
        return 0
    head = ["RANK", "ROUTE"] if args.task else []
    rows = [
        [
            *([str(m["rank"]), m["route"]] if args.task else []),
            m["id"],
            m["backend"],
            str(m.get("quantization") or "-"),
            str(m.get("loaded_context_length") or m.get("max_context_length") or "-"),
            *_speeds(m.get("profile")),
            *(_task_numbers(m.get("task_usage")) if args.task else []),
        ]
        for m in models
    ]
    tail = [f"{args.task.upper()} REQS", "MEAN S", "MEAN TTFT", "TOK/S"] if args.task else []
    header = [*head, "MODEL", "BACKEND", "QUANT", "CONTEXT", *SPEED_HEADER, *tail]
    print(table(rows, header) if rows else "no models loaded")
    if args.task:
        print(f"{args.task} requests served in the last {args.since} (usage log); TOK/S: completion tokens per second")
    if any(m.get("profile") is None for m in models):
        print("models without numbers have no profile yet: run `lmwatch profile`")
    return 0


def _segment(name: str) -> str:
    return urllib.parse.quote(name, safe="")


# --- wiring --------------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the daemon's address (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"the admin token (default: ${TOKEN_ENV}); prefer the variable, arguments show in `ps`",
    )
    parser.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the daemon (default 30)")


def _run(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CliError as exc:
            print(f"lmwatch: {exc.message}", file=sys.stderr)
            for detail in exc.details:
                print(f"  {detail}", file=sys.stderr)
            return 1

    return run


def add_commands(commands: Any) -> None:
    """Register the operator commands on the `lmwatch` sub-command parser."""

    def add(
        name: str, help_text: str, func: Callable[[argparse.Namespace], int], **defaults: Any
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text + ".")
        _common(parser)
        parser.set_defaults(func=_run(func), **defaults)
        return parser

    add("status", "show the backends of a running daemon: state, models loaded, in-flight, breaker", cmd_status)
    add("models", "list the models on every backend of a running daemon", cmd_models)
    for verb, drain in (("drain", True), ("undrain", False)):
        text = "stop sending new requests to a backend (in-flight ones finish)" if drain else "resume a drained backend"
        add(verb, text, cmd_drain, drain=drain).add_argument("name", metavar="NAME", help="the backend")
    for verb, load in (("load", True), ("unload", False)):
        text = (
            "load a model on a backend (LM Studio 0.4+)" if load else "unload a model from a backend (LM Studio 0.4+)"
        )
        parser = add(verb, text, cmd_load, load=load)
        parser.add_argument("name", metavar="NAME", help="the backend")
        parser.add_argument("model", metavar="MODEL", help="the model id (or an instance id to unload)")
        if load:
            parser.add_argument("--context-length", type=int, metavar="N", help="the context length to load with")
    swap = add("swap", "replace a loaded model by another on a backend without dropping requests", cmd_swap)
    swap.add_argument("name", metavar="NAME", help="the backend")
    swap.add_argument("old", metavar="OLD", help="the loaded model to retire")
    swap.add_argument("new", metavar="NEW", help="the model to load in its place")
    swap.add_argument("--context-length", type=int, metavar="N", help="the context length to load NEW with")
    fit = add("fit", "say on which backends a downloaded model fits now, with what context, and why not", cmd_fit)
    fit.add_argument("model", metavar="MODEL", help="the model id")
    fit.add_argument("--context-length", type=int, metavar="N", help="the context length to check (default 4096)")
    add("reload", "make a running daemon re-read its config file", cmd_reload)
    usage = add("usage", "report requests, tokens, local vs cloud share, cache hits and dollars saved", cmd_usage)
    usage.add_argument("--since", default="7d", help="how far back: a number and s, m, h, d or w (default 7d)")
    usage.add_argument("--by", default="model", choices=GROUPS, help="group by (default model)")
    add_top_arguments(
        add("top", "a live view of a running daemon: backends, models, in-flight, tokens/s, GPUs", cmd_top)
    )
    route = add("route", "show where a request would be routed, and why (nothing is sent to a model)", cmd_route)
    route.add_argument("--explain", required=True, metavar="PROMPT", help="the prompt text of the request")
    route.add_argument("--model", default="auto", help="the model the request names (default: auto)")
    profile = add(
        "profile",
        "measure the loaded models of a running daemon's backends: time to first token, prompt and generation "
        "tokens/s, throughput up to the parallel slots",
        cmd_profile,
        timeout=1800.0,
    )
    profile.add_argument("--backend", metavar="B", help="only this backend")
    profile.add_argument("--model", metavar="M", help="only this model")
    profile.add_argument(
        "--force", action="store_true", help="measure again, also models already measured and busy backends"
    )
    profile.add_argument("--tokens", type=int, metavar="N", help="completion tokens per generation request (64)")
    compare = add("compare", "compare the loaded models side by side with their measured profiles", cmd_compare)
    compare.add_argument("--task", metavar="T", help="only the candidates for task T, in the order routing tries them")
    compare.add_argument("--backend", metavar="B", help="only this backend")
    compare.add_argument(
        "--since", default="7d", metavar="D", help="with --task: the task's requests over this period (7d)"
    )


COMMANDS = (
    "status", "models", "drain", "undrain", "load", "unload", "swap", "fit", "reload", "route", "top", "profile",
    "compare", "usage",
)  # fmt: skip
