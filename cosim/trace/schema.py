"""The trace schema: every record kind the model writes, and each field's name, type and meaning.

Declared once, here, and used three ways: the writer checks every record against it when
checking is on (`COSIM_TRACE_CHECK=1`, the test suite), the reader validates every record
before the analysis sees it, and docs/trace.md's record tables are generated from it
(`python -m cosim.trace --write-doc docs/trace.md`; tests/test_trace_schema.py fails
when they differ).

Schema 2 carries `dom` as a `cosim.arch.domain.Domain` record object (or null: no domain
translated the request); schema 1 carried `Domain.label()` strings, and `upgrade_v1` turns
such a record into its schema-2 form.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cosim.arch.domain import KINDS as DOMAIN_KINDS
from cosim.arch.domain import Domain, DomainError
from cosim.arch.driver_events import DrvOp, DrvPhase, DrvTarget

SCHEMA = 2              # what the writer writes
READABLE = (1, 2)       # what the reader reads (schema 1 is upgraded record by record)


class SchemaViolation(ValueError):
    """A record the writer was asked to emit does not match the schema (checking on)."""


def _show(v: object) -> str:
    """A value as a problem line quotes it: short, and one line."""
    if isinstance(v, Domain):
        text = repr(v)
    else:
        try:
            text = json.dumps(v) if not isinstance(v, str) else repr(v)
        except (TypeError, ValueError):
            text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# -- field types ---------------------------------------------------------------------------
# `ok` judges a value read from JSON; `ok_written` one handed to the writer (Python objects:
# a Domain, a tuple), which the writer then serialises to what `ok` accepts.

class FieldType:
    doc = ""            # how docs/trace.md writes the type
    expected = ""       # the end of "xlate.iova is 'x', expected ..."

    def ok(self, v: object) -> bool:
        raise NotImplementedError

    def ok_written(self, v: object) -> bool:
        return self.ok(v)

    def why(self, v: object) -> str:
        """The expectation, with the reason when the type can say more than `expected`."""
        return self.expected


# The reader's checks run on every field of every record: JSON gives exact types (an integer
# is an `int`, never a `bool` or an IntEnum), so `type(v) is int` suffices there.

def _is_uint(v: object) -> bool:
    """An integer >= 0 as Python code may hand it (an IntEnum counts, a bool does not)."""
    return (type(v) is int or (isinstance(v, int) and not isinstance(v, bool))) \
        and v >= 0  # type: ignore[operator]


class UInt(FieldType):
    doc = "int"
    expected = "an integer >= 0"

    def ok(self, v: object) -> bool:
        return type(v) is int and v >= 0

    def ok_written(self, v: object) -> bool:
        return _is_uint(v)


class OptUInt(FieldType):
    doc = "int?"
    expected = "an integer >= 0 or null"

    def ok(self, v: object) -> bool:
        return v is None or (type(v) is int and v >= 0)

    def ok_written(self, v: object) -> bool:
        return v is None or _is_uint(v)


class OptInt(FieldType):
    doc = "int?"
    expected = "an integer or null"

    def ok(self, v: object) -> bool:
        return v is None or type(v) is int


class Number(FieldType):
    doc = "float"
    expected = "a number"

    def ok(self, v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)


class Bool(FieldType):
    doc = "bool"
    expected = "true or false"

    def ok(self, v: object) -> bool:
        return isinstance(v, bool)


class Str(FieldType):
    doc = "str"
    expected = "a string"

    def ok(self, v: object) -> bool:
        return isinstance(v, str)


class OptStr(FieldType):
    doc = "str?"
    expected = "a string or null"

    def ok(self, v: object) -> bool:
        return v is None or isinstance(v, str)


class Enum(FieldType):
    """A string with a fixed set of values."""

    def __init__(self, *values: str) -> None:
        self.values = frozenset(values)
        self.order = values
        self.doc = "\\|".join(f"'{x}'" for x in values)
        self.expected = "one of " + ", ".join(f"'{x}'" for x in values)

    def ok(self, v: object) -> bool:
        return isinstance(v, str) and v in self.values


class Letters(FieldType):
    """A string of distinct letters from a set: permissions 'rw', ''."""

    def __init__(self, letters: str) -> None:
        self.letters = frozenset(letters)
        # Every string it accepts (16 for 'rwx'): the reader's fast test is one set lookup.
        self.valid = frozenset("".join(p) for n in range(len(letters) + 1)
                               for p in itertools.permutations(letters, n))
        self.doc = f"letters of '{letters}'"
        self.expected = f"a string of letters from '{letters}'"

    def ok(self, v: object) -> bool:
        return isinstance(v, str) and len(set(v)) == len(v) and set(v) <= self.letters


class IntList(FieldType):
    """A list of integers >= 0, of a fixed length when `length` is given."""

    def __init__(self, length: int | None = None) -> None:
        self.length = length
        self.doc = f"[{length} int]" if length is not None else "[int]"
        self.expected = (f"a list of {length} integers >= 0" if length is not None
                         else "a list of integers >= 0")

    def ok(self, v: object) -> bool:
        return (type(v) is list and (self.length is None or len(v) == self.length)
                and all(type(x) is int and x >= 0 for x in v))

    def ok_written(self, v: object) -> bool:
        # The writer serialises a tuple as a list.
        return (isinstance(v, list | tuple) and (self.length is None or len(v) == self.length)
                and all(_is_uint(x) for x in v))


class OptIntList(IntList):
    """An IntList or null."""

    def __init__(self, length: int | None = None) -> None:
        super().__init__(length)
        self.doc += "?"
        self.expected += " or null"

    def ok(self, v: object) -> bool:
        return v is None or super().ok(v)

    def ok_written(self, v: object) -> bool:
        return v is None or super().ok_written(v)


class Object(FieldType):
    """A free-form JSON object (decoded command fields, the run's options)."""

    doc = "object"
    expected = "an object"

    def ok(self, v: object) -> bool:
        return isinstance(v, dict)


class ObjectList(FieldType):
    doc = "[object]"
    expected = "a list of objects"

    def ok(self, v: object) -> bool:
        return isinstance(v, list) and all(isinstance(x, dict) for x in v)


class Dom(FieldType):
    """A domain: `Domain.to_record()` in the file, a `Domain` handed to the writer; or null."""

    doc = "dom"
    expected = "a domain object or null"

    # The integer fields each kind of domain record carries, taken from Domain.to_record, so
    # a record is checked as Domain.from_record would without building a Domain for each.
    _NEED = {kind: tuple(n for n in Domain(kind).to_record() if n != "kind")
             for kind in DOMAIN_KINDS}

    def ok(self, v: object) -> bool:
        if v is None:
            return True
        if type(v) is not dict:
            return False
        need = self._NEED.get(v.get("kind"))  # type: ignore[arg-type]
        if need is None:
            return False
        for name in need:
            x = v.get(name)
            if type(x) is not int or x < 0:
                return False
        return True

    def ok_written(self, v: object) -> bool:
        return v is None or isinstance(v, Domain)

    def why(self, v: object) -> str:
        try:
            Domain.from_record(v)
        except DomainError as e:
            return f"{self.expected} ({e})"
        return self.expected


UINT, OPT_UINT, BOOL, STR, OPT_STR, DOM = UInt(), OptUInt(), Bool(), Str(), OptStr(), Dom()
OBJECT = Object()


# -- declarations --------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    meaning: str
    required: bool = True       # False: the field may be absent from the record


@dataclass(frozen=True)
class Variant:
    """The fields one value of a kind's tag field adds (the `event` of a `link` record)."""

    value: str
    meaning: str
    fields: tuple[Field, ...] = ()


@dataclass(frozen=True)
class Kind:
    name: str
    source: str                 # the section of docs/trace.md: 'header', 'smmu', 'endpoint', 'link'
    meaning: str
    fields: tuple[Field, ...]
    tag: str | None = None      # the field whose value selects a variant
    variants: tuple[Variant, ...] = ()
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)
    by_tag: dict[str, Variant] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        object.__setattr__(self, "by_tag", {v.value: v for v in self.variants})

    def fields_for(self, rec: Mapping[str, Any]) -> tuple[Field, ...]:
        """The fields a record of this kind must match: common ones, then its variant's."""
        if self.tag is None:
            return self.fields
        value = rec.get(self.tag)
        v = self.by_tag.get(value) if isinstance(value, str) else None
        return self.fields + (v.fields if v is not None else ())


