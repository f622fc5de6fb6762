"""``sselab check``: prove the invariants over every interleaving, or show how one breaks."""

from __future__ import annotations

import argparse
import json
import sys

from model.fixes import Fixes
from model.invariants import SAFETY
from model.world import WorldConfig
from sims.check import CheckResult, Progress, Step, Violation, check, compiled
from sims.check.ratios import reduction_ratios
from sims.check.simulate import simulate
from sims.commands._args import add_without, non_negative_int, positive_int

__all__ = ["format_result", "register", "run", "to_dot"]

_DEFAULTS = WorldConfig()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``check`` sub-command."""
    p = sub.add_parser(
        "check",
        help="exhaustively check the invariants of a bounded world",
        description="Explore every interleaving of clients, replicas, Redis, Postgres and faults "
        "within the bounds; print each invariant's verdict and a shortest counterexample for "
        "each one violated. Exit 0: complete, nothing violated; 1: violated or incomplete; "
        "2: bad arguments.",
    )
    p.add_argument("--clients", type=positive_int, default=_DEFAULTS.clients, help="clients (%(default)s)")
    p.add_argument("--replicas", type=positive_int, default=_DEFAULTS.replicas,
                   help="API replicas (%(default)s)")
    p.add_argument("--publishers", type=positive_int, default=_DEFAULTS.publishers,
                   help="concurrent publishers (%(default)s)")
    p.add_argument("--events", type=non_negative_int, default=_DEFAULTS.events,
                   help="publishes in total (%(default)s)")
    p.add_argument("--faults", type=non_negative_int, default=_DEFAULTS.faults,
                   help="fault budget (%(default)s)")
    p.add_argument("--max-attempts", type=positive_int, default=_DEFAULTS.max_attempts,
                   help="client reconnect maximum (%(default)s)")
    p.add_argument("--replay-limit", type=positive_int, default=_DEFAULTS.replay_limit,
                   help="replay row limit (%(default)s)")
    add_without(p)
    p.add_argument("--no-symmetry", action="store_true", help="do not merge states that differ "
                   "only by which client or replica is which")
    p.add_argument("--no-client-symmetry", action="store_true",
                   help="do not merge states that differ only by which client is which")
    p.add_argument("--no-replica-symmetry", action="store_true",
                   help="do not merge states that differ only by which replica is which")
    p.add_argument("--no-dead-fields", action="store_true",
                   help="do not merge states that differ only in fields no step or invariant "
                   "reads (a sentinel's last return, the previous backoff delay, a stalled "
                   "stream's last id) or in the numbering of sentinel tokens")
    p.add_argument("--sleep-sets", action="store_true",
                   help="leave out moves of one actor's own that commute with a move taken "
                   "(sleep sets: the same states and verdicts, fewer moves computed; off by "
                   "default, since in this world they spare under 1%% of the moves)")
    p.add_argument("--no-reduction", action="store_true",
                   help="no reduction at all (client and replica symmetry, dead fields, "
                   "sleep sets): the plain search")
    p.add_argument("--ratios", action="store_true",
                   help="also search the world again without each reduction that is on, and "
                   "without any, and report what each saved (in --json: stats.reduction_ratios)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="search in this many processes, hash-partitioned (%(default)s)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="search on an existing Dask cluster (e.g. tcp://HOST:8786), "
                   "--workers partitions as actors")
    p.add_argument("--compiled", action="store_true",
                   help="run on the machines and the checker's loop compiled with mypyc (about "
                   "2x the states/s; built once per source version into the user's cache, "
                   "$SSELAB_BUILD_CACHE to choose; needs mypy and a C compiler)")
    p.add_argument("--profile", type=non_negative_int, default=0, metavar="N",
                   help="run under cProfile and report its top N entries (in --json too; "
                   "with --workers N, the worker processes' profiles merged)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="a progress line on stderr: auto = on a terminal, or every 10 s "
                   "once a run passes 10 s (%(default)s)")
    p.add_argument("--no-liveness", action="store_true", help="check safety invariants only")
    p.add_argument("--only", action="append", choices=SAFETY, metavar="INVARIANT",
                   help="judge only this safety invariant (repeatable; choices: %(choices)s)")
    p.add_argument("--stop-at-first", action="store_true",
                   help="stop after the first violation (a shortest one); other verdicts unknown")
    p.add_argument("--max-states", type=positive_int, default=3_000_000,
                   help="stop (incomplete) after this many states (%(default)s)")
    p.add_argument("--max-depth", type=positive_int, default=10_000,
                   help="stop (incomplete) at this depth (%(default)s)")
    p.add_argument("--simulate", action="store_true",
                   help="instead of searching, run seeded swarm random walks on the workers; report "
                   "coverage and shrunk counterexamples (finding nothing proves nothing)")
    p.add_argument("--walks", type=positive_int, default=1000, help="walks to run (%(default)s)")
    p.add_argument("--walk-depth", type=positive_int, default=200,
                   help="steps per walk at most (%(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="first walk's seed (%(default)s)")
    p.add_argument("--reference", choices=("default", "none"), default="default",
                   help="compare coverage with an exhaustive search of the default-bounds world "
                   "with the same fixes, or not (%(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--dot", metavar="FILE", help="write the first counterexample as Graphviz")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the check the arguments describe; return the exit status."""
    try:
        config = WorldConfig(
            clients=args.clients, replicas=args.replicas, publishers=args.publishers,
            events=args.events, faults=args.faults, max_attempts=args.max_attempts,
            replay_limit=args.replay_limit, fixes=Fixes.all().without(*args.without),
        )
    except ValueError as exc:
        print(f"sselab check: error: {exc}", file=sys.stderr)
        return 2
    if args.compiled and not compiled.active():
        return _on_build(args)
    if args.simulate:
        return _simulate(args, config)
    line = ProgressLine(args.progress)
    options = {
        "symmetry": not args.no_symmetry, "client_symmetry": not args.no_client_symmetry,
        "replica_symmetry": not args.no_replica_symmetry, "dead_fields": not args.no_dead_fields,
        "sleep_sets": args.sleep_sets, "reduction": not args.no_reduction,
        "max_states": args.max_states, "max_depth": args.max_depth,
        "liveness": not args.no_liveness, "stop_at_first": args.stop_at_first,
        "only": args.only, "workers": args.workers, "scheduler": args.scheduler}
    try:
        result = check(config, profile=args.profile, progress=line, **options)
        if args.ratios:
            result.stats["reduction_ratios"] = reduction_ratios(config, result, options)
    except OSError as exc:
        print(f"sselab check: error: cannot reach the Dask scheduler {args.scheduler}: {exc}",
              file=sys.stderr)
        return 2
    line.done()
    if args.dot and result.violations:
        with open(args.dot, "w", encoding="utf-8") as fh:
            fh.write(to_dot(result.violations[0]))
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(format_result(result))
    return 0 if result.ok else 1


