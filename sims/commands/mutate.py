"""``sselab mutate``: semantic mutants of ``model/``, each checked at default bounds.

Every mutant of :data:`sims.mutate.CATALOGUE` runs in its own process against
``sselab check`` at default bounds with all fixes on and is reported killed (by
which invariant, in how many steps) or survived. Exit 0 when every mutant is
killed, or survives while listed in ``EXPECTED_SURVIVORS``, and each one's probe
shows it really changes behaviour; 1 otherwise; 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys

from sims.commands._args import positive_int
from sims.mutate import CATALOGUE, EXPECTED_SURVIVORS, Outcome, by_name, default_config, expected, run

__all__ = ["format_catalogue", "format_outcomes", "register", "run_command"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``mutate`` sub-command."""
    p = sub.add_parser(
        "mutate",
        help="prove the checks bite: run semantic mutants of model/ through the checker",
        description="Check each semantic mutant of the machines (a named bug swapped into one "
        "function or table entry of a model module, in its own process) at default bounds with "
        "all fixes on, and print whether the checker kills it. Exit 0: every mutant killed or "
        "an expected survivor surviving; 1: otherwise; 2: bad arguments.",
    )
    p.add_argument("--only", action="append", choices=[m.name for m in CATALOGUE], metavar="NAME",
                   help="run only this mutant (repeatable; choices: %(choices)s)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="mutants checked in parallel processes (%(default)s)")
    p.add_argument("--list", action="store_true", help="print the catalogue and exit")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the mutants the arguments name; return the exit status."""
    if args.list:
        print(format_catalogue())
        return 0
    names = args.only
    done = None
    if not args.json and sys.stderr.isatty():
        total = len(names) if names else len(CATALOGUE)
        count = 0

        def done(outcome: Outcome) -> None:
            nonlocal count
            count += 1
            print(f"\r  {count}/{total} mutants checked", end="", file=sys.stderr, flush=True)

    outcomes = run(names, workers=args.workers, done=done)
    if done is not None:
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr)
    ok = all(expected(o) for o in outcomes)
    if args.json:
        cfg = default_config()
        print(json.dumps({"config": cfg.to_dict(), "fixes": list(cfg.fixes.on()),
                          "mutants": [o.to_json() for o in outcomes],
                          "killed": sum(o.verdict == "killed" for o in outcomes),
                          "survived": sum(o.verdict == "survived" for o in outcomes),
                          "ok": ok}))
    else:
        print(format_outcomes(outcomes))
    return 0 if ok else 1


def format_catalogue() -> str:
    """The catalogue: each mutant, what it swaps and the bug it is."""
    lines = [f"{'mutant':<31}{'module':<18}{'swaps':<50}bug"]
    for m in CATALOGUE:
        lines.append(f"{m.name:<31}{m.module:<18}{m.target:<50}{m.change}")
    return "\n".join(lines)


def _by(o: Outcome) -> str:
    if o.verdict == "killed":
        return f"{o.invariant} ({o.kind})"
    if o.verdict == "survived" and o.mutant in EXPECTED_SURVIVORS:
        return "expected (see below)"
    return o.error or "-"


def _steps(o: Outcome) -> str:
    if o.steps is None:
        return "-"
    return f"{o.steps}" + (f" + cycle {o.cycle}" if o.cycle is not None else "")


def format_outcomes(outcomes: list[Outcome]) -> str:
    """The human report: one row per mutant, then each survivor's reason and any surprise."""
    cfg = default_config()
    lines = [
        "sselab mutate: " + " ".join(f"{k}={getattr(cfg, k)}" for k in (
            "clients", "replicas", "publishers", "events", "faults", "max_attempts",
            "replay_limit")) + f"   fixes: {cfg.fixes}",
        "",
        f"{'mutant':<31}{'module':<18}{'verdict':<10}{'killed by':<34}{'steps':<14}"
        f"{'states':>9}{'seconds':>9}  probe",
    ]
    for o in outcomes:
        lines.append(f"{o.mutant:<31}{by_name(o.mutant).module:<18}{o.verdict:<10}{_by(o):<34}"
                     f"{_steps(o):<14}{o.states:>9,}{o.seconds:>9.1f}  "
                     + ("differs" if o.differs else "SAME"))
    killed = sum(o.verdict == "killed" for o in outcomes)
    survived = [o for o in outcomes if o.verdict == "survived"]
    lines += ["", f"{killed} of {len(outcomes)} killed, {len(survived)} survived"]
    for o in survived:
        reason = EXPECTED_SURVIVORS.get(o.mutant, "NOT EXPECTED: a bug in the world or the "
                                        "invariants, or a mutant to explain")
        lines.append(f"  survived  {o.mutant}: {reason}")
    for o in outcomes:
        if o.verdict == "killed" and o.mutant in EXPECTED_SURVIVORS:
            lines.append(f"  killed    {o.mutant}: listed in EXPECTED_SURVIVORS; remove it from there")
        if o.verdict in ("error", "unknown"):
            lines.append(f"  {o.verdict:<9} {o.mutant}: {o.error}")
        if not o.differs:
            lines.append(f"  SAME      {o.mutant}: its probe shows no change; the mutant is a no-op")
    return "\n".join(lines)
