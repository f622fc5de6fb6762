"""``sselab conform``: is a recorded run a behaviour of the model? And checker bugs on the stack."""

from __future__ import annotations

import argparse
import sys

from sims.commands._args import add_without

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``conform`` sub-command."""
    p = sub.add_parser(
        "conform",
        help="validate recorded traces against the world, or replay a counterexample on the stack",
        description="With TRACE files (JSON lines from SSELAB_TRACE): search for a path of world "
        "transitions whose machine inputs equal the recorded ones, every invariant holding. "
        "Exit 0: valid; 1: invalid (the first unexplained line is shown); 2: bad input. "
        "With --without FIX: play the checker's shortest counterexample on a live stack "
        "(real Redis and Postgres) with the fix off and on; exit 0 when the real stack breaks "
        "the invariant with it off and keeps it with it on.",
    )
    p.add_argument("traces", nargs="*", metavar="TRACE", help="trace files (JSON lines)")
    p.add_argument("--tick", type=float, default=None, metavar="SECONDS",
                   help="world tick in seconds for the recorded timings (default: untimed, "
                   "every timer one tick)")
    p.add_argument("--max-nodes", type=int, default=300_000, help="search bound (%(default)s)")
    p.add_argument("--coverage", action="store_true",
                   help="also list the world kinds and machine pairs the traces exercised")
    add_without(p, effect="replay the checker's counterexample for that fix (one) on the "
                   "live stack, with it off and on")
    p.add_argument("--publishers", type=int, default=None,
                   help="publishers in the checker's world for --without (default: the fix's "
                        "own world in model.fixes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run what the arguments ask for; return the exit status."""
    if len(args.without) > 1:
        print("sselab conform: error: --without takes one fix (its counterexample is replayed); "
              f"got {', '.join(args.without)}", file=sys.stderr)
        return 2
    if args.without:
        return _stack(args.without[0], args.publishers)
    if not args.traces:
        print("sselab conform: error: give TRACE files or --without FIX", file=sys.stderr)
        return 2
    from sims.conform.coverage import Coverage, exercised, format_coverage, reachable
    from sims.conform.search import conform, world_config
    from sims.conform.traces import TraceError, read_traces

    try:
        trace = read_traces(args.traces)
        cfg = world_config(trace, tick=args.tick)
    except (TraceError, ValueError) as exc:
        print(f"sselab conform: error: {exc}", file=sys.stderr)
        return 2
    result = conform(trace, cfg, max_nodes=args.max_nodes)
    lines = sum(len(i.lines) for i in trace.instances) + len(trace.env)
    print(f"sselab conform: {len(trace.instances)} machine instances, {lines} observable lines; "
          f"world clients={cfg.clients} replicas={cfg.replicas} events={cfg.events} "
          f"faults={cfg.faults} fixes={cfg.fixes}")
    if result.ok:
        print(f"VALID: a world path of {len(result.path)} transitions explains every line "
              f"({result.nodes} search nodes); every invariant holds along it")
    else:
        f = result.failure
        assert f is not None
        if f.line is not None:
            print(f"INVALID: {f.line.file}:{f.line.lineno}: {f.instance} input "
                  f"{f.line.raw.get('input', f.line.raw.get('kind'))} is explained by no world "
                  "transition")
            print("  the world allowed instead: " + (", ".join(f.allowed) or "nothing"))
        if f.violation:
            print("  paths that went further break: " + ", ".join(f.violation))
        if not result.complete:
            print(f"  (search stopped at {result.nodes} nodes: raise --max-nodes)")
    if args.coverage:
        from model.world import WorldConfig

        kinds, pairs = exercised(trace, [result.path])
        wk, wp = reachable(WorldConfig())
        print(format_coverage(Coverage(frozenset(kinds), frozenset(wk), frozenset(pairs),
                                       frozenset(wp))))
    return 0 if result.ok else 1


def _stack(fix: str, publishers: int | None) -> int:
    from service.testing.stack import unreachable
    from sims.conform.stack import counterexample, fix_world, run_on_stack

    problem = unreachable()
    if problem is not None:
        print(f"sselab conform: error: {problem}", file=sys.stderr)
        return 2
    invariant, steps, _ = counterexample(fix, fix_world(fix, publishers))
    print(f"checker: with {fix} off, {invariant} breaks in {len(steps)} steps:")
    for n, step in enumerate(steps, 1):
        print(f"  {n:>3}. {step.label}")
    verdicts = {}
    for on in (False, True):
        try:
            r = run_on_stack(fix, on=on, publishers=publishers)
        except NotImplementedError as exc:
            print(f"not mapped to the real stack: {exc}")
            return 1
        verdicts[on] = r.holds
        print(f"real stack, {fix} {'on ' if on else 'off'}: {invariant} "
              f"{'holds' if r.holds else 'VIOLATED'}   {r.facts}")
    agree = not verdicts[False] and verdicts[True]
    print("model and production agree" if agree else "model and production DISAGREE")
    return 0 if agree else 1