def F(name: str, type_: FieldType, meaning: str, required: bool = True) -> Field:
    return Field(name, type_, meaning, required)


# Every record: the time and the kind.
ENVELOPE = (
    F("t", UINT, "nanoseconds since the writer started (monotonic clock)"),
    F("k", STR, "the record kind"),
)

_SID = F("sid", UINT, "StreamID")
_SSID = F("ssid", OPT_UINT, "SubstreamID (PASID), null for traffic without one")
_DEV = F("dev", UINT, "the endpoint's device number on the link")
_ACC = F("acc", Enum("r", "w", "x", "rp", "wp", "xp"),
         "the access: read, write or execute, `p` when privileged")
_QW = IntList(8)
_TORN = F("torn", IntList(), "strict mode, a fetch from memory: the indices of the qwords "
          "returned from what the SMMU observed earlier (at the last completed CMD_SYNC, or "
          "its last fetch) instead of from memory now (§3.21.3, 64-bit single-copy "
          "atomicity); `qw` is what the SMMU used", required=False)
_EFFECT = F("effect", Enum("now", "sync"), "when it takes effect: `now`, as executed "
            "(coherent, caching), or `sync`, when the next CMD_SYNC completes (strict: its "
            "`inv_effect` record)", required=False)

KINDS: tuple[Kind, ...] = (
    Kind("header", "header", "the first line of every trace", (
        F("schema", UINT, "the schema version, `cosim.trace.SCHEMA`"),
        F("wall", Number(), "wall-clock time (Unix seconds) when the writer started"),
        F("cache_mode", Enum("coherent", "caching", "strict"),
          "the SMMU's cache mode (`caching` enables check e; `strict`: docs/architecture.md, "
          "\"Cache modes\")", required=False),
        F("strict_seed", UINT, "strict mode: the seed of the choices of torn fetches "
          "(`SmmuOptions.strict_seed`)", required=False),
        F("options", OBJECT, "the run's SMMU, endpoint and link options", required=False),
        F("devices", ObjectList(),
          "`[{\"dev\": n, \"sid\": s}, ...]`: each endpoint's StreamID (otherwise learnt from "
          "endpoint records carrying both `dev` and `sid`)", required=False),
    )),
    # -- SMMU (cosim/smmu/) ------------------------------------------------------------------
    Kind("mmio", "smmu", "register access from the guest, to the SMMU (`dev` 0, no `region`) "
         "or to an endpoint's BAR", (
             F("dev", UINT, "0 for the SMMU, else the endpoint's device number"),
             F("region", UINT, "the endpoint's BAR; absent for the SMMU", required=False),
             F("off", UINT, "offset in the register space"),
             F("size", UINT, "access size in bytes"),
             F("rw", Enum("r", "w"), "read or write"),
             F("val", UINT, "the value read or written"),
         )),
    Kind("cmd", "smmu", "a command consumed from the command queue", (
        F("idx", UINT, "its index in the queue"),
        F("op", STR, "its name (`CFGI_STE`, `CMD_SYNC`..., `UNKNOWN_0x..` for an unknown "
          "opcode)"),
        F("f", OBJECT, "the decoded fields, name -> integer (§4)"),
        F("raw", IntList(2), "the two 64-bit command words"),
    )),
    Kind("sync", "smmu", "a CMD_SYNC completed, is waiting for ATC invalidations, failed, or "
         "was left unconsumed when CR0.CMDQEN cleared", (
        F("idx", UINT, "the CMD_SYNC's queue index"),
        F("cs", Enum("NONE", "IRQ", "SEV"), "its completion signal (CMD_SYNC.CS)"),
        F("state", Enum("done", "wait", "fail", "stopped"), "completed, waiting, failed, or "
          "`stopped`: CMDQEN cleared while it waited (§6.3.9.3), CONS stays on it"),
        F("err", Enum("CERROR_ATC_INV_SYNC"), "why it failed; only with `fail`",
          required=False),
    )),
    Kind("ste_fetch", "smmu", "an STE used for a translation", (
        _SID,
        F("addr", UINT, "the STE's address"),
        F("qw", _QW, "its eight 64-bit words"),
        F("cached", BOOL, "it came from the configuration cache"),
        F("cfg", Enum("abort", "bypass", "s1", "s2", "nested", "invalid"),
          "its configuration (STE.Config; `invalid` when V=0 or reserved)"),
        F("legal", BOOL, "it is a legal STE (§5.2)"),
        F("why", STR, "what makes it illegal", required=False),
        _TORN,
    )),
    Kind("cd_fetch", "smmu", "a CD used for a translation", (
        _SID, _SSID,
        F("addr", UINT, "the CD's address"),
        F("qw", _QW, "its eight 64-bit words"),
        F("cached", BOOL, "it came from the configuration cache"),
        F("legal", BOOL, "it is a legal CD (§5.4)"),
        F("why", STR, "what makes it illegal", required=False),
        _TORN,
    )),
    Kind("xlate", "smmu", "an untranslated request translated (or faulted)", (
        _SID, _SSID,
        F("iova", UINT, "the input address"),
        _ACC,
        F("ok", BOOL, "translated"),
        F("pa", UINT, "the output address (0 when not translated)"),
        F("size", UINT, "bytes the translation covers (0 when not translated)"),
        F("perm", Letters("rwx"), "the permissions granted"),
        F("dom", DOM, "the domain that translated; null when none did (a configuration "
          "error)"),
        F("ste", OPT_UINT, "the STE's address, null when none was found"),
        F("cd", OPT_UINT, "the CD's address, null without one"),
        F("tlb", BOOL, "served from the TLB"),
        F("fault", OPT_STR, "the event name (§7.3), null on success or a silent abort"),
    )),
    Kind("ats", "smmu", "an ATS Translation Request answered", (
        _SID, _SSID,
        F("iova", UINT, "the requested address"),
        _ACC,
        F("status", Enum("SUCCESS", "UR", "CA"), "the PCIe completion status"),
        F("pa", UINT, "the translated address (0 unless SUCCESS)"),
        F("size", UINT, "bytes the translation covers"),
        F("perm", Letters("rwx"), "the permissions granted (empty: a translation fault)"),
        F("dom", DOM, "the domain that translated; null when none did (UR, CA other than "
          "UR for an STE bypass)"),
        F("tlb", BOOL, "served from the TLB"),
    )),
    Kind("atc_inv", "smmu", "a CMD_ATC_INV delivered to the device", (
        _SID, _SSID,
        F("addr", UINT, "the range's start, decoded"),
        F("size", UINT, "the range's size in bytes, decoded"),
        F("g", BOOL, "Global: every PASID"),
        F("id", UINT, "links it to the device's `atc_inv_rx` and to `atc_inv_sync`"),
    )),
    Kind("atc_inv_sync", "smmu", "the CMD_SYNC covering those invalidations completed or "
         "failed", (
             F("ids", IntList(), "the `atc_inv` ids it covered"),
             F("state", Enum("done", "timeout"), "completed, or timed out"),
         )),
    Kind("tlbi", "smmu", "a TLB invalidation executed (it takes effect as `effect` says)", (
        F("op", STR, "the command's name (`TLBI_NH_VA`...)"),
        F("asid", OPT_UINT, "the ASID; null for TLBI_NH_VAA", required=False),
        F("vmid", UINT, "the VMID", required=False),
        F("addr", UINT, "the range's start, already decoded", required=False),
        F("size", UINT, "the range's size in bytes", required=False),
        F("leaf", UINT, "Leaf: last-level entries only", required=False),
        F("ttl", UINT, "TTL: the level hint", required=False),
        F("n", UINT, "TLB entries removed; absent with `effect` 'sync' (the `inv_effect` "
          "record counts them)", required=False),
        _EFFECT,
    )),
    Kind("cfgi", "smmu", "a configuration cache invalidation executed (`CFGI_ALL` is reported "
         "by that name; it takes effect as `effect` says)", (
             F("op", STR, "the command's name"),
             F("sid", UINT, "StreamID", required=False),
             F("ssid", UINT, "SubstreamID (CFGI_CD)", required=False),
             F("range", UINT, "Range: 2^(Range+1) StreamIDs from `sid` (CFGI_STE_RANGE)",
               required=False),
             _EFFECT,
         )),
    Kind("inv_effect", "smmu", "strict mode: a CFGI or TLBI executed earlier (`effect` 'sync') "
         "took effect as a CMD_SYNC completed (§4.7.3); written just before that `sync` "
         "record", (
             F("op", STR, "the invalidation's name, as in its `cfgi`/`tlbi` record"),
             F("cmd", UINT, "the invalidation's command queue index"),
             F("sync", UINT, "the CMD_SYNC's command queue index"),
             F("n", UINT, "entries it removed: TLB entries for a TLBI, STEs and CDs for a CFGI"),
         )),
    Kind("event", "smmu", "an event record written to the event queue (or lost)", (
        F("name", STR, "the event's name (§7.3, `F_TRANSLATION`...)"),
        F("code", UINT, "its event type code"),
        _SID, _SSID,
        F("addr", OPT_UINT, "the input or fetch address it reports, null if none"),
        F("raw", IntList(4), "the 256-bit record as four 64-bit words"),
    )),
    Kind("gerror", "smmu", "SMMU_GERROR changed", (
        F("bits", UINT, "its new value"),
    )),
    Kind("irq", "smmu", "an interrupt line driven", (
        F("line", UINT, "0 EVENTQ, 1 PRIQ, 2 CMD_SYNC, 3 GERROR"),
        F("level", UINT, "2: one edge (the SPIs are edge-triggered)"),
    )),
    Kind("drv", "smmu", "a step of the driver changing a stream's domain, reported by the guest's "
         "driver probes through DRV_EVENT (cosim/arch/driver_events.py)", (
        F("op", Enum(*(o.trace_name for o in DrvOp if o not in (DrvOp.ARMED, DrvOp.DOMAIN_INV))),
          "`attach` the RID's domain, `pasid-attach` / `pasid-remove` a PASID's"),
        F("phase", Enum(*(p.trace_name for p in DrvPhase)),
          "the driver's entry point was entered (`begin`) or returned (`end`)"),
        F("target", Enum(*(t.trace_name for t in DrvTarget)),
          "the kind of domain the entry point attaches"),
        _SID,
        F("ssid", OPT_UINT, "the PASID for the `pasid-*` operations, else null"),
        F("ret", OptInt(), "`end`: the entry point's return value (0 or a negative errno); "
          "null at `begin`"),
        F("dom", DOM, "the domain the stream's STE/CD in memory denote at this moment (read "
          "without the SMMU's caches); null when they give the stream no translation"),
        F("ste", OptIntList(8), "the stream's STE in memory at this moment (null: none found)"),
        F("cd", OptIntList(8), "the CD the stream's traffic selects, in memory at this moment "
          "(null: none)"),
        F("cd_addr", OPT_UINT, "that CD's address (null: none)"),
    )),
    Kind("drv_inv", "smmu", "the driver invalidating a domain's range in the TLB and the ATCs "
         "(6.12 arm_smmu_atc_inv_domain, 7.2 arm_smmu_domain_inv_range), reported by the "
         "driver probes at entry and return", (
        F("phase", Enum(*(p.trace_name for p in DrvPhase)), "entered or returned"),
        F("stage", Enum("s1", "s2"), "the domain's stage"),
        F("tag", UINT, "the domain's ASID (stage 1) or VMID (stage 2)"),
        F("iova", UINT, "the range's start"),
        F("size", UINT, "the range's size in bytes; 0: the whole address space"),
    )),
    Kind("drv_armed", "smmu", "the driver probes armed one entry point (written once per "
         "probe when the guest loads them)", (
        F("op", Enum(*(o.trace_name for o in DrvOp if o is not DrvOp.ARMED)),
          "the operation the probe reports"),
        F("target", Enum(*(t.trace_name for t in DrvTarget)), "the kind of domain it attaches"),
    )),
    # -- endpoint (cosim/endpoint/) --------------------------------------------------------
    Kind("cfg", "endpoint", "a config space write, with the resulting enables", (
        _DEV,
        F("off", UINT, "config space offset"),
        F("size", UINT, "bytes written"),
        F("val", UINT, "the value written"),
        F("bme", BOOL, "Bus Master Enable"),
        F("ats", BOOL, "ATS Enable"),
        F("stu", UINT, "ATS Smallest Translation Unit (log2 of 4 KiB blocks)"),
        F("pasid_en", BOOL, "PASID Enable"),
        F("msix_en", BOOL, "MSI-X Enable"),
    )),
    Kind("marker", "endpoint", "the guest test's marker", (
        _DEV,
        F("tag", Enum("attach-begin", "attach-end", "unmap-begin", "unmap-end", "test-begin",
                      "test-end", "label", "pasid-attach-begin", "pasid-attach-end",
                      "unknown"),
          "what it marks (`unknown`: a tag the model does not know)"),
        F("value", UINT, "the marker's value; the PASID for the `pasid-attach-*` pair"),
        F("label", STR, "the label the guest wrote before it"),
    )),
    Kind("atc_insert", "endpoint", "an ATC entry created from an ATS completion", (
        _DEV, _SID, _SSID,
        F("iova", UINT, "the entry's base"),
        F("size", UINT, "its size in bytes"),
        F("pa", UINT, "the translated base"),
        F("perm", Letters("rw"), "read/write permission"),
        F("dom", DOM, "the domain of the completion"),
        F("id", UINT, "the entry's id, unique per device"),
    )),
    Kind("atc_hit", "endpoint", "an ATC entry used", (
        _DEV, _SID, _SSID,
        F("iova", UINT, "the address looked up"),
        F("id", UINT, "the entry's id"),
        F("dom", DOM, "the entry's domain"),
    )),
    Kind("atc_evict", "endpoint", "an ATC entry evicted for capacity or by a reset", (
        _DEV,
        F("id", UINT, "the entry's id"),
    )),
    Kind("atc_inv_rx", "endpoint", "an invalidation request acted on (when received, or "
         "`inv_late_ms` later) and the entries it dropped", (
             _DEV, _SID, _SSID,
             F("addr", UINT, "the range's start"),
             F("size", OPT_UINT, "the range's size, null for the whole space"),
             F("g", BOOL, "Global: every PASID"),
             F("inv_id", UINT, "the SMMU's `atc_inv` id"),
             F("dropped", IntList(), "ids of the entries it dropped"),
         )),
    Kind("atc_inv_cpl", "endpoint", "an invalidation completion sent", (
        _DEV,
        F("inv_id", UINT, "the invalidation's id"),
        F("ignored", BOOL, "the device completed it without dropping anything (fault "
          "injection)"),
    )),
    Kind("dma", "endpoint", "one memory request (per page)", (
        _DEV, _SID, _SSID,
        F("iova", UINT, "the address the device used"),
        F("pa", OPT_UINT, "the physical address, null when not translated"),
        F("len", UINT, "bytes"),
        F("rw", Enum("r", "w"), "read or write"),
        F("ats", BOOL, "sent translated (through the ATC)"),
        F("ok", BOOL, "completed"),
        F("atc_id", OPT_UINT, "the ATC entry used"),
        F("dom", DOM, "the domain that translated it; null when none did"),
        F("err", OPT_STR, "why it failed: `fault:<event>`, `ats:<status>`, `abort:...`, "
          "`bus:...`"),
        F("src", Enum("engine", "tg", "msi"), "the descriptor engine, the traffic generator "
          "or an MSI-X message"),
        F("seq", OPT_UINT, "the traffic generator's sequence number"),
        F("held", BOOL, "delivered after being held in flight (EndpointOptions.inflight, "
          "strict mode): issued at its `atc_hit` or `ats` record, with that translation; "
          "only present when true", required=False),
    )),
    Kind("drop", "endpoint", "a request not issued", (
        _DEV,
        F("why", Enum("bme", "ats"), "Bus Master Enable clear, or ATS disabled"),
        F("sid", UINT, "StreamID of the request", required=False),
        F("ssid", OPT_UINT, "its SubstreamID (PASID), null without one", required=False),
        F("iova", UINT, "its address", required=False),
        F("rw", Enum("r", "w"), "read or write", required=False),
    )),
    # -- link (cosim/transport.py, cosim/backend.py) ---------------------------------------
    Kind("link", "link", "QEMU link lifecycle", (
        F("event", Enum("hello", "bye", "timeout", "error", "device", "reset",
                        "disconnected"), "what happened"),
    ), tag="event", variants=(
        Variant("hello", "QEMU said HELLO and the session started", (
            F("minor", UINT, "the protocol minor version of the session"),
            F("caps", UINT, "the capabilities QEMU asked for"),
            F("accepted", UINT, "the capabilities accepted"),
            F("ram_base", UINT, "guest RAM base"),
            F("ram_size", UINT, "guest RAM size"),
            F("ram_path", STR, "the shared RAM file, empty if none"),
            F("shared_ram", BOOL, "guest RAM is mapped (else all DMA goes over the socket)"),
        )),
        Variant("bye", "QEMU said BYE: the session is over"),
        Variant("disconnected", "QEMU went away without BYE (the last record of such a "
                "trace)", (
                    F("endpoint", STR, "the link's address"),
                )),
        Variant("timeout", "QEMU did not answer (or stopped reading) in time", (
            F("request", STR, "the request waited for, or `send` when QEMU stopped reading"),
            F("seq", UINT, "the request's sequence number; absent for `send`",
              required=False),
            F("ms", UINT, "the timeout in milliseconds"),
        )),
        Variant("error", "a bad message from QEMU, or a request the model failed on "
                "(`INTERNAL`)", (
            F("status", STR, "the error status replied (`MALFORMED`...)"),
            F("reason", STR, "what was wrong"),
        )),
        Variant("device", "QEMU described a device", (
            F("dev", UINT, "its device number (0: the SMMU)"),
            F("device", Enum("smmu", "pcie_ep"), "its kind"),
            F("rid", UINT, "its requester ID (= StreamID)"),
            F("pcie_off", UINT, "PCIe capability offset"),
            F("ats_off", UINT, "ATS capability offset"),
            F("pasid_off", UINT, "PASID capability offset"),
            F("msix_off", UINT, "MSI-X capability offset"),
        )),
        Variant("reset", "a device was reset: every earlier domain, cache and ATC entry of it "
                "is gone", (
                    F("dev", UINT, "the device"),
                    F("reset", Enum("system", "flr"), "system reset or function-level reset"),
                )),
    )),
)

