"""The exhaustive checker: every interleaving of a bounded world, shortest counterexamples.

How it works.

* **Breadth-first, level by level** over :func:`model.world.enabled` from the
  initial state (:mod:`sims.check.search`). A state is stored only as its 64-bit
  fingerprint and its parent's (:mod:`sims.check.canon`); a counterexample is
  rebuilt by replaying from the start (:mod:`sims.check.trace`), so every
  counterexample is a shortest one. Only the current frontier (and the next
  level's candidates) are held as states, each as a row of numbers of its parts
  (``partition.Parts``: ``8 * (clients + replicas + 5)`` bytes, against about 420
  as Python objects). The fingerprints of the newest three levels are kept in a
  set, where almost every transition that reaches a stored state lands; older
  ones move to sorted numpy arrays (``partition.Store``: 16 bytes with the
  parent, against about 90), searched once per level for the candidates left.
* **Partitions** (:mod:`sims.check.partition`): fingerprint ``fp`` belongs to
  partition ``fp % N``. With ``workers=N`` each partition runs in its own process
  (or, with ``scheduler=``, as a Dask actor on a cluster), and only integers
  travel between them. Ties are broken by the smallest (parent fingerprint,
  transition key code), so the search tree, the counts and every counterexample
  are the same for any ``N``.
* **Safety**: every reached state is judged with :func:`model.invariants.violations`
  (whatever invariants :data:`model.invariants.SAFETY` names); a violating state is
  recorded (the smallest fingerprint at the first level where the invariant
  breaks) and not expanded further.
* **Symmetry**: clients are identical, and so are replicas, so a state is stored
  under the fingerprint of its canonical form: clients sorted, replicas put in
  the order of their own codes and their indices renamed to match (also inside
  streams), trying every permutation only among equal replicas.
  ``symmetry=False`` (or ``client_symmetry`` / ``replica_symmetry``) turns it off.
* **Dead fields** (:mod:`sims.check.canon`, ``forget_replica`` and ``forget_slot``):
  a subscriber's last sentinel return and the previous backoff delay (under a policy
  that does not read it, ``BackoffPolicy.reads_previous``) are read by no move and no
  invariant, a stalled stream's last sent id is never compared
  again, and a replica's sentinel tokens are only compared and counted round (so
  renumbering them to start at 0 commutes with every step). A state is stored under
  the fingerprint of its forgotten form. Forgetting is a bisimulation (the same moves,
  by kind and actor, to states equal once forgotten; the same safety, convergence and
  detection judgements), so every verdict and every shortest counterexample's length
  is kept, and the BFS depth can only fall; ``tests/check/test_reductions.py`` checks
  that on every state of four worlds and catches three mutants that forget a live
  field. Default bounds: 182,051 states become 57,168. ``dead_fields=False`` turns it off.
* **Memo**: each partition keeps a :class:`model.world.Memo` for its search. A
  client's own moves read only its slot and the database, and a replica's own
  moves only the replica and the database (unless they fan a resync out to
  streams, which is never remembered), so they are computed once per distinct
  slot or replica and reused: in the default world (without dead fields)
  182,051 states share 1,527 client keys. The parts of world-wide moves that
  touch one client or one replica (a delivery, a tick, a probe's feed, a
  replica going down) are
  remembered likewise (``model.world_shell.on_client``). ``tests/check/test_memo.py``
  shows the memoised world equal to the plain one, state by state.
* **Partial-order reduction: sleep sets** (``sleep_sets=True``, ``--sleep-sets``; off by
  default, for the reason under *what they spare*). A client's own moves read and
  change only its slot (and the database, which no own move writes; the fault count
  and the replay overrun only add up or take a maximum), a replica's only the
  replica: the memo shows it by computing them on a state without the rest
  (:mod:`model.memo`). So own moves of two actors commute and neither disables the
  other, except that a fault may spend the last of the budget, after which every
  other fault stays disabled (the budget only falls). At a state ``v``, whose actors'
  own moves are listed in a fixed order (replicas, then clients), a move of actor
  ``B`` passes a *sleep set* to its target: the actors listed before ``B`` whose
  moves were taken at ``v``, and those asleep at ``v``, but not ``B``. World-wide
  moves (a tick, a delivery, an accept, a probe, a publish) pass nothing on. A
  state's sleep set is the intersection of what every move into it from the level
  before passed on (each partition intersects its own candidates, the owner theirs,
  so any number of workers gives the same sets), held as canonical places
  (``Canon.places``: an actor whose code ties with another's has no place and never
  sleeps), and a state does not compute its asleep actors' own moves
  (``model.world.enabled(skip=)``).
  *Why no state is lost.* Let ``r`` be at distance ``k`` and take, of the shortest
  paths to ``r``, the smallest in this order: compare the first moves where two
  paths part, by the order listed at the state where they part. Suppose a move
  ``a_i`` on it is asleep at ``p_(i-1)``, the first such. The sleep set there is
  within what the path's own move ``a_(i-1)`` (taken) passed on, so ``a_i`` is
  another actor's own move that commutes with ``a_(i-1)`` (if both are faults, the
  budget paid for both: ``a_i`` is enabled after ``a_(i-1)``) and was listed before it
  at ``p_(i-2)`` or asleep there. Follow the second case down (the root sleeps
  nothing) to the first ``j`` where ``a_i`` was listed before ``a_j``: moving ``a_i``
  to place ``j`` gives a path to ``r`` as short that parts from this one at
  ``p_(j-1)`` with a smaller move, a contradiction. So the smallest shortest path to
  every state is taken, level by level: the same states at the same depths, so the
  same safety verdicts and counterexample lengths (the trace may differ). A settled
  state is always expanded in full, so the settled graph, all that liveness reads,
  is unchanged. ``tests/check/test_sleep_sets.py`` checks states, depth, verdicts and
  counterexample lengths against the plain search (two worlds, two seed bugs),
  moves taken + moves left out = every transition, one process = two workers, and
  catches three mutants (world-wide moves taken as independent, an actor asleep
  after its own move, actors listed after asleep too) by the states they lose.
  *What they spare.* Little here: 579 of 208,468 moves at default bounds and 11,147
  of 2,794,575 with two clients and one event, and the bookkeeping costs more time
  than it saves (``README.md`` has the runs). Most states are entered by some
  world-wide move or by an own move with nothing to pass on, and the intersection
  then empties their sleep set: in that two-client world, 34 % of the moves into
  states not stored before were world-wide and 9 % own moves passing nothing, and
  153,817 of 745,778 candidates kept a sleep set at all.
* **No ample (persistent) sets**, deliberately: an ample set may postpone only
  transitions *invisible* to every judged invariant, and the invariants are opaque
  functions of the whole state (``no-silent-stale`` reads a client's status, what it
  applied, its streams, its replica, Postgres and the publishers), so no client or
  replica transition can be shown invisible from here (sleep sets need no
  invisibility: they keep every state). Independence is scarce too: time passes for
  every client and replica in one ``tick`` (dependent with every timer move), and
  Redis deliveries, probes and a replica going down write into clients' streams.
  Ample sets need each invariant to declare the fields it reads, and per-actor
  clocks.
* **Bounds**: ``max_states`` and ``max_depth``; hitting one makes the result
  *incomplete*, which is never reported as a pass.
* **Liveness** (``convergence``, and ``detection-bound`` as "eventually
  detected"): a state from which no fault and no publish can happen any more is
  *settled*; the settled states' edges are kept in flat arrays, and the bottom
  strongly connected components (no edge leaves them) are found on dense
  indices by scipy's compiled strong components
  (:func:`sims.check.trace.bottom_components_dense`, checked against networkx in
  ``tests/check/test_bottom_components.py``; a networkx graph of every settled
  state cost more than the search that found them, and a Python Tarjan half a
  minute on two clients' settled graph).
  A bottom component is where a fair run ends up forever; if no state in it
  has every client live and up to date, or a replica's subscriber is dead and
  undetected in all of it, that is a liveness violation, reported as a lasso:
  the shortest path into the component and a cycle inside it (networkx's
  shortest path, on that component alone). Settled states are always fully
  expanded (no sleep sets there), so the settled graph is the symmetry quotient of the real
  one. Under replica symmetry a representative's replica numbering is
  arbitrary, so "dead and undetected" is judged as "some replica is dead and
  undetected" in every state of the component: in a settled world no link can
  die any more (dying is a fault), so the set of undetected replicas only
  shrinks along edges and is the same in every state of a strongly connected
  component, and the two readings agree.

**Compiled** (``sselab check --compiled``, :mod:`sims.check.compiled`): the same
search on ``model/`` and this package's ``canon`` and ``partition`` built by mypyc
from the checked-in sources, in a child process (its workers too) with the build
first on the path; about twice the states per second. The build is named by a
hash of every source file, so it never runs other sources than its own;
``tests/check/test_compiled.py`` checks that it gives the pure modules' counts,
verdicts and counterexamples, in one process and in two.

The cyclic garbage collector is off while a search runs (in this process and in
forked workers): states are tuples without cycles, so a collection only
rescans millions of live tuples to free nothing; it cost about 15 % of the
time in the default world.

Hash collisions: with 64-bit fingerprints the chance that two of a million
states collide is about 3e-8; a collision could only hide states, never invent
a counterexample (every trace is replayed and re-judged).
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import time
from collections.abc import Callable, Collection
from typing import Any

from model.invariants import LIVENESS, SAFETY, violations
from model.world import WorldConfig, initial
from sims.check import _extras as _extras  # first: a missing library names the check extra
from sims.check.canon import Canon
from sims.check.compiled import active as compiled_active
from sims.check.compiled import make_picklable
from sims.check.coverage import summarize
from sims.check.pools import open_pool
from sims.check.result import CheckResult, Step, Violation
from sims.check.search import Progress, explore, gather_memory, peak_mb
from sims.check.trace import liveness_violations, path_fps, path_to, replay, steps_of

__all__ = ["CheckResult", "Progress", "Step", "Violation", "check", "replay"]

make_picklable()  # on a mypyc build, model/'s frozen dataclasses travel between processes


class _Loaded:
    """Profile statistics gathered in another process, in the shape ``pstats.Stats`` loads."""

    def __init__(self, stats: dict[Any, Any]) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        """Already made (``pstats`` calls this before reading ``stats``)."""


def check(
    config: WorldConfig,
    *,
    symmetry: bool = True,
    client_symmetry: bool = True,
    replica_symmetry: bool = True,
    dead_fields: bool = True,
    sleep_sets: bool = False,
    reduction: bool = True,
    max_states: int = 3_000_000,
    max_depth: int = 10_000,
    liveness: bool = True,
    stop_at_first: bool = False,
    only: Collection[str] | None = None,
    workers: int = 1,
    scheduler: Any = None,
    profile: int = 0,
    coverage: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> CheckResult:
    """Explore every interleaving of ``config``'s world within the bounds; return the verdicts.

    ``stop_at_first`` ends the search after the BFS layer with the first violation
    (the result is then incomplete for the other invariants); ``only`` judges just
    those safety invariants (liveness is still judged unless ``liveness=False``).
    ``reduction=False`` turns every reduction off (client and replica symmetry, dead
    fields, sleep sets; ``dead_fields=False`` or ``sleep_sets=False`` only that one);
    ``workers`` runs that many partitions in processes, ``scheduler`` (an address or a
    ``distributed.Client``) as Dask actors; ``profile=N`` keeps cProfile's top N (of the
    worker processes, merged, when there are any);
    ``coverage`` records the transition kinds and machine (state, input) pairs taken.
    """
    if only is not None:
        unknown = set(only) - set(SAFETY)
        if unknown:
            raise ValueError(f"not safety invariants: {sorted(unknown)}; accepted: {', '.join(SAFETY)}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    judged = set(SAFETY if only is None else only)
    sym = symmetry and reduction
    options: dict[str, Any] = {
        "client_symmetry": sym and client_symmetry, "replica_symmetry": sym and replica_symmetry,
        "dead_fields": reduction and dead_fields,
        "sleep_sets": reduction and sleep_sets,
        "liveness": liveness, "coverage": coverage,
        "only": sorted(only) if only is not None else None,
        "profile": profile,
    }
    started = time.perf_counter()
    cpu0 = time.process_time()
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    pool = open_pool(workers, config, options, scheduler)
    collecting = gc.isenabled()
    gc.disable()  # see quiet_collector()
    try:
        ex = explore(pool, max_states=max_states, max_depth=max_depth, stop_at_first=stop_at_first,
                     progress=progress)
        canon = Canon(config, clients=options["client_symmetry"],
                      replicas=options["replica_symmetry"], dead=options["dead_fields"])
        found: list[Violation] = []
        start = initial(config)
        for name in SAFETY:
            if name in ex.first and name in judged:
                path = path_to(config, canon, path_fps(pool, ex.root, ex.first[name]))
                assert name in violations(config, path[-1].state if path else start)
                found.append(Violation(name, "safety", tuple(steps_of(config, start, path))))
        if liveness and ex.incomplete is None:
            if progress is not None:  # the search is over; judging its settled graph can take long
                progress(Progress(ex.states, ex.depth, 0, time.perf_counter() - started,
                                  peak_mb(), phase="liveness", workers_mb=ex.workers_mb))
            settled = pool.map("settled", [()] * pool.size)
            found.extend(liveness_violations(config, canon, pool, ex.root, settled,
                                             {v.invariant for v in found}))
        memory = gather_memory(pool)
        covered: set[tuple[str, ...]] = set()
        if coverage:
            for part in pool.map("covered", [()] * pool.size):
                covered |= part
        worker_profiles = [p for p in pool.profiles() if p] if prof is not None else []
    finally:
        pool.close()
        if collecting:
            gc.enable()
    if prof is not None:
        prof.disable()
    seconds = time.perf_counter() - started
    stats: dict[str, Any] = {
        "cpu_seconds": round(time.process_time() - cpu0, 3),
        "workers": workers if scheduler is None else f"{workers} dask actors",
        "compiled": compiled_active(),
        **memory,
        "reductions": {
            "client_symmetry": options["client_symmetry"] and config.clients > 1,
            "replica_symmetry": options["replica_symmetry"] and config.replicas > 1,
            "dead_fields": options["dead_fields"],
            "sleep_sets": options["sleep_sets"],
        },
        # the moves the search computed, and those the sleep sets let it leave out:
        # together they are every transition of the graph (``transitions``)
        "transitions_taken": ex.transitions,
        "transitions_slept": ex.spared.get("sleep_sets", 0),
    }
    if coverage:
        stats["coverage"] = summarize(covered)
    if prof is not None:
        text = io.StringIO()
        # With worker processes the work is theirs (the coordinator mostly waits on pipes):
        # their statistics, merged; otherwise this process's own.
        loaded: list[Any] = [_Loaded(p) for p in worker_profiles] or [prof]
        pstats.Stats(*loaded, stream=text).sort_stats("tottime").print_stats(profile)
        stats["profile_top"] = [" ".join(line.split()) for line in text.getvalue().splitlines()
                                if line.strip()[:1].isdigit()][:profile]
    return CheckResult(
        config=config,
        symmetry=options["client_symmetry"] or options["replica_symmetry"],
        states=ex.states,
        transitions=ex.transitions + ex.spared.get("sleep_sets", 0),
        depth=ex.depth,
        seconds=seconds,
        complete=ex.incomplete is None,
        incomplete_reason=ex.incomplete,
        violations=tuple(found),
        judged=frozenset(judged | (set(LIVENESS) if liveness else set())),
        stats=stats,
    )
