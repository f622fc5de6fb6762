"""The exhaustive checker: a clean pass with every fix on, and teeth for every fix off."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import deque

import pytest

from model.fixes import FIXES, Fixes, Teeth, teeth
from model.invariants import violations
from model.world import WorldConfig, enabled, initial
from sims.check import Progress, check, replay

#: Each fix's teeth from FixInfo: the fix off (with the fixes that mask its bug), the world
#: that shows its bug, the invariants the fix protects.
TEETH = teeth()


def test_every_fix_shows_its_bug_in_a_world_or_says_why_not() -> None:
    """A fix without a world that shows its bug must say why none can."""
    for info in FIXES:
        assert bool(info.worlds) != bool(info.no_world), info.name


def test_default_bounds_complete_with_every_invariant_holding() -> None:
    """All fixes on, default bounds: complete, nothing violated, liveness judged."""
    result = check(WorldConfig())
    assert result.complete, result.incomplete_reason
    assert result.violations == ()
    assert set(result.invariants.values()) == {"holds"}
    assert result.states > 50_000  # the default world is not trivially small


@pytest.mark.parametrize("case", TEETH,
                         ids=[f"{t.fix}-{'-'.join(map(str, t.sizes.values())) or 'default'}"
                              for t in TEETH])
def test_each_fix_off_finds_the_bug_it_prevents(case: Teeth) -> None:
    """Switching one fix off yields a shortest counterexample of an invariant it protects."""
    fix, sizes, protects = case.fix, case.sizes, case.protects
    config = WorldConfig(fixes=case.fixes, **sizes)
    result = check(config, stop_at_first=True, liveness=False)
    found = {v.invariant for v in result.violations}
    assert found & protects, f"{fix} off: found {found or 'nothing'}, expected one of {protects}"
    for violation in result.violations:
        print(f"\n{fix} off -> {violation.invariant}:")
        for n, label in enumerate(violation.trace, 1):
            print(f"  {n:>2}. {label}")
        # The trace replays to a state that really breaks the invariant.
        states = replay(config, [step.key for step in violation.steps], symmetry=True)
        assert violation.invariant in violations(config, states[-1])
        assert not violations(config, states[-2]) or len(states) == 1


def test_same_world_with_the_fix_on_finds_nothing() -> None:
    """The sizes used to show F1's row overrun are clean with F1 on."""
    result = check(WorldConfig(replay_limit=1, events=3, faults=0))
    assert result.ok, [v.invariant for v in result.violations]


def test_topic_sequence_counterexample_is_the_out_of_order_commit() -> None:
    """With a shared sequence, an id that commits after a later one is skipped forever."""
    config = WorldConfig(publishers=2, fixes=Fixes.all().without("topic-sequence"))
    (violation,) = check(config, stop_at_first=True, liveness=False).violations
    trace = violation.trace
    assert any("takes id 1" in t for t in trace) and any("takes id 2" in t for t in trace)
    assert trace.index(next(t for t in trace if "commits event 2" in t)) < trace.index(
        next(t for t in trace if "commits event 1" in t))


def test_heartbeat_race_counterexample_reads_as_the_seed_describes() -> None:
    """F3 off: the heartbeat check fires while connecting and the counter outruns attempts.

    A client resuming from a cursor (``start_cursor=0``) shows the race exactly as the seed
    tells it; a fresh one shows the same inflated counter sooner, when its silent stream's
    check re-hydrates instead of reconnecting (the next test).
    """
    config = WorldConfig(start_cursor=0, fixes=Fixes.all().without("F3"))
    (violation,) = check(config, stop_at_first=True, liveness=False).violations
    assert violation.invariant == "bounded-counter"
    assert violation.trace[-1] == "client 0: heartbeat check fires while connecting"
    last = dict(violation.steps[-1].changes)
    assert int(last["client 0.attempts"]) > 2


