"""End to end on Debian's stock arm64 binary kernel (debian-6.12-bin): the initramfs carries just
the modules the suite needs, the guest loads them, and the suite shows exactly what
tests/expectations/debian-6.12-bin.toml says (no iommufd, no KUnit: those are unsupported)."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest
from conftest import products_for, run_suite

from cosim.expectations import load, mismatches

pytestmark = pytest.mark.e2e

KERNEL = "debian-6.12-bin"
# The closure of vfio, vfio_iommu_type1 and vfio_pci in Debian's modules.dep; arm_smmu_v3 and
# the PCI host, ITS and console drivers are built in.
SHIPPED_KO = {"vfio.ko", "vfio_iommu_type1.ko", "vfio-pci-core.ko", "vfio-pci.ko"}
LOAD_ORDER = ["vfio", "vfio_iommu_type1", "vfio_pci"]
MAX_INITRAMFS_BYTES = 8 << 20  # all of Debian's modules would be ~90 MB compressed


def _cpio_members(initramfs: Path) -> dict[str, bytes | None]:
    """Member name -> content for the few text files we read, None for the rest."""
    raw = gzip.decompress(initramfs.read_bytes())
    names = subprocess.run(["cpio", "-it", "--quiet"], input=raw, capture_output=True,
                           check=True).stdout.decode().split()
    want = [n for n in names if n.endswith(("modules.dep", "etc/modules-load"))]
    out: dict[str, bytes | None] = dict.fromkeys(names)
    for n in want:
        out[n] = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", n], input=raw,
                                capture_output=True, check=True).stdout
    return out


def test_stock_initramfs_ships_only_the_needed_modules() -> None:
    p = products_for(KERNEL)
    assert p.initramfs.stat().st_size < MAX_INITRAMFS_BYTES, \
        f"{p.initramfs} is {p.initramfs.stat().st_size} bytes: more than the module subset"
    members = _cpio_members(p.initramfs)
    kos = {Path(n).name for n in members if ".ko" in Path(n).name}
    assert kos == SHIPPED_KO, f"shipped modules {sorted(kos)}, want {sorted(SHIPPED_KO)}"
    dep = next(v for n, v in members.items() if n.endswith("modules.dep"))
    assert dep is not None
    dep_lines = dep.decode().splitlines()
    assert len(dep_lines) == len(SHIPPED_KO), dep_lines
    vfio_pci = next(line for line in dep_lines if line.split(":")[0].endswith("/vfio-pci.ko"))
    assert "vfio-pci-core.ko" in vfio_pci and "vfio.ko" in vfio_pci, vfio_pci
    load_list = members.get("./etc/modules-load", members.get("etc/modules-load"))
    assert load_list is not None and load_list.decode().split() == LOAD_ORDER


def test_stock_kernel_suite_matches_expectations(tmp_path: Path) -> None:
    exp = load(KERNEL)
    code, summary, out = run_suite(KERNEL, tmp_path / "runs")
    assert summary["guest"] == "booted", out[-4000:]
    console = (Path(summary["run_dir"]) / "console.log").read_text(errors="replace")
    assert "COSIM-MODULE-FAILED" not in console, "a module failed to load at boot"
    loaded = next((ln.split()[1:] for ln in console.splitlines()
                   if ln.startswith("COSIM-MODULES")), None)
    assert loaded is not None and {"vfio", "vfio_iommu_type1", "vfio_pci"} <= set(loaded), loaded
    problems = mismatches(exp, summary)
    assert not problems, ("observed results differ from tests/expectations/"
                          f"{KERNEL}.toml:\n  " + "\n  ".join(problems)
                          + f"\nrun: {summary['run_dir']}")
