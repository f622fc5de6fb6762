"""``sselab sweep SCENARIO``: a grid of simulations on Dask, saved as one Parquet file.

Each axis flag takes a comma-separated list (``--policy exponential,full --cap
10,30``); ``--set NAME=V1,V2`` adds an axis for any other setting. Every
combination runs once per seed. By default a local Dask cluster is started for
the sweep (worker processes; ``--in-process`` for threads in this process);
``--scheduler ADDRESS`` uses a cluster that is already running. Dask is imported
only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from model.backoff import parse_policy
from sims.commands._args import add_without, non_negative_int, positive_float, positive_int

__all__ = ["register", "run"]


def _list(kind: Any, what: str) -> Any:
    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}")
        return [kind(t) for t in items]

    parse.__name__ = f"list of {what}"
    return parse


def _policy_name(text: str) -> str:
    try:
        parse_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip().lower()


def _axis(text: str) -> tuple[str, list[Any]]:
    name, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not name.strip() or not items:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,..., got {text!r}")
    return name.strip(), [_number(v) for v in items]


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``sweep`` to the sub-commands."""
    p = sub.add_parser(
        "sweep",
        help="run a grid of simulations on Dask and save one DataFrame as Parquet",
        description="Simulate every combination of the given settings, once per seed, on a "
                    "local Dask cluster (or --scheduler), and save the rows as Parquet.",
    )
    p.add_argument("scenario", metavar="SCENARIO", help="a preset or a .toml/.yaml scenario file")
    p.add_argument("--policy", type=_list(_policy_name, "backoff policies"), metavar="LIST",
                   help="backoff policies, e.g. exponential,full,decorrelated")
    p.add_argument("--cap", type=_list(positive_float, "seconds"), metavar="LIST",
                   help="backoff caps, seconds")
    p.add_argument("--heartbeat-timeout", type=_list(positive_float, "seconds"), metavar="LIST",
                   help="client heartbeat thresholds, seconds")
    p.add_argument("--replay-limit", type=_list(positive_int, "row counts"), metavar="LIST",
                   help="replay limits, rows")
    p.add_argument("--clients", type=_list(positive_int, "client counts"), metavar="LIST",
                   help="fleet sizes")
    p.add_argument("--replicas", type=_list(positive_int, "replica counts"), metavar="LIST",
                   help="replica counts")
    p.add_argument("--set", type=_axis, action="append", default=[], metavar="NAME=V1,V2",
                   help="an axis over any scenario setting; repeatable")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=positive_int, default=3, metavar="N",
                       help="run every cell with seeds 1..N (default 3)")
    seeds.add_argument("--seed", type=_list(non_negative_int, "seeds"), metavar="LIST",
                       help="run every cell with these seeds")
    p.add_argument("--duration", type=positive_float, metavar="SECONDS", help="simulated seconds")
    add_without(p, effect="in every cell")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="use a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="local workers (default: one per core)")
    p.add_argument("--in-process", action="store_true",
                   help="run the local workers as threads in this process")
    p.add_argument("--out", type=Path, default=Path("sweep.parquet"), metavar="FILE",
                   help="where to save the DataFrame (default sweep.parquet)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show the progress bar (stderr)")
    bar.add_argument("--no-progress", dest="progress", action="store_false",
                     help="never show the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the sweep the arguments describe; return the exit status."""
    from sims.des.scenarios import ScenarioError, load_scenario
    from sims.des.sweep import sweep

    axes: dict[str, list[Any]] = {}
    for flag, name in (("policy", "policy"), ("cap", "backoff_cap"),
                       ("heartbeat_timeout", "heartbeat_timeout"),
                       ("replay_limit", "replay_limit"), ("clients", "clients"),
                       ("replicas", "replicas")):
        values = getattr(args, flag)
        if values:
            axes[name] = values
    for name, values in args.set:
        if name in axes:
            print(f"sselab sweep: error: axis {name!r} given twice", file=sys.stderr)
            return 2
        axes[name] = values
    seeds = args.seed if args.seed else list(range(1, args.seeds + 1))
    base: dict[str, Any] = {}
    if args.duration is not None:
        base["duration"] = args.duration
    try:
        load_scenario(args.scenario)  # the scenario itself must be good before we start
        frame = sweep(args.scenario, axes, seeds, base=base, without=args.without,
                      scheduler=args.scheduler, workers=args.workers,
                      processes=not args.in_process, progress=args.progress)
    except ScenarioError as exc:
        print(f"sselab sweep: error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out, index=False)
    print(_summary(frame, list(axes)))
    print(f"\n{len(frame)} runs saved to {args.out}")
    return 0


def _summary(frame: Any, axes: list[str]) -> str:
    metrics = ["silent_stale_seconds_total", "max_reconnect_attempts", "replay_rows_max",
               "db_rows_total", "resync_s_p99"]
    if not axes:
        table = frame[metrics].mean(numeric_only=True).to_frame("mean over seeds").T
    else:
        table = frame.groupby(axes, dropna=False)[metrics].mean(numeric_only=True)
    return str(table.round(3).to_string())
