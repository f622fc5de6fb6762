"""Shared test configuration: Hypothesis profiles chosen by ``HYPOTHESIS_PROFILE``.

======  =================================================================  ==========
name    what it is for                                                     examples
======  =================================================================  ==========
dev     the default: quick feedback while editing                          50
ci      what ``.ci/run`` uses: more examples, derandomized (reproducible)  200
deep    nightly: long random runs that add to the example database        3000
======  =================================================================  ==========

``stateful_step_count`` grows with the profile too (25, 40, 120), so the stateful
tests in ``tests/stateful`` run longer worlds under ``ci`` and ``deep``. Tests that
need fixed settings (the teeth tests, anything with ``derandomize=True``) pin their
own and ignore the profile. The example database lives in ``.hypothesis/`` (ignored
by git).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, stateful_step_count=25, deadline=None)
settings.register_profile("ci", max_examples=200, stateful_step_count=40, deadline=None,
                          derandomize=True, print_blob=True)
settings.register_profile("deep", max_examples=3000, stateful_step_count=120, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
