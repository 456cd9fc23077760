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


def test_a_driver_call_the_probe_could_not_read_is_an_error_of_the_run(tmp_path: Path) -> None:
    # The two lines guest-kmod/cosim_drv_probe.c prints for a call it did not trace.
    console = tmp_path / "console.log"
    console.write_text(
        "[    3.1] cosim_drv_probe: armed arm_smmu_attach_dev\r\n"
        "[   41.2] cosim_drv_probe: arm_smmu_blocking_set_dev_pasid: device argument "
        "000000000040005c not readable (called from iommu_remove_dev_pasid+0x54/0x90; "
        "x0-x3 ffff0000 40005c 1 ffff0001)\r\n"
        "[   41.3] cosim_drv_probe: arm_smmu_domain_inv_range(ffff00001234): domain not "
        "readable\r\n")
    (r,) = launcher.probe_losses(console)
    assert (r.name, r.status, r.area) == ("probe/untraced-calls", "error", "probe")
    assert r.reason.startswith("2 driver call(s)") and "blocking_set_dev_pasid" in r.reason
    assert len(r.output) == 2 and not r.output[0].endswith("\r")
    console.write_text("[    3.1] cosim_drv_probe: 9 of 10 entry points armed\r\n")
    assert launcher.probe_losses(console) == []
    assert launcher.probe_losses(tmp_path / "absent.log") == []
