"""Configuration cache, TLB and walk cache (Arm IHI 0070 §3.21, §4.3, §4.4, §16.2).

In `coherent` mode nothing is cached: every translation re-reads the STE, CD and tables, so
every intermediate state the driver writes is observed. In `caching` and `strict` modes STEs,
CDs and translations are kept until a command that architecturally invalidates them arrives, so
a missing CFGI_* or TLBI_* becomes visible as a stale translation. Invalid and ILLEGAL
structures are kept too (§3.21.3: "cache any successfully fetched ... configuration structure,
whether marked as valid or not"), so a driver that makes an entry valid without a CFGI keeps
getting the invalid one. `strict` mode also applies the invalidations only when the next
CMD_SYNC completes (command_queue.py).

Tags follow the architecture: configuration by StreamID (and SubstreamID for CDs); TLB entries
by VMID, ASID (stage 1; a global, nG == 0, entry by its CD's ASET instead, §3.17.1) and
input address range, stage 2 entries by VMID and IPA.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cosim.arch.domain import Domain

# TLB entry kinds: which commands reach them.
KIND_S1 = "s1"          # stage 1 only, tagged (vmid, asid); VMID from STE.S2VMID (§5.2)
KIND_NESTED = "nested"  # combined stage 1+2, tagged (vmid, asid)
KIND_S2 = "s2"          # stage 2 only, tagged vmid
STAGE1_KINDS = (KIND_S1, KIND_NESTED)  # what the TLBI_NH_* commands reach (§4.4.2-§4.4.5)

T = TypeVar("T")


def global_tag(aset: bool) -> int:
    """The ASID slot of a global (nG == 0) stage 1 entry. It matches lookups with any ASID
    through CDs of the same ASET only (§3.17.1); TLBI_NH_ASID leaves it, TLBI_NH_VA with an
    ASID removes it (Armv8-A invalidation rules for global entries)."""
    return -1 - int(aset)


GLOBAL_TAGS = (global_tag(False), global_tag(True))


@dataclass
class TlbEntry:
    kind: str
    vmid: int
    asid: int | None
    base: int       # input address of the block/page
    size: int
    out: int        # output address of `base`
    perm: str
    dom: Domain
    walk_access_priv: bool = False   # privilege the permissions were computed for
    level: int = 3
    s1_perm: str | None = None       # combined (nested) entries: stage 1's own permissions
    ipa: int | None = None           # combined entries: the IPA `base` translates to

    def covers(self, addr: int) -> bool:
        return self.base <= addr < self.base + self.size

    def overlaps(self, lo: int, hi: int) -> bool:
        return self.base < hi and lo < self.base + self.size


class ConfigCache:
    """STEs by StreamID and CDs by (StreamID, CD index).

    `keep_invalid`: also cache structures that are invalid (V=0) or ILLEGAL (caching and
    strict modes; §3.21.3 allows it, and a CMD_CFGI is then needed after making one valid).
    Otherwise only legal ones are kept and an invalid one is re-read each time.
    The invalidations return how many entries they removed.
    """

    def __init__(self, enabled: bool, keep_invalid: bool = False) -> None:
        self.enabled = enabled
        self.keep_invalid = keep_invalid
        self.ste: dict[int, Any] = {}
        self.cd: dict[tuple[int, int], Any] = {}

    def get_ste(self, sid: int) -> Any:
        return self.ste.get(sid) if self.enabled else None

    def put_ste(self, sid: int, ste: Any, legal: bool) -> None:
        if self.enabled and (legal or self.keep_invalid):
            self.ste[sid] = ste

    def get_cd(self, sid: int, index: int) -> Any:
        return self.cd.get((sid, index)) if self.enabled else None

    def put_cd(self, sid: int, index: int, cd: Any, legal: bool) -> None:
        if self.enabled and (legal or self.keep_invalid):
            self.cd[(sid, index)] = cd

    # §4.3: configuration invalidation commands.
    def inv_ste(self, sid: int) -> int:
        """CMD_CFGI_STE: the STE and every CD cached through it (§4.3.2)."""
        return int(self.ste.pop(sid, None) is not None) + self.inv_cd_all(sid)

    def inv_ste_range(self, sid: int, range_log2: int) -> int:
        """CMD_CFGI_STE_RANGE: StreamIDs sharing sid[31:range+1] (§4.3.3)."""
        lo = sid & ~((1 << (range_log2 + 1)) - 1)
        hi = lo + (1 << (range_log2 + 1))
        stes = [s for s in self.ste if lo <= s < hi]
        cds = [k for k in self.cd if lo <= k[0] < hi]
        for s in stes:
            self.ste.pop(s)
        for key in cds:
            self.cd.pop(key)
        return len(stes) + len(cds)

    def inv_all(self) -> int:
        n = len(self.ste) + len(self.cd)
        self.ste.clear()
        self.cd.clear()
        return n

    def inv_cd(self, sid: int, index: int) -> int:
        return int(self.cd.pop((sid, index), None) is not None)

    def inv_cd_all(self, sid: int) -> int:
        keys = [k for k in self.cd if k[0] == sid]
        for key in keys:
            self.cd.pop(key)
        return len(keys)


class DecodeMemo(Generic[T]):
    """Reuses the decode of byte-identical STEs/CDs; a model speed-up, not an SMMU cache.

    Callers still fetch (and trace) the structure on every translation, so coherent mode keeps
    observing every write; only decoding the same bytes at the same address under the same
    options is skipped. Decoded objects are shared between hits and must not be mutated.
    """

    def __init__(self, decode: Callable[[int, list[int], Any], T],
                 words: Callable[[bytes], list[int]], capacity: int = 256) -> None:
        self.decode = decode
        self.words = words
        self.capacity = capacity
        self._memo: OrderedDict[tuple[int, bytes], T] = OrderedDict()
        self._opt: Any = None
        self._opt_fields: dict[str, Any] = {}

    def __call__(self, addr: int, data: bytes, opt: Any) -> T:
        """`decode(addr, words(data), opt)`, reused while addr, data and options are equal."""
        # Legality depends on the advertised features: other options, other decodes.
        if opt is not self._opt or vars(opt) != self._opt_fields:
            self._memo.clear()
            self._opt, self._opt_fields = opt, dict(vars(opt))
        key = (addr, data)
        memo = self._memo
        hit = memo.get(key)
        if hit is not None:
            memo.move_to_end(key)
            return hit
        out = self.decode(addr, self.words(data), opt)
        memo[key] = out
        if len(memo) > self.capacity:
            memo.popitem(last=False)
        return out


# A walk-cache context: the stage ('s1' | 's2'), VMID and, for stage 1, ASID (§3.17).
_WalkCtx = tuple[str, int, int | None]
_WalkKey = tuple[int, int, int]     # (level of the table, parent level's shift, IA >> shift)
WALK_CACHE_MAX = 8192               # entries kept; the oldest is dropped beyond it


class _WalkView:
    """One translation context's share of the walk cache (walker.WalkCacheView)."""

    __slots__ = ("cache", "ctx")

    def __init__(self, cache: WalkCache, ctx: _WalkCtx) -> None:
        self.cache = cache
        self.ctx = ctx

    def lookup(self, key: _WalkKey) -> tuple[int, int] | None:
        return self.cache._entries.get((self.ctx, key))

    def insert(self, key: _WalkKey, table: int, ored: int) -> None:
        entries = self.cache._entries
        entries[(self.ctx, key)] = (table, ored)
        if len(entries) > WALK_CACHE_MAX:
            entries.popitem(last=False)


