"""The indexed TLB and the decode memo behave exactly like the plain versions they replace.

`ListTlb` is the original list-scanning TLB: the oldest matching entry wins a lookup and each
invalidation removes what its predicate matches. Random sequences of inserts, lookups and
invalidations must give the same entry (by identity), the same counts and the same contents.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.arch.cd import CD, cd_words, encode_cd
from cosim.arch.ste import STE, encode_ste, ste_words
from cosim.smmu import SmmuOptions
from cosim.smmu.caches import KIND_NESTED, KIND_S1, KIND_S2, DecodeMemo, Tlb, TlbEntry
from cosim.smmu.context_descriptor import decode_cd, read_cd
from cosim.smmu.stream_table import decode_ste, read_ste

S1 = (KIND_S1, KIND_NESTED)
KB4, MB2, GB1 = 1 << 12, 1 << 21, 1 << 30


class ListTlb:
    def __init__(self) -> None:
        self.entries: list[TlbEntry] = []

    def lookup(self, kind, vmid, asid, addr, priv):
        for e in self.entries:
            if (e.kind == kind and e.vmid == vmid and e.asid == asid and e.covers(addr)
                    and e.walk_access_priv == priv):
                return e
        return None

    def insert(self, e):
        self.entries.append(e)

    def _drop(self, pred):
        before = len(self.entries)
        self.entries = [e for e in self.entries if not pred(e)]
        return before - len(self.entries)

    def nh_all(self, vmid):
        return self._drop(lambda e: e.kind in S1 and e.vmid == vmid)

    def nh_asid(self, vmid, asid):
        return self._drop(lambda e: e.kind in S1 and e.vmid == vmid and e.asid == asid)

    def nh_va(self, vmid, asid, lo, hi):
        return self._drop(lambda e: e.kind in S1 and e.vmid == vmid
                          and (asid is None or e.asid == asid) and e.overlaps(lo, hi))

    def s12_vmall(self, vmid):
        return self._drop(lambda e: e.vmid == vmid)

    def s2_ipa(self, vmid, lo, hi):
        return self._drop(lambda e: e.kind == KIND_S2 and e.vmid == vmid and e.overlaps(lo, hi))

    def nsnh_all(self):
        return self._drop(lambda e: True)


vmids = st.sampled_from([0, 1])
asids = st.sampled_from([None, 1, 2])
# A few pages in a few blocks, so entries of every size overlap, repeat and shadow each other.
addrs = st.builds(lambda region, page, off: region + page * KB4 + off,
                  st.sampled_from([0, MB2, GB1, GB1 + MB2]), st.integers(0, 3),
                  st.sampled_from([0, 8, KB4 - 1]))


@st.composite
def entries(draw):
    size = draw(st.sampled_from([KB4, KB4, MB2, GB1, 3 * KB4]))  # 12 KB: not a power of two
    base = draw(addrs)
    if draw(st.integers(0, 5)):
        base &= ~(size - 1) if size & (size - 1) == 0 else ~(KB4 - 1)
    return TlbEntry(draw(st.sampled_from([KIND_S1, KIND_NESTED, KIND_S2])), draw(vmids),
                    draw(asids), base, size, draw(addrs), draw(st.sampled_from(["r", "rw"])),
                    "dom", draw(st.booleans()))


# Invalidation ranges: a page or two (index probes) up to several blocks (a scan of the scope);
# zero and negative lengths check the empty-range edge the list scan also had.
lengths = st.one_of(st.sampled_from([1, KB4, 2 * KB4, 0, -KB4]), st.integers(1, 8 << 20),
                    st.just(1 << 100))

ops = st.one_of(
    st.tuples(st.just("insert"), entries()),
    st.tuples(st.just("insert"), entries()),
    # Same tag and range as an existing entry (the model re-inserts after a permission miss),
    # or same tag over a shifted / differently sized range, so entries shadow each other.
    st.tuples(st.just("again"), st.integers(0, 1000), st.sampled_from(["r", "rw", "rwx"]),
              st.sampled_from([0, 0, KB4, -KB4]), st.sampled_from([None, KB4, 3 * KB4, MB2])),
    st.tuples(st.just("lookup"), st.sampled_from([KIND_S1, KIND_NESTED, KIND_S2]), vmids,
              asids, addrs, st.booleans()),
    # A lookup with an existing entry's tag at an address its block covers.
    st.tuples(st.just("probe"), st.integers(0, 1000), st.integers(0, GB1 - 1)),
    st.tuples(st.just("nh_all"), vmids),
    st.tuples(st.just("nh_asid"), vmids, asids),
    st.tuples(st.just("nh_va"), vmids, asids, addrs, lengths),
    st.tuples(st.just("s12_vmall"), vmids),
    st.tuples(st.just("s2_ipa"), vmids, addrs, lengths),
    st.tuples(st.just("nsnh_all")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=80))
def test_indexed_tlb_matches_list_scan(seq):
    ref, tlb = ListTlb(), Tlb(True)
    for op, *args in seq:
        if op == "again":
            if not ref.entries:
                continue
            old = ref.entries[args[0] % len(ref.entries)]
            op, args = "insert", [dataclasses.replace(old, perm=args[1],
                                                      base=max(0, old.base + args[2]),
                                                      size=args[3] or old.size)]
        if op == "probe":
            if not ref.entries:
                continue
            e = ref.entries[args[0] % len(ref.entries)]
            op, args = "lookup", [e.kind, e.vmid, e.asid, e.base + args[1] % e.size,
                                  e.walk_access_priv]
        if op == "insert":
            ref.insert(args[0])
            tlb.insert(args[0])
            continue
        if op in ("nh_va", "s2_ipa"):
            lo, length = args[-2], args[-1]
            args = [*args[:-2], lo, lo + length]
        got, want = getattr(tlb, op)(*args), getattr(ref, op)(*args)
        assert got is want if op == "lookup" else got == want, (op, args)
        assert [id(e) for e in tlb.entries] == [id(e) for e in ref.entries]


def test_tlb_prefers_oldest_covering_entry_across_sizes():
    tlb = Tlb(True)
    page = TlbEntry(KIND_S1, 0, 1, 0x20_0000, KB4, 0x1000, "r", "d")
    block = TlbEntry(KIND_S1, 0, 1, 0x20_0000, MB2, 0x40_0000, "rw", "d")
    tlb.insert(page)
    tlb.insert(block)
    assert tlb.lookup(KIND_S1, 0, 1, 0x20_0fff, False) is page
    assert tlb.lookup(KIND_S1, 0, 1, 0x20_1000, False) is block
    assert tlb.lookup(KIND_S1, 0, 2, 0x20_1000, False) is None
    assert tlb.nh_va(0, 1, 0x20_0000, 0x20_1000) == 2
    assert tlb.entries == []


def test_tlb_oldest_wins_among_duplicates_and_odd_shaped_entries():
    tlb = Tlb(True)
    first = TlbEntry(KIND_S1, 0, 1, 0x3000, KB4, 0x1000, "r", "d")
    tlb.insert(first)
    tlb.insert(dataclasses.replace(first, perm="rw"))  # re-walk after a permission miss
    odd = TlbEntry(KIND_S1, 0, 1, 0x2000, 3 * KB4, 0x9000, "rw", "d")  # not a power of two
    tlb.insert(odd)
    assert tlb.lookup(KIND_S1, 0, 1, 0x3008, False) is first
    assert tlb.lookup(KIND_S1, 0, 1, 0x2008, False) is odd
    assert tlb.nh_asid(0, 1) == 3 and tlb.entries == []
    tlb.insert(odd)
    tlb.insert(first)
    assert tlb.lookup(KIND_S1, 0, 1, 0x3008, False) is odd


def test_disabled_tlb_keeps_nothing():
    tlb = Tlb(False)
    tlb.insert(TlbEntry(KIND_S2, 0, None, 0, KB4, 0, "r", "d"))
    assert tlb.entries == [] and tlb.lookup(KIND_S2, 0, None, 0, False) is None


words8 = st.lists(st.integers(0, (1 << 64) - 1), min_size=8, max_size=8)


@settings(max_examples=200, deadline=None)
@given(words8)
def test_decode_words_matches_wide_decode(words):
    for layout in (STE, CD):
        assert layout.decode_words(words) == layout.decode(layout.from_words(words))


def _raw(words: list[int]) -> bytes:
    return b"".join(w.to_bytes(8, "little") for w in words)


def test_decode_memo_reuses_only_identical_bytes_and_options():
    calls = []

    def decode(addr, words, opt):
        calls.append(addr)
        return decode_ste(addr, words, opt)

    memo = DecodeMemo(decode, ste_words, capacity=2)
    opt = SmmuOptions()
    ste = encode_ste(V=1, Config=0b101, S1ContextPtr=0x1000 >> 6)
    a = memo(0x100, _raw(ste), opt)
    assert a.words == ste and a == decode_ste(0x100, ste, opt)
    assert memo(0x100, _raw(ste), opt) is a and calls == [0x100]
    other = list(ste)
    other[1] ^= 1 << 28  # EATS
    assert memo(0x100, _raw(other), opt).eats != a.eats
    assert memo(0x140, _raw(ste), opt).addr == 0x140
    assert len(calls) == 3
    # Capacity 2: the oldest key was evicted and decodes again.
    memo(0x100, _raw(ste), opt)
    assert len(calls) == 4
    # Same bytes, changed advertised features: decoded again (stage 1 now unsupported).
    opt.stage1 = False
    assert not memo(0x100, _raw(ste), opt).legal
    assert len(calls) == 5
    assert not memo(0x100, _raw(ste), SmmuOptions(stage1=False)).legal


def test_decode_memo_cd_result_equals_direct_decode():
    memo = DecodeMemo(decode_cd, cd_words)
    opt = SmmuOptions()
    cd = encode_cd(V=1, AA64=1, T0SZ=16, TG0=0, IPS=5, EPD1=1, TTB0=0x8000 >> 4, ASID=3, R=1,
                   A=1)
    got = memo(0x40, _raw(cd), opt)
    assert got.legal and got == decode_cd(0x40, list(cd), opt)


class ShortMemory:
    """A memory that returns fewer bytes than asked (a truncated reply on the wire)."""

    def read(self, addr: int, length: int, rid: int = 0) -> bytes:
        return bytes(range(1, 11))


def test_short_read_decodes_as_zero_padded():
    assert read_ste(ShortMemory(), 0) == bytes(range(1, 11)) + bytes(54)
    assert read_cd(ShortMemory(), 0) == bytes(range(1, 11)) + bytes(54)
