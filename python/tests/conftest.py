"""Shared fixtures: unique channel names whose segments are removed even when a test
fails, the Rust demo binary, and a way to run Python peers in child processes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

import capnp_shm_transport as cst

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SCHEMA = ROOT / "schema" / "demo.capnp"
_counter = itertools.count()


def _cleanup(names: List[str]) -> None:
    for name in names:
        try:
            cst.remove(name)
        except cst.Error:
            pass


@pytest.fixture
def names() -> Iterator[Callable[[], str]]:
    """``names()`` gives a fresh ``cst-py-<pid>-<n>`` name; every one handed out is
    removed when the test ends, passed or failed."""
    made: List[str] = []

    def new() -> str:
        name = f"cst-py-{os.getpid()}-{next(_counter)}"
        made.append(name)
        return name

    yield new
    _cleanup(made)


@pytest.fixture
def name(names) -> str:
    return names()


@pytest.fixture(scope="session")
def demo() -> Path:
    """The Rust demo binary: $CST_DEMO, else target/{release,debug}/capnp-shm-demo (the
    newer one), else built with cargo."""
    env = os.environ.get("CST_DEMO")
    if env:
        return Path(env)
    found = [ROOT / "target" / p / "capnp-shm-demo" for p in ("release", "debug")]
    found = [p for p in found if p.exists()]
    if not found:
        subprocess.run(
            ["cargo", "build", "-q", "-p", "capnp-shm-demo"], cwd=ROOT, check=True, timeout=600
        )
        found = [ROOT / "target" / "debug" / "capnp-shm-demo"]
    return max(found, key=lambda p: p.stat().st_mtime)


def python_child(script: str, *args: str, **kw) -> subprocess.Popen:
    """Starts ``python tests/<script> args...`` (the same interpreter)."""
    return subprocess.Popen(
        [sys.executable, str(HERE / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )
