"""Install what you use: ``pip install .`` with no extras gives the core and nothing else.

The base distribution promises the machines and the world on the standard library
alone. This test builds a fresh virtual environment from a copy of the project's
own files, installs it without extras, and checks that pip pulled in no
third-party package, that ``model`` imports, that ``sselab --help`` works, and that
a command needing an extra exits 2 with the exact ``pip install`` line to run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
#: What a distribution needs to build: the metadata and the packages it ships.
SOURCES = ("pyproject.toml", "README.md", "model", "sims", "service")
#: Packages a fresh virtual environment may hold besides sselab itself.
BOOTSTRAP = {"pip", "setuptools", "wheel"}


def _run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` and capture its output as text, never raising on its status."""
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def base_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pip install .`` (no extras) done; its bin directory."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=ignore)
        else:
            shutil.copy2(origin, source / name)
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
    installed = _run(bin_dir / "python", "-m", "pip", "install", "--quiet", source)
    assert installed.returncode == 0, installed.stderr
    return bin_dir


def test_base_install_pulls_in_no_third_party_package(base_install: Path) -> None:
    """pip list shows sselab and the bootstrap tools, nothing else."""
    listed = _run(base_install / "python", "-m", "pip", "list", "--format=json")
    assert listed.returncode == 0, listed.stderr
    names = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert "sselab" in names
    assert names - {"sselab"} <= BOOTSTRAP, sorted(names - {"sselab"} - BOOTSTRAP)


def test_base_install_imports_the_machines_and_the_world(base_install: Path) -> None:
    """The core imports on the standard library alone."""
    imported = _run(base_install / "python", "-c", "import model.client, model.world")
    assert imported.returncode == 0, imported.stderr


def test_help_works_without_extras(base_install: Path) -> None:
    """``sselab --help`` lists every command, including those whose extra is missing."""
    shown = _run(base_install / "sselab", "--help")
    assert shown.returncode == 0, shown.stderr
    for command in ("check", "simulate", "serve", "report"):
        assert command in shown.stdout


@pytest.mark.parametrize(
    ("command", "extra"),
    [(("check",), "check"), (("simulate", "redis-outage"), "sim"), (("serve",), "service")],
)
def test_command_without_its_extra_names_the_install_line(
    base_install: Path, command: tuple[str, ...], extra: str
) -> None:
    """A command whose extra is missing exits 2 with the exact pip line that fixes it."""
    ran = _run(base_install / "sselab", *command)
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert f"pip install 'sselab[{extra}]'" in ran.stderr
    assert "Traceback" not in ran.stderr
