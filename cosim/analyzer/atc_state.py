"""The device's ATC as the trace shows it: the entries each endpoint holds at any record,
rebuilt in one forward pass from `atc_insert`, `atc_evict` and `atc_inv_rx` (the entries an
invalidation request dropped). Rules that judge what the device still holds at a moment (an
attach's return, a domain invalidation's return) step it along the records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cosim.arch.domain import Domain

from .domains import dom_of
from .view import Key, Record, ssid_of


@dataclass(frozen=True)
class HeldEntry:
    dev: int
    id: int
    key: Key                 # (sid, ssid)
    iova: int
    size: int
    dom: Domain | None
    inserted: int            # record index of its atc_insert


class AtcState:
    def __init__(self) -> None:
        self._by_key: dict[Key, dict[tuple[int, int], HeldEntry]] = {}
        self._where: dict[tuple[int, int], Key] = {}

    def apply(self, i: int, r: Record) -> None:
        """Advance past record i."""
        k = r.get("k")
        if k == "atc_insert":
            ent, key = (r["dev"], r["id"]), (r["sid"], ssid_of(r))
            self._by_key.setdefault(key, {})[ent] = HeldEntry(
                r["dev"], r["id"], key, r["iova"], r["size"], dom_of(r), i)
            self._where[ent] = key
        elif k == "atc_evict":
            self._drop((r["dev"], r["id"]))
        elif k == "atc_inv_rx":
            for e in r.get("dropped") or ():
                self._drop((r["dev"], e))

    def held(self, key: Key) -> Iterator[HeldEntry]:
        yield from self._by_key.get(key, {}).values()

    def all(self) -> Iterator[HeldEntry]:
        for entries in self._by_key.values():
            yield from entries.values()

    def _drop(self, ent: tuple[int, int]) -> None:
        key = self._where.pop(ent, None)
        if key is not None:
            self._by_key.get(key, {}).pop(ent, None)


class UnsyncedAtcInv:
    """ATC_INVs delivered and not yet covered by a completed CMD_SYNC (§4.7.3): id -> the
    record index of its `atc_inv`. A completed `sync` covers every earlier one; an
    `atc_inv_sync` done covers the ids it lists."""

    def __init__(self) -> None:
        self.open: dict[int, int] = {}

    def apply(self, i: int, r: Record) -> None:
        k = r.get("k")
        if k == "atc_inv":
            self.open[r["id"]] = i
        elif k == "sync" and r["state"] == "done":
            self.open.clear()
        elif k == "atc_inv_sync" and r["state"] == "done":
            for n in r["ids"]:
                self.open.pop(n, None)

    def between(self, lo: int, hi: int) -> list[int]:
        """Record indices of the open ones delivered strictly between lo and hi, in order."""
        return sorted(j for j in self.open.values() if lo < j < hi)
