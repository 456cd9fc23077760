"""Endpoint ATC: lookup, replacement (LRU, FIFO), every invalidation form."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.endpoint.atc import Atc

K4 = 4096


def fill(atc: Atc, n: int, pasid: int | None = None) -> list[int]:
    return [atc.insert(pasid, i * K4, K4, 0x100000 + i * K4, True, True, "d")[0].id
            for i in range(n)]


def test_hit_miss_and_offset() -> None:
    atc = Atc(4)
    e, ev = atc.insert(None, 0x5000, 0x2000, 0x80000, True, False, "d1")
    assert ev == [] and e.iova == 0x4000 and e.pa == 0x80000  # aligned to the entry size
    assert atc.lookup(None, 0x5ABC) is e and e.pa_of(0x5ABC) == 0x81ABC
    assert atc.lookup(None, 0x6000) is None
    assert atc.lookup(3, 0x5000) is None  # other PASID
    assert e.perm == "r"


def test_lru_replaces_least_recently_used() -> None:
    atc = Atc(3, "lru")
    ids = fill(atc, 3)
    assert atc.lookup(None, 0) is not None  # entry 0 becomes most recent
    _, ev = atc.insert(None, 10 * K4, K4, 0, True, True, "d")
    assert [e.id for e in ev] == [ids[1]]
    assert atc.lookup(None, 0) is not None and atc.lookup(None, K4) is None


def test_fifo_ignores_hits() -> None:
    atc = Atc(3, "fifo")
    ids = fill(atc, 3)
    assert atc.lookup(None, 0) is not None
    _, ev = atc.insert(None, 10 * K4, K4, 0, True, True, "d")
    assert [e.id for e in ev] == [ids[0]]


def test_overlapping_insert_replaces_stale_entry() -> None:
    atc = Atc(4)
    old, _ = atc.insert(1, 0, K4, 0x1000, True, False, "old")
    new, ev = atc.insert(1, 0, K4, 0x2000, True, True, "new")
    assert ev == [old] and atc.lookup(1, 0) is new and len(atc) == 1


def test_invalidate_range_pasid_scoped() -> None:
    atc = Atc(8)
    fill(atc, 3, pasid=1)
    fill(atc, 3, pasid=2)
    dropped = atc.invalidate(1, K4, 2 * K4)
    assert sorted((e.pasid, e.iova) for e in dropped) == [(1, K4), (1, 2 * K4)]
    assert atc.lookup(2, K4) is not None and atc.lookup(1, 0) is not None


def test_invalidate_without_pasid_hits_every_pasid() -> None:
    atc = Atc(8)
    fill(atc, 2, pasid=None)
    fill(atc, 2, pasid=5)
    dropped = atc.invalidate(None, 0, K4)
    assert sorted(str(e.pasid) for e in dropped) == ["5", "None"]
    assert len(atc) == 2


def test_invalidate_global_bit_all_pasids() -> None:
    atc = Atc(8)
    fill(atc, 2, pasid=1)
    fill(atc, 2, pasid=2)
    assert len(atc.invalidate(1, K4, K4, all_pasids=True)) == 2
    assert len(atc) == 2


def test_invalidate_by_pasid_and_all() -> None:
    atc = Atc(8)
    fill(atc, 2, pasid=1)
    fill(atc, 3, pasid=2)
    assert len(atc.invalidate_pasid(2)) == 3 and len(atc) == 2
    assert len(atc.invalidate_all()) == 2 and len(atc) == 0


def test_bad_configuration_rejected() -> None:
    with pytest.raises(ValueError):
        Atc(0)
    with pytest.raises(ValueError):
        Atc(4, "random")

_pasid = st.one_of(st.none(), st.integers(0, 3))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_pasid, st.integers(0, 63), st.sampled_from([K4, 2 * K4, 8 * K4]))),
       _pasid, st.integers(0, 63), st.integers(1, 16), st.booleans())
def test_invalidation_leaves_nothing_in_scope(inserts: list, pasid: int | None, page: int,
                                              pages: int, g: bool) -> None:
    atc = Atc(16)
    for p, pg, size in inserts:
        atc.insert(p, pg * K4, size, 0, True, True, "d")
        assert len(atc) <= 16
    before = {e.id for e in atc.entries()}
    dropped = atc.invalidate(pasid, page * K4, pages * K4, all_pasids=g)
    for e in atc.entries():
        in_scope = pasid is None or g or e.pasid == pasid
        assert not (in_scope and e.overlaps(page * K4, pages * K4))
    assert {e.id for e in dropped} | {e.id for e in atc.entries()} == before
