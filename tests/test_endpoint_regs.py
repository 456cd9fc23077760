"""The endpoint register map: declaration, decoding, and the committed C header."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cosim.arch import endpoint_regs as regs

HEADER = Path(__file__).resolve().parents[1] / "guest-tests" / "include" / "cosim_ep.h"


def test_committed_header_matches_generator() -> None:
    assert HEADER.read_text() == regs.c_header(), (
        "guest-tests/include/cosim_ep.h is stale: regenerate with "
        "`python -m cosim.arch.endpoint_regs --c-header > guest-tests/include/cosim_ep.h`")


def test_the_entry_point_the_header_names_still_generates_it() -> None:
    # The committed header says it was made by `python -m cosim.endpoint.regs --c-header`.
    out = subprocess.run([sys.executable, "-m", "cosim.endpoint.regs", "--c-header"],
                         capture_output=True, text=True, check=True).stdout
    assert out == HEADER.read_text()
    assert "python -m cosim.endpoint.regs --c-header" in out


def test_offsets_match_docs() -> None:
    # A sample of the offsets in docs/endpoint.md the guest tests rely on.
    expect = {"ID": 0x000, "RESET": 0x010, "MARKER_TAG": 0x040, "MARKER_VALUE": 0x048,
              "MARKER_LABEL": 0x060, "DMA_DOORBELL": 0x12C, "DMA_STATUS": 0x130,
              "DMA_RESULT": 0x138, "TG_CTRL": 0x200, "TG_MISMATCH": 0x258,
              "CNT_ATS_REQ": 0x300, "CNT_FAULTS": 0x338}
    for name, off in expect.items():
        assert regs.BY_NAME[name].offset == off, name


def test_decode_halves_and_rejects() -> None:
    d = regs.decode(0x10C, 4)
    assert d is not None and d.reg.name == "DMA_SRC" and d.shift == 32
    d = regs.decode(0x108, 8)
    assert d is not None and d.reg.name == "DMA_SRC" and d.shift == 0
    d = regs.decode(0x06C, 4)
    assert d is not None and d.reg.name == "MARKER_LABEL" and d.index == 3
    assert regs.decode(0x100, 8) is None  # 64-bit access to a 32-bit register
    assert regs.decode(0x102, 2) is None
    assert regs.decode(0x044, 4) is None  # hole
    assert regs.decode(0x10C, 8) is None  # misaligned