def _on_build(args: argparse.Namespace) -> int:
    """Run this very command again in a child on the compiled build (made first if need be)."""
    try:
        return compiled.run_on_build(["-m", "sims.cli", *args.argv],
                                     lambda m: print(f"sselab check: {m}", file=sys.stderr))
    except compiled.CompileError as exc:
        print(f"sselab check: error: {exc}", file=sys.stderr)
        return 2


def _simulate(args: argparse.Namespace, config: WorldConfig) -> int:
    reference = (WorldConfig(fixes=config.fixes) if args.reference == "default" else None)
    result = simulate(config, walks=args.walks, depth=args.walk_depth, seed=args.seed,
                      workers=args.workers, scheduler=args.scheduler, reference=reference)
    if args.json:
        print(json.dumps(result.to_json()))
        return 1 if result.violations else 0
    cfg = result.config
    lines = [
        "sselab check --simulate: " + " ".join(f"{k}={getattr(cfg, k)}" for k in (
            "clients", "replicas", "publishers", "events", "faults", "max_attempts",
            "replay_limit")),
        f"fixes: {cfg.fixes}",
        f"walks {result.walks:,} (seed {args.seed}, up to {args.walk_depth} steps)   steps "
        f"{result.steps:,}   seconds {result.seconds:.1f}",
        f"reached: {len(result.coverage['kinds'])} transition kinds, "
        f"{len(result.coverage['machine_pairs'])} machine (state, input) pairs",
    ]
    ref = result.reference
    if ref is not None:
        lines.append(f"exhaustive search of the default world ({ref['states']:,} states): "
                     f"{ref['kinds']['exhaustive']} kinds, {ref['machine_pairs']['exhaustive']} pairs")
        for key in ("kinds", "machine_pairs"):
            for label, name in (("only the walks reached", "only_walks"),
                                ("only the search reached", "only_exhaustive")):
                if ref[key][name]:
                    lines.append(f"  {key.replace('_', ' ')} {label}: {', '.join(ref[key][name])}")
    lines.append("no violation found (a simulation proves nothing)" if not result.violations
                 else f"{len(result.violations)} invariant(s) violated; shrunk counterexamples:")
    for v in result.violations:
        lines += ["", *format_violation(v)]
    print("\n".join(lines))
    return 1 if result.violations else 0


