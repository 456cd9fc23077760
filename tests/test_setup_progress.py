"""Set-up steps print how far a long build got (scripts/common.sh run_progress)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, body: str, pattern: str = "") -> subprocess.CompletedProcess[str]:
    script = (f'source "{ROOT}/scripts/common.sh"\n'
              f"fake() {{ {body}; }}\n"
              f'run_progress "{tmp_path}/build.log" "{pattern}" fake\n')
    env = dict(os.environ, COSIM_PROGRESS_EVERY="1", COSIM_CACHE=str(tmp_path / "cache"))
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env=env)


def test_ninja_steps_are_reported_as_n_of_m_and_percent(tmp_path: Path) -> None:
    out = _run(tmp_path, "echo '[10/40] CC a.o'; sleep 1.6; echo '[20/40] CC b.o'; sleep 1.6")
    assert out.returncode == 0, out.stderr
    lines = [ln.strip() for ln in out.stdout.splitlines()]
    assert any(ln.startswith("[10/40] 25% after") for ln in lines), out.stdout
    assert any(ln.startswith("[20/40] 50% after") for ln in lines), out.stdout
    # The build's own output goes to the log, not the terminal.
    assert "CC a.o" not in out.stdout
    assert "[20/40] CC b.o" in (tmp_path / "build.log").read_text()


def test_kbuild_lines_are_counted_by_the_pattern(tmp_path: Path) -> None:
    out = _run(tmp_path, "echo '  CC      a.o'; echo '  CC      b.o'; echo '  LD  x'; sleep 1.6",
               pattern="^  (CC|AS) ")
    assert out.returncode == 0, out.stderr
    assert "2 compiled after" in out.stdout


def test_the_commands_exit_status_is_returned(tmp_path: Path) -> None:
    out = _run(tmp_path, "echo oops; return 3")
    assert out.returncode == 3
    assert "oops" in (tmp_path / "build.log").read_text()
