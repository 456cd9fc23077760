"""The model process (`cosim model`): the link, the SMMU and the endpoints, and the main loop.

QEMU's requests are dispatched by device number (docs/protocol.md): dev 0 is the SMMU's
register frame, dev >= 1 are `cosim-pcie-ep` endpoints, created when QEMU describes them with
DEVICE. After every request served each endpoint completes the invalidations that are due and
the SMMU is ticked (a CMD_SYNC waiting on ATC invalidations polls them then, so a completion
the endpoint sent while handling the request is seen before the reply), and when no request is
waiting the loop lets the model make progress on its own: each endpoint's `poll()` (delayed
invalidation completions, the traffic generator), then `smmu.tick()`. The endpoints always go
before the SMMU, so a completion due before the SMMU's ATC invalidation timeout is never missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Protocol

from cosim.link.memory import LinkMemory
from cosim.link.protocol import (
    DEFAULT_MAX_DMA,
    MMIO_SIZES,
    SMMU_DEV,
    SMMU_FRAME_SIZE,
    SMMU_REGION,
    DeviceKind,
    Message,
    MsgType,
    ResetKind,
    Status,
    status_name,
)
from cosim.link.transport import (
    DEFAULT_TIMEOUT_MS,
    Link,
    LinkClosed,
    LinkDisconnected,
    LinkDown,
    LinkError,
    LinkTimeout,
    RequestError,
    VersionMismatch,
)
from cosim.memory import GuestMemory
from cosim.smmu.options import CACHE_MODES
from cosim.trace import FORMATS, TraceSink, open_writer

CFG_SIZES = (1, 2, 4)
RESET_KINDS = frozenset(k.value for k in ResetKind)
IDLE_WAIT_MS = 10             # how long the idle loop blocks before the next tick()/poll()

EXIT_OK = 0
EXIT_USAGE = 2                # bad options, cannot bind, SMMU model missing
EXIT_TIMEOUT = 3              # QEMU stopped answering
EXIT_VERSION = 4              # QEMU speaks another protocol major

IrqFn = Callable[[int, int], None]
SmmuFactory = Callable[[GuestMemory, IrqFn], Any]


class Device(Protocol):
    """What the loop asks of an endpoint model (cosim.endpoint.Endpoint)."""

    def device_info(self, rid: int, pcie_off: int = 0, ats_off: int = 0, pasid_off: int = 0,
                    msix_off: int = 0) -> None: ...
    def mmio_read(self, region: int, offset: int, size: int) -> int: ...
    def mmio_write(self, region: int, offset: int, size: int, value: int) -> None: ...
    def cfg_write(self, offset: int, size: int, value: int) -> None: ...
    def reset(self, kind: int) -> None: ...
    def poll(self) -> None: ...
    def poll_invalidations(self) -> None: ...
    @property
    def busy(self) -> bool: ...


EndpointFactory = Callable[[int, Any, GuestMemory], Device]


class Shutdown(LinkDown):
    """SIGTERM/SIGINT: stop the model cleanly."""


class OptionError(Exception):
    """A model option that does not fit the SMMU or endpoint options."""


# -- arguments ----------------------------------------------------------------------------------

def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The `cosim model` options. Defaults of SMMU/endpoint options live in their dataclasses."""
    parser.add_argument("--addr", required=True,
                        help="link address: ipc://PATH (in a 0700 directory), ipc:// (make one), "
                             "tcp://[HOST]:PORT (loopback unless HOST is given)")
    parser.add_argument("--trace", metavar="PATH", help="write the trace here")
    parser.add_argument("--trace-format", choices=FORMATS, default="cst",
                        help="cst: the binary format (zstd frames, default); jsonl: JSON lines "
                             "(docs/trace.md; `cosim trace export` converts either way)")
    parser.add_argument("--log", metavar="PATH", help="model log (default: stderr)")
    parser.add_argument("--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS,
                        help="give up when QEMU sends nothing for this long while the model "
                             "waits for a reply (0: wait forever; default %(default)s)")
    parser.add_argument("--max-dma", type=int, default=DEFAULT_MAX_DMA,
                        help="QEMU's max-dma: longer DMA is split into chunks (default "
                             "%(default)s)")
    smmu = parser.add_argument_group("SMMU model")
    smmu.add_argument("--cache-mode", choices=CACHE_MODES,
                      help="coherent: re-read structures every time; caching: keep them until "
                           "invalidated; strict: also cache invalid ones, apply invalidations "
                           "at the next CMD_SYNC, tear fetches, complete ATC invalidations "
                           "late (default coherent)")
    smmu.add_argument("--atc-inv-timeout-ms", type=float,
                      help="CMD_SYNC fails with CERROR_ATC_INV_SYNC when ATC invalidations are "
                           "not complete after this long")
    smmu.add_argument("--smmu-opt", action="append", default=[], metavar="NAME=VALUE",
                      help="any other SmmuOptions field (repeatable), e.g. ssid_bits=8")
    ep = parser.add_argument_group("endpoint model")
    ep.add_argument("--atc-entries", type=int, help="ATC capacity in entries")
    ep.add_argument("--inv-delay-ms", type=float, help="hold each ATS invalidation completion")
    ep.add_argument("--inv-drop", action="store_true", default=None,
                    help="never complete ATS invalidations (SMMU: CERROR_ATC_INV_SYNC)")
    ep.add_argument("--inv-ignore", action="store_true", default=None,
                    help="complete ATS invalidations without invalidating (a broken device)")
    ep.add_argument("--xlate-fail", action="store_true", default=None,
                    help="every ATS Translation Request fails")
    ep.add_argument("--slow-us", type=int, help="delay before each DMA request, microseconds")
    ep.add_argument("--ep-opt", action="append", default=[], metavar="NAME=VALUE",
                    help="any other EndpointOptions field (repeatable), e.g. atc_policy=fifo")