class ProgressLine:
    """Prints states, depth, rate and memory on stderr while a search runs."""

    def __init__(self, mode: str) -> None:
        self.tty = sys.stderr.isatty()
        self.mode = mode
        self.last = 0.0
        self.shown = False

    def __call__(self, p: Progress) -> None:
        """Show where the search is (throttled; a new phase is always shown)."""
        if self.mode == "never" or (self.mode == "auto" and not self.tty and p.seconds < 10):
            return
        every = 0.5 if self.tty else 10.0
        if p.phase == "search" and p.seconds - self.last < every and self.shown:
            return
        self.last = p.seconds
        memory = f"{p.total_mb:,.0f} MB"
        if p.workers_mb:
            memory += " (workers " + " + ".join(f"{mb:,.0f}" for mb in p.workers_mb) + ")"
        if p.phase == "liveness":
            text = (f"  {p.states:,} states searched in {p.seconds:,.0f} s; judging liveness "
                    f"on the settled graph, {memory}")
        else:
            text = (f"  {p.states:,} states, depth {p.depth}, frontier {p.frontier:,}, "
                    f"{p.rate:,.0f} states/s, {memory}, {p.seconds:,.0f} s")
        if self.tty:
            print("\r" + text.ljust(78), end="", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)
        self.shown = True

    def done(self) -> None:
        """Clear the line on a terminal."""
        if self.shown and self.tty:
            print("\r" + " " * 78 + "\r", end="", file=sys.stderr, flush=True)


def format_result(result: CheckResult) -> str:
    """The human report: config, verdict table, cost, and each counterexample."""
    cfg = result.config
    width = max(24, 2 + max(map(len, result.invariants)))
    lines = [
        "sselab check: " + " ".join(f"{k}={getattr(cfg, k)}" for k in (
            "clients", "replicas", "publishers", "events", "faults", "max_attempts",
            "replay_limit")),
        f"fixes: {cfg.fixes}" + _reductions(result),
        "",
        f"{'invariant':<{width}}verdict",
    ]
    for name, verdict in result.invariants.items():
        lines.append(f"{name:<{width}}{verdict}")
    lines += [
        "",
        f"states {result.states:,}   transitions {result.transitions:,}   depth {result.depth}   "
        f"seconds {result.seconds:.1f}   states/s {result.states_per_second:,.0f}"
        + _cost(result),
        "complete" if result.complete else f"INCOMPLETE: {result.incomplete_reason} "
        "(nothing is proven; raise --max-states/--max-depth or shrink the world)",
    ]
    for v in result.violations:
        lines += ["", *format_violation(v)]
    return "\n".join(lines)


