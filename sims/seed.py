"""The seed's five verification steps, run through the machines on fake time.

The seed ends with five manual checks, one per fix (replay limit, replay failure,
heartbeat race, Redis health, max reconnect). Each is a function here that
scripts the check against the real machines of ``model/`` and returns an
:class:`Outcome`: the step-by-step log of what happened, the facts observed
(``rehydrated``, ``counter``, ``attempts_made``, ``detected_at``, ``failed``,
``recovered``, ...), whether the fixed behaviour was seen and whether the bug the
fix prevents was seen. Every scenario takes any :class:`~model.fixes.Fixes`, so
the same script shows the fix working with it on and the bug with it off.

The shell is :class:`sims.bench.Bench` (re-exported here): one client, one
replica session and one subscriber on the shared fake timer book, carrying out
the machines' actions and deciding nothing.

Nothing here sleeps; a whole scenario runs in milliseconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from model import client as cl
from model import subscriber as sb
from model.core import Action, EventId
from model.fixes import FIXES, Fixes, resolve_fix_name
from sims.bench import LINK_LATENCY, Bench, Step

__all__ = [
    "ALL_FIXES",
    "LINK_LATENCY",
    "SCENARIOS",
    "Bench",
    "Fact",
    "Outcome",
    "Scenario",
    "Step",
    "heartbeat_race",
    "max_reconnect",
    "redis_health",
    "replay_failure",
    "replay_limit",
    "run_scenario",
]

#: Every fix on: the default of every scenario.
ALL_FIXES = Fixes()

#: A fact's value: JSON-able scalars only.
Fact = bool | int | float | str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What one scenario run showed, and whether that is what its fix predicts."""

    scenario: str
    fix: str  #: canonical name of the fix the scenario verifies
    fix_on: bool  #: whether that fix was switched on for this run
    fixes: str  #: every switch, as ``str(Fixes)``
    steps: tuple[Step, ...]
    facts: Mapping[str, Fact]
    fixed: bool  #: the fixed behaviour was observed
    bug_shown: bool  #: the bug the fix prevents was observed
    summary: str  #: the observed facts in one phrase

    @property
    def as_predicted(self) -> bool:
        """Fix on: the fixed behaviour was seen; fix off: the bug was seen."""
        return self.fixed if self.fix_on else self.bug_shown

    def verdict(self) -> str:
        """One line: ``fix on: ok — ...`` or ``fix off: BUG shown — ...`` (or a mismatch)."""
        if self.fix_on:
            word = "ok" if self.fixed else "FAILED (fixed behaviour not seen)"
            return f"fix on: {word} — {self.summary}"
        word = "BUG shown" if self.bug_shown else "MISMATCH (bug not shown)"
        return f"fix off: {word} — {self.summary}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict of the whole outcome."""
        return {
            "scenario": self.scenario, "fix": self.fix, "fix_on": self.fix_on,
            "fixes": self.fixes, "as_predicted": self.as_predicted, "fixed": self.fixed,
            "bug_shown": self.bug_shown, "summary": self.summary, "verdict": self.verdict(),
            "facts": dict(self.facts),
            "steps": [{"at": s.at, "actor": s.actor, "text": s.text} for s in self.steps],
        }


# ---------------------------------------------------------------- outcomes


def _outcome(name: str, bench: Bench, facts: dict[str, Fact], *, fixed: bool, bug_shown: bool,
             summary: str) -> Outcome:
    fix = SCENARIOS[name].fix
    return Outcome(scenario=name, fix=fix, fix_on=bench.fixes.enabled(fix),
                   fixes=str(bench.fixes), steps=tuple(bench.steps), facts=facts, fixed=fixed,
                   bug_shown=bug_shown, summary=summary)


def _ids(seqs: Iterable[int]) -> str:
    return ", ".join(f"0-{s}" for s in seqs)


def _cursor(state: cl.ClientState) -> str | None:
    return None if state.last_event_id is None else str(state.last_event_id)


# ---------------------------------------------------------------- 1. replay limit


