"""The launcher's reading of the guest console (cosim/launcher.py Run.run_command), against a
fake guest shell on a real pty: what a command printed and its exit status, also when the
kernel's own messages land on the status line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pexpect
import pytest

from cosim import launcher

# A stand-in for the guest's shell: reads the launcher's command line, prints a line of output,
# then the exit-status echo; with 'interleave' a kernel message follows the status on its line,
# as printk does on a busy serial console.
FAKE_GUEST = r'''
import re, sys
for line in sys.stdin:
    m = re.search(r"echo (COSIM-EXIT-\d+) \$\?", line)
    if not m:
        continue
    cmd = line.split(";")[0].strip()
    print("output of " + cmd)
    tail = "[   55.364215] arm-smmu-v3 9050000.smmuv3: event 0x10 received:" \
        if cmd == "interleave" else ""
    sys.stdout.write(m.group(1) + " 7" + tail + "\r\n")
    sys.stdout.flush()
'''


@pytest.fixture
def run(tmp_path: Path):
    script = tmp_path / "guest.py"
    script.write_text(FAKE_GUEST)
    r = launcher.Run.__new__(launcher.Run)
    r.qemu = pexpect.spawn(sys.executable, [str(script)], encoding="utf-8", timeout=None,
                           echo=False)
    r.model = None
    r.deadline = time.monotonic() + 30
    yield r
    r.qemu.close(force=True)


@pytest.mark.parametrize("command", ["plain", "interleave"])
def test_status_is_read_also_when_a_kernel_message_follows_it(run, command: str) -> None:
    out, status, state = run.run_command(command, timeout=10)
    assert (state, status) == ("ok", 7), out
    assert f"output of {command}" in out