class WalkCache:
    """Intermediate translation table entries (§3.21.1 "walk cache"): the next-level table a
    walk reached for an input-address prefix, per stage 1 (VMID, ASID) and stage 2 (VMID)
    context. Only invalidations with Leaf=0 (and the ALL/ASID/VMALL scopes) remove them
    (§4.4.1.1: Leaf=1 need only invalidate last-level entries), so a driver that frees a
    table after a leaf-only TLBI keeps having it walked."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._entries: OrderedDict[tuple[_WalkCtx, _WalkKey], tuple[int, int]] = OrderedDict()

    def view(self, stage: str, vmid: int, asid: int | None) -> _WalkView | None:
        return _WalkView(self, (stage, vmid, asid)) if self.enabled else None

    def __len__(self) -> int:
        return len(self._entries)

    def drop(self, pred: Callable[[_WalkCtx], bool], lo: int | None = None,
             hi: int | None = None) -> int:
        """Remove the entries of the contexts `pred` selects, covering [lo, hi) if given."""
        def hit(ctx: _WalkCtx, key: _WalkKey) -> bool:
            if not pred(ctx):
                return False
            if lo is None or hi is None:
                return True
            _level, shift, prefix = key
            return prefix << shift < max(hi, lo + 1) and lo < (prefix + 1) << shift
        doomed = [k for k in self._entries if hit(*k)]
        for k in doomed:
            del self._entries[k]
        return len(doomed)


# A TLB lookup tag: entry kind, VMID, ASID and the privilege the permissions were computed for.
_Tag = tuple[str, int, int | None, bool]


class Tlb:
    """Translations indexed by tag and size-aligned base, so a lookup costs one probe per
    distinct block size in use instead of a scan.

    Lookup and invalidation behave as a list scanned oldest-first: the oldest covering entry
    with a matching tag wins, and invalidations remove exactly the entries their predicate
    matches. Every entry carries an insertion sequence number to keep that order.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.walks = WalkCache(enabled)
        self._clear()

    def _clear(self) -> None:
        self._seq = 0
        self._all: dict[int, TlbEntry] = {}          # seq -> entry, oldest first
        # (tag, size, base) -> [(seq, entry)] oldest first, for power-of-two sized entries
        # aligned to their size (every walk result): `addr & -size` finds the only candidate.
        self._index: dict[tuple[_Tag, int, int], list[tuple[int, TlbEntry]]] = {}
        self._sizes: dict[_Tag, dict[int, int]] = {}  # tag -> {size: entries of that size}
        self._odd: dict[int, TlbEntry] = {}          # any other shape: scanned on lookup
        self._by_tag: dict[tuple[int, int | None], dict[int, TlbEntry]] = {}  # (vmid, asid)

    @property
    def entries(self) -> list[TlbEntry]:
        """Every cached entry, oldest first."""
        return list(self._all.values())

    def lookup(self, kind: str, vmid: int, asid: int | None, addr: int,
               priv: bool) -> TlbEntry | None:
        if not self.enabled:
            return None
        tag = (kind, vmid, asid, priv)
        best: TlbEntry | None = None
        best_seq = -1
        sizes = self._sizes.get(tag)
        if sizes:
            index = self._index
            for size in sizes:
                bucket = index.get((tag, size, addr & -size))
                if bucket is not None:
                    seq, e = bucket[0]
                    if best is None or seq < best_seq:
                        best, best_seq = e, seq
        if self._odd:
            for seq, e in self._odd.items():
                if best is not None and seq > best_seq:
                    break
                if (e.kind == kind and e.vmid == vmid and e.asid == asid and e.covers(addr)
                        and e.walk_access_priv == priv):
                    return e
        return best

    def insert(self, e: TlbEntry) -> None:
        if not self.enabled:
            return
        seq = self._seq
        self._seq += 1
        self._all[seq] = e
        self._by_tag.setdefault((e.vmid, e.asid), {})[seq] = e
        if _indexable(e):
            tag = (e.kind, e.vmid, e.asid, e.walk_access_priv)
            self._index.setdefault((tag, e.size, e.base), []).append((seq, e))
            sizes = self._sizes.setdefault(tag, {})
            sizes[e.size] = sizes.get(e.size, 0) + 1
        else:
            self._odd[seq] = e

    def _remove(self, seq: int, e: TlbEntry) -> None:
        del self._all[seq]
        tag_key = (e.vmid, e.asid)
        bucket = self._by_tag[tag_key]
        del bucket[seq]
        if not bucket:
            del self._by_tag[tag_key]
        if self._odd.pop(seq, None) is not None:
            return
        tag = (e.kind, e.vmid, e.asid, e.walk_access_priv)
        key = (tag, e.size, e.base)
        entries = self._index[key]
        if len(entries) == 1:
            del self._index[key]
        else:
            self._index[key] = [p for p in entries if p[0] != seq]
        sizes = self._sizes[tag]
        sizes[e.size] -= 1
        if not sizes[e.size]:
            del sizes[e.size]
            if not sizes:
                del self._sizes[tag]

    def _drop(self, candidates: Iterable[tuple[int, TlbEntry]],
              pred: Callable[[TlbEntry], bool]) -> int:
        doomed = [(seq, e) for seq, e in candidates if pred(e)]
        for seq, e in doomed:
            self._remove(seq, e)
        return len(doomed)

    def _tagged(self, vmid: int, asid: int | None = None, any_asid: bool = True
                ) -> list[tuple[int, TlbEntry]]:
        """Entries with this VMID (and this ASID unless `any_asid`): the invalidation scope."""
        if not any_asid:
            return list(self._by_tag.get((vmid, asid), {}).items())
        out: list[tuple[int, TlbEntry]] = []
        for (v, _), bucket in self._by_tag.items():
            if v == vmid:
                out.extend(bucket.items())
        return out

    def _in_range(self, kinds: tuple[str, ...], vmid: int, asid: int | None, any_asid: bool,
                  lo: int, hi: int) -> list[tuple[int, TlbEntry]]:
        """A superset of the in-scope entries overlapping [lo, hi): by index probes when the
        range spans fewer size-aligned slots than there are entries in scope, else all of them.

        An indexed entry of size s overlapping [lo, hi) has its base in [lo & -s, hi) on an
        s boundary, so probing those slots finds every one; odd-shaped entries are always
        included. The caller's predicate makes the exact decision either way.
        """
        if hi <= lo:
            return self._tagged(vmid, asid, any_asid)
        if any_asid:
            budget = sum(len(bucket) for (v, _), bucket in self._by_tag.items() if v == vmid)
        else:
            budget = len(self._by_tag.get((vmid, asid), ()))
        tags = [tag for tag in self._sizes if tag[0] in kinds and tag[1] == vmid
                and (any_asid or tag[2] == asid)]
        slots: list[tuple[_Tag, int, int, int]] = []
        for tag in tags:
            for size in self._sizes[tag]:
                first = lo & -size
                budget -= (hi - first + size - 1) // size
                if budget < 0:
                    return self._tagged(vmid, asid, any_asid)
                slots.append((tag, size, first, hi))
        out = [(seq, e) for seq, e in self._odd.items()
               if e.vmid == vmid and (any_asid or e.asid == asid)]
        index = self._index
        for tag, size, first, end in slots:
            for base in range(first, end, size):
                bucket = index.get((tag, size, base))
                if bucket is not None:
                    out.extend(bucket)
        return out

    # §4.4: TLB invalidation commands. Each returns how many entries it removed.
    # Walk-cache entries go with the same scopes; the counts returned are TLB entries only.
    def nh_all(self, vmid: int) -> int:
        self.walks.drop(lambda c: c[0] == "s1" and c[1] == vmid)
        return self._drop(self._tagged(vmid), lambda e: e.kind in STAGE1_KINDS)

    def nh_asid(self, vmid: int, asid: int) -> int:
        self.walks.drop(lambda c: c == ("s1", vmid, asid))
        return self._drop(self._tagged(vmid, asid, any_asid=False),
                          lambda e: e.kind in STAGE1_KINDS)

    def nh_va(self, vmid: int, asid: int | None, lo: int, hi: int, leaf: bool = False) -> int:
        """TLBI_NH_VA (asid given: that ASID's and the global entries) / TLBI_NH_VAA (asid
        None: all ASIDs). Leaf=0 also removes the walk-cache entries covering the range."""
        if not leaf:
            self.walks.drop(lambda c: c[0] == "s1" and c[1] == vmid
                            and (asid is None or c[2] == asid), lo, hi)
        def drop(tag_asid: int | None) -> int:
            return self._drop(
                self._in_range(STAGE1_KINDS, vmid, tag_asid, tag_asid is None, lo, hi),
                lambda e: e.kind in STAGE1_KINDS and e.overlaps(lo, hi))
        if asid is None:
            return drop(None)
        return drop(asid) + sum(drop(g) for g in GLOBAL_TAGS)

    def s12_vmall(self, vmid: int) -> int:
        self.walks.drop(lambda c: c[1] == vmid)
        return self._drop(self._tagged(vmid), lambda e: True)

    def s2_ipa(self, vmid: int, lo: int, hi: int, leaf: bool = False) -> int:
        # Only stage 2 entries are tagged by IPA; combined entries need a stage 1 TLBI (§4.4.7).
        if not leaf:
            self.walks.drop(lambda c: c == ("s2", vmid, None), lo, hi)
        return self._drop(self._in_range((KIND_S2,), vmid, None, True, lo, hi),
                          lambda e: e.kind == KIND_S2 and e.overlaps(lo, hi))

    def nsnh_all(self) -> int:
        n = len(self._all)
        self._clear()
        self.walks.drop(lambda c: True)
        return n

    def el2_all(self) -> int:
        # EL2 regime entries exist only with STRW=EL2; this model tags none separately.
        return 0


def _indexable(e: TlbEntry) -> bool:
    """A power-of-two sized entry aligned to its size: found by `addr & -size`."""
    return e.size > 0 and not e.size & (e.size - 1) and not e.base & (e.size - 1)
