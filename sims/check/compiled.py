"""The checker on mypyc-compiled machines: the same sources, built once per version.

``sselab check --compiled`` runs the very modules the service imports (``model/``)
and the checker's hot loop (``canon``, ``partition``) as C extensions built by
mypyc from the checked-in sources. Nothing is forked or rewritten: a build copies
``model/`` and ``sims/`` into a cache directory named by a hash of every source
file (and the Python and mypy versions), compiles :data:`COMPILED` there, and the
check re-runs in a child process with that directory first on ``PYTHONPATH``, so
its workers and the Dask actors it starts import the same build. A source edit
gives a new hash and a new build; a build never serves sources other than its
own. ``tests/check/test_compiled.py`` checks that the compiled search gives the
pure one's counts, depth, verdicts and counterexample lengths.

Mutants (``sselab mutate``) swap module attributes at run time, which compiled
calls do not see, so they always run on the pure modules.
"""

from __future__ import annotations

import copyreg
import dataclasses
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["COMPILED", "CompileError", "active", "build_key", "cache_root", "ensure_built",
           "make_picklable", "run_on_build", "source_root"]

#: Source files compiled (relative to the root): every machine and the world, and the
#: checker's fingerprinting and partition loop; the rest stays Python.
COMPILED: tuple[str, ...] = ("model/*.py", "sims/check/canon.py", "sims/check/partition.py")
#: The packages copied into a build (compiled or not, so the child imports one tree).
PACKAGES = ("model", "sims")
#: Set in the child that runs on a build: the build's directory.
ENV = "SSELAB_COMPILED"
_DONE = "BUILT"  #: written last into a finished build
KEEP = 3  #: builds kept in the cache: the newest, by when they were last used

#: How a build is made: mypycify the files and build them in place (``--parallel`` helps
#: little: multi_file output is one extension, compiled one C file after another).
_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
files = sys.argv[1:]
setup(name="sselab-compiled", py_modules=[],
      ext_modules=mypycify(files, opt_level="3", debug_level="0", multi_file=True),
      script_args=["build_ext", "--inplace", "--parallel", str(max(1, __import__("os").cpu_count() or 1))])
"""


class CompileError(RuntimeError):
    """A build could not be made: what is missing, or the compiler's last words."""


def source_root() -> Path:
    """The directory that holds the ``model`` and ``sims`` packages in use."""
    return Path(__file__).resolve().parents[2]


