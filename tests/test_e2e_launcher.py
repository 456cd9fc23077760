"""End to end: the launcher boots the real guest kernel in the built QEMU, reports what the
guest said, and leaves no process behind on success, failure, hang or Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, cosim_processes

pytestmark = pytest.mark.e2e


def cosim_run(runs_dir: Path, *args: str, timeout: float = 600) -> tuple[int, dict, str]:
    r = subprocess.run([sys.executable, "-m", "cosim", "run", "--quiet-setup",
                        "--runs-dir", str(runs_dir), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    summary_file = runs_dir / "latest" / "summary.json"
    assert summary_file.exists(), f"no summary.json; stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.returncode, json.loads(summary_file.read_text()), r.stdout + r.stderr


def test_builtin_smmu_boots_and_kunit_passes(products_612, runs_dir: Path) -> None:
    code, summary, out = cosim_run(runs_dir, "--smmu", "builtin", "--tests", "kunit")
    assert summary["guest"] == "booted", out
    kunit = [t for t in summary["tests"] if t["area"] == "kunit"]
    assert len(kunit) >= 20, f"expected the arm-smmu-v3 KUnit cases, got {kunit}"
    assert all(t["status"] == "pass" for t in kunit), [t for t in kunit if t["status"] != "pass"]
    assert code == 0, out
    run = runs_dir / "latest"
    for f in ("console.log", "qemu-cmdline.txt", "summary.json"):
        assert (run / f).exists(), f"run dir lacks {f}"
    assert "arm-smmu-v3" in (run / "console.log").read_text()


def test_panic_is_reported_with_last_console_lines(products_612, runs_dir: Path) -> None:
    tag = f"cosimtest={uuid.uuid4().hex}"
    code, summary, out = cosim_run(runs_dir, "--smmu", "builtin", "--tests", "probe",
                                   "--append", f"{tag} rdinit=/no-such-init init=/no-such-init")
    assert code != 0
    assert summary["guest"] == "panic", out
    assert any("panic" in ln.lower() for ln in summary["last_console_lines"]), summary
    assert "Guest: panic" in out
    assert cosim_processes(tag) == []


def test_hang_is_reported_and_cleaned_up(products_612, runs_dir: Path) -> None:
    tag = f"cosimtest={uuid.uuid4().hex}"
    # A boot timeout far shorter than the boot forces the "hang" path.
    code, summary, out = cosim_run(runs_dir, "--smmu", "builtin", "--tests", "probe",
                                   "--boot-timeout", "0.2", "--append", tag)
    assert code != 0
    assert summary["guest"] == "hang", out
    assert cosim_processes(tag) == [], "QEMU outlived cosim run after a hang"


def test_sigint_leaves_no_process(products_612, runs_dir: Path) -> None:
    tag = f"cosimtest={uuid.uuid4().hex}"
    proc = subprocess.Popen([sys.executable, "-m", "cosim", "run", "--quiet-setup", "--smmu",
                             "builtin", "--tests", "kunit", "--runs-dir", str(runs_dir),
                             "--append", tag], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    # The launcher's own command line carries the tag too: wait for QEMU's.
    while not [p for p in cosim_processes(tag) if "qemu-system" in p]:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "QEMU never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert cosim_processes(tag) == [], "a process outlived cosim run after SIGINT"
    summary = json.loads((runs_dir / "latest" / "summary.json").read_text())
    assert summary["guest"] == "interrupted"


def test_sigint_during_a_cosim_run_leaves_no_model_nor_analysis(products_612,
                                                                 runs_dir: Path) -> None:
    # The model and the live analysis child name the run's directory on their command lines.
    proc = subprocess.Popen([sys.executable, "-u", "-m", "cosim", "run", "--quiet-setup",
                             "--tests", "replace", "--runs-dir", str(runs_dir)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:   # the replaces under traffic have begun: the trace grows
        lines.append(line)
        if "guest test: cosim_replace" in line:
            break
    assert cosim_processes(str(runs_dir)), "".join(lines)
    assert any("cosim.live_analysis" in p for p in cosim_processes(str(runs_dir)))
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    out = "".join(lines) + out
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert cosim_processes(str(runs_dir)) == [], "a process outlived cosim run after SIGINT"
    summary = json.loads((runs_dir / "latest" / "summary.json").read_text())
    assert summary["guest"] == "interrupted"
    # What the trace holds up to the interruption is still judged, by the live analysis.
    assert summary["analysis_live"] and summary["analysis"]["counts"]["records"] > 0, out


def test_interactive_leaves_the_user_at_the_guest_shell(products_612, runs_dir: Path) -> None:
    import pexpect

    tag = f"cosimtest={uuid.uuid4().hex}"
    child = pexpect.spawn(sys.executable, ["-m", "cosim", "run", "--quiet-setup", "--smmu",
                                           "builtin", "--interactive", "--runs-dir",
                                           str(runs_dir), "--append", tag],
                          cwd=str(ROOT), encoding="utf-8", timeout=300)
    try:
        child.expect("you are at the guest shell")
        child.sendline("echo guest-says-$((6*7))")
        child.expect("guest-says-42")
        child.send("\x1d")  # Ctrl-] leaves and stops the run
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert cosim_processes(tag) == [], "QEMU outlived an interactive run"
    summary = json.loads((runs_dir / "latest" / "summary.json").read_text())
    assert summary["guest"] == "booted"
