"""Robustness end to end: either process dies, the guest reboots, and a long replace soak.

Each test drives the launcher's `Run` directly (start_model, start_qemu, boot, run_command)
so that it can kill one side at a chosen moment.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest
from conftest import products_for

from cosim.analyzer import analyze_path
from cosim.launcher import TRACE_NAME, Run, RunConfig
from cosim.trace import framing, read_trace

pytestmark = pytest.mark.e2e

KERNEL = "debian-6.12"
EP_CONFIG = "/sys/bus/pci/devices/0000:00:02.0/config"
# The guest kernel has no /dev/mem (CONFIG_DEVMEM is off), so `devmem` cannot reach the SMMU.
# The first access to the dead model is instead one config write of the endpoint's Command
# register with its own value (QEMU forwards it as CFG_WRITE at 0x4), and an MMIO read is the
# endpoint's BAR0 ID register, read by the probe test through VFIO.
TOUCH_COMMAND_REG = (f"dd if={EP_CONFIG} bs=1 skip=4 count=1 2>/dev/null | "
                     f"dd of={EP_CONFIG} bs=1 seek=4 count=1 conv=notrunc 2>/dev/null")
MODEL_EXIT_S = 5.0                # the model must notice a vanished QEMU within this
TIMEOUT_MARGIN_S = 10.0           # QEMU's exit after its link timeout: exit path + boot noise
CMD_TIMEOUT_S = 60.0

QemuEdit = Callable[[list[str]], list[str]]


class EditedRun(Run):
    """A Run whose QEMU command line is rewritten (no -no-reboot, another on-timeout)."""

    def __init__(self, cfg: RunConfig, edit: QemuEdit | None) -> None:
        super().__init__(cfg)
        self.edit = edit

    def qemu_cmdline(self) -> list[str]:
        cmd = super().qemu_cmdline()
        return self.edit(cmd) if self.edit else cmd


@contextlib.contextmanager
def booted(runs_dir: Path, *, link_timeout_ms: int = 30000, edit: QemuEdit | None = None,
           model_args: list[str] | None = None) -> Iterator[EditedRun]:
    cfg = RunConfig(products=products_for(KERNEL), tests=[], runs_dir=runs_dir, echo=False,
                    link_timeout_ms=link_timeout_ms, model_args=model_args or [],
                    timeout=900)
    run = EditedRun(cfg, edit)
    try:
        run.start_model()
        run.start_qemu()
        state = run.boot()
        assert state == "booted", f"guest {state}: {run.last_console_lines()}"
        yield run
    finally:
        run.stop()


def on_timeout(mode: str) -> QemuEdit:
    return lambda cmd: [a.replace("on-timeout=exit", f"on-timeout={mode}") for a in cmd]


def without_no_reboot(cmd: list[str]) -> list[str]:
    return [a for a in cmd if a != "-no-reboot"]


def model_log(run: Run) -> str:
    return (run.dir / "model.log").read_text(errors="replace")


def wait_exit(run: Run, seconds: float) -> int | None:
    assert run.model is not None
    try:
        return run.model.wait(timeout=seconds)
    except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: still running
        return None


# -- 1. QEMU killed -------------------------------------------------------------------------------

def test_qemu_killed_model_exits_cleanly_with_complete_trace(runs_dir: Path) -> None:
    with booted(runs_dir) as run:
        assert run.qemu is not None and run.model is not None
        out, status, state = run.run_command("/tests/cosim_probe", CMD_TIMEOUT_S)
        assert state == "ok", out
        os.kill(run.qemu.pid, signal.SIGKILL)
        t0 = time.monotonic()
        code = wait_exit(run, MODEL_EXIT_S)
        took = time.monotonic() - t0
        assert code == 0, f"model still running or failed ({code}) {took:.1f}s after QEMU died"
        raw = (run.dir / TRACE_NAME).read_bytes()
        trace = read_trace(run.dir / TRACE_NAME)
        log = model_log(run)
    # Complete: the binary trace ends with a whole frame (else the reader says torn), every
    # record parses, and the last record says why it ended.
    assert raw.startswith(framing.MAGIC) and trace.torn is None and trace.problems == []
    assert len(trace.records) > 100, "the probe's traffic is missing from the trace"
    last = trace.records[-1]
    assert (last["k"], last.get("event")) == ("link", "disconnected"), last
    lines = [ln for ln in log.splitlines() if "without BYE" in ln]
    assert len(lines) == 1, log[-2000:]
    assert "Traceback" not in log


# -- 2. model killed ------------------------------------------------------------------------------

NO_REPLY = re.compile(r"cosim-link: [^\r\n]*no reply to (\w+) at (\S+) from model within (\d+) ms")


def test_model_killed_qemu_reports_and_exits(runs_dir: Path) -> None:
    link_ms = 3000
    with booted(runs_dir, link_timeout_ms=link_ms) as run:
        assert run.qemu is not None and run.model is not None
        os.kill(run.model.pid, signal.SIGKILL)
        run.model.wait(5)
        t0 = time.monotonic()
        run.qemu.sendline(TOUCH_COMMAND_REG)
        idx = run.qemu.expect([NO_REPLY, pexpect.EOF, pexpect.TIMEOUT],
                              timeout=link_ms / 1000 + TIMEOUT_MARGIN_S)
        assert idx == 0, f"QEMU said nothing about the dead model: {run.last_console_lines()}"
        req, where, ms = run.qemu.match.groups()
        assert (req, int(where, 16), int(ms)) == ("CFG_WRITE", 4, link_ms)
        idx = run.qemu.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=TIMEOUT_MARGIN_S)
        took = time.monotonic() - t0
        assert idx == 0, "QEMU did not exit after the link timeout (on-timeout=exit)"
        assert took < link_ms / 1000 + TIMEOUT_MARGIN_S
        run.qemu.close()
        assert run.qemu.exitstatus == 1, (run.qemu.exitstatus, run.qemu.signalstatus)
        console = (run.dir / "console.log").read_text(errors="replace")
    assert len(NO_REPLY.findall(console)) == 1, "one line, not one per access"


def test_model_killed_on_timeout_continue_reads_all_ones(runs_dir: Path) -> None:
    link_ms = 2000
    with booted(runs_dir, link_timeout_ms=link_ms, edit=on_timeout("continue")) as run:
        assert run.qemu is not None and run.model is not None
        os.kill(run.model.pid, signal.SIGKILL)
        run.model.wait(5)
        t0 = time.monotonic()
        out, status, state = run.run_command(TOUCH_COMMAND_REG, link_ms / 1000 + TIMEOUT_MARGIN_S)
        assert state == "ok" and NO_REPLY.search(out), out
        assert time.monotonic() - t0 < link_ms / 1000 + TIMEOUT_MARGIN_S
        # QEMU goes on; every later access fails at once (one more line) and reads all ones.
        # The SMMU driver's CMD_SYNCs time out on their own 1 s polls meanwhile.
        out, status, state = run.run_command("/tests/cosim_probe --only ats_enabled_iommufd",
                                             CMD_TIMEOUT_S)
        assert state == "ok", out
        assert "BAR0 ID reads 0xffffffff" in out, out
        assert run.qemu.isalive()
        console = (run.dir / "console.log").read_text(errors="replace")
    assert len(NO_REPLY.findall(console)) == 1, "only the first access waits for the model"
    assert console.count("the link to the model is down") == 1


# -- 3. guest reset -------------------------------------------------------------------------------

def test_guest_reboot_resets_the_model_and_dma_works_again(runs_dir: Path) -> None:
    with booted(runs_dir, edit=without_no_reboot) as run:
        assert run.qemu is not None
        # An oops must end the run as a panic (launcher: oops=panic), not leave a test
        # waiting on the killed task for its whole timeout.
        out, status, state = run.run_command("cat /proc/sys/kernel/panic_on_oops", CMD_TIMEOUT_S)
        assert state == "ok" and status == 0 and out.split()[-1:] == ["1"], out
        out, status, state = run.run_command("/tests/cosim_dma", CMD_TIMEOUT_S)
        assert state == "ok" and status == 0, out
        before = model_log(run)
        run.qemu.sendline("reboot -f")
        state = run.boot()          # the same QEMU, the same model: a second boot
        assert state == "booted", run.last_console_lines()
        out, status, state = run.run_command("/tests/cosim_probe", CMD_TIMEOUT_S)
        assert state == "ok" and status == 0 and "not ok" not in out, out
        out, status, state = run.run_command("/tests/cosim_dma", CMD_TIMEOUT_S)
        assert state == "ok" and status == 0 and "not ok" not in out, out
        after = model_log(run)[len(before):]
        trace_path = run.dir / TRACE_NAME
    assert "device 0: system reset" in after and "device 1: system reset" in after, after[-3000:]
    assert "HELLO" not in after, "a guest reboot is not a new link session"
    records = read_trace(trace_path).records
    resets = [r for r in records if r["k"] == "link" and r.get("event") == "reset"]
    assert {r["dev"] for r in resets} >= {0, 1}
    # Power-on and the reboot each reset both devices (vfio's FLRs reset only dev 1).
    system = [i for i, r in enumerate(records) if r["k"] == "link"
              and r.get("event") == "reset" and r.get("reset") == "system"]
    assert sum(1 for i in system if records[i]["dev"] == 0) == 2, "SMMU: power-on + reboot"
    assert sum(1 for i in system if records[i]["dev"] == 1) == 2, "endpoint: power-on + reboot"
    later = records[system[-1]:]
    # The driver probed again (enabled the SMMU afresh) and the second cosim_dma moved data.
    assert any(r["k"] == "mmio" and r.get("dev") == 0 and r.get("off") == 0x20
               and r.get("rw") == "w" and r["val"] for r in later), "no CR0 enable after reset"
    assert any(r["k"] == "dma" and r.get("ok") for r in later), "no DMA after the reset"


# -- 4. soak --------------------------------------------------------------------------------------

SOAK_REPLACES = 1000
CHECKED = re.compile(r"# replace (\d+) ([ABC]->[ABC]): TG_SEQ at return")
FINAL = re.compile(r"# final: TG_SEQ (\d+) TG_WRITES (\d+) TG_XLATE_FAIL (\d+) TG_ABORTS (\d+) "
                   r"TG_ATS_ERR (\d+) TG_MISMATCH (\d+)")
# The known kernel 6.12 finding: a non-hitless CD rewrite makes some translations fail
# DURING a replace's attach call. cosim_replace records those and goes on, then fails the case
# with this one summary line; it is tolerated here and reported.
KNOWN = re.compile(r"# (\d+) of (\d+) replaces saw translation failures or aborts DURING the "
                   r"attach call \((\d+) in all")
# Lost or misplaced records (the guest scans both buffers after every replace and stops at
# the first), and failures while one domain was stably attached: none is tolerated.
FORBIDDEN = ("landed in the OLD buffer", "records at the wrong slot", "reached the NEW buffer",
             "failures before the attach started", "failures after the attach returned",
             "failures between the last check")
# Analyzer rules that mean a write or translation went to the wrong place; the known finding
# shows up as inv3-abort-during-attach and entry-update, which the soak tolerates.
MISDIRECTED_RULES = {"inv1-old-domain", "inv2-invalidated-atc", "stale-cache"}
# Memory bound of the model process (VmHWM, peak resident set). The model is CPython with
# pyzmq and construct, plus the guest RAM pages of the shared 1 GiB mapping it touched (page
# tables, queues, the two 64 KiB test buffers): measured 41 MiB after this soak. 128 MiB
# leaves room for allocator and trace-buffer variation, and a leak of per-replace state
# (tens of KiB per replace: a cache or ATC tracker that never shrinks) would cross it.
MODEL_HWM_BOUND_KIB = 128 * 1024


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_soak_1000_replaces_no_lost_or_misplaced_writes_bounded_memory(runs_dir: Path) -> None:
    """ATS traffic-generator load plus 1000 RID replaces A->B->C in one cosim_replace run.

    Asserts: every replace had its buffer check (after each attach: no record in the old
    buffer, a new record in the new one, every record at the slot its IOVA names) and none
    failed; no translation failure happened outside an attach call; every record the
    generator issued was either written or counted as a translation failure (TG_SEQ =
    TG_WRITES + TG_XLATE_FAIL, no abort, no ATS error, no data mismatch), and all those
    failures are the known in-attach ones; the analyzer finds no misdirected translation in
    the trace; the model's VmHWM stays under MODEL_HWM_BOUND_KIB.
    """
    t0 = time.monotonic()
    with booted(runs_dir) as run:
        assert run.model is not None
        out, status, state = run.run_command(
            f"/tests/cosim_replace --only replace_ats --count {SOAK_REPLACES} -v", 600)
        assert state == "ok", out[-3000:]
        hwm = proc_status_kib(run.model.pid, "VmHWM")
        anon = proc_status_kib(run.model.pid, "RssAnon")
    tail = out[-3000:]
    # Each replace checks both detached buffers (A->B->C): two lines per replace, in order.
    checked = [int(m.group(1)) for m in CHECKED.finditer(out)]
    assert checked == [n for n in range(1, SOAK_REPLACES + 1) for _ in (0, 1)], \
        f"buffer checks missing:\n{tail}"
    for bad in FORBIDDEN:
        assert bad not in out, f"{bad}:\n{tail}"
    seq, writes, xlate, aborts, ats_err, mismatch = map(int, FINAL.search(out).groups())
    assert (aborts, ats_err, mismatch) == (0, 0, 0), tail
    assert seq == writes + xlate, f"records lost: issued {seq}, written {writes}, failed {xlate}"
    known = KNOWN.search(out)
    in_attach = int(known.group(3)) if known else 0
    assert xlate == in_attach, f"{xlate} failures, {in_attach} of them during attach calls"
    assert status == 0 or known, f"cosim_replace failed for another reason:\n{tail}"
    result = analyze_path(run.dir / TRACE_NAME)
    assert result["verdict"] in ("clean", "violations"), result
    rules = {v["rule"] for v in result.get("violations", [])}
    print(f"soak: {SOAK_REPLACES} replaces, {seq} records, {xlate} translation failures in "
          f"{known.group(1) if known else 0} replaces (known finding); model VmHWM {hwm} KiB, "
          f"RssAnon {anon} KiB; analyzer rules {sorted(rules)}; {time.monotonic() - t0:.0f} s")
    assert not rules & MISDIRECTED_RULES, rules
    assert hwm < MODEL_HWM_BOUND_KIB, f"model VmHWM {hwm} KiB"
