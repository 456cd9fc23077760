"""A domain: the translation configuration that served (or, cached, was used for) an access.

The identity of a translation regime is what the architecture tags its cached translations
with: stage 1 by ASID and the table base (CD.ASID, CD.TTB0/TTB1, §5.4), stage 2 by VMID and
the table base (STE.S2VMID, STE.S2TTB, §5.2). STE.Config bypass (or stage 1 bypassed by
S1DSS with no stage 2) is the identity domain, STE.Config abort the blocking one (§5.2).
The model records a `Domain` with every translation; the trace carries it as a small object
(`to_record`), and the analysis reads it back (`from_record`) instead of parsing a string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DomainKind = Literal["abort", "bypass", "s1", "s2", "nested"]
KINDS: tuple[DomainKind, ...] = ("abort", "bypass", "s1", "s2", "nested")


class DomainError(ValueError):
    """A record's `dom` is not a domain object."""


@dataclass(frozen=True, slots=True)
class Domain:
    kind: DomainKind
    asid: int | None = None     # stage 1: CD.ASID
    ttb: int | None = None      # stage 1: the TTB0/TTB1 base that walked the address
    vmid: int | None = None     # stage 2: STE.S2VMID
    s2ttb: int | None = None    # stage 2: STE.S2TTB
    # What a trace writer made of `to_record()` (cosim/trace/writer.py: its JSON bytes), kept
    # with the Domain by `keep_encoding`: the model hands the same few Domains to the trace
    # record after record, and bytes encoded once cost the writer no Python call per record.
    encoded: object = field(default=None, init=False, repr=False, compare=False)

    @staticmethod
    def stage1(asid: int, ttb: int) -> Domain:
        return Domain("s1", asid=asid, ttb=ttb)

    @staticmethod
    def stage2(vmid: int, ttb: int) -> Domain:
        return Domain("s2", vmid=vmid, s2ttb=ttb)

    def with_stage2(self, vmid: int, ttb: int) -> Domain:
        """This stage 1 domain nested over a stage 2 (Config = 0b111)."""
        return Domain("nested", asid=self.asid, ttb=self.ttb, vmid=vmid, s2ttb=ttb)

    @property
    def has_s1(self) -> bool:
        return self.kind in ("s1", "nested")

    @property
    def has_s2(self) -> bool:
        return self.kind in ("s2", "nested")

    @property
    def paging(self) -> bool:
        """A domain with page tables (not the identity or blocking one)."""
        return self.kind not in ("abort", "bypass")

    def to_record(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {"kind": self.kind}
        if self.has_s1:
            out["asid"] = self.asid if self.asid is not None else 0
            out["ttb"] = self.ttb if self.ttb is not None else 0
        if self.has_s2:
            out["vmid"] = self.vmid if self.vmid is not None else 0
            out["s2ttb"] = self.s2ttb if self.s2ttb is not None else 0
        return out

    def keep_encoding(self, enc: object) -> object:
        """Keep `enc` as `encoded` (set once: a Domain is otherwise immutable); returns it."""
        object.__setattr__(self, "encoded", enc)
        return enc

    @staticmethod
    def from_record(obj: object) -> Domain:
        if not isinstance(obj, dict):
            raise DomainError(f"dom is {type(obj).__name__}, not a domain object")
        kind = obj.get("kind")
        if kind not in KINDS:
            raise DomainError(f"dom.kind {kind!r} is not one of {', '.join(KINDS)}")
        d = Domain(kind)
        need = (("asid", "ttb") if kind in ("s1", "nested") else ()) + \
            (("vmid", "s2ttb") if kind in ("s2", "nested") else ())
        vals: dict[str, int] = {}
        for name in need:
            v = obj.get(name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise DomainError(f"dom.{name} of a {kind} domain is {v!r}, not an integer")
            vals[name] = v
        return Domain(d.kind, **vals) if vals else d

    def label(self) -> str:
        """The human form reports print: 's1:asid=3:ttb=0x4000+s2:vmid=1:ttb=0x8000'."""
        parts = []
        if self.has_s1:
            parts.append(f"s1:asid={self.asid}:ttb={(self.ttb or 0):#x}")
        if self.has_s2:
            parts.append(f"s2:vmid={self.vmid}:ttb={(self.s2ttb or 0):#x}")
        return "+".join(parts) if parts else self.kind

    @staticmethod
    def from_label(text: str) -> Domain:
        """Inverse of `label` (schema-1 traces carried the label as `dom`)."""
        if text in ("abort", "bypass"):
            return ABORT if text == "abort" else BYPASS
        s1: tuple[int, int] | None = None
        s2: tuple[int, int] | None = None
        for part in text.split("+"):
            fields = part.split(":")
            kv = dict(f.partition("=")[::2] for f in fields[1:])
            try:
                if fields[0] == "s1":
                    s1 = (int(kv["asid"], 0), int(kv["ttb"], 16))
                elif fields[0] == "s2":
                    s2 = (int(kv["vmid"], 0), int(kv["ttb"], 16))
                else:
                    raise DomainError(f"dom {text!r}: unknown stage {fields[0]!r}")
            except (KeyError, ValueError):
                raise DomainError(f"dom {text!r} is not a domain label") from None
        if s1 and s2:
            return Domain("nested", asid=s1[0], ttb=s1[1], vmid=s2[0], s2ttb=s2[1])
        if s1:
            return Domain.stage1(*s1)
        if s2:
            return Domain.stage2(*s2)
        raise DomainError(f"dom {text!r} is not a domain label")

    def __str__(self) -> str:
        return self.label()


ABORT = Domain("abort")
BYPASS = Domain("bypass")