BY_KIND: dict[str, Kind] = {k.name: k for k in KINDS}
DOM_KINDS = tuple(k.name for k in KINDS if "dom" in k.by_name)


# -- checking ------------------------------------------------------------------------------

# The reader's plan per kind, derived from KINDS: (name, fast, check, required, type) for `t`
# and every field; a tagged kind has one plan per tag value (an unknown value: the common
# fields, whose tag enum then fails). `fast` numbers the types `problem` checks inline, which
# are most fields of most records: _U an integer >= 0, _OU the same or null, _B a bool.
_Plan = tuple[tuple[str, int, Any, bool, FieldType], ...]
_U, _OU, _B, _CALL = 1, 2, 3, 0
_FAST = {UInt: _U, OptUInt: _OU, Bool: _B}


def _plan(fields: tuple[Field, ...]) -> _Plan:
    return tuple((f.name, _FAST.get(type(f.type), _CALL), f.type.ok, f.required, f.type)
                 for f in ENVELOPE[:1] + fields)


_PLANS: dict[str, _Plan] = {k.name: _plan(k.fields) for k in KINDS if k.tag is None}
_TAGGED: dict[str, tuple[str, dict[str, _Plan], _Plan]] = {
    k.name: (k.tag, {v.value: _plan(k.fields + v.fields) for v in k.variants}, _plan(k.fields))
    for k in KINDS if k.tag is not None}
