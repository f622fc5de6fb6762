"""``sselab report``: execute the Jupyter reports in ``notebooks/`` and render them to HTML.

Each notebook runs with papermill (``quick`` injected into its ``parameters``
cell) and becomes ``OUT/NAME.html`` with its figures embedded, ``OUT/NAME.csv``
with the numbers behind them and ``OUT/NAME.json`` with its one-line finding;
``OUT/index.html`` links them all. Exit 0: every report rendered clean; 1: a
notebook failed (its page still shows where); 2: bad arguments. Heavy imports
(papermill, nbconvert) wait until the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sims.commands._args import non_negative_int
from sims.reports.catalog import names

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``report`` to the sub-commands."""
    accepted = names()
    p = sub.add_parser(
        "report",
        help="render the Jupyter reports (backoff, storms, staleness, detection) to HTML",
        description="Execute the notebooks in notebooks/ with papermill and render each to "
                    "OUT/NAME.html (figures embedded), OUT/NAME.csv (the numbers behind the "
                    "figures) and OUT/index.html (every report with its one-line finding). "
                    "Exit 0: all rendered; 1: a notebook failed; 2: bad arguments.",
    )
    p.add_argument("--quick", action="store_true",
                   help="small parameters: every report in a few minutes in all")
    p.add_argument("--only", action="append", choices=accepted, metavar="NAME",
                   help="render only this report (repeatable; choices: %(choices)s)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output directory (default: reports/ at the top of the repository)")
    p.add_argument("--seed", type=non_negative_int, default=1,
                   help="seed of every random draw in the reports (%(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render the reports the arguments select; return the exit status."""
    from sims.reports.render import default_out, notebooks_dir, render_all

    wanted = args.only or names()
    missing = [n for n in wanted if not (notebooks_dir() / f"{n}.ipynb").exists()]
    if missing:
        print(f"sselab report: error: no notebook for {', '.join(missing)} in {notebooks_dir()} "
              "(run sselab from a checkout of the repository)", file=sys.stderr)
        return 2
    out: Path = args.out if args.out is not None else default_out()

    def echo(line: str) -> None:
        print(line, flush=True)

    results = render_all(wanted, out, quick=args.quick, seed=args.seed, echo=echo)
    failed = [r for r in results if not r.ok]
    print(f"index: {out / 'index.html'}")
    if failed:
        print(f"sselab report: {len(failed)} of {len(results)} reports failed: "
              + ", ".join(r.name for r in failed), file=sys.stderr)
        return 1
    return 0
