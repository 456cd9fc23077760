"""The model's end of the cosim link: one ZeroMQ PAIR socket (docs/protocol.md).

The model binds, QEMU connects. The link answers HELLO and BYE itself, hands every other
QEMU request to a handler, and sends the model's own requests (DMA, IRQ) with `request`,
which waits for the reply. The model is single-threaded; while it waits, a QEMU request that
arrives is queued, and `poll` serves it once the model step that was waiting has finished
("Who waits for what"), so no model part is ever re-entered in the middle of a DMA.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from cosim.link.memory import SharedRam
from cosim.link.protocol import (
    DEFAULT_MAX_DMA,
    MAJOR,
    MINOR,
    MODEL_REQUESTS,
    QEMU_REQUESTS,
    Caps,
    Message,
    MsgType,
    ProtocolError,
    Status,
    decode,
    encode,
    error_reply,
    status_name,
)
from cosim.trace import TraceSink

MODEL_NAME = "cosim-model"
DEFAULT_TIMEOUT_MS = 10000   # same default as QEMU's cosim-link timeout
PRIVATE_MODE = 0o700
SOCKET_NAME = "link"
# Transports whose connections the socket monitor reports (inproc has no connections).
MONITORED_TRANSPORTS = ("ipc://", "tcp://")
MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
SEND_POLL_MS = 50       # while a send is blocked, look at the connection this often


class LinkError(Exception):
    """The link cannot be set up (bad address, unsafe ipc directory)."""


class LinkDown(BaseException):  # noqa: N818 - a reason to stop, like SystemExit
    """The session is over: raised through model code to the main loop.

    A BaseException on purpose, like SystemExit: model code that catches Exception to turn a
    guest error into an architected one must not swallow the end of the session.
    """


class LinkClosed(LinkDown):
    """QEMU said BYE."""


class LinkDisconnected(LinkDown):
    """QEMU's connection went away without BYE (QEMU was killed or crashed)."""


class LinkTimeout(LinkDown):
    """No message at all from QEMU within the timeout while waiting for a reply."""


class VersionMismatch(LinkDown):
    """QEMU speaks another protocol major; the link cannot work."""


