"""`cosim run`: start the model, boot the guest in the patched QEMU, run guest tests over the
serial console, stop everything, and write the run directory.

Process hygiene is the point of this module: QEMU and the model each run in their own session
(process group) and are killed as groups on every exit path, so nothing outlives `cosim run`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pexpect

from . import expectations, tap
from .live_analysis import LiveAnalysis
from .setup import Products

READY = "COSIM-GUEST-READY"
PROMPT_MARK = "COSIM-EXIT"
PANIC_PATTERNS = [re.escape("Kernel panic - not syncing"), re.escape("---[ end Kernel panic")]

# Guest test names -> binaries in /tests; "kunit" is read from the boot log instead.
TRACE_NAME = "trace.cst"          # the model's trace in a run directory (binary, docs/trace.md)
OLD_TRACE_NAME = "trace.jsonl"    # what runs before the binary format wrote
PROGRESS_SECONDS = 5.0            # the analysis of a large trace reports this often
AREAS = ["probe", "dma", "replace", "blocked", "unmap", "pasid", "kdma", "kswitch", "sva", "kunit"]
# Areas run only when named (`--tests mmio`), never by "all" nor in a matrix cell: `mmio` times
# the MMIO round trip (bench/run.py reads it); its checks (every read returns the ID) add
# nothing the hitless suite needs, and a run of every area must not grow a measurement.
EXTRA_AREAS = ["mmio"]


class RunError(Exception):
    """A run could not be performed (bad option, missing product); no traceback for users."""


@dataclass
class TestResult:
    name: str
    status: str  # pass | fail | skip | unsupported | error
    reason: str = ""
    output: list[str] = field(default_factory=list)
    area: str = ""


@dataclass
class RunConfig:
    products: Products
    tests: list[str]
    smmu: str = "cosim"  # "cosim" (the Python model) or "builtin" (QEMU's own smmuv3)
    timeout: float = 600.0  # whole run, seconds
    boot_timeout: float = 180.0
    interactive: bool = False
    runs_dir: Path = Path("runs")
    smp: int = 2
    memory_mb: int = 1024
    model_args: list[str] = field(default_factory=list)
    test_args: dict[str, str] = field(default_factory=dict)
    append: str = ""
    kernel_choice: str = ""  # the --kernel name, to find this kernel's recorded expectations
    link_timeout_ms: int = 30000  # QEMU gives up on a silent model after this long
    echo: bool = True  # print console progress lines
    # Analyse the trace while the model writes it (LiveAnalysis), not after the run.
    live_analysis: bool = True


@dataclass
class RunOutcome:
    run_dir: Path
    guest: str  # booted | panic | hang | qemu-exit | model-exit | timeout | interrupted
    results: list[TestResult]
    analysis: dict | None
    exit_code: int


def _new_run_dir(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run = base / stamp
    n = 1
    while run.exists():
        run = base / f"{stamp}-{n}"
        n += 1
    run.mkdir()
    latest = base / "latest"
    tmp = base / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run.name)
    os.replace(tmp, latest)
    return run


def _kill_group(proc_pid: int | None, grace: float = 5.0) -> None:
    """TERM then KILL a whole process group; waits so nothing is left behind."""
    if not proc_pid:
        return
    try:
        pgid = os.getpgid(proc_pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


class Run:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.dir = _new_run_dir(cfg.runs_dir)
        # mkdtemp makes the directory 0700: the ipc socket and the RAM file are private.
        self.runtime = Path(tempfile.mkdtemp(prefix="cosim-",
                                             dir=os.environ.get("XDG_RUNTIME_DIR")))
        os.chmod(self.runtime, 0o700)
        self.model: subprocess.Popen | None = None
        self.qemu: pexpect.spawn | None = None
        self.console = open(self.dir / "console.log", "w", encoding="utf-8", errors="replace")
        self.boot_log = ""
        self.deadline = time.monotonic() + cfg.timeout

    # -- processes ---------------------------------------------------------------------------
    def qemu_cmdline(self) -> list[str]:
        p = self.cfg.products
        # arm64.nolva: 48-bit VAs, no LPA2 (sanitised PARange 48). With -cpu max's 52-bit VAs
        # 6.12 builds an LPA2-format SVA CD the model (no DS) cannot take and 7.2 refuses SVA
        # (../shared/BRIEF.md §6, docs/conformance.md); 48 bits is what the SVA area needs.
        # oops=panic: an oops kills only the task that hit it, and a test waiting on that task
        # (or on a lock it held) would sit out its whole timeout; as a panic the run ends at
        # once, with the oops in the console tail it reports.
        append = ("console=ttyAMA0 earlycon rdinit=/init panic=-1 oops=panic arm64.nolva "
                  + self.cfg.append)
        cmd = [str(p.qemu), "-M", "virt,gic-version=3", "-cpu", "max", "-accel", "tcg,thread=multi",
               "-smp", str(self.cfg.smp), "-nodefaults", "-display", "none", "-serial", "stdio",
               "-monitor", "none", "-no-reboot", "-kernel", str(p.image),
               "-initrd", str(p.initramfs),
               "-append", append.strip()]
        mem = f"{self.cfg.memory_mb}M"
        if self.cfg.smmu == "builtin":
            cmd[2] += ",iommu=smmuv3"
            cmd += ["-m", mem]
        else:
            ram = self.runtime / "ram"
            cmd[2] += ",iommu=smmuv3-cosim,memory-backend=ram"
            cmd += ["-m", mem,
                    "-object", f"memory-backend-file,id=ram,size={mem},mem-path={ram},share=on",
                    "-object", f"cosim-link,id=cosim,addr={self.link_addr},"
                               f"timeout={self.cfg.link_timeout_ms},on-timeout=exit,memdev=ram",
                    "-device", "cosim-pcie-ep,link=cosim,addr=2.0"]
        return cmd

    @property
    def link_addr(self) -> str:
        return f"ipc://{self.runtime}/link"

    def start_model(self) -> None:
        cmd = [sys.executable, "-m", "cosim", "model", "--addr", self.link_addr,
               "--trace", str(self.dir / TRACE_NAME), "--log", str(self.dir / "model.log"),
               *self.cfg.model_args]
        (self.dir / "model-cmdline.txt").write_text(shlex.join(cmd) + "\n")
        self.model = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL,
                                      stdout=open(self.dir / "model.out", "w"),
                                      stderr=subprocess.STDOUT)
        # The model binds before QEMU connects; wait for the socket file to appear.
        sock = self.runtime / "link"
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.model.poll() is not None:
                out = (self.dir / "model.out").read_text()[-2000:]
                raise RunError(f"the model exited at start (status {self.model.returncode}):"
                               f"\n{out}")
            if time.monotonic() > deadline:
                raise RunError("the model did not open its socket within 30 s")
            time.sleep(0.05)

    def start_qemu(self) -> None:
        cmd = self.qemu_cmdline()
        (self.dir / "qemu-cmdline.txt").write_text(shlex.join(cmd) + "\n")
        self.qemu = pexpect.spawn(cmd[0], cmd[1:], encoding="utf-8", codec_errors="replace",
                                  timeout=None, maxread=65536, echo=False,
                                  dimensions=(50, 200))
        self.qemu.logfile_read = _Tee(self.console)

    def stop(self) -> None:
        """Stop QEMU (gracefully if possible) and the model; idempotent; nothing survives."""
        if self.qemu is not None:
            if self.qemu.isalive():
                _kill_group(self.qemu.pid, grace=5.0)
            try:
                self.qemu.close(force=True)
            except Exception:  # noqa: BLE001 - close of a dead pty may fail; the group is gone
                pass
        if self.model is not None:
            if self.model.poll() is None:
                # QEMU's BYE normally ends the model; give it time to flush its trace.
                try:
                    self.model.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            _kill_group(self.model.pid, grace=5.0)
            try:
                self.model.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.console.flush()
        for f in self.runtime.glob("*"):
            try:
                f.unlink()
            except OSError:
                pass
        try:
            self.runtime.rmdir()
        except OSError:
            pass

    # -- console -----------------------------------------------------------------------------
    def _remaining(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def boot(self) -> str:
        assert self.qemu is not None
        idx = self.qemu.expect([READY, *PANIC_PATTERNS, pexpect.EOF, pexpect.TIMEOUT],
                               timeout=min(self.cfg.boot_timeout, self._remaining()))
        self.boot_log = self.qemu.before or ""
        if idx == 0:
            self.qemu.expect(r"\r?\n")
            self.boot_log += READY + (self.qemu.before or "")
            return "booted"
        if idx in (1, 2):
            try:
                self.qemu.expect(pexpect.EOF, timeout=10)
            except pexpect.TIMEOUT:
                pass
            return "panic"
        if idx == 3:
            return self._why_gone()
        self.dump_model_stack()
        return "hang"

    def dump_model_stack(self) -> None:
        """On a hang, have the model write every thread's stack to model.out (SIGUSR1,
        cosim/backend.py): it tells a model stuck in a loop from a guest stuck on its own."""
        if self.model is None or self.model.poll() is not None:
            return
        try:
            os.kill(self.model.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return
        time.sleep(1.0)

    def _why_gone(self) -> str:
        if self.model is not None and self.model.poll() is not None:
            return "model-exit"
        return "qemu-exit"

    def run_command(self, command: str, timeout: float) -> tuple[str, int | None, str]:
        """Run one shell command in the guest; returns (output, exit status, state)."""
        assert self.qemu is not None
        token = f"{PROMPT_MARK}-{time.monotonic_ns()}"
        self.qemu.sendline(f"{command}; echo {token} $?")
        # The echo of our own command line also contains the token, followed by ' $?'. The
        # status ends at the first non-digit, not at a newline: kernel messages on the same
        # console may follow it on its line ("... 0[   55.36] arm-smmu-v3: event ...").
        pattern = token + r" (\d+)\D"
        idx = self.qemu.expect([pattern, *PANIC_PATTERNS, pexpect.EOF, pexpect.TIMEOUT],
                               timeout=min(timeout, self._remaining()))
        out = self.qemu.before or ""
        if idx == 0:
            status = int(self.qemu.match.group(1))
            lines = out.splitlines()
            # Drop the echoed command line.
            lines = [ln for ln in lines if token not in ln]
            return "\n".join(lines), status, "ok"
        if idx in (1, 2):
            return out, None, "panic"
        if idx == 3:
            return out, None, self._why_gone()
        self.dump_model_stack()
        return out, None, "hang"

    def last_console_lines(self, n: int = 25) -> list[str]:
        self.console.flush()
        try:
            text = (self.dir / "console.log").read_text(errors="replace")
        except OSError:
            return []
        return [ln.rstrip("\r") for ln in text.splitlines()[-n:]]


class _Tee:
    """pexpect logfile that writes the console to the run's console.log."""

    def __init__(self, f) -> None:
        self.f = f

    def write(self, s: str) -> None:
        self.f.write(s)

    def flush(self) -> None:
        self.f.flush()


