"""Property tests: random descriptor contents and configurations never break the walker."""

from __future__ import annotations

import logging

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cosim.arch.descriptors import ADDR, DESC_SIZE_LOG2, GRANULE_BITS, s2_start_level
from cosim.memory import BusError
from cosim.smmu.walker import (
    Stage1Regime,
    StageConfig,
    WalkResult,
    translate_stage1,
    translate_stage2,
)
from cosim.translation_agent import Access

FAULTS = {"F_TRANSLATION", "F_ADDR_SIZE", "F_ACCESS", "F_PERMISSION", "F_WALK_EABT"}
MEM_SIZE = 1 << 40        # reads at or above this raise BusError
POOL = 0x10_0000          # base of the addresses that random table pointers favour
WORD = (1 << 64) - 1
LOW_BITS = 0b111_1111_1111  # valid, type, and the lower attributes (AP/S2AP, AF, ...)


def descriptor():
    """Random words, biased towards valid table/page/block entries with plausible addresses."""
    near = st.integers(0, 255).map(lambda i: POOL + i * 4096)
    anywhere = st.integers(0, WORD).map(lambda a: a & ADDR.mask)
    biased = st.tuples(st.integers(0, WORD), st.one_of(near, anywhere), st.integers(0, 3)).map(
        lambda t: (t[0] & ~ADDR.mask & ~0b11) | t[1] | t[2])
    return st.one_of(st.integers(0, WORD), biased, biased.map(lambda d: d | LOW_BITS))


class RandomMemory:
    """Every descriptor read returns a value drawn when first read (then stays the same)."""

    def __init__(self, data) -> None:
        self.data = data
        self.words: dict[int, int] = {}

    def read(self, addr: int, length: int, rid: int = 0) -> bytes:
        if addr < 0 or addr + length > MEM_SIZE:
            raise BusError(addr, length, "DECODE_ERROR")
        if addr not in self.words:
            self.words[addr] = self.data.draw(descriptor())
        return self.words[addr].to_bytes(8, "little")


# Hypothesis favours small integers, so each "mostly X" choice below takes X unless the draw
# hits the top of its range.


def tsz_for_stage2(draw, granule: int, sl0: int) -> int:
    # Mostly a TxSZ consistent with S2SL0 (so the walk gets going), sometimes anything.
    gbits = GRANULE_BITS[granule]
    stride = gbits - DESC_SIZE_LOG2
    below = gbits + (3 - s2_start_level(granule, sl0)) * stride
    lo, hi = max(below + 1, 25), min(below + stride + 4, 52 if granule == 65536 else 48)
    if lo <= hi and draw(st.integers(0, 4)) != 4:
        return 64 - draw(st.integers(lo, hi))
    return draw(st.integers(8, 45))


@st.composite
def stage_config(draw, stage: int) -> StageConfig:
    granule = draw(st.sampled_from(sorted(GRANULE_BITS)))
    sl0 = draw(st.sampled_from([0, 1, 2, 0, 1, 2, 3])) if stage == 2 else None
    if stage == 2:
        tsz = tsz_for_stage2(draw, granule, min(sl0, 2))
    else:
        legal = draw(st.integers(0, 5)) != 5
        tsz = draw(st.integers(16, 39) if legal else st.integers(8, 45))
    return StageConfig(
        stage=stage, granule=granule, tsz=tsz,
        ttb=POOL if draw(st.integers(0, 5)) != 5 else draw(st.integers(0, 1 << 52)),
        oas=48 if draw(st.booleans()) else draw(st.sampled_from([32, 36, 40, 42, 44, 52])),
        sl0=sl0, affd=draw(st.booleans()), disabled=stage == 1 and draw(st.integers(0, 9)) == 9,
        s2_ptw=draw(st.booleans()))


def address(draw, cfg: StageConfig, upper: bool) -> int:
    ia_bits = 64 - cfg.tsz
    if draw(st.integers(0, 9)) == 9 or not 0 < ia_bits < 64:
        return draw(st.integers(0, WORD))
    a = draw(st.integers(0, (1 << ia_bits) - 1))
    return a | (WORD ^ ((1 << ia_bits) - 1)) if upper else a


def check(r, addr: int, oas: int) -> None:
    assert isinstance(r, WalkResult)
    if r.ok:
        assert r.fault is None and r.fault_stage is None
        assert r.size in {1 << s for s in range(12, 43)}
        assert set(r.perm) <= set("rwx")
        assert r.out < 1 << oas
        assert r.out & (r.size - 1) == addr & (r.size - 1)
        assert r.reads
    else:
        assert r.fault in FAULTS and r.fault_stage in (1, 2)
        assert r.fault_ipa is not None or r.fault_stage == 1
        assert not r.s2_on_s1_walk or r.fault_stage == 2
    for daddr, value in r.reads:
        assert 0 <= daddr < MEM_SIZE and daddr % 8 == 0 and 0 <= value <= WORD


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_tables_always_give_a_walk_result(caplog, data):
    c0 = data.draw(stage_config(1))
    c1 = data.draw(st.none() | stage_config(1))
    c2 = data.draw(stage_config(2))
    nested = data.draw(st.booleans())
    upper = c1 is not None and data.draw(st.booleans())
    va = address(data.draw, c1 if upper else c0, upper)
    ipa = address(data.draw, c2, False)
    access = Access(read=data.draw(st.booleans()), write=data.draw(st.booleans()),
                    exec=data.draw(st.booleans()), priv=data.draw(st.booleans()))
    mem = RandomMemory(data)
    with caplog.at_level(logging.ERROR, logger="cosim.smmu.walker"):
        r1 = translate_stage1(mem, Stage1Regime(c0, c1), va, access, c2 if nested else None)
        r2 = translate_stage2(mem, c2, ipa, access)
    # The walker's catch-all must never have been needed.
    assert not [rec for rec in caplog.records if rec.name == "cosim.smmu.walker"]
    half = c1 if c1 is not None and (va >> 55) & 1 else c0
    check(r1, va, c2.oas if nested else half.oas)
    check(r2, ipa, c2.oas)
    event(f"stage 1{' nested' if nested else ''}: {r1.fault or 'ok'}, {len(r1.reads)} reads")
    event(f"stage 2: {r2.fault or 'ok'}, {len(r2.reads)} reads")