_MISSING = object()


def problem(rec: Mapping[str, Any]) -> str | None:
    """What is wrong with a record read from a trace (`t`, `k` and fields), or None.

    Fields the schema does not declare are ignored: a reader tolerates additions.
    """
    kind = rec.get("k")
    plan = _PLANS.get(kind) if type(kind) is str else None
    if plan is None:
        tagged = _TAGGED.get(kind) if type(kind) is str else None
        if tagged is None:
            return f"unknown record kind {_show(kind)}" if "k" in rec else "a record without `k`"
        tag, plans, base = tagged
        value = rec.get(tag)
        plan = plans.get(value, base) if type(value) is str else base
    for name, fast, ok, required, typ in plan:
        v = rec.get(name, _MISSING)
        if v is _MISSING:
            if required:
                return f"{kind}.{name} is missing"
            continue
        if fast == _U:
            if type(v) is int and v >= 0:
                continue
        elif fast == _OU:
            if v is None or (type(v) is int and v >= 0):
                continue
        elif fast == _B:
            if type(v) is bool:
                continue
        elif ok(v):
            continue
        return f"{kind}.{name} is {_show(v)}, expected {typ.why(v)}"
    return None


# The reader's fast path: per plan, one generated function that says only whether a record
# matches (problem() then words what is wrong). Each type's test is the expression below,
# the same test as its `ok` on decoded JSON; a type without one is called.
def _test(t: FieldType, v: str, env: dict[str, Any]) -> str:
    if type(t) is UInt:
        return f"type({v}) is int and {v} >= 0"
    if type(t) is OptUInt:
        return f"{v} is None or (type({v}) is int and {v} >= 0)"
    if type(t) is OptInt:
        return f"{v} is None or type({v}) is int"
    if type(t) is Bool:
        return f"{v} is True or {v} is False"
    if type(t) is Str:
        return f"type({v}) is str"
    if type(t) is OptStr:
        return f"{v} is None or type({v}) is str"
    if type(t) is Object:
        return f"type({v}) is dict"
    if type(t) is Enum:
        name = f"_e{len(env)}"
        env[name] = t.values
        return f"type({v}) is str and {v} in {name}"
    if type(t) is Letters:
        name = f"_l{len(env)}"
        env[name] = t.valid
        return f"type({v}) is str and {v} in {name}"
    if type(t) in (IntList, OptIntList):
        n = "" if t.length is None else f" and len({v}) == {t.length}"
        test = (f"type({v}) is list{n} and {{*map(type, {v})}} <= _INT "
                f"and (not {v} or min({v}) >= 0)")
        return test if type(t) is IntList else f"{v} is None or ({test})"
    if type(t) is Dom:
        return (f"{v} is None or ({v} == _ld[0] and [*map(type, {v}.values())] == _ld[1]) "
                f"or _dom({v})")
    name = f"_c{len(env)}"
    env[name] = t.ok
    return f"{name}({v})"


