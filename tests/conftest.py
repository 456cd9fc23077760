"""Shared fixtures: build products for end-to-end tests (from cache after the first build)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cosim import launcher, mutate, setup
from cosim.mutate import RunFacts
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
    """Command lines of live processes other than this one whose command line mentions
    marker (a run's tag, or its directory: under pytest that path itself says "pytest")."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd and int(pid) != os.getpid():
            found.append(f"{pid}: {cmd}")
    return found


def run_suite(kernel: str, runs_dir: Path, *extra: str,
              tests: str = "all") -> tuple[int, dict, str]:
    """`cosim run` on a kernel: its exit code, summary.json and output."""
    products_for(kernel)  # build first, so a build failure names itself
    r = subprocess.run([sys.executable, "-m", "cosim", "run", "--quiet-setup", "--kernel", kernel,
                        "--tests", tests, "--runs-dir", str(runs_dir), *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    f = runs_dir / "latest" / "summary.json"
    assert f.exists(), f"no summary.json\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
    return r.returncode, json.loads(f.read_text()), r.stdout + r.stderr


def run_areas(kernel: str, tests: str, runs: Path, *extra: str) -> dict:
    """`cosim run` of some areas on a kernel; its summary.json, asserted to show the guest
    booted."""
    _, summary, out = run_suite(kernel, runs, *extra, tests=tests)
    assert summary["guest"] == "booted", out[-4000:]
    return summary


SuiteRun = Callable[[str], tuple[int, dict, str]]
_suites: dict[str, tuple[int, dict, str]] = {}


@pytest.fixture(scope="session")
def suite_run(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    """The whole suite (`cosim run --tests all`, the defaults) on a kernel, run once per
    session: the suite test judges it against the expectations, and the tests about one area
    of it (kswitch, probe) read the same run, which boots the same guest and runs the same
    area with the same options as a run of that area alone would.

    Under pytest-xdist (`make test` runs the end-to-end tests on two workers) the run is
    shared by the workers too: the first to need a kernel's suite runs it under a lock in
    their common temporary directory, and a worker that needs it later reads its result."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent   # each worker's basetemp lies in the session's own directory

    def get(kernel: str) -> tuple[int, dict, str]:
        if kernel not in _suites:
            _suites[kernel] = _shared_suite(kernel, base)
        code, summary, out = _suites[kernel]
        assert summary["guest"] == "booted", out[-4000:]
        return _suites[kernel]
    return get


def _shared_suite(kernel: str, base: Path) -> tuple[int, dict, str]:
    done = base / f"suite-{kernel}.json"
    with open(base / f"suite-{kernel}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            runs = base / f"suite-{kernel}"
            runs.mkdir(exist_ok=True)
            tmp = done.with_suffix(".tmp")
            tmp.write_text(json.dumps(run_suite(kernel, runs)))
            os.replace(tmp, done)
    code, summary, out = json.loads(done.read_text())
    return code, summary, out


KSWITCH_CASES = ["dmaswitch_untranslated", "dmaswitch_ats", "identityswitch_untranslated",
                 "identityswitch_ats"]


def judge_kswitch(kernel: str, summary: dict) -> tuple[dict[str, dict], RunFacts]:
    """Area kswitch of a run on a kernel, with what every kernel must show: each case passes
    in the guest (the states after each return hold), and the analysis finds nothing in the
    run beyond the kernel's recorded findings. The run's tests by name, and the analysis
    facts."""
    tests = {t["name"]: t for t in summary["tests"]}
    for case in KSWITCH_CASES:
        t = tests.get(f"kswitch/{case}")
        assert t is not None, sorted(tests)
        assert t["status"] == "pass", (case, t.get("reason"), t.get("output", [])[-12:])
    trace = launcher.trace_of(Path(summary["run_dir"]))
    facts = mutate.facts_from_summary(summary, mutate.tests_by_line(trace))
    recorded = mutate.recorded_findings(kernel)
    new = {k: e for k, e in facts.findings.items() if k not in recorded}
    assert not new, f"findings beyond the recorded ones: {new} (run {summary['run_dir']})"
    return tests, facts
