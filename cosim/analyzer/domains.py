"""Domains as the trace names them (each record's `dom`, read into a `Domain` by the view),
what each domain is known to map, and which domain served each stream."""

from __future__ import annotations

from dataclasses import dataclass, field

from cosim.arch.domain import BYPASS, Domain

from .view import Key, Record

PAGE = 4096  # smallest translation granule the driver uses (STU 12); fallback entry size
# Kinds whose `dom` says which configuration the SMMU used ("served") or the device used.
SERVED_KINDS = frozenset({"xlate", "ats"})
USED_KINDS = frozenset({"dma", "atc_hit"})


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
    if type(acc) is str:
        got = _ACC_LETTERS.get(acc)
        if got is None:
            got = "".join(c for c in acc if c in "rwx")
            if len(_ACC_LETTERS) < 256:
                _ACC_LETTERS[acc] = got
        return got
    return "".join(c for c in str(acc or "") if c in "rwx")


_ACC_LETTERS: dict[str, str] = {}   # a trace has a handful of acc/perm strings


_SEEN_PERMS = frozenset({"r", "w", "x", "rw", "rp", "wp", "xp", "rwx", "", None})
_LETTERS = {p: frozenset(acc_letters(p)) for p in _SEEN_PERMS}


@dataclass
class MappedIndex:
    """What each domain is known to map: every successful xlate/ats anywhere in the trace."""

    by_dom: dict[Domain, dict[int, dict[int, set[str]]]] = field(default_factory=dict)

    def add(self, dom: Domain, iova: int, size: int, perm: object, acc: object) -> None:
        base, size = entry_base(iova, size)
        sizes = self.by_dom.get(dom)
        if sizes is None:
            sizes = self.by_dom[dom] = {}
        bases = sizes.get(size)
        if bases is None:
            bases = sizes[size] = {}
        have = bases.get(base)
        if have is None:
            have = bases[base] = set()
        elif perm in _SEEN_PERMS and acc in _SEEN_PERMS:
            # the common case, a page served again with the letters it already has
            if have.issuperset(_LETTERS[perm]) and have.issuperset(_LETTERS[acc]):
                return
        have.update(acc_letters(perm))
        have.update(acc_letters(acc))

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


class DomainTracker:
    """Per (sid, ssid), as the records pass: the domain that last served the stream, and every
    domain that served or was used for it (`seen`); across streams, what each domain maps."""

    def __init__(self) -> None:
        self.mapped = MappedIndex()
        self.last_served: dict[Key, Domain] = {}
        self.seen: dict[Key, set[Domain]] = {}
        self.last_seen: dict[Key, Domain] = {}   # the last one added to seen, per stream

    def apply(self, k: str, key: Key, dom: Domain, rec: Record) -> None:
        """Record `rec` (of SERVED_KINDS or USED_KINDS, with a domain) for stream `key`."""
        if self.last_seen.get(key) is not dom:  # the view reads each domain into one object
            s = self.seen.get(key)
            if s is None:
                s = self.seen[key] = set()
            s.add(dom)
            self.last_seen[key] = dom
        if k in SERVED_KINDS:
            self.last_served[key] = dom
            if _succeeded(rec) and isinstance(rec.get("iova"), int):
                self.mapped.add(dom, rec["iova"], rec.get("size") or PAGE, rec.get("perm"),
                                rec.get("acc"))


def _succeeded(rec: Record) -> bool:
    if rec.get("k") == "ats":
        status = rec.get("status", "")
        if status != "SUCCESS" and str(status).upper() != "SUCCESS":
            return False
        perm = rec.get("perm")
        return not isinstance(perm, str) or bool(acc_letters(perm))
    return rec.get("ok") is True
