"""User mistakes on the command line get one clear line and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cosim import setup
from cosim.tap import parse_kunit, parse_tap

ROOT = Path(__file__).resolve().parent.parent


def _cosim(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cosim", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_unknown_kernel_choice_is_a_clear_error() -> None:
    r = _cosim("run", "--kernel", "debian-9.9")
    assert r.returncode == 2
    assert "'debian-9.9' is not a known kernel" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_missing_kernel_path_is_a_clear_error(tmp_path: Path) -> None:
    r = _cosim("run", "--kernel", str(tmp_path / "nope" / "Image"))
    assert r.returncode == 2
    assert "no such file or directory" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_test_area_is_a_clear_error() -> None:
    r = _cosim("run", "--tests", "probe,bogus")
    assert r.returncode == 2
    assert "unknown test area(s) bogus" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("given,why", [
    ("sva", "give AREA=ARGS"),
    ("bogus=--count 3", "give AREA=ARGS"),
    ("kunit=--count 3", "give AREA=ARGS"),
    ("sva=--count 3; reboot", "guest test options may hold only"),
])
def test_bad_test_args_are_a_clear_error(given: str, why: str) -> None:
    r = _cosim("run", "--test-args", given)
    assert r.returncode == 2
    assert f"--test-args: {given!r}: {why}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_test_args_follow_replaces_per_area() -> None:
    from cosim.cli import _area_args, build_parser
    a = build_parser().parse_args(["run", "--replaces", "7", "--test-args", "sva=--count 20",
                                   "--test-args", "replace=--no-ats",
                                   "--test-args", "sva=--rate 2"])
    assert _area_args(a.replaces, a.test_args) == {
        "replace": "--count 7 --no-ats", "sva": "--count 20 --rate 2"}
def test_extra_areas_are_accepted_when_named_and_not_in_all() -> None:
    from cosim.cli import _tests_arg
    from cosim.launcher import AREAS, EXTRA_AREAS

    assert _tests_arg("mmio") == ["mmio"]
    assert _tests_arg("probe,mmio") == ["probe", "mmio"]
    assert "mmio" in EXTRA_AREAS and "mmio" not in AREAS
    assert _tests_arg("all") == AREAS


def test_image_path_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "Image"
    bad.write_bytes(b"not a kernel" * 10)
    with pytest.raises(setup.SetupError):
        setup.run_step("kernel.sh", str(bad), quiet=True)


def test_check_kernel_choice_accepts_names_and_paths(tmp_path: Path) -> None:
    for name in setup.KERNEL_CHOICES:
        setup.check_kernel_choice(name)
    setup.check_kernel_choice(str(tmp_path))
    with pytest.raises(setup.SetupError, match="not a known kernel"):
        setup.check_kernel_choice("linux")


def test_tap_parsing_classifies_unsupported_apart_from_pass() -> None:
    rep = parse_tap("TAP version 13\n1..3\nok 1 - a\n# step 2: offset 0x40 seq 7\nnot ok 2 - b\n"
                    "ok 3 - c # SKIP not supported by this kernel: no iommufd\n")
    assert [r.status for r in rep.results] == ["pass", "fail", "unsupported"]
    assert rep.results[1].output == ["# step 2: offset 0x40 seq 7"]
    assert rep.problems == []
    assert parse_tap("1..2\nok 1 - a\n").problems == ["planned 2 tests, saw 1"]


def test_kunit_parsing_reads_only_the_smmu_suite() -> None:
    log = ("[    1.0] KTAP version 1\n[    1.0] 1..2\n"
           "[    1.1]     # Subtest: other-suite\n[    1.1]     ok 1 other_case\n"
           "[    1.1] ok 1 other-suite\n"
           "[    1.1]     # Subtest: arm-smmu-v3-kunit-test\n"
           "[    1.2]     ok 1 arm_smmu_v3_write_ste_test_bypass_to_abort\n"
           "[    1.2]     not ok 2 arm_smmu_v3_write_cd_test_s1_clear\n"
           "[    1.3] not ok 2 arm-smmu-v3-kunit-test\n")
    cases = parse_kunit(log)
    assert [(c.name, c.status) for c in cases] == [
        ("arm_smmu_v3_write_ste_test_bypass_to_abort", "pass"),
        ("arm_smmu_v3_write_cd_test_s1_clear", "fail")]