def trace_of(run_dir: Path) -> Path:
    """A run's trace: TRACE_NAME, or the JSON lines a run before the binary format wrote."""
    trace = run_dir / TRACE_NAME
    return trace if trace.exists() or not (run_dir / OLD_TRACE_NAME).exists() \
        else run_dir / OLD_TRACE_NAME


def _analyze(run_dir: Path, say: Callable[[str], None] = print) -> dict | None:
    trace = trace_of(run_dir)
    if not trace.exists():
        return None
    try:
        from .analyzer import analyze_path  # type: ignore[attr-defined]
    except ImportError:
        return {"verdict": "unavailable", "why": "cosim.analyzer is not installed"}
    say(f"==> analysis: {trace} ({trace.stat().st_size / 1e6:.0f} MB)")
    start = last = time.monotonic()

    def progress(n: int) -> None:
        # A large trace (the strict mode writes tens of millions of records) takes minutes:
        # say how far it got, every few seconds, rather than sit silent.
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS:
            last = now
            say(f"    analysis: {n / 1e6:.0f}M records read ({now - start:.0f} s)")

    try:
        return analyze_path(trace, report_path=run_dir / "report.txt", progress=progress)
    except Exception as e:  # noqa: BLE001 - a broken analysis must not lose the run's results
        return {"verdict": "error", "why": f"{type(e).__name__}: {e}"}


