"""Domains as the trace names them (each record's `dom`, read into a `Domain` by the view),
what each domain is known to map, and which domain served each stream."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from cosim.arch.domain import BYPASS, Domain

from .view import IndexList, Key, Record, TraceView, ssid_of

PAGE = 4096  # smallest translation granule the driver uses (STU 12); fallback entry size
# Kinds whose `dom` says which configuration the SMMU used ("served") or the device used.
SERVED_KINDS = ("xlate", "ats")
USED_KINDS = ("dma", "atc_hit")


def dom_of(rec: Record) -> Domain | None:
    """The record's domain; None when no domain translated it (a configuration error)."""
    dom = rec.get("dom")
    return dom if isinstance(dom, Domain) else None


def is_paging(dom: Domain | None) -> bool:
    return dom is not None and dom.paging


def label(dom: Domain | None) -> str | None:
    """How reports and the JSON summary name a domain."""
    return dom.label() if dom is not None else None


def entry_base(addr: int, size: int) -> tuple[int, int]:
    """(base, size) of the naturally aligned translation covering addr."""
    if not isinstance(size, int) or size < PAGE or size & (size - 1):
        size = PAGE
    return addr & ~(size - 1), size


def acc_letters(acc: object) -> str:
    """Access kinds of an `acc`/`rw` field, without the privilege marker."""
    return "".join(c for c in str(acc or "") if c in "rwx")


@dataclass
class MappedIndex:
    """What each domain is known to map: every successful xlate/ats anywhere in the trace."""

    by_dom: dict[Domain, dict[int, dict[int, set[str]]]] = field(default_factory=dict)

    def add(self, dom: Domain, iova: int, size: int, perm: object, acc: object) -> None:
        base, size = entry_base(iova, size)
        letters = set(acc_letters(perm)) | set(acc_letters(acc))
        self.by_dom.setdefault(dom, {}).setdefault(size, {}).setdefault(base, set()).update(
            letters)

    def maps(self, dom: Domain | None, addr: int, acc: str = "") -> bool:
        """True when dom is known to map addr with every access kind in acc."""
        if dom == BYPASS:
            return True  # identity: every address is mapped
        if dom is None or not isinstance(addr, int):
            return False
        for size, bases in self.by_dom.get(dom, {}).items():
            perms = bases.get(addr & ~(size - 1))
            if perms is not None and set(acc) <= perms:
                return True
        return False


@dataclass
class DomainIndex:
    """Per (sid, ssid): which records served or used which domain, in trace order."""

    mapped: MappedIndex
    served: dict[Key, IndexList]
    used: dict[Key, IndexList]
    seen: dict[Key, set[Domain]]

    @classmethod
    def build(cls, view: TraceView) -> DomainIndex:
        mapped = MappedIndex()
        served: dict[Key, IndexList] = defaultdict(IndexList)
        used: dict[Key, IndexList] = defaultdict(IndexList)
        seen: dict[Key, set[Domain]] = defaultdict(set)
        for i, rec in enumerate(view.records):
            k = rec.get("k")
            if k not in SERVED_KINDS and k not in USED_KINDS:
                continue
            sid, dom = rec.get("sid"), dom_of(rec)
            if not isinstance(sid, int) or dom is None:
                continue  # no domain: an unusable configuration (a blocked one is ABORT)
            key = (sid, ssid_of(rec))
            seen[key].add(dom)
            if k in SERVED_KINDS:
                served[key].append(i)
                if _succeeded(rec) and isinstance(rec.get("iova"), int):
                    mapped.add(dom, rec["iova"], rec.get("size") or PAGE, rec.get("perm"),
                               rec.get("acc"))
            else:
                used[key].append(i)
        return cls(mapped, dict(served), dict(used), dict(seen))

    def last_served_before(self, view: TraceView, key: Key, index: int) -> Domain | None:
        lst = self.served.get(key)
        j = lst.last_before(index) if lst else None
        return dom_of(view.records[j]) if j is not None else None


def _succeeded(rec: Record) -> bool:
    if rec.get("k") == "ats":
        perm = rec.get("perm")
        granted = not isinstance(perm, str) or bool(acc_letters(perm))
        return str(rec.get("status", "")).upper() == "SUCCESS" and granted
    return rec.get("ok") is True
