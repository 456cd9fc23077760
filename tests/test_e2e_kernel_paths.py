"""End to end: --kernel takes a path, the way kernel developers test their own patches: an arm64
Image they built, or a kernel source tree (a git work tree) that set-up builds out of tree with
our fragment. A tree that is not under git goes through the same build, kbuild deciding what
to rebuild: make bench's devloop section times that path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import products_for
from test_e2e_launcher import cosim_run

from cosim import mutate

pytestmark = pytest.mark.e2e


def _kunit_passed(summary: dict) -> list[dict]:
    kunit = [t for t in summary["tests"] if t["area"] == "kunit"]
    assert len(kunit) >= 20, summary["tests"]
    assert all(t["status"] == "pass" for t in kunit), kunit
    return kunit


def test_kernel_path_to_an_image_boots(tmp_path: Path, runs_dir: Path) -> None:
    built = products_for("debian-6.12")
    image = tmp_path / "my-build" / "Image"
    image.parent.mkdir()
    shutil.copy(built.image, image)
    code, summary, out = cosim_run(runs_dir, "--kernel", str(image), "--tests", "kunit,probe")
    assert summary["guest"] == "booted", out[-3000:]
    assert summary["kernel"].startswith("Image "), summary["kernel"]
    _kunit_passed(summary)
    probe = {t["name"]: t["status"] for t in summary["tests"] if t["area"] == "probe"}
    assert probe.get("probe/smmu_probed") == "pass", probe


def test_kernel_path_to_a_source_tree_is_built_and_boots(runs_dir: Path) -> None:
    # A git work tree of Debian's 6.12 source stands in for a developer's own checkout: the
    # pristine copy `cosim mutate` makes and builds (its lock held, so no mutant is applied
    # meanwhile). One full build of it serves this test and the mutants' baseline, which has
    # the same files (kept by content, scripts/kernel.sh user_tree).
    products_for("debian-6.12")
    with mutate.tree_lock("debian-6.12"):
        tree = mutate.pristine_copy("debian-6.12")
        mutate.ensure_clean(tree)
        code, summary, out = cosim_run(runs_dir, "--kernel", str(tree), "--tests", "kunit,dma",
                                       timeout=3600)
    assert summary["guest"] == "booted", out[-3000:]
    assert summary["kernel"].startswith(f"tree {tree}"), summary["kernel"]
    _kunit_passed(summary)
    dma = {t["name"]: t["status"] for t in summary["tests"] if t["area"] == "dma"}
    assert dma and all(s == "pass" for s in dma.values()), dma
