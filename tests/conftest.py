"""Shared fixtures: build products for end-to-end tests (from cache after the first build)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cosim import setup
from cosim.trace import CHECK_ENV

# Every trace written during the tests, in this process or a model it starts, is checked
# against the schema as it is written (COSIM_TRACE_CHECK=0 on the command line turns it off).
os.environ.setdefault(CHECK_ENV, "1")

ROOT = Path(__file__).resolve().parent.parent

_products: dict[str, setup.Products] = {}


def products_for(kernel: str) -> setup.Products:
    """Build products once per kernel per session; a build failure fails the test with why."""
    if kernel not in _products:
        try:
            _products[kernel] = setup.ensure(kernel, quiet=True)
        except setup.SetupError as e:
            pytest.fail(f"set-up for kernel {kernel} failed: {e}")
    return _products[kernel]


@pytest.fixture(scope="session")
def products_612() -> setup.Products:
    return products_for("debian-6.12")


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    return d


def cosim_processes(marker: str) -> list[str]:
    """Command lines of live processes whose command line mentions marker."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd and "pytest" not in cmd:
            found.append(f"{pid}: {cmd}")
    return found
