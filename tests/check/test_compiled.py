"""The mypyc build: the same search as the pure modules, and a build only of its own sources.

The build takes about a minute (once per test session). Without mypy's mypyc or a C
compiler the build tests are skipped with the reason on a laptop and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from model.fixes import Fixes
from model.world import WorldConfig
from sims.check import CheckResult, check, compiled
from sims.cli import main


def _pure(r: CheckResult) -> dict[str, Any]:
    out = r.to_json()
    return {k: out[k] for k in ("states", "transitions", "depth", "complete", "invariants",
                                "violations")}


def _cli(argv: list[str], cache: Path, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """``sselab ARGV --json`` in a child process with the build cache at ``cache``."""
    env = dict(os.environ, SSELAB_BUILD_CACHE=str(cache), **(extra_env or {}))
    env.pop(compiled.ENV, None)
    done = subprocess.run([sys.executable, "-m", "sims.cli", *argv, "--json"], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.stdout.strip(), done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build cache holding the build of this checkout's sources."""
    cache = tmp_path_factory.mktemp("mypyc")
    os.environ["SSELAB_BUILD_CACHE"] = str(cache)
    try:
        compiled.ensure_built()
    except compiled.CompileError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the mypyc build is required under CI=true: {exc}")
        pytest.skip(f"no mypyc build here: {exc}")
    finally:
        del os.environ["SSELAB_BUILD_CACHE"]
    return cache


def _copy_sources(dest: Path) -> Path:
    root = compiled.source_root()
    for package in compiled.PACKAGES:
        shutil.copytree(root / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return dest


def test_build_key_follows_every_source_byte(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    root = _copy_sources(tmp_path)
    before = compiled.build_key(root)
    assert compiled.build_key(root) == before
    (root / "model" / "__pycache__").mkdir(exist_ok=True)
    (root / "model" / "__pycache__" / "x.pyc").write_bytes(b"not a source")
    assert compiled.build_key(root) == before, "caches are not sources"
    backoff = root / "model" / "backoff.py"
    backoff.write_text(backoff.read_text() + "\n# one more line\n")
    assert compiled.build_key(root) != before
    (root / "sims" / "check" / "extra.py").write_text("X = 1\n")
    assert len({before, compiled.build_key(root)}) == 2


def test_the_cache_keeps_the_builds_used_last(tmp_path: Path) -> None:
    for n in range(5):
        build = tmp_path / f"build{n}"
        build.mkdir()
        (build / "BUILT").write_text("")
        os.utime(build / "BUILT", (1_000_000 + n, 1_000_000 + n))
    (tmp_path / "build9.123.tmp").mkdir()  # another process's build under way
    compiled._prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build2", "build3", "build4",
                                                          "build9.123.tmp"]


def test_missing_compiler_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mypy")
    monkeypatch.setattr(compiled.shutil, "which", lambda _name: None)
    monkeypatch.setenv("SSELAB_BUILD_CACHE", str(tmp_path))
    with pytest.raises(compiled.CompileError, match="C compiler"):
        compiled.ensure_built()
    assert main(["check", "--compiled"]) == 2
    assert "needs a C compiler" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "a failed build leaves nothing behind"


def test_a_build_that_did_not_load_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # the child of a --compiled run, yet on the pure modules: said, not run again forever
    monkeypatch.setenv(compiled.ENV, "/nowhere")
    assert main(["check", "--compiled"]) == 2
    assert "did not load" in capsys.readouterr().err


def test_pure_modules_pickle_as_they_always_did() -> None:
    assert not compiled.active()
    assert compiled.make_picklable() == 0
    cfg = WorldConfig(fixes=Fixes.all().without("F2"))
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_compiled_default_world_matches_pure(build_cache: Path) -> None:
    got = _cli(["check", "--compiled"], build_cache)
    assert got["stats"]["compiled"] is True
    want = _pure(check(WorldConfig()))
    assert {k: got[k] for k in want} == want
    assert want["states"] == 57_168 and want["complete"]


def test_compiled_sleep_sets_match_pure(build_cache: Path) -> None:
    # the sleep sets (actor spans from the compiled memo, canonical places from the
    # compiled canon) leave out the very moves the pure modules leave out
    got = _cli(["check", "--compiled", "--clients", "2", "--events", "0", "--sleep-sets"],
               build_cache)
    result = check(WorldConfig(clients=2, events=0), sleep_sets=True)
    want = _pure(result)
    assert {k: got[k] for k in want} == want
    assert got["stats"]["transitions_slept"] == result.stats["transitions_slept"] > 0


def test_compiled_partitions_match_pure_on_the_seed_race(build_cache: Path) -> None:
    # two processes on the build exchange states (pickled frozen dataclasses) and find
    # the heartbeat race's shortest counterexample, as one pure process does
    config = WorldConfig(clients=2, replicas=2, events=1, fixes=Fixes.all().without("F3"))
    got = _cli(["check", "--compiled", "--clients", "2", "--replicas", "2", "--events", "1",
                "--without", "F3", "--workers", "2", "--stop-at-first", "--no-liveness"],
               build_cache)
    assert got["stats"]["compiled"] is True and got["stats"]["workers"] == 2
    want = _pure(check(config, stop_at_first=True, liveness=False))
    assert {k: got[k] for k in want} == want
    assert [v["invariant"] for v in want["violations"]] == ["bounded-counter"]


def test_compiled_liveness_and_simulation_match_pure(build_cache: Path) -> None:
    # a liveness lasso found on the build, and swarm walks whose configs and
    # counterexamples cross process boundaries
    config = WorldConfig(replicas=2, events=0, fixes=Fixes.all().without("F4"))
    got = _cli(["check", "--compiled", "--replicas", "2", "--events", "0", "--without", "F4",
                "--only", "bounded-counter", "--workers", "2"], build_cache)
    want = _pure(check(config, only=["bounded-counter"]))
    assert {k: got[k] for k in want} == want
    assert "detection-bound" in [v["invariant"] for v in want["violations"]]
    walks = _cli(["check", "--compiled", "--simulate", "--walks", "60", "--without", "F3",
                  "--workers", "2", "--reference", "none"], build_cache)
    assert "bounded-counter" in {v["invariant"] for v in walks["violations"]}
