"""``sselab seed``: the seed's five verification steps, run through the machines.

With no arguments every scenario runs twice, all fixes on and with its own fix
off, so each fix is shown working and the bug it prevents is shown next to it.
With ``--without`` every chosen scenario runs once, with those fixes off. The
exit status is 0 when every outcome is what the fixes predict (fix on: the fixed
behaviour; fix off: the bug), 1 otherwise, 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import json
import sys

from model.core import ProtocolError
from model.fixes import FIXES, Fixes
from sims.commands._args import add_without
from sims.seed import SCENARIOS, Outcome, run_scenario

__all__ = ["format_outcomes", "register", "run", "scenario_name"]


def scenario_name(text: str) -> str:
    """A seed scenario's name."""
    name = text.strip().lower()
    if name not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {text!r}; accepted: {', '.join(SCENARIOS)}")
    return name


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``seed`` sub-command."""
    p = sub.add_parser(
        "seed",
        help="run the seed's five verification steps through the machines",
        description="Script the seed's verification steps (" + ", ".join(SCENARIOS) + ") "
        "against the pure machines on fake time over a fake lossy link, and print what "
        "happened. Without --without each scenario runs with all fixes on and again with its "
        "own fix off. Exit 0: every outcome is what the fixes predict; 1: one is not; "
        "2: bad arguments.",
    )
    p.add_argument("scenarios", nargs="*", type=scenario_name, metavar="SCENARIO",
                   help="scenarios to run (default: all): " + ", ".join(SCENARIOS))
    add_without(p, effect="runs each scenario once")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of logs")
    p.set_defaults(func=run)


def _plan(names: list[str], without: list[str]) -> list[tuple[str, Fixes]]:
    if without:
        fixes = Fixes.all().without(*without)
        return [(name, fixes) for name in names]
    plan = []
    for name in names:
        plan.append((name, Fixes.all()))
        plan.append((name, Fixes.all().without(SCENARIOS[name].fix)))
    return plan


def run(args: argparse.Namespace) -> int:
    """Run the chosen scenarios; print their logs and verdicts; return the exit status."""
    names = list(dict.fromkeys(args.scenarios)) or list(SCENARIOS)
    outcomes: list[Outcome] = []
    errors: list[str] = []
    for name, fixes in _plan(names, args.without):
        try:
            outcomes.append(run_scenario(name, fixes))
        except ProtocolError as exc:  # a machine refused an input: a bug, reported, not hidden
            errors.append(f"{name} ({fixes}): {type(exc).__name__}: {exc}")
    ok = not errors and all(o.as_predicted for o in outcomes)
    if args.json:
        print(json.dumps({"ok": ok, "outcomes": [o.to_json() for o in outcomes],
                          "errors": errors}))
    else:
        print(format_outcomes(outcomes))
        for error in errors:
            print(f"ERROR {error}", file=sys.stderr)
    return 0 if ok else 1


def format_outcomes(outcomes: list[Outcome]) -> str:
    """Each scenario's step logs and verdict lines, then a summary table."""
    lines: list[str] = []
    current = ""
    for o in outcomes:
        info = SCENARIOS[o.scenario]
        if o.scenario != current:
            current = o.scenario
            if lines:
                lines.append("")
            alias = next(i.alias for i in FIXES if i.name == o.fix)
            lines.append(f"== {o.scenario}: seed item {info.item}, fix {o.fix} ({alias})"
                         f" — {info.title}")
        lines.append(f"-- fix {'on' if o.fix_on else 'off'} (fixes: {o.fixes})")
        lines += [f"  {step}" for step in o.steps]
        lines.append(f"  => {o.verdict()}")
    lines += ["", f"{'scenario':<16}{'fixes':<28}{'as predicted':<14}verdict"]
    for o in outcomes:
        shown = o.fixes if len(o.fixes) <= 26 else o.fixes[:23] + "..."
        lines.append(f"{o.scenario:<16}{shown:<28}{'yes' if o.as_predicted else 'NO':<14}"
                     f"{o.verdict()}")
    good = sum(o.as_predicted for o in outcomes)
    lines.append(f"{good}/{len(outcomes)} outcomes as the fixes predict")
    return "\n".join(lines)
