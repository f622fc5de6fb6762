"""``sselab report``: execute the Jupyter reports in ``notebooks/`` and render them to HTML.

Each notebook runs with papermill (``quick``, ``seed`` and any ``--param`` /
``--policy`` injected after its ``parameters`` cell) and becomes ``OUT/NAME.html``
with its finding first and its figures embedded, ``OUT/NAME.csv`` with the numbers
behind them and ``OUT/NAME.json`` with its finding and provenance stamp;
``OUT/index.html`` links them all, and rendering into ``reports/`` rewrites the
README's generated block. ``--check`` renders nothing: it says whether the reports
still match the code. Exit 0: every report rendered clean (or, with ``--check``,
current); 1: a notebook failed (its page still shows where) or a report is stale;
2: bad arguments. Heavy imports (papermill, nbconvert) wait until the command runs.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from sims.commands._args import non_negative_int
from sims.reports.catalog import names

__all__ = ["notebook_parameters", "parse_param", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``report`` to the sub-commands."""
    accepted = names()
    p = sub.add_parser(
        "report",
        help="render the Jupyter reports (backoff, storms, staleness, detection) to HTML",
        description="Execute the notebooks in notebooks/ with papermill and render each to "
                    "OUT/NAME.html (finding first, figures embedded, code folded away), "
                    "OUT/NAME.csv (the numbers behind the figures), OUT/NAME.json (finding and "
                    "provenance) and OUT/index.html; rendering into reports/ also rewrites the "
                    "README's generated block. Exit 0: all rendered (--check: all current); "
                    "1: a notebook failed (--check: a report is stale); 2: bad arguments.",
    )
    p.add_argument("--quick", action="store_true",
                   help="small parameters: every report in a few minutes in all")
    p.add_argument("--only", action="append", choices=accepted, metavar="NAME",
                   help="render only this report (repeatable; choices: %(choices)s)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output directory (default: reports/ at the top of the repository)")
    p.add_argument("--seed", type=non_negative_int, default=1,
                   help="seed of every random draw in the reports (%(default)s)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a notebook parameter (repeatable), e.g. --param max_attempts=20; "
                        "a name no selected notebook has is refused with the accepted names")
    p.add_argument("--policy", metavar="SPEC",
                   help="a backoff policy for the reports that take one: a spec such as "
                        "'exponential(base=0.5,factor=1.5,cap=60,jitter=full)', a real client "
                        "(eventsource, fetch-event-source, socket.io, grpc) or module:function")
    p.add_argument("--check", action="store_true",
                   help="render nothing; exit 1 naming each report whose code changed since it "
                        "was rendered (or that is quick, custom or missing), 0 if all are current")
    p.set_defaults(func=run)


def notebook_parameters(name: str) -> dict[str, Any]:
    """The parameters of ``notebooks/NAME.ipynb`` with their default values (as Python values)."""
    import papermill as pm

    from sims.reports.render import notebooks_dir

    found: dict[str, Any] = {}
    for pname, info in pm.inspect_notebook(str(notebooks_dir() / f"{name}.ipynb")).items():
        try:
            found[pname] = ast.literal_eval(str(info["default"]))
        except (ValueError, SyntaxError):
            found[pname] = None  # an expression: any value is taken as given
    return found


def parse_param(text: str, default: Any) -> Any:
    """``VALUE`` of ``NAME=VALUE`` as the type of the parameter's default; ``ValueError`` if not."""
    raw = text.strip()
    if isinstance(default, bool):
        lowered = raw.lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if isinstance(default, str):
        return raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        if default is None:
            return raw
        noun = {int: "a whole number", float: "a number"}.get(type(default),
                                                             f"a {type(default).__name__}")
        raise ValueError(f"expected {noun}, got {raw!r}") from None
    if isinstance(default, int) and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ValueError(f"expected a whole number, got {raw!r}")
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {raw!r}")
        return float(value)
    if isinstance(default, tuple | list):
        if not isinstance(value, tuple | list):
            value = (value,)
        return type(default)(value)
    return value


