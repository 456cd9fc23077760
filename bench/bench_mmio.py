"""The guest-timed MMIO round trip (guest-tests/tests/cosim_mmio.c) and what it is made of.

bench/run.py's `guest` section runs `/tests/cosim_mmio` in a booted guest; this module holds
the parts of that measurement that need no guest:

* `parse_results`: the program's `# mmio-result key=value ...` lines, one per case;
* `mmio_windows`: in the model's trace, each loop between its `test-begin`/`test-end` markers
  (label "mmio read"): how many endpoint BAR reads of the ID register it holds, anything else
  the endpoint saw, and the gaps between consecutive reads as the model's clock saw them;
* `thread_cpu_ns`: CPU time of a live process by thread role (/proc/PID/task/*/schedstat), so
  the model's and QEMU's CPU per read during the loop can be told apart from the wall time;
* `model_service`: the model's own Python work for one such read, in this process (CPU time):
  decode the request, `Model.serve` (endpoint register read, its trace record, the SMMU's
  tick), encode the reply; `record_cost`: the one trace record each read writes.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cosim.arch import endpoint_regs as regs

RESULT_PREFIX = "# mmio-result "
MARKER_LABEL = "mmio read"          # cosim_mmio's test-begin/test-end label
ID_OFFSET = next(r.offset for r in regs.REGISTERS if r.name == "ID")
# The registers the program's end marker writes (label, tag, value): inside the window.
MARKER_SPANS = tuple((r.offset, r.offset + r.span) for r in regs.REGISTERS
                     if r.name.startswith("MARKER_"))
RESULT_KEYS = ("reads", "batch", "batches", "total_ns", "mean_ns", "min_ns", "median_ns",
               "p90_ns", "max_ns", "wrong")


@dataclass
class MmioResult:
    """One case's line: per-read ns figures are over its batches (each batch's time / reads)."""
    target: str
    reads: int
    batch: int
    batches: int
    total_ns: int
    mean_ns: int
    min_ns: int
    median_ns: int
    p90_ns: int
    max_ns: int
    wrong: int


class ResultError(ValueError):
    """An mmio-result line that is not what cosim_mmio prints."""


def parse_results(text: str) -> dict[str, MmioResult]:
    """The `# mmio-result` lines of cosim_mmio's output, by target (its case name)."""
    out: dict[str, MmioResult] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(RESULT_PREFIX):
            continue
        fields: dict[str, str] = {}
        for word in line[len(RESULT_PREFIX):].split():
            key, sep, value = word.partition("=")
            if not sep:
                raise ResultError(f"{word!r} is not key=value in {line!r}")
            fields[key] = value
        missing = [k for k in ("target", *RESULT_KEYS) if k not in fields]
        if missing:
            raise ResultError(f"{line!r} lacks {', '.join(missing)}")
        try:
            nums = {k: int(fields[k]) for k in RESULT_KEYS}
        except ValueError as e:
            raise ResultError(f"{line!r}: {e}") from None
        out[fields["target"]] = MmioResult(fields["target"], **nums)
    return out


@dataclass
class MmioWindow:
    """One loop as the model's trace shows it."""
    count: int                 # the markers' value: the reads the program was asked for
    id_reads: int              # endpoint BAR0 reads of ID between the markers
    wrong_values: int          # of those, how many returned another value than the ID
    other: int                 # any other endpoint access between the markers (the end
                               # marker's own writes to the MARKER_* registers excepted)
    records: int               # every record between the markers (SMMU ones included)
    gaps_ns: list[int] = field(default_factory=list)  # between consecutive ID reads