def test_a_fresh_clients_heartbeat_check_inflates_the_counter_too() -> None:
    """F3 off, a client without a cursor: the check bumps the counter and re-hydrates."""
    config = WorldConfig(fixes=Fixes.all().without("F3"))
    (violation,) = check(config, stop_at_first=True, liveness=False).violations
    assert violation.invariant == "bounded-counter"
    assert violation.trace[-1] == "client 0: heartbeat check fires while connected"
    last = dict(violation.steps[-1].changes)
    assert int(last["client 0.attempts"]) > int(last.get("client 0.attempts_really_started", 1))


def test_liveness_finds_a_dead_subscriber_never_detected() -> None:
    """F4 off, judged only by liveness: a lasso into a world where the death is never seen."""
    config = WorldConfig(events=0, fixes=Fixes.all().without("F4"))
    result = check(config, only=["bounded-counter"])
    (violation,) = [v for v in result.violations if v.kind == "liveness"]
    assert violation.invariant == "detection-bound"
    assert "redis: subscriber of replica 0 dies silently" in violation.trace


def test_liveness_holds_with_the_fix_on() -> None:
    """The same world with F4 on: every bottom component detects and converges."""
    result = check(WorldConfig(events=0), only=["bounded-counter"])
    assert result.complete and not result.violations


def _plain_bfs_count(config: WorldConfig) -> int:
    """An independent breadth-first walk: full states in a set, violating states not expanded."""
    start = initial(config)
    seen = {start}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if violations(config, state):
            continue
        for t in enabled(config, state):
            nxt = t.state
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return len(seen)


@pytest.mark.parametrize("sizes", [dict(clients=2, events=1, faults=0), dict(events=2, faults=1),
                                   dict(clients=2, replicas=2, events=0, faults=0)])
def test_no_reduction_count_equals_an_independent_walk(sizes: dict[str, int]) -> None:
    """With every reduction off the checker counts exactly the states a plain BFS reaches."""
    config = WorldConfig(**sizes)
    result = check(config, reduction=False, liveness=False)
    assert result.complete
    assert result.states == _plain_bfs_count(config)


def test_symmetry_reduces_identical_clients() -> None:
    """Merging client permutations explores fewer states and agrees on the verdicts."""
    config = WorldConfig(clients=2, events=1, faults=0)
    with_sym = check(config)
    without = check(config, symmetry=False)
    assert with_sym.states < without.states
    assert with_sym.invariants == without.invariants


def test_state_bound_is_reported_as_incomplete_never_as_a_pass() -> None:
    """Hitting --max-states makes the verdicts unknown and the result not ok."""
    result = check(WorldConfig(), max_states=1_000)
    assert not result.complete and not result.ok
    assert "state bound" in (result.incomplete_reason or "")
    assert "holds" not in result.invariants.values()


def _sselab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sims.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_cli_json_is_one_object_with_the_documented_keys() -> None:
    """`sselab check --json` prints exactly one JSON object with the documented shape."""
    proc = _sselab("check", "--json", "--events", "1", "--faults", "0")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"fixes", "config", "states", "transitions", "depth", "seconds",
                         "states_per_second", "complete", "invariants", "violations", "stats"}
    assert {"cpu_seconds", "peak_memory_mb", "bytes_per_state", "reductions"} <= set(data["stats"])
    assert data["complete"] is True and data["violations"] == []
    assert set(data["invariants"].values()) == {"holds"}


def test_cli_ratios_report_what_each_reduction_saved() -> None:
    """`--ratios --sleep-sets --json` reports each reduction's ratio, measured by a second search."""
    proc = _sselab("check", "--json", "--clients", "2", "--events", "1", "--faults", "0",
                   "--sleep-sets", "--ratios")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    ratios = data["stats"]["reduction_ratios"]
    assert set(ratios) == {"sleep_sets", "without_client_symmetry", "without_dead_fields",
                           "without_any"}
    sleep = ratios["sleep_sets"]
    assert sleep["transitions"] == data["transitions"] > sleep["transitions_taken"]
    for label in ("without_client_symmetry", "without_dead_fields", "without_any"):
        row = ratios[label]
        assert row["complete"] and row["same_verdicts"], label
        assert row["states_with"] == data["states"] < row["states_without"], label
        assert row["ratio"] == round(row["states_without"] / data["states"], 4)
    assert ratios["without_any"]["states_without"] > ratios["without_dead_fields"]["states_without"]
    text = _sselab("check", "--clients", "2", "--events", "0", "--faults", "0", "--ratios")
    assert "ratio without client symmetry:" in text.stdout and "ratio without any:" in text.stdout