# argparse destination -> option field, per options dataclass.
SMMU_ARGS = {"cache_mode": "cache_mode", "atc_inv_timeout_ms": "atc_inv_timeout_ms"}
ENDPOINT_ARGS = {"atc_entries": "atc_entries", "inv_delay_ms": "inv_delay_ms",
                 "inv_drop": "inv_drop", "inv_ignore": "inv_ignore",
                 "xlate_fail": "xlate_fail", "slow_us": "slow_us"}

# Strict mode: endpoints act on and complete each ATC invalidation after this fraction of the
# SMMU's atc_inv_timeout_ms, as late as the timeout allows with a margin for the model's loop.
STRICT_INV_LATE = 0.9
# Strict mode: translated writes each endpoint keeps in flight (EndpointOptions.inflight).
INFLIGHT_STRICT = 8

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(cls: type, name: str, text: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise OptionError(f"{cls.__name__} has no option {name!r} "
                          f"(known: {', '.join(sorted(fields))})")
    default = fields[name].default
    kind = type(default) if default is not dataclasses.MISSING else str
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        return kind(int(text, 0)) if kind is int else kind(text)
    except ValueError:
        raise OptionError(f"{cls.__name__}.{name}: {text!r} is not a {kind.__name__}") from None


def build_options(cls: type, args: argparse.Namespace, named: dict[str, str],
                  generic: list[str]) -> Any:
    """An options dataclass from the dedicated arguments and NAME=VALUE extras."""
    values: dict[str, Any] = {}
    for dest, field in named.items():
        value = getattr(args, dest, None)
        if value is not None:
            values[field] = value
    for item in generic:
        name, eq, text = item.partition("=")
        if not eq:
            raise OptionError(f"{item!r}: expected NAME=VALUE")
        values[name.strip().replace("-", "_")] = _convert(cls, name.strip().replace("-", "_"),
                                                          text.strip())
    known = {f.name for f in dataclasses.fields(cls)}
    missing = set(values) - known
    if missing:
        raise OptionError(f"{cls.__name__} has no option {', '.join(sorted(missing))}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise OptionError(f"{cls.__name__}: {e}") from None


def strict_endpoint(smmu_opts: Any, ep_opts: Any) -> Any:
    """In strict mode, endpoints complete ATC invalidations as late as the SMMU's timeout
    allows (and use the invalidated entries until then), unless inv_late_ms was given, and keep
    up to INFLIGHT_STRICT translated writes in flight, unless inflight was given."""
    if not smmu_opts.strict:
        return ep_opts
    changes: dict[str, Any] = {}
    if not ep_opts.inv_late_ms:
        changes["inv_late_ms"] = smmu_opts.atc_inv_timeout_ms * STRICT_INV_LATE
    if not ep_opts.inflight:
        changes["inflight"] = INFLIGHT_STRICT
    return dataclasses.replace(ep_opts, **changes)


# -- the model ----------------------------------------------------------------------------------

class Model:
    """Dispatch of QEMU requests to the SMMU and endpoints, and the idle loop."""

    def __init__(self, link: Link, make_smmu: SmmuFactory, make_endpoint: EndpointFactory,
                 trace: TraceSink, log: logging.Logger,
                 max_dma: int = DEFAULT_MAX_DMA) -> None:
        self.link = link
        self.trace = trace
        self.log = log
        self.mem = LinkMemory(link, max_dma)
        self.make_endpoint = make_endpoint
        self.smmu = make_smmu(self.mem, self.irq)
        self.endpoints: dict[int, Device] = {}
        self.smmu_info: dict[str, int] | None = None
        self._failed: set[str] = set()
        link.handler = self.serve

    # QEMU -> model

    def serve(self, msg: Message) -> dict[str, int] | None:
        """One QEMU request, then the SMMU's turn to notice what it caused (e.g. an ATC
        invalidation completed by an endpoint reset or register write)."""
        body = self.handle(msg)
        now = self.smmu.clock()
        for dev, ep in list(self.endpoints.items()):
            self._guard(f"endpoint {dev} invalidations", ep.poll_invalidations)
        self._tick(now)
        return body

    def handle(self, msg: Message) -> dict[str, int] | None:
        t = msg.type
        if t is MsgType.MMIO_READ:
            return {"value": self._mmio(msg, None)}
        if t is MsgType.MMIO_WRITE:
            self._mmio(msg, msg.value)
            return None
        if t is MsgType.CFG_WRITE:
            return self._cfg_write(msg)
        if t is MsgType.RESET:
            return self._reset(msg)
        if t is MsgType.DEVICE:
            return self._device(msg)
        raise RequestError(Status.UNKNOWN_TYPE, f"{t.name} is not served by the model")

    def _endpoint(self, dev: int) -> Device:
        ep = self.endpoints.get(dev)
        if ep is None:
            raise RequestError(Status.DECODE_ERROR, f"no device {dev} (no DEVICE message for it)")
        return ep

    def _mmio(self, msg: Message, value: int | None) -> int:
        size, offset = msg.size, msg.offset
        if size not in MMIO_SIZES:
            raise RequestError(Status.ACCESS_ERROR, f"MMIO size {size}")
        mask = (1 << (8 * size)) - 1
        if msg.dev == SMMU_DEV:
            if msg.region != SMMU_REGION or offset + size > SMMU_FRAME_SIZE:
                raise RequestError(Status.DECODE_ERROR,
                                   f"SMMU region {msg.region} offset {offset:#x} decodes to "
                                   "nothing")
            if value is None:
                return self.smmu.mmio_read(offset, size) & mask
            self.smmu.mmio_write(offset, size, value & mask)
            return 0
        ep = self._endpoint(msg.dev)
        if value is None:
            return ep.mmio_read(msg.region, offset, size) & mask
        ep.mmio_write(msg.region, offset, size, value & mask)
        return 0

    def _cfg_write(self, msg: Message) -> None:
        if msg.dev == SMMU_DEV:
            raise RequestError(Status.DECODE_ERROR, "the SMMU has no config space")
        if msg.size not in CFG_SIZES:
            raise RequestError(Status.ACCESS_ERROR, f"config write size {msg.size}")
        self._endpoint(msg.dev).cfg_write(msg.offset, msg.size, msg.value)
        return None

    def _reset(self, msg: Message) -> None:
        if msg.kind not in RESET_KINDS:
            raise RequestError(Status.ACCESS_ERROR, f"reset kind {msg.kind}")
        if msg.dev == SMMU_DEV:
            if msg.kind != ResetKind.SYSTEM:
                raise RequestError(Status.ACCESS_ERROR, "the SMMU has no function-level reset")
            self.smmu.reset()
        else:
            self._endpoint(msg.dev).reset(msg.kind)
        kind = ResetKind(msg.kind).name.lower()
        self.log.info("device %d: %s reset", msg.dev, kind)
        # The analyzer must know that every earlier domain, cache and ATC entry is gone.
        self.trace.emit("link", event="reset", dev=msg.dev, reset=kind)
        return None

    def _device(self, msg: Message) -> None:
        info = {k: msg.body[k] for k in ("rid", "pcie_off", "ats_off", "pasid_off", "msix_off")}
        if msg.kind == DeviceKind.SMMU:
            if msg.dev != SMMU_DEV:
                raise RequestError(Status.ACCESS_ERROR, f"an SMMU must be dev 0, not {msg.dev}")
            self.smmu_info = info
        elif msg.kind == DeviceKind.PCIE_EP:
            if msg.dev == SMMU_DEV:
                raise RequestError(Status.ACCESS_ERROR, "dev 0 is the SMMU")
            if msg.dev in self.endpoints:
                raise RequestError(Status.ACCESS_ERROR, f"device {msg.dev} already described")
            ep = self.make_endpoint(msg.dev, self.smmu, self.mem)
            # Endpoint.device_info registers the endpoint with the SMMU as the ATS device
            # for its requester ID (= StreamID: virt's iommu-map is the identity).
            ep.device_info(**info)
            self.endpoints[msg.dev] = ep
        else:
            raise RequestError(Status.ACCESS_ERROR, f"device kind {msg.kind}")
        kind = DeviceKind(msg.kind).name.lower()
        self.log.info("device %d: %s, rid %#06x, caps pcie %#x ats %#x pasid %#x msix %#x",
                      msg.dev, kind, info["rid"], info["pcie_off"], info["ats_off"],
                      info["pasid_off"], info["msix_off"])
        self.trace.emit("link", event="device", dev=msg.dev, device=kind, **info)
        return None

    # model -> QEMU

    def irq(self, line: int, level: int) -> None:
        """The SMMU's wired interrupt output (docs/protocol.md IRQ)."""
        reply = self.link.request(MsgType.IRQ, dev=SMMU_DEV, line=line, level=level)
        if not reply.ok:
            self.log.warning("IRQ line %d level %d refused by QEMU: %s", line, level,
                             status_name(reply.status))

    # the loop

    def busy(self) -> bool:
        """True while some device makes progress on its own (the traffic generator runs, or
        the SMMU has commands to consume: strict mode consumes a few per step)."""
        if self.smmu.busy():
            return True
        return any(ep.busy for ep in self.endpoints.values())

    def step(self) -> None:
        """One round of autonomous progress; a model bug is logged once, not fatal. The SMMU
        goes last, so it sees the invalidations the endpoints completed in this round."""
        now = self.smmu.clock()
        for dev, ep in list(self.endpoints.items()):
            self._guard(f"endpoint {dev} poll", ep.poll)
        self._tick(now)

    def _tick(self, now: float) -> None:
        """Tick the SMMU, judging ATC invalidation timeouts as of `now`: a time read before the
        endpoints were polled, so whatever they completed then was due no later than that."""
        self._guard("smmu.tick", lambda: self.smmu.tick(now))

    def _guard(self, what: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as e:
            key = f"{what}: {type(e).__name__}"
            if key not in self._failed:
                self._failed.add(key)
                self.log.error("%s failed: %r (further failures of this kind not logged)", what,
                               e, exc_info=True)

    def run(self) -> None:
        """Serve QEMU and make progress until the session ends (raises a LinkDown)."""
        while True:
            self.link.poll(0 if self.busy() else IDLE_WAIT_MS)
            self.step()


# -- the process --------------------------------------------------------------------------------

def _setup_log(path: str | None) -> tuple[logging.Logger, logging.Handler]:
    log = logging.getLogger("cosim")
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log, handler


def _load_models() -> tuple[type, type]:
    """The SMMU and endpoint classes; ImportError with the reason when they are missing."""
    try:
        from cosim.smmu import SMMUv3  # type: ignore[attr-defined]
    except ImportError:
        from cosim.smmu.smmu import SMMUv3
    from cosim.endpoint.endpoint import Endpoint
    return SMMUv3, Endpoint


def run_model(args: argparse.Namespace) -> int:
    """Run the model process until BYE, a signal, a timeout or a version mismatch."""
    log, handler = _setup_log(args.log)

    def fatal(text: str, code: int) -> int:
        log.error("%s", text)
        if args.log:
            print(f"cosim model: {text}", file=sys.stderr)
        return code

    try:
        try:
            smmu_cls, ep_cls = _load_models()
            from cosim.endpoint.endpoint import EndpointOptions
            from cosim.smmu.options import SmmuOptions
        except ImportError as e:
            return fatal(f"the SMMU/endpoint model cannot be loaded ({e}): nothing to run",
                         EXIT_USAGE)
        try:
            smmu_opts = build_options(SmmuOptions, args, SMMU_ARGS, args.smmu_opt)
            ep_opts = build_options(EndpointOptions, args, ENDPOINT_ARGS, args.ep_opt)
        except OptionError as e:
            return fatal(str(e), EXIT_USAGE)
        ep_opts = strict_endpoint(smmu_opts, ep_opts)
        return _serve(args, log, fatal, smmu_cls, ep_cls, smmu_opts, ep_opts)
    finally:
        log.removeHandler(handler)
        handler.close()


def _serve(args: argparse.Namespace, log: logging.Logger, fatal: Callable[[str, int], int],
           smmu_cls: type, ep_cls: type, smmu_opts: Any, ep_opts: Any) -> int:
    options = {"smmu": dataclasses.asdict(smmu_opts), "endpoint": dataclasses.asdict(ep_opts),
               "timeout_ms": args.timeout_ms, "max_dma": args.max_dma}
    header: dict[str, Any] = {"cache_mode": smmu_opts.cache_mode}
    if smmu_opts.strict:
        header["strict_seed"] = smmu_opts.strict_seed
    trace = open_writer(args.trace, args.trace_format, options=options, **header)
    link = Link(args.addr, timeout_ms=args.timeout_ms, log=logging.getLogger("cosim.link"),
                trace=trace, max_dma=args.max_dma)
    old = {}

    def on_signal(signum: int, frame: Any) -> None:
        raise Shutdown(signal.Signals(signum).name)

    try:
        try:
            link.bind()
        except LinkError as e:
            return fatal(str(e), EXIT_USAGE)
        model = Model(
            link,
            lambda mem, irq: smmu_cls(mem, irq=irq, trace=trace, options=smmu_opts),
            lambda dev, smmu, mem: ep_cls(dev, smmu, mem, trace, ep_opts),
            trace, log, args.max_dma)
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, on_signal)
        # A launcher that sees the guest hang asks where the model is (SIGUSR1): every thread's
        # stack goes to stderr (the run's model.out), and the model carries on.
        try:
            faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        except (AttributeError, ValueError, OSError):
            pass  # stderr is no file (an embedding caller): no stack dumps
        log.info("model ready: cache mode %s, timeout %d ms", smmu_opts.cache_mode,
                 args.timeout_ms)
        try:
            model.run()
        except LinkClosed:
            log.info("QEMU closed the link: exiting")
            return EXIT_OK
        except LinkDisconnected:
            # The link logged the one line; a vanished QEMU ends the session like BYE does.
            return EXIT_OK
        except Shutdown as e:
            log.info("%s: exiting", e)
            return EXIT_OK
        except LinkTimeout as e:
            return fatal(f"{e}: exiting", EXIT_TIMEOUT)
        except VersionMismatch as e:
            return fatal(f"{e}: QEMU and the model cannot talk, exiting", EXIT_VERSION)
        return EXIT_OK
    finally:
        faulthandler.unregister(signal.SIGUSR1)
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if link.errors:
            log.info("%d bad messages from QEMU during the session", link.errors)
        trace.close()
        link.close()
