"""Execute the report notebooks with papermill and render them to HTML with nbconvert.

How a report is made. ``notebooks/NAME.ipynb`` (committed without outputs) is
executed by papermill with the parameters ``quick``, ``seed`` and any the user
gave (``--param``, ``--policy``) injected after its ``parameters`` cell, on a
kernel that runs *this* Python interpreter (a kernelspec written to a temporary
``JUPYTER_PATH`` for the run, so no set-up and no other environment's
``python3`` kernel can be picked up; the kernel's own log is kept to critical
messages, since a cell's errors reach the page anyway). The kernel's working
directory is the output directory, where the notebook writes ``NAME.csv`` (the
numbers behind its figures) and ``NAME.json`` (its one-line
finding). The render adds its provenance stamp to the JSON
(:mod:`sims.reports.provenance`: commit, date, quick or full, parameters, code
hash). The executed notebook becomes ``NAME.html`` through nbconvert's ``lab``
template, figures inlined as PNG data, with the code excluded
(``TemplateExporter.exclude_input``) and both parameters cells (the notebook's
and papermill's injected one) removed by ``TagRemovePreprocessor``; the page
opens with a banner built from the JSON (finding, key numbers, commit, date,
mode, parameters, sources, a link back to the index) and ends with the code in
a collapsed ``<details>``. Any absolute path of this machine left in the page
is replaced by a placeholder. ``index.html`` links every report rendered into
the directory, with its finding; rendering into ``reports/`` also rewrites the
README's generated block (:mod:`sims.reports.readme`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sims.reports.catalog import REPORTS, ReportInfo
from sims.reports.common import load_finding
from sims.reports.provenance import stamp
from sims.reports.readme import readme_block, update_readme

__all__ = ["KERNEL_NAME", "PARAMETER_TAGS", "Rendered", "banner", "default_out", "notebooks_dir",
           "readme_path", "render", "render_all", "scrub_paths", "write_index"]

#: Cell tags of the notebook's own parameters cell and of papermill's injected one.
PARAMETER_TAGS = ("parameters", "injected-parameters")

#: The kernel name the temporary kernelspec is registered under.
KERNEL_NAME = "sselab-python"
_ROOT = Path(__file__).resolve().parents[2]


def notebooks_dir() -> Path:
    """Where the notebooks live: ``notebooks/`` at the top of the repository."""
    return _ROOT / "notebooks"


def default_out() -> Path:
    """Where reports go by default: ``reports/`` at the top of the repository."""
    return _ROOT / "reports"


def readme_path() -> Path:
    """The README whose generated block quotes the findings of ``reports/``."""
    return _ROOT / "README.md"


@dataclasses.dataclass(frozen=True)
class Rendered:
    """One report rendered: where its files are, how long it took, and whether it ran clean."""

    name: str
    html: Path
    csv: Path
    seconds: float
    ok: bool
    error: str = ""
    finding: str = ""


@contextlib.contextmanager
def _kernelspec() -> Iterator[str]:
    """A kernelspec for this interpreter on a temporary ``JUPYTER_PATH``; yields the kernel name."""
    with tempfile.TemporaryDirectory(prefix="sselab-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        # The caller's directory goes on the kernel's path, so ``--policy module:function``
        # imports there as it did when the command validated it.
        path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                         "--IPKernelApp.log_level=CRITICAL"],
                "display_name": "sselab (this Python)", "language": "python",
                "env": {"PYTHONHASHSEED": "0", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                        "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                        "PYTHONPATH": path}}
        (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + old if old else "")
        try:
            yield KERNEL_NAME
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


_DATA_URI = re.compile(r"(data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]+)")


def scrub_paths(text: str, paths: Sequence[tuple[str | Path, str]]) -> str:
    """Replace each absolute path (longest first) with its placeholder, outside base64 data."""
    pairs = sorted(((str(p), r) for p, r in paths if str(p) not in ("", "/")),
                   key=lambda pr: len(pr[0]), reverse=True)
    parts = _DATA_URI.split(text)
    for i in range(0, len(parts), 2):  # odd parts are the data URIs themselves
        for path, placeholder in pairs:
            parts[i] = parts[i].replace(path, placeholder)
    return "".join(parts)


def _machine_paths(out: Path, tmp: str) -> list[tuple[str | Path, str]]:
    home = Path.home()
    return [(out.resolve(), "reports"), (out, "reports"), (_ROOT, "<repo>"), (tmp, "<tmp>"),
            (sys.prefix, "<venv>"), (sys.base_prefix, "<python>"), (tempfile.gettempdir(), "<tmp>"),
            (home, "~")]


def _to_html(nb: Any, title: str) -> str:
    import nbconvert
    import nbconvert.preprocessors

    remover: Any = nbconvert.preprocessors.TagRemovePreprocessor  # untyped, as is the exporter
    exporter_cls: Any = nbconvert.HTMLExporter  # untyped: keep mypy --strict quiet
    exporter = exporter_cls(template_name="lab", embed_images=True, exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.register_preprocessor(remover(remove_cell_tags=set(PARAMETER_TAGS)), enabled=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return str(body)


_BANNER_STYLE = """
<style>
.sselab-banner { font: 15px/1.45 system-ui, sans-serif; max-width: 62rem; margin: 1.5rem auto 1rem;
  padding: 1rem 1.3rem; border: 1px solid #cfd8e3; border-left: 6px solid #2c6fbb;
  border-radius: 6px; background: #f6f9fc; color: #1b1b1b; }
.sselab-banner nav { font-size: .85rem; color: #555; }
.sselab-banner h1 { font-size: 1.5rem; margin: .3rem 0 .1rem; }
.sselab-banner .q { color: #555; font-style: italic; margin: 0 0 .6rem; }
.sselab-banner .finding { font-size: 1.1rem; font-weight: 600; margin: .4rem 0; }
.sselab-banner .failed { color: #a31515; font-weight: 600; }
.sselab-banner dl { display: flex; flex-wrap: wrap; gap: .3rem 1.6rem; margin: .6rem 0; }
.sselab-banner dl div { min-width: 9rem; }
.sselab-banner dt { font-size: .78rem; color: #666; text-transform: uppercase; letter-spacing: .03em; }
.sselab-banner dd { margin: 0; font-size: 1.05rem; font-weight: 600; }
.sselab-banner .stamp, .sselab-banner .sources { font-size: .82rem; color: #555; margin: .3rem 0 0; }
.sselab-code { max-width: 62rem; margin: 2rem auto; font: 14px system-ui, sans-serif; }
.sselab-code pre { background: #f5f5f5; padding: .8rem; overflow-x: auto; font-size: 12px; }
</style>
"""


def banner(info: ReportInfo, data: dict[str, Any] | None, error: str = "") -> str:
    """The page's opening: finding, key numbers, provenance, sources and the way back to the index."""
    e = html.escape
    d = data or {}
    links = ['<a href="index.html">&larr; all reports</a>',
             f'<a href="{info.name}.csv">numbers (CSV)</a>',
             f'<a href="{info.name}.json">finding (JSON)</a>',
             f'<a href="../notebooks/{info.name}.ipynb">notebook</a>']
    parts = [_BANNER_STYLE, '<header class="sselab-banner">', "<nav>" + " · ".join(links) + "</nav>",
             f"<h1>{e(info.title)}</h1>", f'<p class="q">{e(info.question)}</p>']
    if error:
        parts.append(f'<p class="failed">This render FAILED: {e(error)}</p>')
    if d.get("finding"):
        parts.append(f'<p class="finding">{e(str(d["finding"]))}</p>')
    headline = d.get("headline") or {}
    if headline:
        parts.append("<dl>" + "".join(f"<div><dt>{e(str(k))}</dt><dd>{e(str(v))}</dd></div>"
                                      for k, v in headline.items()) + "</dl>")
    if d:
        params = d.get("params") or {}
        shown = (", ".join(f"{k}={v}" for k, v in params.items()) if params
                 else "the notebook's defaults")
        commit = str(d.get("commit", "unknown")) + (" with uncommitted changes" if d.get("dirty")
                                                    else "")
        parts.append(f'<p class="stamp">Rendered {e(str(d.get("rendered", "?")))} from commit '
                     f'<code>{e(commit)}</code> · {e(str(d.get("mode", "?")))} run · parameters: '
                     f'{e(shown)} · code hash <code>{e(str(d.get("code_hash", "?")))}</code> '
                     f'(<code>sselab report --check</code> says if it is still current)</p>')
    if info.sources:
        parts.append('<p class="sources">Sources: ' + "; ".join(
            f'<a href="{e(s.url)}">{e(s.label)}</a>' for s in info.sources) + "</p>")
    parts.append("</header>")
    return "\n".join(parts)


def _code_details(nb: Any) -> str:
    cells = [c.source for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    body = "\n\n# ----\n\n".join(cells)
    return ('<details class="sselab-code"><summary>Show the code behind this page</summary>'
            f"<pre>{html.escape(body)}</pre></details>")


def _page(info: ReportInfo, nb: Any, data: dict[str, Any] | None, error: str) -> str:
    page = _to_html(nb, f"sselab report: {info.title}")
    top = banner(info, data, error)
    page, n = re.subn(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + top, page, count=1)
    if not n:
        page = top + page
    tail = _code_details(nb)
    idx = page.rfind("</body>")
    return page[:idx] + tail + "\n" + page[idx:] if idx >= 0 else page + tail


def render(info: ReportInfo, out: Path, *, quick: bool, seed: int = 1,
           params: dict[str, Any] | None = None) -> Rendered:
    """Execute one notebook into ``out`` and write its HTML; never raises for a failing notebook."""
    import nbformat
    import papermill as pm

    src = notebooks_dir() / f"{info.name}.ipynb"
    html_path, csv_path = out / f"{info.name}.html", out / f"{info.name}.csv"
    for stale in (csv_path, out / f"{info.name}.json"):  # never report last run's finding
        stale.unlink(missing_ok=True)
    given = dict(params or {})
    started = time.perf_counter()
    error = ""
    with tempfile.TemporaryDirectory(prefix="sselab-report-") as tmp, _kernelspec() as kernel:
        executed = Path(tmp) / f"{info.name}.ipynb"
        try:
            pm.execute_notebook(str(src), str(executed),
                                parameters={"quick": quick, "seed": seed, **given},
                                kernel_name=kernel, language="python", cwd=str(out), progress_bar=False,
                                log_output=False, request_save_on_cell_execute=False)
        except Exception as exc:  # a failing cell: keep its page, report the error
            error = _first_line(exc)
        seconds = time.perf_counter() - started
        finding = load_finding(info.name, out)
        if not error and finding is None:
            error = f"the notebook wrote no {info.name}.json finding"
        if not error and not csv_path.exists():
            error = f"the notebook wrote no {info.name}.csv"
        if finding is not None:
            recorded = {**given, **({"seed": seed} if seed != 1 else {})}
            finding.update({"title": info.title, "question": info.question,
                            "render_seconds": round(seconds, 1),
                            **stamp(info.name, quick=quick, params=recorded, root=notebooks_dir().parent)})
            (out / f"{info.name}.json").write_text(json.dumps(finding, indent=2) + "\n",
                                                   encoding="utf-8")
        if executed.exists():
            read: Any = nbformat.read
            nb = read(str(executed), as_version=4)
            page = _page(info, nb, finding, error)
            html_path.write_text(scrub_paths(page, _machine_paths(out, tmp)), encoding="utf-8")
    return Rendered(info.name, html_path, csv_path, seconds, not error, error,
                    (finding or {}).get("finding", ""))


def _first_line(exc: BaseException) -> str:
    """The failing cell and the exception's last ``Name: message`` line, from papermill's error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    cell = next((m.group(1) for ln in lines if (m := re.search(r'at "(In \[\d+\])"', ln))), "")
    named = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*: ", ln)]
    message = named[-1] if named else (lines[-1] if lines else exc.__class__.__name__)
    return f"{cell}: {message}" if cell else message


def render_all(names: Sequence[str], out: Path, *, quick: bool, seed: int = 1,
               params: dict[str, dict[str, Any]] | None = None, echo: Any = None) -> list[Rendered]:
    """Render the named reports in index order, then rewrite ``index.html`` (and the README block).

    ``params`` maps a report name to the extra parameters its notebook is given.
    """
    logging.getLogger("papermill").setLevel(logging.ERROR)
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for info in REPORTS:
        if info.name not in names:
            continue
        if echo is not None:
            echo(f"{info.name:<16} rendering ({'quick' if quick else 'full'}) ...")
        result = render(info, out, quick=quick, seed=seed, params=(params or {}).get(info.name))
        done.append(result)
        if echo is not None:
            state = "ok" if result.ok else f"FAILED: {result.error}"
            echo(f"{info.name:<16} {result.seconds:6.1f} s  {state}"
                 + (f"\n{'':<16} {result.finding}" if result.finding else ""))
    write_index(out)
    if out.resolve() == default_out().resolve() and readme_path().exists():
        if update_readme(readme_path(), readme_block(out)) and echo is not None:
            echo("README.md: generated reports block rewritten")
    return done


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem;
       color: #1b1b1b; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .55rem .6rem; border-bottom: 1px solid #ddd; }
th { font-size: .85rem; text-transform: uppercase; letter-spacing: .03em; color: #666; }
td.q { color: #555; font-style: italic; }
.mode { font-size: .8rem; color: #777; white-space: nowrap; }
.missing { color: #a33; }
code { background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; }
"""


def write_index(out: Path) -> Path:
    """Write ``index.html``: every report rendered into ``out``, linked, with its finding."""
    rows = []
    for info in REPORTS:
        data = load_finding(info.name, out)
        page = out / f"{info.name}.html"
        if data is None or not page.exists():
            rows.append(f'<tr><td>{html.escape(info.title)}</td><td class="q">'
                        f'{html.escape(info.question)}</td><td class="missing" colspan="2">not '
                        f'rendered yet: <code>sselab report --only {info.name}</code></td></tr>')
            continue
        mode = "quick run" if data.get("quick") else "full run"
        secs = data.get("render_seconds")
        mode += f", {secs:g} s" if isinstance(secs, int | float) else ""
        if data.get("commit"):
            mode += f" · {data['commit']}, {str(data.get('rendered', ''))[:10]}"
        if data.get("params"):
            mode += " · " + ", ".join(f"{k}={v}" for k, v in data["params"].items())
        rows.append(
            f'<tr><td><a href="{info.name}.html">{html.escape(info.title)}</a><br>'
            f'<span class="mode"><a href="{info.name}.csv">{info.name}.csv</a> · {mode}</span></td>'
            f'<td class="q">{html.escape(info.question)}</td>'
            f'<td>{html.escape(str(data.get("finding", "")))}</td></tr>')
    page_html = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>sselab reports</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        "<h1>sselab reports</h1>\n"
        "<p class=\"lead\">Each report starts from a question an on-call engineer asks and "
        "answers it from the same machines the service runs. Rendered by "
        "<code>sselab report</code> from <code>notebooks/</code>; the CSV next to each report "
        "holds the numbers behind its figures, and each records the commit and a hash of the "
        "code it was rendered from: <code>sselab report --check</code> names any report the "
        "code has moved on from.</p>\n"
        "<table><thead><tr><th>report</th><th>question</th><th>finding</th></tr></thead>"
        "<tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n</body></html>\n")
    path = out / "index.html"
    path.write_text(page_html, encoding="utf-8")
    return path
