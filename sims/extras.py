"""Which optional extra provides which third-party module, and the line that installs it.

The base distribution (``pip install sselab``) holds the verified core alone:
``model/`` and the world import only the standard library. Every engine's
libraries come with an extra named in ``pyproject.toml``; this module is the one
place that knows which import belongs to which extra, so that a command run
without its extra can say exactly what to install instead of a traceback.

``sims/cli.py`` asks :func:`missing_extra` about every :class:`ImportError` it
meets, both while registering sub-commands and while running one, so no
sub-command needs its own check. Code outside the command line that wants to fail
early calls :func:`require`.

Add a row to :data:`MODULE_EXTRA` when an extra gains a library imported by name.
"""

from __future__ import annotations

import importlib.util

__all__ = ["MODULE_EXTRA", "MissingExtraError", "install_line", "missing_extra", "require"]

#: Top-level import name -> the extra (in ``pyproject.toml``) that installs it.
MODULE_EXTRA: dict[str, str] = {
    # check
    "networkx": "check",
    "scipy": "check",
    # sim
    "simpy": "sim",
    "pandas": "sim",
    "numpy": "sim",
    "pyarrow": "sim",
    "dask": "sim",
    "distributed": "sim",
    "tqdm": "sim",
    "yaml": "sim",
    # service
    "fastapi": "service",
    "starlette": "service",
    "uvicorn": "service",
    "sse_starlette": "service",
    "redis": "service",
    "psycopg": "service",
    "psycopg_pool": "service",
    "httpx": "service",
    "httpx_sse": "service",
    "jwt": "service",
    "prometheus_client": "service",
    # reports
    "matplotlib": "reports",
    "papermill": "reports",
    "nbconvert": "reports",
    "nbformat": "reports",
    "ipykernel": "reports",
    "IPython": "reports",
}


class MissingExtraError(ImportError):
    """A library of an optional extra is not installed; the message says how to install it."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(f"sselab needs the '{extra}' extra for this ({module} is not installed):\n"
                         f"  {install_line(extra)}", name=module)
        self.extra = extra
        self.module = module


def install_line(extra: str) -> str:
    """The exact shell line that installs ``extra``."""
    return f"pip install 'sselab[{extra}]'"


def missing_extra(exc: ImportError) -> str | None:
    """The extra whose absence caused ``exc``, or None if it is not a known extra's module."""
    if isinstance(exc, MissingExtraError):
        return exc.extra
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    return MODULE_EXTRA.get(exc.name.partition(".")[0])


def require(extra: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` unless every one of ``modules`` can be imported."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra, module)
