"""Model and production agree: trace validation, counterexamples on the real stack, coverage.

* :mod:`sims.conform.traces` reads the JSON-lines traces ``service.trace`` writes.
* :mod:`sims.conform.search` checks that a trace is a behaviour of ``model.world``.
* :mod:`sims.conform.coverage` compares what real runs exercised with what the checker reaches.
* :mod:`sims.conform.stack` plays a checker counterexample on the live stack.
"""
