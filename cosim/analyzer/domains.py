"""Domains as the trace names them: the `dom` provenance string of the configuration that
translated ('s1:asid=<n>:ttb=<hex>', 's2:vmid=<n>:ttb=<hex>', nested 's1:...+s2:...',
'bypass', 'abort'), what each domain is known to map, and which domain served each stream."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .view import IndexList, Key, Record, TraceView, ssid_of

BYPASS = "bypass"
ABORT = "abort"
PAGE = 4096  # smallest translation granule the driver uses (STU 12); fallback entry size
# Kinds whose `dom` says which configuration the SMMU used ("served") or the device used.
SERVED_KINDS = ("xlate", "ats")
USED_KINDS = ("dma", "atc_hit")

Parsed = tuple[tuple, ...]


def parse_dom(dom: str) -> Parsed:
    """'s1:asid=3:ttb=0x4000+s2:vmid=1:ttb=8000' -> (('s1', 3, 0x4000), ('s2', 1, 0x8000))."""
    parts = []
    for part in dom.split("+"):
        tokens = part.split(":")
        kind = tokens[0]
        kv: dict[str, int | str] = {}
        for tok in tokens[1:]:
            k, _, v = tok.partition("=")
            kv[k] = _num(v, 16 if k == "ttb" else 0)
        if kind == "s1":
            parts.append(("s1", kv.get("asid"), kv.get("ttb")))
        elif kind == "s2":
            parts.append(("s2", kv.get("vmid"), kv.get("ttb")))
        else:
            parts.append((kind,))
    return tuple(parts)


def _num(v: str, base: int) -> int | str:
    try:
        return int(v, base)
    except ValueError:
        try:
            return int(v, 16)
        except ValueError:
            return v


def tags(dom: str) -> tuple[int | None, int | None, bool, bool]:
    """(asid, vmid, has stage 1, has stage 2) of a domain string; TLB entries carry these tags."""
    asid = vmid = None
    s1 = s2 = False
    for part in parse_dom(dom):
        if part[0] == "s1":
            s1, asid = True, part[1] if isinstance(part[1], int) else None
        elif part[0] == "s2":
            s2, vmid = True, part[1] if isinstance(part[1], int) else None
    return asid, vmid, s1, s2


def is_paging(dom: str | None) -> bool:
    return isinstance(dom, str) and dom.startswith(("s1", "s2"))


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

    by_dom: dict[str, dict[int, dict[int, set[str]]]] = field(default_factory=dict)

    def add(self, dom: str, iova: int, size: int, perm: object, acc: object) -> None:
        base, size = entry_base(iova, size)
        letters = set(acc_letters(perm)) | set(acc_letters(acc))
        self.by_dom.setdefault(dom, {}).setdefault(size, {}).setdefault(base, set()).update(
            letters)

    def maps(self, dom: str | None, addr: int, acc: str = "") -> bool:
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
    seen: dict[Key, set[str]]

    @classmethod
    def build(cls, view: TraceView) -> DomainIndex:
        mapped = MappedIndex()
        served: dict[Key, IndexList] = defaultdict(IndexList)
        used: dict[Key, IndexList] = defaultdict(IndexList)
        seen: dict[Key, set[str]] = defaultdict(set)
        for i, rec in enumerate(view.records):
            k = rec.get("k")
            if k not in SERVED_KINDS and k not in USED_KINDS:
                continue
            sid, dom = rec.get("sid"), rec.get("dom")
            if not isinstance(sid, int) or not isinstance(dom, str):
                continue
            if dom == ABORT and _config_error(rec):
                continue  # an unusable configuration names no domain (a blocked one is silent)
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

    def last_served_before(self, view: TraceView, key: Key, index: int) -> str | None:
        lst = self.served.get(key)
        j = lst.last_before(index) if lst else None
        return view.records[j]["dom"] if j is not None else None


def _config_error(rec: Record) -> bool:
    """A failure the SMMU reported with an event (C_BAD_STE, C_BAD_CD, ...): the model's
    `dom` is then its default 'abort', not a domain; a blocked domain aborts silently."""
    if rec.get("k") == "xlate":
        return rec.get("fault") is not None
    if rec.get("k") == "dma":
        err = rec.get("err")
        return err is not None and err not in ("fault:None", "fault:null")
    return False


def _succeeded(rec: Record) -> bool:
    if rec.get("k") == "ats":
        perm = rec.get("perm")
        granted = not isinstance(perm, str) or bool(acc_letters(perm))
        return str(rec.get("status", "")).upper() == "SUCCESS" and granted
    return rec.get("ok") is True
