"""The declaration layer's boundaries and the declarations themselves.

Layering (docs/architecture.md): the analysis reads traces and cosim/arch only, and cosim/arch
depends on nothing else of cosim. Checked on the source with `ast`, so a lazy import inside a
function counts too.

Declarations: every Layout in cosim/arch keeps its fields inside its width, and fields share
bits only where the layout declares the overlay (a command's fields by opcode, an event's by
type, the 64 KB OA[51:48] bits in a descriptor).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import random
import sys
from pathlib import Path

import pytest

import cosim.arch
from cosim.arch.bitfield import WORD_BITS, Layout, join_words
from cosim.arch.commands import CMD, COMMANDS
from cosim.arch.registers import REGISTERS

ROOT = Path(__file__).resolve().parents[1]
STDLIB = sys.stdlib_module_names


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None or node.level:
                # `from . import x` / `from .. import x`: x may be a module of that package.
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def _within(mod: str, prefixes: tuple[str, ...]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def _violations(pkg_dir: Path, package: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted(pkg_dir.rglob("*.py")):
        # The package a relative import in this file is relative to.
        sub = path.relative_to(pkg_dir).parent.parts
        module_pkg = ".".join((package, *sub))
        for line, mod in _imports(path, module_pkg):
            top = mod.split(".")[0]
            if top == "__future__" or (top in STDLIB and top != "cosim"):
                continue
            if not _within(mod, allowed):
                bad.append(f"{path.relative_to(pkg_dir.parent)}:{line}: imports {mod}")
    return bad


def test_analysis_reads_only_traces_and_the_declarations() -> None:
    bad = _violations(ROOT / "cosim" / "analyzer", "cosim.analyzer",
                      ("cosim.analyzer", "cosim.trace", "cosim.arch"))
    assert not bad, "\n".join(bad)


def test_arch_depends_on_nothing_else_of_cosim() -> None:
    bad = _violations(ROOT / "cosim" / "arch", "cosim.arch", ("cosim.arch",))
    assert not bad, "\n".join(bad)


def test_the_import_check_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    # The checker itself: a file importing the model lazily and relatively must be caught.
    pkg = tmp_path / "analyzer"
    pkg.mkdir()
    (pkg / "x.py").write_text("import json\nfrom . import view\n\ndef f():\n"
                              "    from ..smmu import walker\n    import numpy\n")
    bad = _violations(pkg, "cosim.analyzer", ("cosim.analyzer", "cosim.trace", "cosim.arch"))
    assert [b.split("imports ")[1] for b in bad] == ["cosim.smmu.walker", "numpy"]


# -- the declarations ----------------------------------------------------------------------------

def _all_layouts() -> list[tuple[str, Layout]]:
    found: dict[int, tuple[str, Layout]] = {}
    for info in pkgutil.iter_modules(cosim.arch.__path__):
        mod = importlib.import_module(f"cosim.arch.{info.name}")
        for name, value in vars(mod).items():
            if isinstance(value, Layout) and not name.startswith("_"):
                found.setdefault(id(value), (f"{info.name}.{name}", value))
    return sorted(found.values(), key=lambda t: t[0])


LAYOUTS = _all_layouts()


def test_every_architected_layout_is_found() -> None:
    names = {n for n, _ in LAYOUTS}
    for expect in ("registers.CR0", "registers.STRTAB_BASE", "ste.STE", "ste.L1STD", "cd.CD",
                   "cd.L1CD", "commands.CMD", "events.EVENT_RECORD", "descriptors.TABLE",
                   "descriptors.S1_LEAF", "descriptors.S2_LEAF", "pcie.ATS_CTRL",
                   "pcie.MSIX_ENTRY", "endpoint_regs.DMA_STATUS"):
        assert expect in names


@pytest.mark.parametrize("name,layout", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_fields_fit_and_overlap_only_where_declared(name: str, layout: Layout) -> None:
    assert layout.nbits % 8 == 0
    for f in layout.fields.values():
        assert 0 <= f.lo <= f.hi < layout.nbits, f"{name}.{f.name}"
        assert f.mask >> layout.nbits == 0
    overlapping = {frozenset(p) for p in layout.overlapping_pairs()}
    undeclared = overlapping - layout.overlaps
    assert not undeclared, f"{name}: fields share bits: {sorted(map(sorted, undeclared))}"
    stale = layout.overlaps - overlapping
    assert not stale, f"{name}: declared overlaps that do not overlap: {stale}"


@pytest.mark.parametrize("op", sorted(COMMANDS))
def test_each_command_carries_disjoint_fields(op: int) -> None:
    spec = COMMANDS[op]
    used = 0
    for n in ("Opcode",) + spec.fields:
        assert not used & CMD[n].mask, f"{spec.name}.{n} overlaps another of its fields"
        used |= CMD[n].mask


@pytest.mark.parametrize("name,layout", [(n, lay) for n, lay in LAYOUTS if lay.nwords > 1],
                         ids=[n for n, lay in LAYOUTS if lay.nwords > 1])
def test_word_plan_decodes_as_the_wide_value(name: str, layout: Layout) -> None:
    # decode_words (the hot path's per-word plan) must agree with the plain declaration.
    rng = random.Random(name)
    for _ in range(50):
        words = [rng.getrandbits(WORD_BITS) for _ in range(layout.nwords)]
        assert layout.decode_words(words) == layout.decode(join_words(words))


def test_encode_refuses_what_does_not_fit() -> None:
    layout = LAYOUTS[0][1]
    f = next(iter(layout.fields.values()))
    with pytest.raises(ValueError):
        layout.encode(**{f.name: f.max + 1})
    with pytest.raises(KeyError):
        layout.encode(NoSuchField=1)


def test_register_table_offsets_do_not_overlap() -> None:
    spans = sorted((r.offset, r.offset + r.size, r.name) for r in REGISTERS)
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        assert end <= start, f"{a} overlaps {b}"
    for r in REGISTERS:
        assert r.size * 8 == r.layout.nbits, r.name
