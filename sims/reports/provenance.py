"""Where a report came from, and whether it is still current.

A rendered report is only worth reading if it still describes the code. Each
report's JSON therefore records a **stamp**: the commit it was rendered at, the
date, quick or full, the parameters, and a hash of every file its numbers
depend on -- ``model/``, ``sims/reports/``, ``sims/des/`` and its own notebook
(:func:`code_files`). ``sselab report --check`` recomputes the hashes and names
each report whose code has changed since (:func:`stale_reports`), so a change
that moves a figure cannot land next to the old page: CI runs the check.

The hash is of file contents, not of git objects, so a working tree with
uncommitted edits is judged by what it holds. Files are identified by their
path relative to the repository, so no path of this machine enters a report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["CODE_DIRS", "Stale", "code_files", "code_hash", "file_hashes", "git_commit",
           "repo_root", "stale_reports", "stamp"]

#: The directories whose code every report depends on (its notebook is added per report).
CODE_DIRS: tuple[str, ...] = ("model", "sims/reports", "sims/des")
_SUFFIXES = (".py", ".toml")
_ROOT = Path(__file__).resolve().parents[2]


def repo_root() -> Path:
    """The top of the repository this module belongs to."""
    return _ROOT


def code_files(name: str, root: Path | None = None) -> list[str]:
    """The files report ``name`` depends on, as sorted repository-relative POSIX paths."""
    base = root or _ROOT
    found = [p for d in CODE_DIRS for p in (base / d).rglob("*")
             if p.is_file() and p.suffix in _SUFFIXES and "__pycache__" not in p.parts]
    found.append(base / "notebooks" / f"{name}.ipynb")
    return sorted(p.relative_to(base).as_posix() for p in found)


def file_hashes(name: str, root: Path | None = None) -> dict[str, str]:
    """Each file of :func:`code_files` with the first 12 hex digits of its SHA-256."""
    base = root or _ROOT
    out = {}
    for rel in code_files(name, base):
        path = base / rel
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"
        out[rel] = digest[:12]
    return out


def code_hash(files: Mapping[str, str]) -> str:
    """One SHA-256 (16 hex digits) over the per-file hashes of :func:`file_hashes`."""
    text = "\n".join(f"{path} {digest}" for path, digest in sorted(files.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def git_commit(root: Path | None = None) -> tuple[str, bool]:
    """The checked-out commit (12 hex digits, ``"unknown"`` outside git) and whether the code is dirty."""
    base = root or _ROOT
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=base,
                              capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *CODE_DIRS, "notebooks"],
                               cwd=base, capture_output=True, text=True, check=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return head, bool(dirty)


def stamp(name: str, *, quick: bool, params: Mapping[str, Any],
          root: Path | None = None) -> dict[str, Any]:
    """The provenance recorded in report ``name``'s JSON at render time."""
    files = file_hashes(name, root)
    commit, dirty = git_commit(root)
    return {"commit": commit, "dirty": dirty,
            "rendered": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if quick else "full", "params": dict(params),
            "code_hash": code_hash(files), "code_files": files}


class Stale(NamedTuple):
    """A report that is not current, and why."""

    name: str
    reason: str


def _changed(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    return sorted(p for p in set(recorded) | set(now) if recorded.get(p) != now.get(p))


def stale_reports(names: Sequence[str], out: Path, root: Path | None = None) -> list[Stale]:
    """The reports in ``out`` that are missing, quick, custom or rendered from other code."""
    from sims.reports.common import load_finding

    found = []
    for name in names:
        data = load_finding(name, out)
        if data is None or "code_hash" not in data:
            found.append(Stale(name, "not rendered with a provenance stamp"))
            continue
        files = file_hashes(name, root)
        if data["code_hash"] != code_hash(files):
            changed = _changed(data.get("code_files", {}), files)
            shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4
                                               else "")
            found.append(Stale(name, f"rendered at {data.get('commit', '?')}; changed since: "
                                     f"{shown or 'unknown files'}"))
        elif data.get("mode") != "full":
            found.append(Stale(name, "a --quick render; the committed reports are full renders"))
        elif data.get("params"):
            shown = ", ".join(f"{k}={v}" for k, v in data["params"].items())
            found.append(Stale(name, f"rendered with custom parameters ({shown})"))
    return found