def _error(message: str) -> int:
    print(f"sselab report: error: {message}", file=sys.stderr)
    return 2


def _params(args: argparse.Namespace, wanted: list[str]) -> dict[str, dict[str, Any]] | str:
    """Per report, the parameters to inject; or an error message."""
    if not args.param and args.policy is None:
        return {}
    from sims.reports.policies import load_policy

    known = {n: notebook_parameters(n) for n in wanted}
    out: dict[str, dict[str, Any]] = {n: {} for n in wanted}
    given: list[tuple[str, str]] = []
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            return f"--param takes NAME=VALUE, got {item!r}"
        given.append((name.strip(), value))
    if args.policy is not None:
        try:
            load_policy(args.policy)
        except ValueError as exc:
            return str(exc)
        given.append(("policy", args.policy))
    for name, value in given:
        takers = [n for n in wanted if name in known[n] and name not in ("quick", "seed")]
        if not takers:
            accepted = sorted({p for n in wanted for p in known[n]} - {"quick", "seed", "policy"})
            flag = "--policy" if name == "policy" else f"--param {name}"
            return (f"{flag}: no selected report takes {name!r} ({', '.join(wanted)}); "
                    f"accepted: {', '.join(accepted) or 'none'}"
                    + ("" if name == "policy" else
                       "; reports taking --policy: "
                       + ", ".join(n for n in names() if "policy" in notebook_parameters(n))))
        for n in takers:
            try:
                out[n][name] = parse_param(value, known[n][name])
            except ValueError as exc:
                return f"--param {name}={value}: {exc}"
    return out


def _check(args: argparse.Namespace, wanted: list[str]) -> int:
    from sims.reports.provenance import stale_reports
    from sims.reports.readme import BEGIN, readme_block
    from sims.reports.render import default_out, readme_path

    out: Path = args.out if args.out is not None else default_out()
    stale = stale_reports(wanted, out)
    problems = [f"  {s.name}: {s.reason}" for s in stale]
    if out.resolve() == default_out().resolve() and readme_path().exists() and args.only is None:
        text = readme_path().read_text(encoding="utf-8")
        if BEGIN not in text:
            problems.append("  README.md: no generated reports block")
        elif readme_block(out).strip() not in text:
            problems.append("  README.md: the generated reports block does not match "
                            "reports/*.json (run sselab report)")
    if problems:
        print(f"sselab report --check: {len(stale)} of {len(wanted)} reports stale; "
              "re-render with `sselab report`:\n" + "\n".join(problems))
        return 1
    print(f"sselab report --check: all {len(wanted)} reports match the code they were rendered from")
    return 0


def run(args: argparse.Namespace) -> int:
    """Render (or ``--check``) the reports the arguments select; return the exit status."""
    from sims.reports.render import default_out, notebooks_dir, render_all

    wanted = args.only or names()
    missing = [n for n in wanted if not (notebooks_dir() / f"{n}.ipynb").exists()]
    if missing:
        return _error(f"no notebook for {', '.join(missing)} in {notebooks_dir()} "
                      "(run sselab from a checkout of the repository)")
    if args.check:
        if args.param or args.policy is not None:
            return _error("--check renders nothing; it takes no --param or --policy")
        return _check(args, wanted)
    params = _params(args, wanted)
    if isinstance(params, str):
        return _error(params)
    out: Path = args.out if args.out is not None else default_out()

    def echo(line: str) -> None:
        print(line, flush=True)

    results = render_all(wanted, out, quick=args.quick, seed=args.seed, params=params, echo=echo)
    failed = [r for r in results if not r.ok]
    print(f"index: {out / 'index.html'}")
    if failed:
        print(f"sselab report: {len(failed)} of {len(results)} reports failed: "
              + ", ".join(r.name for r in failed), file=sys.stderr)
        return 1
    return 0