def mmio_windows(records: list[dict]) -> list[MmioWindow]:
    """Each cosim_mmio loop (test-begin .. test-end labelled MARKER_LABEL) in trace order."""
    out: list[MmioWindow] = []
    cur: MmioWindow | None = None
    last_t: int | None = None
    for r in records:
        k = r.get("k")
        if k == "marker" and r.get("label") == MARKER_LABEL:
            if r.get("tag") == "test-begin":
                cur, last_t = MmioWindow(int(r.get("value", 0)), 0, 0, 0, 0), None
            elif r.get("tag") == "test-end" and cur is not None:
                out.append(cur)
                cur = None
            continue
        if cur is None:
            continue
        cur.records += 1
        if k != "mmio" or r.get("dev", 0) == 0:
            continue
        if r.get("rw") == "r" and r.get("region") == regs.BAR_REGS and r.get("off") == ID_OFFSET:
            cur.id_reads += 1
            if r.get("val") != regs.ID_VALUE:
                cur.wrong_values += 1
            if last_t is not None:
                cur.gaps_ns.append(r["t"] - last_t)
            last_t = r["t"]
        elif not (r.get("rw") == "w" and r.get("region") == regs.BAR_REGS
                  and any(lo <= r.get("off", -1) < hi for lo, hi in MARKER_SPANS)):
            cur.other += 1
    return out


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU time (ns) of a live process by thread role: `main` (the thread whose id is the
    process's: the model's Python loop, QEMU's main loop), `zmq` (libzmq's own threads, named
    ZMQbg/...) and `threads` (the rest: QEMU's vCPUs, RCU, workers). The first field of
    /proc/PID/task/TID/schedstat; a thread that ends meanwhile is left out."""
    out = {"main": 0, "zmq": 0, "threads": 0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        role = "zmq" if name.startswith("ZMQbg") else "main" if task.name == str(pid) \
            else "threads"
        out[role] += ns
    return out


def cpu_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Per role, the CPU spent between two thread_cpu_ns readings (a thread that ended in
    between takes its time with it: never below 0)."""
    return {role: max(0, after[role] - before.get(role, 0)) for role in after}


def model_service(reads: int, traced: bool) -> dict[str, float]:
    """CPU µs of the model's Python work for one endpoint ID read, in this process, hot (the
    same call in a loop), per phase: `decode` (the MMIO_READ frame), `serve` (Model.serve: the
    endpoint register read, its trace record, the SMMU's tick), `encode` (the reply), `idle`
    (Model.run's turn after it: a non-blocking receive on the bound link that finds nothing,
    the endpoints' poll and the SMMU's tick), and their `total`. No peer: no socket I/O.
    `traced`: the binary trace written to a file, as `cosim model` writes it; else none."""
    from cosim.backend import Model
    from cosim.endpoint.endpoint import Endpoint
    from cosim.link.protocol import DeviceKind, MsgType, decode, encode
    from cosim.link.transport import Link
    from cosim.smmu.smmu import SMMUv3
    from cosim.trace import NullTrace, open_writer

    with tempfile.TemporaryDirectory(prefix="cosim-bench-mmio-") as d:
        writer = open_writer(os.path.join(d, "trace.cst"), "cst") if traced else None
        trace = writer or NullTrace()
        link = Link(f"ipc://{d}/link")  # no peer: the ID read does no DMA, no IRQ
        link.bind()
        model = Model(link, lambda mem, irq: SMMUv3(mem, irq=irq, trace=trace),
                      lambda dev, smmu, mem: Endpoint(dev, smmu, mem, trace), trace,
                      logging.getLogger("bench.mmio"))
        model.serve(decode(encode(MsgType.DEVICE, 1, dev=1, kind=int(DeviceKind.PCIE_EP),
                                  rid=0x10, pcie_off=0x40, ats_off=0x100, pasid_off=0x110,
                                  msix_off=0x80)))
        frame = encode(MsgType.MMIO_READ, 2, dev=1, region=regs.BAR_REGS, size=4,
                       offset=ID_OFFSET)
        msg = decode(frame)
        body = model.serve(msg)
        assert body == {"value": regs.ID_VALUE}, body
        def idle() -> None:  # Model.run's turn after a request: nothing more to receive
            link.poll(0)
            model.step()
            model.busy()

        phases = {"decode": lambda: decode(frame), "serve": lambda: model.serve(msg),
                  "encode": lambda: encode(msg.type, msg.seq, reply=True, value=regs.ID_VALUE),
                  "idle": idle}
        out: dict[str, float] = {}
        for name, fn in phases.items():
            for _ in range(max(100, reads // 10)):
                fn()
            t0 = time.process_time_ns()  # CPU time: the machine may be shared
            for _ in range(reads):
                fn()
            out[name] = (time.process_time_ns() - t0) / reads / 1000
        if writer is not None:
            writer.close()
        link.close()
    out["total"] = sum(out.values())
    return out


def record_cost(records: int) -> float:
    """CPU µs of one endpoint `mmio` read record written to a binary trace file (what each
    guest BAR read adds to the model's work; the record `Endpoint.mmio_read` emits)."""
    from cosim.trace import open_writer

    with tempfile.TemporaryDirectory(prefix="cosim-bench-mmio-") as d:
        w = open_writer(os.path.join(d, "trace.cst"), "cst")
        t0 = time.process_time_ns()
        for _ in range(records):
            w.emit("mmio", dev=1, region=regs.BAR_REGS, off=ID_OFFSET, size=4, rw="r",
                   val=regs.ID_VALUE)
        w.close()  # the last frame's compression is part of the cost
        return (time.process_time_ns() - t0) / records / 1000


def median_us(ns: list[int]) -> float | None:
    return statistics.median(ns) / 1000 if ns else None
