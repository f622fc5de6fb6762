"""The verified core depends on nothing but the standard library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import model

MODEL_DIR = Path(model.__file__).resolve().parent
REPO = MODEL_DIR.parent

PROBE = """
import importlib, json, sys
before = set(sys.modules)
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_importing_every_model_module_loads_only_the_standard_library() -> None:
    modules = ["model", *sorted(f"model.{p.stem}" for p in MODEL_DIR.glob("*.py")
                                if p.stem != "__init__")]
    assert "model.world" in modules and "model.client" in modules
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", PROBE.format(modules=modules)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert set(modules) <= set(loaded)
    outside = sorted({name.split(".")[0] for name in loaded} - set(sys.stdlib_module_names)
                     - {"model"})
    assert outside == [], f"model/ loaded modules outside the standard library: {outside}"


def test_no_import_cycle_in_model() -> None:
    """``model/`` imports form a DAG: invariants read the world's types, never the reverse."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "model"
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "model":
                    deps |= {f"model.{a.name}" for a in node.names}
                elif node.module.startswith("model."):
                    deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("model.")}
        graph[f"model.{path.stem}"] = deps

    def reaches(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for dep in graph.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    assert [m for m in graph if m in reaches(m)] == []
    assert "model.invariants" not in reaches("model.world")