def execute(cfg: RunConfig) -> RunOutcome:
    """Perform one run; always writes summary.json; never leaves a process behind."""
    run = Run(cfg)
    results: list[TestResult] = []
    guest = "not-started"
    interrupted = False

    def on_signal(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    say = print if cfg.echo else (lambda *a, **k: None)
    live: LiveAnalysis | None = None
    try:
        if cfg.smmu == "cosim":
            say(f"==> model: starting (log {run.dir / 'model.log'})")
            run.start_model()
            if cfg.live_analysis and trace_of(run.dir).exists():
                live = LiveAnalysis(trace_of(run.dir), run.dir / "report.txt",
                                    run.dir / "analysis.json", say, cfg.echo)
        say(f"==> guest: booting {cfg.products.kernel_version} "
            f"({'cosim SMMU + endpoint' if cfg.smmu == 'cosim' else 'QEMU built-in smmuv3'})")
        t0 = time.monotonic()
        run.start_qemu()
        guest = run.boot()
        say(f"    guest: {guest} in {time.monotonic() - t0:.1f}s")
        if guest == "booted":
            if cfg.interactive:
                say("==> interactive: you are at the guest shell; Ctrl-] leaves and stops the run")
                assert run.qemu is not None
                run.qemu.logfile_read = None
                run.qemu.sendline("")
                run.qemu.interact(escape_character="\x1d")
            else:
                results = _run_tests(run, cfg, say)
                guest = _final_state(run, results)
                _poweroff(run)
        else:
            results = [TestResult("boot", "error", guest, run.last_console_lines())]
    except KeyboardInterrupt:
        interrupted = True
        guest = "interrupted"
    except BaseException:
        if live is not None:
            live.stop()   # the run is abandoned: no verdict is wanted
        raise
    finally:
        run.stop()
        if live is not None:
            live.model_gone()
        for s, h in old.items():
            signal.signal(s, h)

    if "kunit" in cfg.tests and guest != "not-started":
        results += _kunit_results(run)
    if guest != "not-started":
        results += probe_losses(run.dir / "console.log")
    # What the user waits for once the run's processes are gone: the rest of the analysis.
    t_verdict = time.monotonic()
    analysis = live.result() if live is not None else None
    if analysis is None and cfg.smmu == "cosim":
        analysis = _analyze(run.dir, say)   # no live analysis, or it died without a verdict
    analysis_wait = time.monotonic() - t_verdict
    failed = [r for r in results if r.status in ("fail", "error")]
    exit_code = 130 if interrupted else (1 if failed or guest != "booted" else 0)
    if analysis and analysis.get("verdict") == "violations":
        exit_code = exit_code or 1
    elif analysis and analysis.get("verdict") == "incomplete":
        exit_code = exit_code or 3   # nothing broke, but the trace cannot show a clean run
    summary = {
        "run_dir": str(run.dir),
        "kernel": cfg.products.kernel_version,
        # What was asked for: `cosim matrix --collect` names a cell by these.
        "kernel_choice": cfg.kernel_choice,
        "areas": list(cfg.tests),
        "model_args": list(cfg.model_args),
        "smmu": cfg.smmu,
        "guest": guest,
        "tests": [asdict(r) for r in results],
        "counts": {s: sum(1 for r in results if r.status == s)
                   for s in ("pass", "fail", "skip", "unsupported", "error")},
        "analysis": analysis,
        # Seconds from the end of the run to the verdict (LiveAnalysis read most of the trace
        # while the model wrote it, unless --analyze-after).
        "analysis_wait_s": round(analysis_wait, 2),
        "analysis_live": live is not None and live.gave_result,
        "exit_code": exit_code,
        "last_console_lines": run.last_console_lines() if guest != "booted" else [],
    }
    summary["expectations"] = _judge_expectations(cfg, summary, interrupted)
    if summary["expectations"] and summary["expectations"]["match"]:
        # Exactly the recorded behaviour of this kernel, findings included: not a regression.
        exit_code = summary["exit_code"] = 0
    tmp = run.dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, run.dir / "summary.json")
    return RunOutcome(run.dir, guest, results, analysis, exit_code)