# Domain objects already found good, by their items, with their values' types: a trace names
# few. The types are compared on a hit because equal items need not be of equal types (2.0 and
# True are equal to 2 and 1, and hash alike), and only an integer is a good domain field.
_GOOD_DOMS: dict[tuple, list[type]] = {}


def _dom_ok(v: object) -> bool:
    if type(v) is not dict:
        return False
    try:
        key = tuple(v.items())
        types = _GOOD_DOMS.get(key)
    except TypeError:  # an unhashable value: not a domain, DOM.ok says so
        return DOM.ok(v)
    if types is None or [*map(type, v.values())] != types:
        if not DOM.ok(v):
            return False
        types = [*map(type, v.values())]
        if len(_GOOD_DOMS) < 4096:
            _GOOD_DOMS[key] = types
    _LAST_DOM[:] = (dict(v), types)  # a copy: nothing a reader of the record does changes it
    return True


# The last domain object found good and its values' types: most records name the domain the
# record before did, and an equal object of the same types needs no tuple nor hash (the
# generated test compares with it inline before it calls _dom_ok).
_LAST_DOM: list[Any] = [None, []]


def _compile(plan: _Plan, name: str) -> Any:
    env: dict[str, Any] = {"_M": _MISSING, "_INT": frozenset({int}), "_dom": _dom_ok,
                           "_ld": _LAST_DOM}
    lines = [f"def {name}(rec):", "    try:"]
    if not all(required for _n, _f, _o, required, _t in plan):
        lines.insert(1, "    g = rec.get")
    for fname, _fast, _ok, required, typ in plan:
        test = _test(typ, "v", env)
        if required:  # a missing one raises KeyError
            lines.append(f"        v = rec[{fname!r}]")
            lines.append(f"        if not ({test}):")
        else:
            lines.append(f"        v = g({fname!r}, _M)")
            lines.append(f"        if v is not _M and not ({test}):")
        lines.append("            return False")
    lines += ["    except KeyError:", "        return False", "    return True"]
    exec("\n".join(lines), env)  # noqa: S102 - source generated above from the declaration
    return env[name]