def test_progress_names_the_liveness_phase() -> None:
    """After the last level, the progress callback hears that liveness is being judged."""
    seen: list[Progress] = []
    result = check(WorldConfig(events=1, faults=0), progress=seen.append)
    assert result.complete
    assert [p.phase for p in seen][-1] == "liveness"
    assert seen[-1].states == result.states
    assert all(p.phase == "search" for p in seen[:-1])
    seen.clear()
    check(WorldConfig(events=1, faults=0), progress=seen.append, liveness=False)
    assert "liveness" not in {p.phase for p in seen}


def test_cli_progress_line_goes_to_stderr_with_the_liveness_phase() -> None:
    """`--progress always` writes the search lines and the liveness line on stderr only."""
    proc = _sselab("check", "--json", "--events", "1", "--faults", "0", "--progress", "always")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # stdout stays one JSON object
    assert re.search(r"states, depth \d+, frontier", proc.stderr)
    assert re.search(r"[\d,]+ states searched in \d+ s; judging liveness", proc.stderr)


def test_progress_counts_the_workers_memory() -> None:
    """With worker processes, progress and the text output show each worker's memory too."""
    seen: list[Progress] = []
    result = check(WorldConfig(events=1, faults=0), workers=2, progress=seen.append)
    assert result.complete
    assert seen and all(len(p.workers_mb) == 2 and min(p.workers_mb) > 0 for p in seen)
    assert all(p.total_mb == p.memory_mb + sum(p.workers_mb) for p in seen)
    seen.clear()
    check(WorldConfig(events=1, faults=0), progress=seen.append)  # one process: no workers
    assert all(p.workers_mb == () and p.total_mb == p.memory_mb for p in seen)
    proc = _sselab("check", "--events", "1", "--faults", "0", "--workers", "2", "--progress", "always")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"[\d,]+ MB \(workers [\d,]+ \+ [\d,]+\)", proc.stderr)
    assert re.search(r"peak memory [\d,]+ MB here, workers [\d,]+ \+ [\d,]+ MB", proc.stdout)


def test_profile_with_workers_reports_the_workers_work() -> None:
    """With worker processes the profile is theirs (expand, fingerprints), not the coordinator
    waiting on its pipes; in one process it is that process's own."""
    cfg = WorldConfig(events=1, faults=0)
    merged = check(cfg, workers=2, profile=10).stats["profile_top"]
    assert any("partition.py" in line and "(expand)" in line for line in merged), merged
    assert not any("posix.read" in line for line in merged), merged
    alone = check(cfg, profile=10).stats["profile_top"]
    assert any("(expand)" in line or "(fingerprint)" in line for line in alone), alone


def test_cli_without_a_fix_exits_1_with_a_counterexample(tmp_path: object) -> None:
    """`sselab check --without F3` exits 1, prints numbered steps and can write Graphviz."""
    dot = f"{tmp_path}/f3.dot"
    proc = _sselab("check", "--without", "F3", "--stop-at-first", "--dot", dot)
    assert proc.returncode == 1
    assert re.search(r"^bounded-counter +violated$", proc.stdout, re.MULTILINE)
    assert "  1. " in proc.stdout and "heartbeat check fires while" in proc.stdout
    with open(dot, encoding="utf-8") as fh:
        assert fh.read().startswith('digraph "bounded-counter"')


@pytest.mark.parametrize(("args", "needle"), [
    (["--clients", "0"], "argument --clients: expected a whole number >= 1, got 0"),
    (["--without", "F9"], "unknown fix 'F9'; accepted: bounded-replay (F1)"),
    (["--events", "many"], "argument --events: expected a whole number >= 0, got 'many'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_cli_bad_arguments_exit_2_naming_the_flag(args: list[str], needle: str) -> None:
    """Bad flags exit 2 with a message that names the flag and what it accepts."""
    proc = _sselab("check", *args)
    assert proc.returncode == 2
    assert needle in proc.stderr
