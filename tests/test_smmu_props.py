"""Property tests: random register writes, commands and table contents never raise out of the
model (strict mode lets internal errors propagate), and every recorded event is architected."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smmu_driver import CDTAB, STRTAB, Driver, FakeEndpoint

from cosim.arch.events import EVENT_CODES
from cosim.arch.registers import REGISTERS
from cosim.smmu import SmmuOptions
from cosim.translation_agent import Access, AtsStatus

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
OFFSETS = sorted({r.offset for r in REGISTERS} | {0xA8, 0xAC, 0xE00, 0xFFC, 0x1_00A8})


@st.composite
def ste_words(draw):
    """STEs biased towards the interesting encodings."""
    q = draw(st.lists(u64, min_size=8, max_size=8))
    q[0] = (q[0] & ~0xF) | draw(st.sampled_from([0b1, 0b1001, 0b1011, 0b1101, 0b1111, 0b0101,
                                                 0, 0b0011]))
    if draw(st.booleans()):
        q[0] = (q[0] & ~(((1 << 46) - 1) << 6)) | (CDTAB & ((1 << 52) - 64))
    if draw(st.booleans()):
        q[2] = (q[2] & ~(0x3F << 32)) | (draw(st.integers(16, 48)) << 32)
        q[2] |= 1 << 51
        q[2] &= ~(1 << 52)
    return q


@st.composite
def cd_words(draw):
    q = draw(st.lists(u64, min_size=8, max_size=8))
    if draw(st.booleans()):
        q[0] = (q[0] | (1 << 31) | (1 << 41)) & ~((1 << 15) | (1 << 44))
        q[0] = (q[0] & ~0x3F) | draw(st.integers(10, 45))
    return q


def _assert_architected(d):
    for e in d.events():
        assert e["name"] in EVENT_CODES


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(OFFSETS), st.sampled_from([1, 2, 4, 8]), u64),
                max_size=40))
def test_random_register_writes_never_raise(writes):
    d = Driver().init()
    for off, size, val in writes:
        d.smmu.mmio_write(off, size, val)
        d.smmu.mmio_read(off, size)
        d.smmu.tick()
    d.smmu.translate(1, None, 0x1000, Access())
    d.smmu.ats_translate(1, 3, 0x1000, Access(write=True))


@SETTINGS
@given(st.lists(st.tuples(u64, u64), min_size=1, max_size=30),
       st.sampled_from(["coherent", "caching"]))
def test_random_commands_never_raise(cmds, mode):
    d = Driver(SmmuOptions(cache_mode=mode, atc_inv_timeout_ms=1)).init()
    ep = FakeEndpoint(mode="later")
    for sid in range(4):
        d.smmu.attach_ats_device(sid, ep)
    for q0, q1 in cmds:
        # Bias towards real opcodes; the rest of the bits stay random.
        q0 = (q0 & ~0xFF) | ((q0 & 0xFF) % 0x48 if q0 & 0x100 else q0 & 0xFF)
        d.queue_cmd([q0, q1])
    d.publish()
    for _ in range(3):
        d.clock.t += 0.01
        d.smmu.tick()
        if d.cmdq_err():
            d.ack_gerror()
    ep.finish()
    d.smmu.tick()
    _assert_architected(d)


@SETTINGS
@given(ste_words(), cd_words(), st.integers(0, 3), st.one_of(st.none(), st.integers(0, 1 << 20)),
       u64, st.booleans(), st.sampled_from(["linear", "2lvl"]), st.sampled_from(["coherent",
                                                                                  "caching"]))
def test_random_tables_only_architected_outcomes(ste, cd, sid, ssid, iova, write, fmt, mode):
    d = Driver(SmmuOptions(cache_mode=mode), st_fmt=fmt).init()
    if fmt == "linear":
        for i, w in enumerate(ste):
            d.mem.write_u64(STRTAB + sid * 64 + 8 * i, w)
    else:
        d.write_ste(sid, ste, invalidate=False)
    for i, w in enumerate(cd):
        d.mem.write_u64(CDTAB + 8 * i, w)
        d.mem.write_u64(CDTAB + 64 + 8 * i, w)
    acc = Access(read=not write, write=write)
    t = d.smmu.translate(sid, ssid, iova, acc)
    assert t.fault is None or t.fault in EVENT_CODES
    if t.ok:
        assert t.size >= 4096 and t.size & (t.size - 1) == 0
    c = d.smmu.ats_translate(sid, ssid, iova, acc)
    assert isinstance(c.status, AtsStatus)
    if c.status is AtsStatus.SUCCESS:
        assert c.size >= 4096 and c.size & (c.size - 1) == 0
    d.smmu.check_translated(sid, ssid)
    _assert_architected(d)
