"""The shared vocabulary: fix names and aliases, the fault language, event ids."""

from __future__ import annotations

import dataclasses
import re

import pytest

from model.core import (
    EventId,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from model.faults import FAULTS, Fault, FaultError, fault_from_mapping, label, parse_fault
from model.fixes import FIXES, Fixes, UnknownFixError, resolve_fix_name

SEED_FIXES = ["bounded-replay", "replay-failed-signal", "heartbeat-guard", "subscriber-health",
              "max-reconnect"]

# ---------------------------------------------------------------- fixes


def test_the_five_seed_fixes_have_aliases_f1_to_f5_in_order() -> None:
    assert [(i.alias, i.name) for i in FIXES if i.alias] == [
        (f"F{n}", name) for n, name in enumerate(SEED_FIXES, 1)]
    assert {i.field for i in FIXES} == {f.name for f in dataclasses.fields(Fixes)}
    assert all(i.name == i.field.replace("_", "-") for i in FIXES)


@pytest.mark.parametrize("n,name", list(enumerate(SEED_FIXES, 1)))
def test_aliases_names_and_fields_resolve_to_the_kebab_case_name(n: int, name: str) -> None:
    for text in (f"F{n}", f"f{n}", f" F{n} ", name, name.upper(), name.replace("-", "_")):
        assert resolve_fix_name(text) == name
    assert Fixes().without(f"F{n}") == Fixes().without(name)
    assert not Fixes().without(f"F{n}").enabled(name)
    assert Fixes().without(f"F{n}").off() == (name,)


def test_an_unknown_fix_error_lists_every_accepted_name() -> None:
    with pytest.raises(UnknownFixError) as info:
        resolve_fix_name("F6")
    message = str(info.value)
    assert message.startswith("unknown fix 'F6'; accepted: ")
    for i in FIXES:
        assert i.name in message
        if i.alias:
            assert f"{i.name} ({i.alias})" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text,off", [
    ("all", ()),
    ("all,-F3", ("heartbeat-guard",)),
    ("all, -F1 , -max-reconnect", ("bounded-replay", "max-reconnect")),
    ("none", tuple(i.name for i in FIXES)),
])
def test_fixes_parse(text: str, off: tuple[str, ...]) -> None:
    assert Fixes.parse(text).off() == off


def test_fixes_parse_a_list_switches_on_only_those() -> None:
    fixes = Fixes.parse("F1,+F4,stable-reset")
    assert fixes.on() == ("bounded-replay", "subscriber-health", "stable-reset")
    assert fixes == Fixes.from_names(["F1", "F4", "stable-reset"])
    assert Fixes.parse("none,F2") == Fixes.none().with_("F2")


@pytest.mark.parametrize("fixes", [Fixes(), Fixes.none(), Fixes().without("F2", "F5"),
                                   Fixes.none().with_("F3")])
def test_fixes_str_parses_back(fixes: Fixes) -> None:
    assert Fixes.parse(str(fixes)) == fixes


@pytest.mark.parametrize("text", ["", " , ", "all,-F9", "bogus"])
def test_fixes_parse_errors_say_what_is_accepted(text: str) -> None:
    with pytest.raises(UnknownFixError, match=r"accepted|use 'all', 'none'"):
        Fixes.parse(text)


# ---------------------------------------------------------------- faults


def full_fault(kind: str) -> Fault:
    """A fault of this kind with every parameter set to a non-default value."""
    values: dict[str, float] = {}
    for param in FAULTS[kind].params:
        if param.name in ("fraction", "rate"):
            values[param.name] = 0.25
        elif param.kind is int:
            values[param.name] = 3
        else:
            values[param.name] = 12.5
    return fault_from_mapping({"fault": kind, **values})


@pytest.mark.parametrize("kind", FAULTS)
def test_every_fault_round_trips_through_str(kind: str) -> None:
    required = {p.name: 30 for p in FAULTS[kind].params if p.default is None}
    for fault in (full_fault(kind), fault_from_mapping({"fault": kind, **required})):
        text = str(fault)
        assert text.startswith(f"{kind}(at=")
        assert parse_fault(text) == fault
        assert str(parse_fault(text)) == text


def test_fault_parameters_default_and_label() -> None:
    fault = parse_fault("redis.outage(at=1800, duration=60)")
    assert (fault.kind, fault.at, fault.end) == ("redis.outage", 1800.0, 1860.0)
    assert str(fault) == "redis.outage(at=1800, duration=60)"
    assert parse_fault("postgres.replay_fails(at=5)").get("count") == 1
    assert label("redis.subscriber_dies", replica=0) == "redis: subscriber of replica 0 dies silently"


@pytest.mark.parametrize("text,expected", [
    ("redis.outage", re.escape("write it as 'kind(at=SECONDS, name=value, ...)'")),
    ("redis.meltdown(at=1)", "unknown fault 'redis.meltdown'; accepted: network.drop"),
    ("redis.outage(duration=5)", "redis.outage needs at"),
    ("redis.outage(at=1)", "redis.outage needs duration"),
    ("redis.outage(at=1, duration=5, replica=2)",
     re.escape("takes no ['replica']; it takes at, duration")),
    ("redis.outage(at=1, duration)", "'duration' is not name=value"),
    ("redis.outage(at=soon, duration=5)", "at must be a number, got 'soon'"),
    ("network.drop(at=-1)", "at must be >= 0"),
    ("network.drop(at=1, fraction=2)", r"fraction must be in \[0, 1\]"),
    ("postgres.replay_fails(at=1, count=1.5)", "count must be a whole number"),
])
def test_fault_errors_say_what_is_accepted(text: str, expected: str) -> None:
    with pytest.raises(FaultError, match=expected):
        parse_fault(text)


def test_fault_from_mapping_needs_a_table() -> None:
    with pytest.raises(FaultError, match="expected a table with 'fault' and 'at'"):
        fault_from_mapping(["redis.outage"])  # type: ignore[arg-type]


# ---------------------------------------------------------------- event ids


@pytest.mark.parametrize("epoch,seq", [(0, 0), (0, 42), (3, 1), (10**17, 10**17 + 5)])
def test_event_id_round_trips(epoch: int, seq: int) -> None:
    eid = EventId(epoch, seq)
    assert str(eid) == f"{epoch}-{seq}"
    assert EventId.parse(str(eid)) == eid
    assert EventId.parse(f"  {eid}\n") == eid


@pytest.mark.parametrize("text", ["", " ", "42", "0-", "-1", "-1-2", "1--2", "01-2", "1-02",
                                  "a-b", "1-2-3", "1.0-2", "0x1-2", "1 -2", "١-٢",
                                  "1-" + "9" * 19, "9" * 100])
def test_malformed_event_ids_raise_remote_protocol_error_with_a_hint(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        EventId.parse(text)
    err = info.value
    assert err.message.startswith("malformed event id")
    assert "EPOCH-SEQ" in err.hint and "'0-42'" in err.hint
    assert len(err.message) < 80  # a huge header is not echoed back whole
    assert isinstance(err, ProtocolError) and not isinstance(err, LocalProtocolError)


def test_a_non_string_event_id_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match=re.escape("malformed event id None")):
        EventId.parse(None)  # type: ignore[arg-type]


def test_event_ids_order_by_epoch_then_seq() -> None:
    assert EventId(0, 9) < EventId(1, 0) < EventId(1, 1)
