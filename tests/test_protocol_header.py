"""QEMU's cosim-proto.h, carried in qemu-patches/, is exactly what protocol.py generates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cosim.link import protocol

PATCHES = Path(__file__).resolve().parents[1] / "qemu-patches"
HEADER_PATH = "include/hw/misc/cosim-proto.h"


def header_in_patches() -> str:
    """The text of cosim-proto.h as the patch series creates it (one new-file hunk)."""
    series = [line.strip() for line in (PATCHES / "series").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    found = []
    for name in series:
        lines = (PATCHES / name).read_text().splitlines()
        for i, line in enumerate(lines):
            if line != f"diff --git a/{HEADER_PATH} b/{HEADER_PATH}":
                continue
            j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("@@"))
            hunk = re.fullmatch(r"@@ -0,0 \+1,(\d+) @@.*", lines[j])
            assert hunk, f"{name}: {HEADER_PATH} is not created by one new-file hunk"
            body = lines[j + 1:j + 1 + int(hunk.group(1))]
            assert all(b.startswith("+") for b in body), f"{name}: short hunk"
            found.append("\n".join(b[1:] for b in body) + "\n")
    assert len(found) == 1, f"{HEADER_PATH} created by {len(found)} patches, want 1"
    return found[0]


def test_patch_header_matches_generator() -> None:
    assert header_in_patches() == protocol.c_header(), (
        f"{HEADER_PATH} in qemu-patches/ is stale: regenerate it with "
        "`python -m cosim.link.protocol --c-header` and amend the patch that adds it")


def test_header_carries_every_code() -> None:
    text = protocol.c_header()
    defines = dict(re.findall(r"^#define (COSIM_\w+) +(\S.*)$", text, re.M))
    for t in protocol.MsgType:
        assert int(defines[f"COSIM_{t.name}"], 0) == t
    for st in protocol.Status:
        assert int(defines[f"COSIM_{st.name}"], 0) == st
    assert defines["COSIM_CAP_SHARED_RAM"] == "(1u << 0)"
    assert defines["COSIM_DMA_FLAG_MSI"] == "(1u << 0)"
    assert int(defines["COSIM_SMMU_FRAME_SIZE"], 0) == protocol.SMMU_FRAME_SIZE
    assert int(defines["COSIM_SMMU_NUM_IRQS"]) == len(protocol.IrqLine)
    assert int(defines["COSIM_DEFAULT_MAX_DMA"]) == protocol.DEFAULT_MAX_DMA


def test_header_sizes_are_the_layouts() -> None:
    sizes = dict(re.findall(r"QEMU_BUILD_BUG_ON\(sizeof\((\w+)\) != (\d+)\);",
                            protocol.c_header()))
    assert int(sizes["CosimHeader"]) == protocol.HEADER_SIZE
    assert int(sizes["CosimHello"]) == protocol.REQUEST_BODY[protocol.MsgType.HELLO].sizeof()
    assert int(sizes["CosimDma"]) == protocol.REQUEST_BODY[protocol.MsgType.DMA_READ].sizeof()
    assert set(sizes) == {name for name, _, _ in protocol.C_STRUCTS}


def test_struct_members_follow_the_declaration() -> None:
    text = protocol.c_header()
    body = re.search(r"struct QEMU_PACKED CosimCfgWrite \{\n(.*?)\n\}", text, re.S)
    assert body is not None
    assert [m.split()[-1].rstrip(";") for m in body.group(1).splitlines()] == \
        ["dev", "rsvd", "size", "offset", "value"]


def test_cli_prints_the_header(capsys: pytest.CaptureFixture[str]) -> None:
    assert protocol.main(["--c-header"]) == 0
    assert capsys.readouterr().out == protocol.c_header()


def test_cli_rejects_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        protocol.main(["--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
