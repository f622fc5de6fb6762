"""What every report notebook shares: its finding as JSON, its CSV, plot style, formatting.

A notebook runs with its working directory set to the output directory, so it
writes ``NAME.csv`` and ``NAME.json`` there by relative name and no path of the
machine that rendered it ends up in the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sims.reports.catalog import REPORTS

__all__ = ["FINDING_SUFFIX", "MISSING", "fmt_duration", "fmt_number", "load_finding", "merge_identical",
           "plot_style", "save_finding", "table", "write_csv"]

#: The finding of report NAME is saved as ``NAME.json`` next to its HTML.
FINDING_SUFFIX = ".json"
#: How a missing value reads in a report.
MISSING = "—"

_KNOWN = {r.name for r in REPORTS}


def _check_name(name: str) -> None:
    if name not in _KNOWN:
        raise ValueError(f"unknown report {name!r}; accepted: {', '.join(sorted(_KNOWN))}")


def _plain(value: Any) -> Any:
    """A JSON-friendly copy: numpy scalars to Python, NaN to None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def save_finding(name: str, finding: str, *, quick: bool, numbers: Mapping[str, Any] | None = None,
                 headline: Mapping[str, str] | None = None, out_dir: str | Path = ".") -> Path:
    """Write report ``name``'s one-line finding and its numbers to ``NAME.json``; return the path.

    ``headline`` holds the key numbers the page's banner shows, label to formatted value.
    """
    _check_name(name)
    if not finding.strip() or "\n" in finding.strip():
        raise ValueError("a finding is one non-empty line")
    data = {"name": name, "finding": finding.strip(), "quick": quick,
            "headline": {str(k): str(v) for k, v in (headline or {}).items()},
            "numbers": _plain(dict(numbers or {}))}
    path = Path(out_dir) / f"{name}{FINDING_SUFFIX}"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def load_finding(name: str, out_dir: str | Path = ".") -> dict[str, Any] | None:
    """The saved finding of report ``name``, or None when it has not been rendered."""
    path = Path(out_dir) / f"{name}{FINDING_SUFFIX}"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def write_csv(frame: pd.DataFrame, name: str, out_dir: str | Path = ".") -> Path:
    """Write the numbers behind report ``name``'s figures to ``NAME.csv``; return the path."""
    _check_name(name)
    path = Path(out_dir) / f"{name}.csv"
    frame.to_csv(path, index=False, float_format="%.6g")
    return path


def merge_identical(series: Mapping[str, pd.Series]) -> dict[str, pd.Series]:
    """Lines to draw: series with equal values drawn once, under their labels joined by " = "."""
    groups: list[tuple[list[str], pd.Series]] = []
    for label, values in series.items():
        for labels, first in groups:
            if len(first) == len(values) and np.array_equal(first.to_numpy(), values.to_numpy()):
                labels.append(label)
                break
        else:
            groups.append(([label], values))
    return {" = ".join(labels): values for labels, values in groups}


def plot_style() -> None:
    """Small, readable matplotlib defaults, so the embedded PNGs keep the HTML light."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": 90,
        "savefig.dpi": 90,
        "figure.figsize": (8.0, 4.2),
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "font.size": 10,
    })


def fmt_duration(seconds: float) -> str:
    """Seconds in words: ``1381`` -> ``'23 min 1 s'``, ``0.25`` -> ``'0.25 s'``."""
    if seconds != seconds:
        return MISSING
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = ([f"{hours} h"] if hours else []) + ([f"{minutes} min"] if minutes else [])
    parts += [f"{secs} s"] if secs or not parts else []
    return " ".join(parts)


def fmt_number(value: Any, digits: int = 2) -> str:
    """A number for a reader: integers as integers with thousands separators, NaN as a dash."""
    if value is None or isinstance(value, str):
        return MISSING if value is None else value
    if isinstance(value, bool) or str(getattr(value, "dtype", "")) == "bool":
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return MISSING
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.{digits}f}"


def table(frame: pd.DataFrame, digits: int = 2) -> Any:
    """A DataFrame for display: no index, whole numbers as integers, NaN as a dash."""
    def shown(value: object) -> str:
        return fmt_number(value, digits)

    return frame.style.hide(axis="index").format(shown, na_rep=MISSING)
