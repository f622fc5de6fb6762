"""``sselab simulate SCENARIO``: a SimPy fleet under a fault schedule, with metrics.

SCENARIO is a preset name or a ``.toml``/``.yaml`` scenario file. The run prints a
summary table (or, with ``--json``, exactly one JSON object on stdout), writes its
DataFrames as Parquet files with ``--out DIR``, and shows a progress bar on stderr
when the run is long and stderr is a terminal. Heavy imports (SimPy, pandas) wait
until the command runs, so ``sselab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from model.faults import Fault, FaultError, parse_fault
from sims.commands._args import add_without, non_negative_int, policy, positive_float, positive_int

__all__ = ["fault_arg", "register", "run", "setting_arg"]

#: Client-seconds above which a run counts as long enough for a progress bar.
LONG_RUN = 2_000_000


def fault_arg(text: str) -> Fault:
    """A fault written as in a schedule, e.g. ``redis.outage(at=1800, duration=60)``."""
    try:
        return parse_fault(text)
    except FaultError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def setting_arg(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` for any scenario setting (checked when the scenario is built)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``simulate`` to the sub-commands."""
    p = sub.add_parser(
        "simulate",
        help="simulate a fleet under a fault scenario (SimPy) and report metrics",
        description="Simulate clients, replicas, Redis and Postgres in SimPy, every decision "
                    "taken by the model's machines, under a preset or a scenario file.",
    )
    p.add_argument("scenario", metavar="SCENARIO",
                   help="a preset (steady, redis-outage, subscriber-silent-death, db-brownout, "
                        "laptop-sleep, deploy-restart, flapping) or a .toml/.yaml file")
    p.add_argument("--clients", type=positive_int, help="clients (browser tabs)")
    p.add_argument("--replicas", type=positive_int, help="API replicas")
    p.add_argument("--duration", type=positive_float, metavar="SECONDS", help="simulated seconds")
    p.add_argument("--seed", type=non_negative_int, help="seed of the one random generator")
    add_without(p)
    p.add_argument("--policy", type=policy, metavar="BACKOFF",
                   help="backoff policy: exponential, full, equal, decorrelated, grpc, none")
    p.add_argument("--fault", type=fault_arg, action="append", default=[], metavar="FAULT",
                   help="add a fault, e.g. 'redis.outage(at=1800, duration=60)'; repeatable")
    p.add_argument("--set", type=setting_arg, action="append", default=[], metavar="NAME=VALUE",
                   help="any scenario setting, e.g. publish_rate=0.1; repeatable")
    p.add_argument("--out", type=Path, metavar="DIR", help="write the DataFrames as Parquet here")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when the run breaks an invariant")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show the progress bar (stderr)")
    bar.add_argument("--no-progress", dest="progress", action="store_false",
                     help="never show the progress bar")
    p.set_defaults(func=run)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Setting overrides from ``--set`` and the named flags (the flags win)."""
    from sims.des.settings import settings_from_mapping

    raw: dict[str, Any] = {}
    for name, value in getattr(args, "set", []) or []:
        raw[name] = _number(value)
    out = settings_from_mapping(raw, where="--set")
    for name in ("clients", "replicas", "duration", "seed"):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    if getattr(args, "policy", None) is not None:
        out["policy"] = args.policy
    return out


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def run(args: argparse.Namespace) -> int:
    """Run the simulation the arguments describe; return the exit status."""
    from sims.des.run import simulate
    from sims.des.scenarios import ScenarioError, load_scenario
    from sims.des.verdict import violations

    try:
        scenario = load_scenario(args.scenario, overrides_from(args), args.fault)
        if args.without:
            settings = dataclasses.replace(scenario.settings,
                                           fixes=scenario.settings.fixes.without(*args.without))
            scenario = dataclasses.replace(scenario, settings=settings)
    except ScenarioError as exc:
        print(f"sselab simulate: error: {exc}", file=sys.stderr)
        return 2
    s = scenario.settings
    show = args.progress if args.progress is not None else s.clients * s.duration >= LONG_RUN
    progress = None
    bar: Any = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=round(s.duration), unit="sim s", file=sys.stderr,
                   disable=None if args.progress is None else False,
                   desc=f"{scenario.name} ({s.clients} clients)")

        def progress(t: float) -> None:
            bar.update(round(t) - bar.n)

    try:
        result = simulate(scenario, progress)
    finally:
        if bar is not None:
            bar.close()
    broken = violations(result)
    paths = result.write_parquet(args.out) if args.out is not None else []
    if args.json:
        print(json.dumps(result.report()))
    else:
        print(_table(result, broken, paths))
    return 1 if args.check and broken else 0


def _table(result: Any, broken: dict[str, str], paths: list[Path]) -> str:
    s = result.scenario.settings
    lines = [
        f"scenario    {result.scenario.name}: {result.scenario.description}",
        f"fleet       {s.clients} clients, {s.replicas} replicas, {s.duration:g} s simulated, "
        f"seed {s.seed}, fixes {s.fixes}",
        "faults      " + result.scenario.schedule().replace("\n", "\n            "),
        f"cost        {result.wall_seconds:.2f} s wall, {result.sim_events:,} SimPy events, "
        f"{result.machine_steps:,} machine steps, {result.publishes:,} events published",
        "",
        f"{'metric':<30} value",
        f"{'-' * 30} {'-' * 12}",
    ]
    for key, value in result.metrics.items():
        shown = "null (does not apply)" if value is None else f"{value:g}" if isinstance(
            value, float) else str(value)
        lines.append(f"{key:<30} {shown}")
    lines.append("")
    if broken:
        lines.append("invariants  BROKEN:")
        lines += [f"  {name}: {message}" for name, message in broken.items()]
    else:
        lines.append("invariants  all hold")
    if paths:
        lines.append(f"parquet     {len(paths)} files in {paths[0].parent}: "
                     + ", ".join(p.name for p in paths))
    return "\n".join(lines)