class RequestError(Exception):
    """Raised by a request handler: reply with `status` (an architected error), log `reason`."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Handler = Callable[[Message], dict[str, Any] | None]


@dataclass
class Session:
    """What the HELLO exchange settled."""

    minor: int
    caps: Caps
    ram_base: int
    ram_size: int
    ram_path: str


def _private_dir(path: str) -> None:
    """Make sure `path` is a directory only we can reach: create it 0700 or refuse it."""
    try:
        os.mkdir(path, PRIVATE_MODE)
    except FileExistsError:
        pass
    except OSError as e:
        raise LinkError(f"cannot create socket directory {path}: {e.strerror}") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise LinkError(f"socket directory {path} is not a directory")
    if st.st_uid != os.getuid():
        raise LinkError(f"socket directory {path} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o077:
        raise LinkError(f"socket directory {path} is group/world accessible "
                        f"(mode {stat.S_IMODE(st.st_mode):04o}); use a 0700 directory")


def resolve_address(addr: str) -> tuple[str, str | None]:
    """Turn a user address into a bind endpoint; also return a directory we created, if any.

    `ipc://` alone creates a private directory under $XDG_RUNTIME_DIR (or /tmp); an explicit
    ipc path must sit in a 0700 directory of ours (created if missing). `tcp://PORT` and
    `tcp://:PORT` bind loopback; an explicit host is used as given.
    """
    if addr.startswith("ipc://"):
        path = addr[len("ipc://"):]
        if not path:
            root = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
            made = tempfile.mkdtemp(prefix=f"cosim-{os.getpid()}-", dir=root)  # mode 0700
            _private_dir(made)
            return f"ipc://{os.path.join(made, SOCKET_NAME)}", made
        parent = os.path.dirname(os.path.abspath(path))
        existed = os.path.isdir(parent)
        _private_dir(parent)
        return f"ipc://{path}", None if existed else parent
    if addr.startswith("tcp://"):
        rest = addr[len("tcp://"):]
        if re.fullmatch(r":?(\d+|\*)", rest):
            return f"tcp://127.0.0.1:{rest.lstrip(':')}", None
        return addr, None
    if addr.startswith("inproc://"):
        return addr, None
    raise LinkError(f"address {addr!r}: expected ipc://PATH, ipc://, tcp://[HOST]:PORT")


class Link:
    """The model side of the link. Single-threaded: call everything from one thread."""

    def __init__(self, addr: str, *, handler: Handler | None = None,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS, log: logging.Logger | None = None,
                 trace: TraceSink | None = None, context: zmq.Context | None = None,
                 max_dma: int = DEFAULT_MAX_DMA, name: str = MODEL_NAME) -> None:
        self.addr = addr
        self.handler = handler
        self.timeout_ms = timeout_ms   # <= 0: wait for replies forever
        self.log = log or logging.getLogger("cosim.link")
        self.trace = trace
        self.max_dma = max_dma
        self.name = name
        self.session: Session | None = None
        self.shared_ram: SharedRam | None = None
        self.on_hello: Callable[[Session], None] | None = None
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._made_dir: str | None = None
        self.endpoint = ""
        self._seq = 0
        self._pending: collections.deque[Message] = collections.deque()
        self.errors = 0          # bad frames received (for tests and the final log line)
        # Connection tracking through the socket monitor: QEMU killed without BYE shows up
        # only as a closed connection, which ZeroMQ hides from the PAIR socket itself.
        self._monitor: zmq.Socket | None = None
        self._poller: zmq.Poller | None = None
        self._live: list[int] = []          # accepted connections (fds), oldest first
        self._session_fd: int | None = None
        self._in_session = False
        self._closed_all = False     # the last open connection closed (before HELLO)

    # -- setup and teardown ------------------------------------------------------------------

    def bind(self) -> str:
        """Bind the socket; return the endpoint QEMU should connect to."""
        endpoint, self._made_dir = resolve_address(self.addr)
        sock = self._ctx.socket(zmq.PAIR)
        sock.setsockopt(zmq.LINGER, 1000)  # let the BYE reply and last IRQs go out on close
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as e:
            sock.close(0)
            raise LinkError(f"cannot bind {endpoint}: {e}") from None
        self._sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if endpoint.startswith(MONITORED_TRANSPORTS):
            self._monitor = sock.get_monitor_socket(MONITOR_EVENTS)
            self._poller = zmq.Poller()
            self._poller.register(sock, zmq.POLLIN)
            self._poller.register(self._monitor, zmq.POLLIN)
        self.log.info("listening on %s", self.endpoint)
        return self.endpoint

    def close(self) -> None:
        if self._monitor is not None:
            assert self._sock is not None
            self._sock.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
            self._poller = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.shared_ram is not None:
            self.shared_ram.close()
            self.shared_ram = None
        if self._made_dir is not None:
            shutil.rmtree(self._made_dir, ignore_errors=True)
            self._made_dir = None

    def __enter__(self) -> Link:
        if self._sock is None:
            self.bind()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the model's own requests -------------------------------------------------------------

    def request(self, mtype: MsgType, **fields: Any) -> Message:
        """Send a model request and return QEMU's reply (whatever its status).

        QEMU requests arriving meanwhile are queued for `poll`. Raises LinkTimeout when no
        message at all arrives within the timeout, LinkClosed when QEMU says BYE instead.
        """
        assert mtype in MODEL_REQUESTS, mtype
        self._seq += 1
        seq = self._seq
        self._send(encode(mtype, seq, **fields))
        wait = self.timeout_ms if self.timeout_ms > 0 else None
        while True:
            frame = self._recv(wait)
            if frame is None:
                self._timeout(mtype, seq, fields)
            try:
                msg = decode(frame)
            except ProtocolError as err:
                if err.is_reply and err.seq == seq:
                    self._bad_input(err)
                    return Message(mtype, seq, True, Status.MALFORMED)
                self._bad_input(err)
                if err.status == Status.BAD_VERSION:
                    raise VersionMismatch(err.reason) from None
                continue
            if msg.reply:
                if msg.seq == seq and msg.type == mtype:
                    return msg
                self._unexpected_reply(msg)
                continue
            if msg.type is MsgType.BYE:
                self._bye(msg)
            self._pending.append(msg)

    # -- QEMU's requests ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    def poll(self, timeout_ms: int = 0) -> int:
        """Serve queued requests and those arriving within `timeout_ms` (0: only what is there).

        Returns the number of frames handled. Raises LinkClosed on BYE, VersionMismatch on a
        HELLO of another major.
        """
        handled = 0
        while self._pending:
            self._serve(self._pending.popleft())
            handled += 1
        wait = 0 if handled else timeout_ms
        while True:
            frame = self._recv(wait)
            if frame is None:
                return handled
            self.receive(frame)
            handled += 1
            wait = 0
            while self._pending:   # requests queued by DMA the handler did
                self._serve(self._pending.popleft())
                handled += 1

    def receive(self, frame: bytes) -> None:
        """Handle one frame received while idle: a request is served, anything else logged."""
        try:
            msg = decode(frame)
        except ProtocolError as err:
            self._bad_input(err)
            if err.status == Status.BAD_VERSION:
                raise VersionMismatch(err.reason) from None
            return
        if msg.reply:
            self._unexpected_reply(msg)
            return
        self._serve(msg)

    def _serve(self, msg: Message) -> None:
        if msg.type not in QEMU_REQUESTS:
            self._bad_input(ProtocolError(
                Status.UNKNOWN_TYPE, f"{msg.type.name} is not a request the model serves",
                seq=msg.seq, type_byte=int(msg.type)))
            return
        if msg.type is MsgType.HELLO:
            self._hello(msg)
            return
        if msg.type is MsgType.BYE:
            self._bye(msg)
        if self.handler is None:
            self._reply_error(msg, Status.DECODE_ERROR, "no handler for requests")
            return
        try:
            body = self.handler(msg)
        except RequestError as e:
            self._reply_error(msg, e.status, e.reason)
            return
        except Exception as e:  # a model bug: INTERNAL, logged with where it happened
            self.log.error("%s: model failed: %r", msg.describe(), e, exc_info=True)
            self._trace_error(Status.INTERNAL, f"{msg.type.name}: {e!r}")
            self._send(encode(msg.type, msg.seq, reply=True, status=Status.INTERNAL))
            return
        self._send(encode(msg.type, msg.seq, reply=True, **(body or {})))

    def _reply_error(self, msg: Message, status: Status, reason: str) -> None:
        self.log.warning("%s -> %s: %s", msg.describe(), status.name, reason)
        self._trace_error(status, f"{msg.type.name}: {reason}")
        self._send(encode(msg.type, msg.seq, reply=True, status=status))

    # -- handshake and shutdown ---------------------------------------------------------------

    def _hello(self, msg: Message) -> None:
        # Capability bits this model does not know (a later minor's) are simply not accepted.
        want = Caps(msg.caps & Caps.SHARED_RAM)
        accepted = Caps(0)
        if self.shared_ram is not None:   # a second HELLO starts a new session
            self.shared_ram.close()
            self.shared_ram = None
        if Caps.SHARED_RAM in want and msg.ram_size and msg.ram_path:
            try:
                self.shared_ram = SharedRam(msg.ram_path, msg.ram_base, msg.ram_size)
                accepted |= Caps.SHARED_RAM
            except OSError as e:
                self.log.warning("shared RAM %s cannot be mapped (%s): all DMA goes over the "
                                 "socket", msg.ram_path, e.strerror or e)
        minor = min(msg.minor, MINOR)
        gone = self._start_session()
        self.session = Session(minor, accepted, msg.ram_base, msg.ram_size, msg.ram_path)
        if gone:   # nobody to reply to
            self._disconnected()
        self._send(encode(MsgType.HELLO, msg.seq, reply=True, minor=minor, caps=int(accepted),
                          max_dma=self.max_dma, name=self.name))
        self.log.info("HELLO from QEMU: protocol %d.%d (session minor %d), caps %#x asked, "
                      "%#x accepted, RAM %#x+%#x %s", MAJOR, msg.minor, minor, msg.caps,
                      int(accepted), msg.ram_base, msg.ram_size, msg.ram_path or "-")
        if self.trace:
            self.trace.emit("link", event="hello", minor=minor, caps=int(msg.caps),
                            accepted=int(accepted), ram_base=msg.ram_base,
                            ram_size=msg.ram_size, ram_path=msg.ram_path,
                            shared_ram=self.shared_ram is not None)
        if self.on_hello:
            self.on_hello(self.session)

    def _bye(self, msg: Message) -> None:
        self._send(encode(MsgType.BYE, msg.seq, reply=True))
        self.log.info("BYE from QEMU: session over")
        if self.trace:
            self.trace.emit("link", event="bye")
        raise LinkClosed("QEMU said BYE")

    # -- connection tracking -------------------------------------------------------------------

    def _start_session(self) -> bool:
        """HELLO: the peer that sent it is QEMU, the oldest connection still open.

        A PAIR socket talks to its first peer only and refuses later ones while it lives, so
        the oldest open connection is the one the HELLO came on; a stray second connection
        (tcp) closing later must not end the session. Returns True when QEMU already left
        (it sent HELLO and died before we read it).
        """
        if self._monitor is None:
            return False
        self._in_session = False     # events already queued belong to the old session
        self._drain_monitor()
        self._in_session = True
        self._session_fd = self._live[0] if self._live else None
        return self._closed_all and not self._live

    def _drain_monitor(self) -> None:
        """Apply every queued monitor event; raise LinkDisconnected when QEMU has gone."""
        assert self._monitor is not None
        while True:
            try:
                parts = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            event = parse_monitor_message(parts)
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._live.append(fd)
                self._closed_all = False
            elif event["event"] == zmq.EVENT_DISCONNECTED and fd in self._live:
                self._live.remove(fd)
                self._closed_all = not self._live
                if self._in_session and (fd == self._session_fd or not self._live):
                    self._disconnected()

    def _disconnected(self) -> None:
        self._in_session = False
        text = f"QEMU went away without BYE (connection to {self.endpoint} closed)"
        self.log.warning("%s: session over", text)
        if self.trace:
            self.trace.emit("link", event="disconnected", endpoint=self.endpoint)
        raise LinkDisconnected(text)

    def _timeout(self, mtype: MsgType, seq: int, fields: dict[str, Any]) -> None:
        where = f" at {fields['addr']:#x}" if "addr" in fields else ""
        text = (f"no message from QEMU within {self.timeout_ms} ms while waiting for the reply "
                f"to {mtype.name}{where} (seq {seq})")
        self.log.error("%s", text)
        if self.trace:
            self.trace.emit("link", event="timeout", request=mtype.name, seq=seq,
                            ms=self.timeout_ms)
        raise LinkTimeout(text)

    # -- bad input ----------------------------------------------------------------------------

    def _bad_input(self, err: ProtocolError) -> None:
        """One log line, an error reply when the header allows one, nothing else."""
        self.errors += 1
        reply = error_reply(err)
        if reply is not None:
            self._send(reply)
            self.log.warning("bad message from QEMU (seq %d): %s -> replied %s", err.seq,
                             err.reason, err.status.name)
        else:
            self.log.warning("bad message from QEMU: %s (no reply possible)", err.reason)
        self._trace_error(err.status, err.reason)

    def _unexpected_reply(self, msg: Message) -> None:
        self.errors += 1
        self.log.warning("unexpected %s (no such request outstanding): dropped", msg.describe())
        self._trace_error(Status.MALFORMED, f"unexpected reply {msg.type.name} seq {msg.seq}")

    def _trace_error(self, status: Status, reason: str) -> None:
        if self.trace:
            self.trace.emit("link", event="error", status=status_name(status), reason=reason)

    # -- socket -------------------------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        """Send one frame. A PAIR socket blocks while it has no peer, so never block blindly:
        a peer that went away ends the session, one that stops reading times out."""
        sock = self._sock
        assert sock is not None, "link not bound"
        try:
            sock.send(frame, zmq.NOBLOCK, copy=True)
            return
        except zmq.Again:
            pass
        deadline = None if self.timeout_ms <= 0 else time.monotonic() + self.timeout_ms / 1000
        while True:
            if self._monitor is not None:
                self._drain_monitor()
                if not self._live:
                    if self._in_session:
                        self._disconnected()
                    self.log.warning("no QEMU connected: dropped a %d-byte message", len(frame))
                    return
            sock.poll(SEND_POLL_MS, zmq.POLLOUT)
            try:
                sock.send(frame, zmq.NOBLOCK, copy=True)
                return
            except zmq.Again:
                pass
            if deadline is not None and time.monotonic() >= deadline:
                text = f"QEMU has not taken a message for {self.timeout_ms} ms"
                self.log.error("%s", text)
                if self.trace:
                    self.trace.emit("link", event="timeout", request="send",
                                    ms=self.timeout_ms)
                raise LinkTimeout(text)

    def _recv(self, timeout_ms: int | None) -> bytes | None:
        """One frame, or None when nothing arrived within timeout_ms (None/negative: forever)."""
        sock = self._sock
        assert sock is not None, "link not bound"
        try:
            return sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            pass
        # Data first: whatever QEMU sent before it went away (even its BYE) is served before
        # its disconnection is noticed.
        if self._monitor is not None:
            self._drain_monitor()
        if timeout_ms == 0:
            return None
        deadline = None if timeout_ms is None or timeout_ms < 0 else \
            time.monotonic() + timeout_ms / 1000
        while True:
            left = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if self._poller is None:
                ready = bool(sock.poll(left, zmq.POLLIN))
            else:
                ready = sock in dict(self._poller.poll(left))
            if ready:
                try:
                    return sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    continue
            if self._monitor is not None:
                self._drain_monitor()
            if deadline is not None and time.monotonic() >= deadline:
                return None
