"""The computations behind the Jupyter reports in ``notebooks/``, rendered by ``sselab report``.

Each notebook stays thin: it sets its parameters, calls one module here, plots
the DataFrame it gets back and states its finding. The modules are typed and
tested like the rest of ``sims``:

=======================  ===================================================================
module                   what it computes
=======================  ===================================================================
``catalog``              the reports: name, title and the on-call question each answers
``common``               findings JSON, CSV output, plot style, number formatting
``backoff_timing``       per-attempt and cumulative backoff, sampled through the client
                         machine, against the closed forms of ``model.backoff``
``aws_jitter``           a SimPy reproduction of the AWS "Exponential Backoff And Jitter"
                         OCC experiment, and the post's claims judged on our numbers
``herd``                 a reconnect herd after an outage, per policy, against the exact
                         arrival density computed from the delay distributions
``fleet``                runs of the SimPy fleet (``sims.des``), per-second and 100 ms rates
                         from its frames, the herd, storm and long-disconnect table rows
                         and the staleness series
``detection``            sentinel detection latencies against their uniform closed form
                         (the Kolmogorov-Smirnov distance and its 1 % critical value)
``outage``               real clients over outage lengths: percentiles, time to failed
``policies``             ``--policy``: specs, real clients and ``module:function``
``checker``              ``sselab check`` with defaults and with each fix switched off
``provenance``           code hashes and ``sselab report --check``
``readme``               the README's generated block of findings
``render``               papermill execution, nbconvert HTML, banners and ``index.html``
=======================  ===================================================================
"""