_FAST_PLANS: dict[str, Any] = {k: _compile(p, f"_ok_{k}") for k, p in _PLANS.items()}
_FAST_TAGGED: dict[str, tuple[str, dict[str, Any], Any]] = {
    k: (tag, {v: _compile(p, f"_ok_{k}_{i}") for i, (v, p) in enumerate(plans.items())},
        _compile(base, f"_ok_{k}_base"))
    for k, (tag, plans, base) in _TAGGED.items()}


def matcher() -> dict[str, Any]:
    """kind -> the fast test of its records, for the kinds without a tag field (callers fall
    back on `matches` for the others)."""
    return dict(_FAST_PLANS)


def matches(rec: Mapping[str, Any]) -> bool:
    """problem(rec) is None, faster: the reader asks this of every record."""
    kind = rec.get("k")
    if type(kind) is not str:
        return False
    fn = _FAST_PLANS.get(kind)
    if fn is None:
        tagged = _FAST_TAGGED.get(kind)
        if tagged is None:
            return False
        tag, fns, base = tagged
        value = rec.get(tag)
        fn = fns.get(value, base) if type(value) is str else base
    return fn(rec)


def check_written(kind: str, fields: Mapping[str, Any]) -> None:
    """Raise SchemaViolation unless `emit(kind, **fields)` writes a record of the schema.

    Stricter than `problem`: a field the schema does not declare is an error too, so an emit
    site and this declaration cannot drift apart unnoticed.
    """
    decl = BY_KIND.get(kind)
    if decl is None:
        raise SchemaViolation(f"trace record kind {kind!r} is not in the schema "
                              "(cosim/trace/schema.py)")
    declared = decl.fields_for(fields)
    for f in declared:
        name = f.name
        if name not in fields:
            if f.required:
                raise SchemaViolation(f"trace record {kind}.{name} is missing")
            continue
        v = fields[name]
        if not f.type.ok_written(v):
            raise SchemaViolation(f"trace record {kind}.{name} is {_show(v)}, "
                                  f"expected {f.type.why(v)}")
    names = {f.name for f in declared}
    extra = [n for n in fields if n not in names]
    if extra:
        raise SchemaViolation(f"trace record {kind} has field(s) {', '.join(extra)} that the "
                              "schema (cosim/trace/schema.py) does not declare")