def replay_limit(fixes: Fixes = ALL_FIXES) -> Outcome:
    """Replay limit 5, ten events missed: ``replay-truncated``, then a re-hydration."""
    limit = 5
    bench = Bench(fixes, replay_limit=limit)
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(1.0, "one event while connected", lambda: bench.publish(1))
    bench.script(2.0, "the user closes the tab: the client goes away",
                 lambda: bench.client_input(cl.Stop(now=bench.now)))
    bench.script(3.0, "ten events are published while the client is away",
                 lambda: bench.publish(10))
    bench.script(10.0, "the client comes back with its cursor",
                 lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(15.0, "one more event, live", lambda: bench.publish(1))
    bench.run_until(20.0)

    largest = max((rows for _, rows in bench.queries), default=0)
    unbounded = any(lim is None for lim, _ in bench.queries)
    truncated = "replay-truncated" in bench.signals
    rehydrated = any(kind == "rehydrated" for _, kind in bench.effects)
    missing = bench.missing()
    facts: dict[str, Fact] = {
        "replay_limit": limit, "missed_while_away": 10, "queries": len(bench.queries),
        "rows_read": sum(rows for _, rows in bench.queries), "largest_read": largest,
        "unbounded_query": unbounded, "truncated": truncated, "rehydrated": rehydrated,
        "replayed_row_by_row": sum(1 for s in bench.delivered if 2 <= s <= 11),
        "cursor": _cursor(bench.client), "missing": len(missing),
        "live": cl.is_live(bench.client),
    }
    fixed = (truncated and rehydrated and largest <= limit + 1 and not unbounded
             and not missing and cl.is_live(bench.client) and bench.client.last_event_id
             == EventId(0, 12))
    bug = largest > limit + 1 and not truncated and not rehydrated
    if truncated:
        summary = (f"replay-truncated after reading {largest} rows (limit {limit}); "
                   f"{'re-hydrated' if rehydrated else 'NOT re-hydrated'}; "
                   f"{'live' if cl.is_live(bench.client) else 'not live'} at {_cursor(bench.client)}")
    else:
        summary = (f"{'unbounded' if unbounded else 'bounded'} replay read {largest} rows "
                   f"(limit {limit}); no replay-truncated; "
                   f"{'re-hydrated' if rehydrated else 'no re-hydration'}")
    return _outcome("replay-limit", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- 2. replay failure


def replay_failure(fixes: Fixes = ALL_FIXES) -> Outcome:
    """The replay query throws: ``replay-failed``, then a re-hydration."""
    bench = Bench(fixes)
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(1.0, "one event while connected", lambda: bench.publish(1))
    bench.script(2.0, "the client goes away", lambda: bench.client_input(cl.Stop(now=bench.now)))
    bench.script(3.0, "three events are published while the client is away",
                 lambda: bench.publish(3))

    def break_replay() -> None:
        bench.fail_replays = 1
    bench.script(9.0, "postgres: the next replay query will throw", break_replay)
    bench.script(10.0, "the client comes back with its cursor",
                 lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(15.0, "one more event, live", lambda: bench.publish(1))
    bench.run_until(20.0)

    signalled = "replay-failed" in bench.signals
    rehydrated = any(kind == "rehydrated" for _, kind in bench.effects)
    missing = bench.missing()
    live = cl.is_live(bench.client)
    facts: dict[str, Fact] = {
        "query_failed": bench.failed_queries > 0, "replay_failed_sent": signalled,
        "rehydrated": rehydrated, "cursor": _cursor(bench.client), "missing": len(missing),
        "missing_ids": _ids(missing), "live": live,
    }
    fixed = (bench.failed_queries == 1 and signalled and rehydrated and not missing and live
             and bench.client.last_event_id == EventId(0, 5))
    bug = bench.failed_queries == 1 and not signalled and not rehydrated and live and bool(missing)
    if signalled:
        summary = (f"replay-failed sent; {'re-hydrated' if rehydrated else 'NOT re-hydrated'}; "
                   f"{'live' if live else 'not live'} at {_cursor(bench.client)}, "
                   f"{len(missing)} events missing")
    else:
        summary = (f"failure swallowed; client {'live' if live else 'not live'} at "
                   f"{_cursor(bench.client)} missing {len(missing)} events "
                   f"({_ids(missing) or 'none'})")
    return _outcome("replay-failure", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- 3. heartbeat race

#: How long a connect takes over the degraded link in the heartbeat-race scenario, seconds.
SLOW_CONNECT = 5.5


def heartbeat_race(fixes: Fixes = ALL_FIXES) -> Outcome:
    """The heartbeat check fires while a reconnect is in flight: the counter must not move."""
    bench = Bench(fixes)
    stall_at = 12.0
    watch: dict[str, Any] = {"max_in_flight": 0, "checks_connecting": 0, "monitor_at_open": None,
                             "probe": None, "opened_counter": None}

    def hook(event: cl.ClientInput, before: cl.ClientState, actions: list[Action]) -> None:
        state = bench.client
        if bench.now < stall_at:
            return
        if isinstance(event, cl.TimerFired) and event.timer == cl.HEARTBEAT \
                and before.status is cl.Status.CONNECTING:
            watch["checks_connecting"] += 1
        if isinstance(event, cl.StreamOpened):
            watch["opened_counter"] = before.attempts
        if state.status is cl.Status.CONNECTING and state.stream:
            watch["max_in_flight"] = max(watch["max_in_flight"], state.attempts)
        if any(isinstance(a, cl.OpenStream) for a in actions) and watch["probe"] is None:
            watch["monitor_at_open"] = state.monitor
            # The seed's own unit test: call handleProactiveReconnection() while
            # isConnecting is true (the monitor forced on), and watch the counter.
            probe_state = state._replace(monitor=True)
            after, _ = cl.step(bench.client_cfg, probe_state,
                               cl.TimerFired(timer=cl.HEARTBEAT, now=bench.now))
            watch["probe"] = after.attempts - probe_state.attempts
            bench.note("probe", "handleProactiveReconnection() fired while connecting: "
                                f"counter {probe_state.attempts} → {after.attempts}")
    bench.client_hooks.append(hook)

    def stall() -> None:
        bench.stall_stream()
        bench.connect_delay = SLOW_CONNECT
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(3.0, "one event", lambda: bench.publish(1))
    bench.script(stall_at, f"the stream stalls silently; new connects take {SLOW_CONNECT:g}s", stall)
    bench.run_until(40.0)

    attempts_made = sum(1 for t in bench.opens if t >= stall_at)
    counter = int(watch["max_in_flight"])
    probe = watch["probe"]
    live = cl.is_live(bench.client)
    facts: dict[str, Fact] = {
        "attempts_made": attempts_made, "counter": counter,
        "counter_when_opened": watch["opened_counter"],
        "checks_while_connecting": int(watch["checks_connecting"]),
        "monitor_stopped_before_reconnect": watch["monitor_at_open"] is False,
        "probe_counter_delta": probe, "live": live, "final_counter": bench.client.attempts,
    }
    fixed = (attempts_made == 1 and counter == attempts_made and probe == 0
             and watch["checks_connecting"] == 0 and watch["monitor_at_open"] is False and live)
    bug = counter > attempts_made
    if counter == attempts_made:
        summary = (f"counter stayed {counter} for {attempts_made} real attempt"
                   f"{'s' if attempts_made != 1 else ''}; probe +{probe}")
    else:
        summary = (f"counter {counter} after {attempts_made} real attempt"
                   f"{'s' if attempts_made != 1 else ''} "
                   f"({watch['checks_connecting']} checks while connecting)")
    return _outcome("heartbeat-race", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- 4. redis health


def redis_health(fixes: Fixes = ALL_FIXES, *, died_at: float = 30.5) -> Outcome:
    """The subscriber's link dies silently at ``died_at``: the sentinel detects it within 35 s.

    The default, 30.5 s, is just after the first sentinel came back: close to the worst
    case, a whole interval plus the timeout.
    """
    if not 0 < died_at < 60:
        raise ValueError(f"died_at must be in (0, 60) seconds, got {died_at}")
    bench = Bench(fixes)
    bound = bench.subscriber_cfg.detection_bound
    bench.script(0.0, "the replica's subscriber connects",
                 lambda: bench.subscriber_input(sb.Ready(now=bench.now)))
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(5.0, "one event", lambda: bench.publish(1))
    bench.script(died_at, "redis: the subscriber's connection dies silently",
                 bench.kill_redis_link)
    bench.script(died_at + 0.5, "an event while the link is dead", lambda: bench.publish(1))
    bench.script(died_at + 1.0, "another", lambda: bench.publish(1))
    bench.script(120.0, "one more event", lambda: bench.publish(1))
    horizon = 150.0
    bench.run_until(horizon)

    detected = next((s.at for s in bench.steps if s.actor == "subscriber"
                     and "HealthChanged(health=unhealthy" in s.text), None)
    delay = None if detected is None else round(detected - died_at, 6)
    missing = bench.missing()
    healthy = bench.subscriber.health is sb.Health.HEALTHY
    live = cl.is_live(bench.client)
    view = sb.view(bench.subscriber_cfg, bench.subscriber, bench.now)
    facts: dict[str, Fact] = {
        "died_at": died_at, "detected_at": detected, "detection_delay": delay,
        "detection_bound": bound, "resubscribed": bench.resubscribes,
        "resynced": bench.resyncs > 0, "health": view.state, "ready": view.ready,
        "missing": len(missing), "missing_ids": _ids(missing), "live": live,
        "recovered": healthy and not missing and live,
    }
    fixed = (delay is not None and 0 <= delay <= bound and healthy and live
             and (not missing or not fixes.resync_after_recovery))
    bug = detected is None and live and bool(missing)
    if delay is not None:
        summary = (f"detected {delay:g}s after the link died (bound {bound:g}s); "
                   f"{'healthy again' if healthy else view.state}, "
                   f"{len(missing)} events missing")
    else:
        summary = (f"never detected ({horizon - died_at:g}s after the link died); client live "
                   f"missing {len(missing)} events ({_ids(missing) or 'none'})")
    return _outcome("redis-health", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- 5. max reconnect


def max_reconnect(fixes: Fixes = ALL_FIXES, *, outage: str = "refused") -> Outcome:
    """Max attempts 3: ``failed``, cursor cleared; ``recover()`` re-hydrates, then reconnects.

    ``outage`` is how the replicas fail for 295 s: ``"refused"`` (every connect is refused,
    so attempts fail and back off) or ``"stalled"`` (every connect is accepted, then the
    stream stays silent, so the heartbeat monitor ends each attempt: the proactive path).
    """
    if outage not in ("refused", "stalled"):
        raise ValueError(f"outage must be 'refused' or 'stalled', got {outage!r}")
    max_attempts = 3
    bench = Bench(fixes, max_attempts=max_attempts)
    down_at, up_at, retry_at = 5.0, 300.0, 310.0
    watch: dict[str, Any] = {"failed_at": None, "cursor_when_failed": "unset", "counter_max": 0}

    def hook(event: cl.ClientInput, before: cl.ClientState, actions: list[Action]) -> None:
        state = bench.client
        watch["counter_max"] = max(watch["counter_max"], state.attempts)
        if state.status is cl.Status.FAILED and before.status is not cl.Status.FAILED:
            watch["failed_at"] = round(bench.now, 6)
            watch["cursor_when_failed"] = _cursor(state)
    bench.client_hooks.append(hook)

    def down() -> None:
        if outage == "refused":
            bench.refuse = True
        else:
            bench.stall_new_streams = True
        bench.drop_stream()

    def up() -> None:
        bench.refuse = bench.stall_new_streams = False

    def retry() -> None:
        if bench.client.status is cl.Status.FAILED:
            bench.client_input(cl.Recover(now=bench.now))
        else:
            bench.note("script", f"no Retry button to press: the client is "
                                 f"{bench.client.status.value}")
    bench.script(0.0, "client starts", lambda: bench.client_input(cl.Start(now=bench.now)))
    bench.script(1.0, "one event", lambda: bench.publish(1))
    bench.script(down_at, "every replica goes down: the stream drops, " + (
        "connects are refused" if outage == "refused" else
        "connects are accepted but stay silent"), down)
    bench.script(15.0, "an event while the replicas are down", lambda: bench.publish(1))
    bench.script(up_at, "the replicas are back", up)
    bench.script(retry_at, "the user presses Retry: recover()", retry)
    bench.script(320.0, "one more event, live", lambda: bench.publish(1))
    bench.run_until(330.0)

    attempts_made = sum(1 for t in bench.opens if down_at <= t < up_at)
    failed = watch["failed_at"] is not None
    after = [kind for t, kind in bench.effects if t >= retry_at]
    first_open = after.index("open") if "open" in after else None
    rehydrated_first = (first_open is not None and "rehydrate" in after[:first_open]
                        and "rehydrated" in after[:first_open])
    missing = bench.missing()
    live = cl.is_live(bench.client)
    facts: dict[str, Fact] = {
        "max_attempts": max_attempts, "attempts_made": attempts_made,
        "counter_max": int(watch["counter_max"]), "failed": failed,
        "failed_at": watch["failed_at"],
        "cursor_cleared": failed and watch["cursor_when_failed"] is None,
        "rehydrated_before_reconnect": rehydrated_first, "cursor": _cursor(bench.client),
        "missing": len(missing), "live": live,
        "recovered": failed and rehydrated_first and live and not missing,
    }
    fixed = (failed and attempts_made == max_attempts and watch["counter_max"] == max_attempts
             and watch["cursor_when_failed"] is None and rehydrated_first and live
             and not missing and bench.client.last_event_id == EventId(0, 3))
    bug = not failed and attempts_made > max_attempts
    if failed:
        summary = (f"failed after {attempts_made} real attempts (max {max_attempts}), cursor "
                   f"{'cleared' if watch['cursor_when_failed'] is None else 'KEPT'}; recover() "
                   f"{'re-hydrated, then reconnected' if rehydrated_first else 'did NOT re-hydrate first'}"
                   f"; {'live' if live else 'not live'} at {_cursor(bench.client)}")
    else:
        summary = (f"never failed: {attempts_made} attempts in {up_at - down_at:g}s of outage "
                   f"(max {max_attempts}), counter reached {watch['counter_max']}")
    return _outcome("max-reconnect", bench, facts, fixed=fixed, bug_shown=bug, summary=summary)


# ---------------------------------------------------------------- registry


class Scenario(NamedTuple):
    """A seed verification step: its name, the fix it verifies, seed item and what it does."""

    name: str
    fix: str
    item: int
    title: str
    run: Callable[[Fixes], Outcome]


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("replay-limit", "bounded-replay", 1,
             "replay limit 5, ten events published while the client is away", replay_limit),
    Scenario("replay-failure", "replay-failed-signal", 2,
             "the replay query throws on reconnect", replay_failure),
    Scenario("heartbeat-race", "heartbeat-guard", 3,
             "the heartbeat check fires while a reconnect is in flight", heartbeat_race),
    Scenario("redis-health", "subscriber-health", 4,
             "the subscriber's Redis connection dies silently", redis_health),
    Scenario("max-reconnect", "max-reconnect", 5,
             "max attempts 3, replicas down; then the user presses Retry", max_reconnect),
)}

assert all(resolve_fix_name(s.fix) == s.fix for s in SCENARIOS.values())
assert {s.fix for s in SCENARIOS.values()} == {i.name for i in FIXES if i.alias}


def run_scenario(name: str, fixes: Fixes = ALL_FIXES) -> Outcome:
    """Run the named scenario with ``fixes``; KeyError names the accepted scenarios."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; accepted: {', '.join(SCENARIOS)}") from None
    return scenario.run(fixes)
