"""The checker's own bottom-component search agrees with networkx on random graphs."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from sims.check.trace import bottom_components

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
