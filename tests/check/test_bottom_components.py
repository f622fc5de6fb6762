"""The checker's own bottom-component search agrees with networkx on random graphs."""

from __future__ import annotations

import random
from array import array

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sims.check.partition import SettledPart
from sims.check.trace import SettledGraph, bottom_components, bottom_components_dense

graphs = st.dictionaries(
    st.integers(0, 30), st.lists(st.integers(0, 35), max_size=4), max_size=30)


def _expected(edges: dict[int, list[int]]) -> list[frozenset[int]]:
    g = nx.DiGraph()
    g.add_nodes_from(edges)
    g.add_edges_from((u, v) for u, vs in edges.items() for v in vs if v in edges)
    out = []
    for comp in nx.strongly_connected_components(g):
        if all(v in comp for u in comp for v in edges[u]):  # nothing leaves, nothing leaks
            out.append(frozenset(comp))
    return sorted(out, key=sorted)


@settings(max_examples=300, deadline=None)
@given(graphs)
def test_bottom_components_match_networkx(edges: dict[int, list[int]]) -> None:
    got = sorted((frozenset(c) for c in bottom_components(edges)), key=sorted)
    assert got == _expected(edges)


def test_a_cycle_with_a_way_out_is_not_bottom() -> None:
    assert list(bottom_components({1: [2], 2: [1, 3], 3: [3]})) == [{3}]
    assert list(bottom_components({1: [2], 2: [1, 99]})) == []  # 99 is not settled
    assert sorted(map(sorted, bottom_components({1: [2], 2: [1], 5: [5]}))) == [[1, 2], [5]]


@settings(max_examples=200, deadline=None)
@given(graphs, st.sets(st.integers(0, 30)), st.integers(1, 3))
def test_settled_graph_from_partitions_keeps_every_edge_and_mark(
        edges: dict[int, list[int]], converged: set[int], parts: int) -> None:
    """Partitions' flat arrays, merged and numbered densely, give the same graph back."""
    split: list[SettledPart] = []
    for p in range(parts):
        keys = [u for u in sorted(edges) if u % parts == p]
        ends, targets = array("q"), array("q")
        for u in keys:
            targets.extend(edges[u])
            ends.append(len(targets))
        conv = array("q", [u for u in keys if u in converged])
        undet = [u for u in keys if u % 2]
        split.append((array("q", keys), ends, targets, conv, array("q", undet),
                      array("q", [u + 1 for u in undet])))
    graph = SettledGraph(split)
    assert sorted(int(fp) for fp in graph.fps) == sorted(edges)
    for u, vs in edges.items():
        dense = graph.index(u)
        assert [int(graph.fps[v]) if v >= 0 else None for v in graph.successors(dense)] == [
            v if v in edges else None for v in vs]
        assert bool(graph.conv[dense]) == (u in converged)
        assert int(graph.undet[dense]) == (u + 1 if u % 2 else 0)
    got = sorted((frozenset(int(graph.fps[u]) for u in c)
                  for c in bottom_components_dense(len(graph.fps), graph.starts, graph.targets)),
                 key=sorted)
    assert got == _expected(edges)


def test_chunked_numbering_and_comparing_agree_with_networkx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Successors numbered and edges compared two at a time: the same components."""
    import sims.check.trace as trace

    monkeypatch.setattr(trace, "CHUNK", 2)
    rng = random.Random(7)
    for _ in range(300):
        edges = {rng.randint(0, 30): [rng.randint(0, 35) for _ in range(rng.randint(0, 5))]
                 for _ in range(rng.randint(0, 30))}
        got = sorted((frozenset(c) for c in bottom_components(edges)), key=sorted)
        assert got == _expected(edges)