def active() -> bool:
    """Whether the machines in use are compiled (this process runs on a build)."""
    import model.world

    return model.world.__file__ is not None and model.world.__file__.endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _remake(cls: type, names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    """An instance of dataclass ``cls`` made by its constructor from its fields' values."""
    return cls(**dict(zip(names, values, strict=True)))


def _reducer(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    def reduce(obj: Any) -> tuple[Any, ...]:
        return _remake, (type(obj), names, tuple(getattr(obj, n) for n in names))
    return reduce


def make_picklable() -> int:
    """On a build, let model/'s frozen dataclasses pickle; how many classes were registered.

    A frozen dataclass pickles through its own ``__setstate__``; compiled, it unpickles
    by ``setattr``, which a frozen class refuses. So each one is registered with
    ``copyreg`` to travel as (class, field values) and be rebuilt by its constructor:
    the same value. Pickle, multiprocessing and Dask's cloudpickle all read that table.
    Does nothing on the pure modules.
    """
    if not active():
        return 0
    import model.fixes
    import model.invariants
    import model.world  # noqa: F401  (with them, every model module is loaded)

    done = 0
    for name, module in list(sys.modules.items()):
        if name != "model" and not name.startswith("model."):
            continue
        for cls in list(vars(module).values()):
            if (isinstance(cls, type) and dataclasses.is_dataclass(cls)
                    and cls.__module__ == name and cls not in copyreg.dispatch_table):
                names = tuple(f.name for f in dataclasses.fields(cls) if f.init)
                copyreg.pickle(cls, _reducer(names))
                done += 1
    return done


def _sources(root: Path) -> list[Path]:
    """Every file a build copies, in a stable order."""
    out: list[Path] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
                out.append(path)
    return out


def build_key(root: Path | None = None) -> str:
    """The build's name: a hash of the sources, the Python and the mypy it is built with."""
    import mypy.version

    root = root or source_root()
    digest = hashlib.sha256()
    digest.update(f"{sys.implementation.cache_tag} {sysconfig.get_platform()} "
                  f"mypy {mypy.version.__version__} {COMPILED}".encode())
    for path in _sources(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def cache_root() -> Path:
    """Where builds are kept: ``$SSELAB_BUILD_CACHE``, else the user's cache directory."""
    chosen = os.environ.get("SSELAB_BUILD_CACHE")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sselab" / "mypyc"


def _needs() -> None:
    """Raise CompileError naming what a build needs and is missing."""
    for name in ("mypyc", "setuptools"):
        if importlib.util.find_spec(name) is None:
            raise CompileError(f"--compiled needs mypy (its mypyc) and setuptools: {name} is "
                               "not installed; install them with: pip install 'sselab[fast]'")
    compiler = sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        raise CompileError(f"--compiled needs a C compiler ({compiler}) on PATH")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        raise CompileError(f"--compiled needs Python's C headers (no Python.h in {include})")


def ensure_built(echo: Callable[[str], None] = lambda _m: None, root: Path | None = None) -> Path:
    """The build of the sources in use, made first if there is none yet; its directory."""
    _needs()
    root = root or source_root()
    target = cache_root() / build_key(root)
    if (target / _DONE).exists():
        (target / _DONE).touch()  # used now: kept the longest
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f"{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    try:
        for path in _sources(root):
            dest = work / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        # the modules compiled import the rest of sims.check (and numpy, scipy): typed
        # enough to build against, their own checking is the repository's mypy's job
        (work / "mypy.ini").write_text("[mypy]\nignore_missing_imports = True\n"
                                       "follow_imports = silent\n", encoding="utf-8")
        files = sorted(str(p.relative_to(work)) for pattern in COMPILED for p in work.glob(pattern))
        echo(f"compiling {len(files)} modules with mypyc into {target} (once per source version)")
        log = work / "build.log"
        with open(log, "w", encoding="utf-8") as out:
            done = subprocess.run([sys.executable, "-c", _SETUP, *files], cwd=work, stdout=out,
                                  stderr=subprocess.STDOUT, env=_clean_env(), check=False)
        if done.returncode != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
            raise CompileError("mypyc build failed (exit {}):\n  {}".format(
                done.returncode, "\n  ".join(tail)))
        shutil.rmtree(work / "build", ignore_errors=True)
        (work / _DONE).write_text(" ".join(files) + "\n", encoding="utf-8")
        try:
            work.rename(target)
        except OSError:  # another process finished the same build first
            if not (target / _DONE).exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune(target.parent)
    return target


def _prune(cache: Path) -> None:
    """Remove all but the :data:`KEEP` builds used last (each is some 40 MB)."""
    built = sorted((p for p in cache.iterdir() if (p / _DONE).exists()),
                   key=lambda p: (p / _DONE).stat().st_mtime, reverse=True)
    for old in built[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)


def _clean_env() -> dict[str, str]:
    """The environment a build runs in: no build of ours on the path."""
    env = dict(os.environ)
    env.pop(ENV, None)
    env.pop("PYTHONPATH", None)
    return env


def run_on_build(argv: Sequence[str], echo: Callable[[str], None] = lambda _m: None) -> int:
    """Run ``python argv...`` in a child on the build (made first if need be); its exit status.

    Raises CompileError when there is no build, or when this process is already such a
    child and still runs the pure modules (so it never starts another, and another).
    """
    if os.environ.get(ENV):
        raise CompileError(f"the build in {os.environ[ENV]} did not load (the pure model/ "
                           "came first on the path)")
    build = ensure_built(echo)
    env = dict(os.environ)
    env[ENV] = str(build)
    env["PYTHONPATH"] = os.pathsep.join([str(build), *filter(None, [env.get("PYTHONPATH")])])
    # -P: not the working directory first on the path, where a checkout's pure model/ is
    return subprocess.run([sys.executable, "-P", *argv], env=env, check=False).returncode