def _judge_expectations(cfg: RunConfig, summary: dict, interrupted: bool) -> dict | None:
    """Compare a full run with tests/expectations/<kernel>.toml, when the kernel has one."""
    if interrupted or summary["guest"] != "booted" or set(cfg.tests) != set(AREAS):
        return None
    if cfg.model_args:
        return None  # expectations are recorded for the model's default options
    if not cfg.kernel_choice or not expectations.available(cfg.kernel_choice):
        return None
    exp = expectations.load(cfg.kernel_choice)
    problems = expectations.mismatches(exp, summary)
    return {"file": str(expectations.path(cfg.kernel_choice)), "match": not problems,
            "mismatches": problems,
            "findings": [{k: f.get(k) for k in ("id", "title", "invariant", "tests")}
                         for f in exp.findings]}


def _final_state(run: Run, results: list[TestResult]) -> str:
    for r in results:
        if r.status == "error" and r.reason in ("panic", "hang", "qemu-exit", "model-exit"):
            return r.reason
    return "booted"


def _run_tests(run: Run, cfg: RunConfig, say) -> list[TestResult]:
    results: list[TestResult] = []
    listing, status, state = run.run_command("ls /tests", timeout=30)
    present = set(listing.split()) if state == "ok" else set()
    for area in cfg.tests:
        if area == "kunit":
            continue
        binary = f"cosim_{area}"
        if binary not in present:
            results.append(TestResult(area, "error", f"guest test binary {binary} is absent from "
                                      "the initramfs (guest-tests/ does not build it)", area=area))
            say(f"    {area}: absent")
            continue
        args = cfg.test_args.get(area, "")
        say(f"==> guest test: {binary} {args}".rstrip())
        out, code, state = run.run_command(f"/tests/{binary} {args}".strip(), timeout=cfg.timeout)
        if state != "ok":
            results.append(TestResult(area, "error", state,
                                      out.splitlines()[-40:] + run.last_console_lines(), area=area))
            say(f"    {area}: {state}")
            break
        rep = tap.parse_tap(out)
        for r in rep.results:
            results.append(TestResult(f"{area}/{r.name}", r.status, r.reason, r.output, area))
            say(f"    {r.status:11s} {area}/{r.name}" + (f"  ({r.reason})" if r.reason else ""))
        for prob in rep.problems:
            results.append(TestResult(f"{area}/tap", "fail", prob, out.splitlines()[-40:], area))
        if code not in (0, None) and all(r.status != "fail" for r in rep.results):
            results.append(TestResult(f"{area}/exit", "fail", f"exit status {code}",
                                      out.splitlines()[-40:], area))
    return results


