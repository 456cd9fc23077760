"""bench/bench_suite.py: the floor of `make test` read from the JUnit XML a real pytest writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import bench_suite  # noqa: E402

TESTS = '''
import time
import pytest

@pytest.fixture(scope="session")
def booted():
    time.sleep(0.3)   # a shared guest run: counted in the first test that needs it

def test_slow(booted):
    time.sleep(0.2)

def test_quick(booted):
    pass

def test_other():
    time.sleep(0.1)
'''


@pytest.fixture(scope="module")
def junit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("junit")
    (d / "test_fake_e2e.py").write_text(TESTS)
    out = d / "e2e.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "no:xdist", f"--junitxml={out}", "-o", "junit_family=xunit2",
                        str(d / "test_fake_e2e.py")], cwd=d, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_every_case_is_read_with_its_setup_and_call_time(junit: Path) -> None:
    cases = {c.name.rsplit("::", 1)[-1]: c.seconds for c in bench_suite.cases(junit)}
    assert set(cases) == {"test_slow", "test_quick", "test_other"}
    # The session fixture's 0.3 s is in the setup of the first test using it.
    assert cases["test_slow"] >= 0.5 and cases["test_other"] >= 0.1
    assert cases["test_quick"] < 0.3


def test_floor_is_the_work_shared_by_the_workers_or_the_longest_test(junit: Path) -> None:
    one = bench_suite.floor(junit, 1)
    two = bench_suite.floor(junit, 2)
    many = bench_suite.floor(junit, 50)
    assert one.seconds == pytest.approx(one.work)
    assert two.seconds == pytest.approx(max(one.work / 2, one.longest.seconds))
    assert many.seconds == pytest.approx(one.longest.seconds)
    assert one.longest.name.endswith("test_fake_e2e.py::test_slow")
    text = two.explain(top=2)
    assert text.startswith("3 end-to-end tests,") and "test_slow" in text
    assert "test_other" in text and "test_quick" not in text


@pytest.mark.parametrize("content", ["", "<testsuites><testcase name='x' time='?'/></testsuites>"])
def test_a_file_that_is_not_a_timed_junit_report_is_one_clear_error(tmp_path: Path,
                                                                    content: str) -> None:
    p = tmp_path / "e2e.xml"
    p.write_text(content)
    with pytest.raises(bench_suite.JUnitError, match="e2e.xml"):
        bench_suite.cases(p)
    with pytest.raises(bench_suite.JUnitError, match="not a JUnit XML file"):
        bench_suite.cases(tmp_path / "absent.xml")