def upgrade_v1(rec: dict[str, Any]) -> None:
    """Turn a schema-1 record into schema 2 in place: `dom` strings become domain objects.

    Schema 1 wrote 'abort' also for requests no domain translated (the model's default):
    an `xlate` that faulted, an `ats` that was not SUCCESS (only the UR for an STE bypass
    named its domain, 'bypass'), a `dma` that failed other than silently ('fault:None').
    Those become null. Raises DomainError for a string that is not a domain label. Schema 1's
    `ats` did not say whether the TLB served it: read as not.
    """
    if rec.get("k") == "ats":
        rec.setdefault("tlb", False)
    dom = rec.get("dom")
    if not isinstance(dom, str):
        return
    if dom == "abort" and _v1_untranslated(rec):
        rec["dom"] = None
    else:
        rec["dom"] = Domain.from_label(dom).to_record()


def _v1_untranslated(rec: Mapping[str, Any]) -> bool:
    k = rec.get("k")
    if k == "xlate":
        return rec.get("fault") is not None
    if k == "ats":
        return rec.get("status") != "SUCCESS"
    if k == "dma":
        return rec.get("err") not in (None, "fault:None")
    return False


# -- docs/trace.md -------------------------------------------------------------------------

DOC_BEGIN = "<!-- record tables: generated by `python -m cosim.trace --write-doc " \
    "docs/trace.md` from cosim/trace/schema.py; do not edit by hand -->"