def _kunit_results(run: Run) -> list[TestResult]:
    cases = tap.parse_kunit(run.boot_log or "")
    if not cases:
        missing = _kunit_config_missing(run.cfg.products.kernel_dir / "config")
        if missing:
            return [TestResult("kunit", "unsupported", "not supported by this kernel: arm-smmu-v3 "
                               f"KUnit ({missing} is not set in its config)", area="kunit")]
        return [TestResult("kunit", "fail", "no arm-smmu-v3 KUnit results in the boot log "
                           "(is CONFIG_ARM_SMMU_V3_KUNIT_TEST set in this kernel?)", area="kunit")]
    return [TestResult(f"kunit/{c.name}", c.status, c.reason, area="kunit") for c in cases]


# guest-kmod/cosim_drv_probe.c's line for a driver call it could not read, so did not trace.
PROBE_LOST = re.compile(r"cosim_drv_probe: \S+: [^\r\n]*not readable[^\r\n]*")


def probe_losses(console: Path) -> list[TestResult]:
    """An entry point the probe could not read is a driver call the analysis never sees (an
    attach window, a domain invalidation): the trace is then not a full account of the run."""
    try:
        text = console.read_text(errors="replace")
    except OSError:
        return []
    lost = [m.group(0) for m in PROBE_LOST.finditer(text)]
    if not lost:
        return []
    return [TestResult("probe/untraced-calls", "error",
                       f"{len(lost)} driver call(s) the probe module could not read and did "
                       f"not trace; the first: {lost[0]}", lost[:20], area="probe")]


def _kunit_config_missing(config: Path) -> str:
    """The first option the built-in arm-smmu-v3 KUnit suite needs that the kernel's config
    lacks; "" when all are set or the config is unknown (then missing results are a failure)."""
    if not config.is_file():
        return ""
    lines = set(config.read_text(errors="replace").splitlines())
    for opt in ("CONFIG_KUNIT", "CONFIG_ARM_SMMU_V3_KUNIT_TEST"):
        if f"{opt}=y" not in lines:
            return opt
    return ""


def _poweroff(run: Run) -> None:
    assert run.qemu is not None
    try:
        run.qemu.sendline("poweroff -f")
        run.qemu.expect(pexpect.EOF, timeout=30)
    except (pexpect.TIMEOUT, OSError):
        pass
