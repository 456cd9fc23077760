"""The device's ATC as the trace shows it: the entries each endpoint holds at any record,
kept as the records pass from `atc_insert`, `atc_evict` and `atc_inv_rx` (the entries an
invalidation request dropped): one shared copy that the rules judging what the device still
holds at a moment (an attach's return, a domain invalidation's return) read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cosim.arch.domain import Domain

from .domains import dom_of
from .view import Key, Record, ssid_of


# Not frozen: one is built per atc_insert, and a frozen dataclass sets each field through
# object.__setattr__ (several times the cost). Nothing changes an entry once built.
@dataclass(slots=True)
class HeldEntry:
    dev: int
    id: int
    key: Key                 # (sid, ssid)
    iova: int
    size: int
    dom: Domain | None
    inserted: int            # record index of its atc_insert


class AtcState:
    """Held entries by stream and, to find a domain's entries without visiting every live one,
    by the domain tags (stage 1 ASID, stage 2 VMID) of the domain that filled them. Iteration
    follows the order entries arrived in (per stream, streams in first-seen order)."""

    def __init__(self) -> None:
        self._by_key: dict[Key, dict[tuple[int, int], HeldEntry]] = {}
        self._where: dict[tuple[int, int], Key] = {}
        self._key_rank: dict[Key, int] = {}
        self._seq: dict[tuple[Key, tuple[int, int]], int] = {}
        self._by_tag: dict[tuple[str, int], dict[tuple[Key, tuple[int, int]], HeldEntry]] = {}
        self._n = 0

    def apply(self, i: int, r: Record, k: str) -> None:
        """Advance past record i."""
        if k == "atc_insert":
            self.insert(i, r)
        elif k == "atc_evict":
            self._drop((r["dev"], r["id"]))
        elif k == "atc_inv_rx":
            self.inv_rx(r)

    def insert(self, i: int, r: Record) -> None:
        """`apply` of an atc_insert."""
        dev, eid = r["dev"], r["id"]
        ent, key = (dev, eid), (r["sid"], ssid_of(r))
        held = self._by_key.get(key)
        if held is None:
            held = self._by_key[key] = {}
            self._key_rank[key] = len(self._key_rank)
        e = HeldEntry(dev, eid, key, r["iova"], r["size"], dom_of(r), i)
        old = held.get(ent)
        if old is not None:
            self._untag(key, ent, old)
        else:
            self._n += 1
            self._seq[(key, ent)] = self._n
        held[ent] = e
        if e.dom is not None:
            self._tag(key, ent, e)
        self._where[ent] = key

    def evict(self, r: Record) -> None:
        """`apply` of an atc_evict."""
        self._drop((r["dev"], r["id"]))

    def inv_rx(self, r: Record) -> None:
        """`apply` of an atc_inv_rx: the entries it dropped."""
        dev = r["dev"]
        for e in r.get("dropped") or ():
            self._drop((dev, e))

    def held(self, key: Key) -> Iterator[HeldEntry]:
        yield from self._by_key.get(key, {}).values()

    def of_tag(self, stage: str, tag: int) -> list[HeldEntry]:
        """The entries filled from a domain with this stage 1 ASID ('s1') or stage 2 VMID
        ('s2'), in iteration order."""
        got = self._by_tag.get((stage, tag))
        if not got:
            return []
        rank, seq = self._key_rank, self._seq
        return [e for _, e in sorted(got.items(),
                                     key=lambda kv: (rank[kv[0][0]], seq[kv[0]]))]

    _TAGS: dict[Domain, list[tuple[str, int]]] = {}

    @classmethod
    def _tags(cls, dom: Domain | None) -> list[tuple[str, int]]:
        if dom is None:
            return []
        out = cls._TAGS.get(dom)
        if out is None:
            out = []
            if dom.has_s1 and dom.asid is not None:
                out.append(("s1", dom.asid))
            if dom.has_s2 and dom.vmid is not None:
                out.append(("s2", dom.vmid))
            if len(cls._TAGS) < 4096:
                cls._TAGS[dom] = out
        return out

    def _tag(self, key: Key, ent: tuple[int, int], e: HeldEntry) -> None:
        for t in self._tags(e.dom):
            self._by_tag.setdefault(t, {})[(key, ent)] = e

    def _untag(self, key: Key, ent: tuple[int, int], e: HeldEntry) -> None:
        for t in self._tags(e.dom):
            got = self._by_tag.get(t)
            if got is not None:
                got.pop((key, ent), None)

    def _drop(self, ent: tuple[int, int]) -> None:
        key = self._where.pop(ent, None)
        if key is None:
            return
        e = self._by_key.get(key, {}).pop(ent, None)
        if e is not None:
            self._untag(key, ent, e)
            del self._seq[(key, ent)]


class UnsyncedAtcInv:
    """ATC_INVs delivered and not yet covered by a completed CMD_SYNC (§4.7.3): id -> the
    record index of its `atc_inv`. A completed `sync` covers every earlier one; an
    `atc_inv_sync` done covers the ids it lists."""

    def __init__(self) -> None:
        self.open: dict[int, int] = {}
        self.where: dict[int, tuple[int, int | None]] = {}  # index -> (sid, ssid)

    def apply(self, i: int, r: Record, k: str) -> None:
        if k == "atc_inv":
            old = self.open.get(r["id"])
            if old is not None:
                del self.where[old]
            self.open[r["id"]] = i
            self.where[i] = (r["sid"], r["ssid"])
        elif k == "sync" and r["state"] == "done":
            self.open.clear()
            self.where.clear()
        elif k == "atc_inv_sync" and r["state"] == "done":
            for n in r["ids"]:
                j = self.open.pop(n, None)
                if j is not None:
                    del self.where[j]

    def between(self, lo: int, hi: int) -> list[int]:
        """Record indices of the open ones delivered strictly between lo and hi, in order."""
        return sorted(j for j in self.open.values() if lo < j < hi)