def _reductions(result: CheckResult) -> str:
    red = result.stats.get("reductions", {})
    on = [name for name, key in (("client symmetry", "client_symmetry"),
                                 ("replica symmetry", "replica_symmetry"),
                                 ("dead fields", "dead_fields"),
                                 ("sleep sets", "sleep_sets")) if red.get(key)]
    return "   reductions: " + (", ".join(on) if on else "none")


def _cost(result: CheckResult) -> str:
    st = result.stats
    if not st:
        return ""
    out = f"\nworkers {st.get('workers')}   peak memory {st.get('peak_memory_mb', 0):,.0f} MB"
    if st.get("worker_peak_memory_mb") and st.get("workers") != 1:
        out += " here, workers " + " + ".join(f"{mb:,.0f}" for mb in st["worker_peak_memory_mb"]) + " MB"
    out += f"   bytes/state {st.get('bytes_per_state', 0):,.0f}"
    if st.get("transitions_slept"):
        out += (f"\nsleep sets: {st['transitions_taken']:,} moves computed, "
                f"{st['transitions_slept']:,} left out")
    for label, row in st.get("reduction_ratios", {}).items():
        if label == "sleep_sets":
            out += f"\nratio sleep sets: {row['ratio']} (moves in the graph / moves computed)"
            continue
        bound = "" if row["complete"] else " at least (that search was cut short)"
        out += (f"\nratio {label.replace('_', ' ')}: {row['ratio']}{bound} ("
                f"{row['states_without']:,} states against {row['states_with']:,}, "
                f"{row['seconds_without']:.1f} s)")
    for line in st.get("profile_top", []):
        out += "\n  profile: " + line
    return out


def format_violation(v: Violation) -> list[str]:
    """A counterexample as numbered steps, each with the fields it changed."""
    found = " found by a random walk, shrunk" if v.found_by == "simulation" else ""
    head = (f"counterexample: {v.invariant} violated ({v.kind}{found}, {len(v.steps)} steps"
            + (f" then a cycle of {len(v.cycle)}" if v.kind == "liveness" else "") + ")")
    lines = [head]
    lines += _format_steps(v.steps, 1)
    if v.kind == "liveness":
        lines.append("  -- and then forever: --" if v.cycle else
                     "  -- and then nothing more can happen --")
        lines += _format_steps(v.cycle, len(v.steps) + 1)
    return lines


def _format_steps(steps: tuple[Step, ...], start: int) -> list[str]:
    lines = []
    for n, step in enumerate(steps, start):
        lines.append(f"  {n:>3}. {step.label}")
        for key, value in step.changes:
            lines.append(f"         {key} = {value}")
    return lines


def to_dot(v: Violation) -> str:
    """A counterexample as a Graphviz sequence of states and labelled steps."""
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"')

    out = [f'digraph "{esc(v.invariant)}" {{', "  rankdir=TB; node [shape=box, fontname=monospace];",
           '  s0 [label="initial state"];']
    steps = list(v.steps) + list(v.cycle)
    for n, step in enumerate(steps, 1):
        body = "\\l".join(esc(f"{k} = {val}") for k, val in step.changes) + "\\l"
        out.append(f'  s{n} [label="{body}"];')
        out.append(f'  s{n - 1} -> s{n} [label="{n}. {esc(step.label)}"];')
    if v.cycle:
        out.append(f'  s{len(steps)} -> s{len(v.steps)} [style=dashed, label="forever"];')
    out.append(f'  bad [shape=octagon, label="{esc(v.invariant)} violated"];')
    out.append(f"  s{len(steps)} -> bad [style=dotted];")
    out.append("}")
    return "\n".join(out) + "\n"
