"""Memory of the checker's search, level by level: one JSON line a level.

Runs the partitioned search's level loop (``Partition.expand``, ``claim``, ``keep``,
``receive``, as ``sims.check.search`` drives them) with every partition in this
process, and after each level prints its depth, new states, states in all, the
candidates ruled on, this process's resident memory (after expanding, and after the
level) and the seconds so far. Where a world's memory goes as it grows, without
worker processes in the way: for a world too big to finish, stop it with
``--max-states``.

Run: ``python benchmarks/levels.py --clients 2 --replicas 2 --publishers 2
--partitions 2 --max-states 2000000``. With ``--gaps`` it instead counts, over a
plain breadth-first search, how many levels back each transition that reaches a
state already found lands (-1: in the level being built), the figure behind
``sims.check.partition.HOT_LEVELS``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import time

from model.world import Memo, WorldConfig, enabled, initial
from sims.check.canon import Canon
from sims.check.partition import Partition


def resident_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def gaps(cfg: WorldConfig, max_states: int) -> None:
    """Print, as JSON, how many levels back the transitions reaching found states land."""
    canon, memo = Canon(cfg), Memo()
    s0 = initial(cfg)
    depth = {canon.fingerprint(s0): 0}
    frontier, d = [s0], 0
    back: collections.Counter[int] = collections.Counter()
    while frontier and len(depth) < max_states:
        nxt = []
        for s in frontier:
            for t in enabled(cfg, s, memo):
                fp = canon.fingerprint(t.state)
                if fp in depth:
                    back[d - depth[fp]] += 1
                else:
                    depth[fp] = d + 1
                    nxt.append(t.state)
        frontier, d = nxt, d + 1
    hits = sum(back.values())
    print(json.dumps({"states": len(depth), "depth": d, "hits": hits,
                      "levels_back": {k: back[k] for k in sorted(back)},
                      "share_within": {k: round(sum(v for g, v in back.items() if g <= k) / hits, 5)
                                       for k in sorted(back)}}))


def main() -> None:
    """Parse the flags, run the levels, print a JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("clients", 1), ("replicas", 1), ("publishers", 1), ("events", 2),
                          ("faults", 1)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--partitions", type=int, default=1, help="partitions, all in this process")
    ap.add_argument("--max-states", type=int, default=2_000_000,
                    help="stop after the level that passes this many states")
    ap.add_argument("--gaps", action="store_true",
                    help="count how many levels back transitions to found states land")
    args = ap.parse_args()
    cfg = WorldConfig(clients=args.clients, replicas=args.replicas, publishers=args.publishers,
                      events=args.events, faults=args.faults)
    if args.gaps:
        gaps(cfg, args.max_states)
        return
    n = args.partitions
    gc.disable()  # as the checker runs
    parts = [Partition(i, n, cfg, {"liveness": True}) for i in range(n)]
    for p in parts:
        p.start()
    states, depth, started = 1, 0, time.perf_counter()
    while True:
        reports = [p.expand() for p in parts]
        expanded_mb = resident_mb()
        batches = [[(g, reports[g][0][o]) for g in range(n)] for o in range(n)]
        ruled = sum(len(b) // 2 for per_owner in batches for _, b in per_owner)
        won = [p.claim(b) for p, b in zip(parts, batches, strict=True)]
        shipped = [p.keep([won[o][g] for o in range(n)]) for g, p in enumerate(parts)]
        kept = [p.receive([shipped[g][o] for g in range(n)]) for o, p in enumerate(parts)]
        new = sum(size for size, _ in kept)
        states += new
        depth += 1
        print(json.dumps({"depth": depth, "new": new, "states": states, "ruled": ruled,
                          "resident_mb_expanded": round(expanded_mb),
                          "resident_mb": round(resident_mb()),
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)
        if not new or states > args.max_states:
            break


if __name__ == "__main__":
    main()