DOC_END = "<!-- end of generated record tables -->"

SECTIONS = (("header", "Header"), ("smmu", "SMMU (`cosim/smmu/`)"),
            ("endpoint", "Endpoint (`cosim/endpoint/`)"),
            ("link", "Link (`cosim/transport.py`, `cosim/backend.py`)"))


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _sentence(text: str) -> str:
    return _md(text[:1].upper() + text[1:]) + "."


def _field_rows(fields: tuple[Field, ...]) -> list[str]:
    rows = ["| field | type | present | meaning |", "|---|---|---|---|"]
    for f in fields:
        rows.append(f"| `{f.name}` | {f.type.doc} | {'always' if f.required else 'optional'} "
                    f"| {_md(f.meaning)} |")
    return rows


def markdown() -> str:
    """The record tables of docs/trace.md, between DOC_BEGIN and DOC_END inclusive."""
    out = [DOC_BEGIN, ""]
    out += _field_rows(ENVELOPE)
    for source, title in SECTIONS:
        out += ["", f"### {title}"]
        for kind in (k for k in KINDS if k.source == source):
            out += ["", f"#### `{kind.name}`", "", _sentence(kind.meaning), ""]
            out += _field_rows(kind.fields)
            for v in kind.variants:
                out += ["", f"##### `{kind.name}` {kind.tag} `{v.value}`", "",
                        _sentence(v.meaning)]
                if v.fields:
                    out += [""] + _field_rows(v.fields)
    out += ["", DOC_END]
    return "\n".join(out)


def replace_doc(text: str) -> str:
    """`text` (docs/trace.md) with its generated section replaced by `markdown()`."""
    start, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if start < 0 or end < start:
        raise ValueError("the doc has no generated record tables section "
                         f"({DOC_BEGIN!r} ... {DOC_END!r})")
    return text[:start] + markdown() + text[end + len(DOC_END):]


_HEADING = re.compile(r"^#{4,5} `(\w+)`(?: (\w+) `([\w-]+)`)?\s*$")
_ROW = re.compile(r"^\| `(\w+)` \| (.+?) \| (always|optional) \|")


def parse_doc(text: str) -> dict[str, dict[str, tuple[str, bool]]]:
    """Kinds and fields as docs/trace.md's tables state them.

    Returns {kind or 'kind/tagvalue' for a variant: {field: (type as written, required)}};
    the envelope table (before the first kind) is under ''.
    """
    found: dict[str, dict[str, tuple[str, bool]]] = {"": {}}
    current = ""
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m:
            current = m.group(1) if m.group(2) is None else f"{m.group(1)}/{m.group(3)}"
            found.setdefault(current, {})
            continue
        r = _ROW.match(line)
        if r:
            found[current][r.group(1)] = (r.group(2).strip(), r.group(3) == "always")
    return found


def declared() -> dict[str, dict[str, tuple[str, bool]]]:
    """The schema in `parse_doc`'s form."""
    out: dict[str, dict[str, tuple[str, bool]]] = {
        "": {f.name: (f.type.doc, f.required) for f in ENVELOPE}}
    for k in KINDS:
        out[k.name] = {f.name: (f.type.doc, f.required) for f in k.fields}
        for v in k.variants:
            out[f"{k.name}/{v.value}"] = {f.name: (f.type.doc, f.required) for f in v.fields}
    return out


def main(argv: list[str]) -> int:
    """`python -m cosim.trace [--write-doc DOC]`: print the tables, or rewrite DOC's."""
    if argv[:1] == ["--write-doc"] and len(argv) == 2:
        with open(argv[1]) as f:
            text = f.read()
        try:
            new = replace_doc(text)
        except ValueError as e:
            print(f"{argv[1]}: {e}", file=sys.stderr)
            return 2
        with open(argv[1], "w") as f:
            f.write(new)
        return 0
    if argv:
        print("usage: python -m cosim.trace [--write-doc DOC] | export --jsonl|--cst IN OUT",
              file=sys.stderr)
        return 2
    print(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
