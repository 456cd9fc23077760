"""Cache keys: a change rebuilds exactly what depends on it (checked on the keys themselves)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _copy_repo(dst: Path) -> Path:
    for part in ("scripts", "qemu-patches", "guest-tests", "guest", "guest-kmod", "kernel"):
        src = ROOT / part
        if src.exists():
            shutil.copytree(src, dst / part, ignore=shutil.ignore_patterns("out", "*.o"))
    return dst


def _key(repo: Path, *args: str) -> str:
    out = subprocess.run(["bash", *args], cwd=repo, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    keys = [ln for ln in out.stdout.splitlines() if ln.startswith("KEY=")]
    assert keys, out.stdout
    return keys[-1][4:]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return _copy_repo(tmp_path / "repo")


def _fake_kernel_dir(tmp: Path) -> Path:
    k = tmp / "kdir"
    (k / "include/linux").mkdir(parents=True)
    (k / "Image").write_bytes(b"\0" * 64)
    for h in ("version.h", "iommufd.h", "vfio.h"):
        (k / "include/linux" / h).write_text(f"/* {h} */\n")
    return k


def test_changed_patch_changes_qemu_key(repo: Path) -> None:
    before = _key(repo, "scripts/qemu.sh", "--key")
    assert before == _key(repo, "scripts/qemu.sh", "--key"), "key must be stable"
    (repo / "qemu-patches" / "0099-extra.patch").write_text("--- a/x\n+++ b/x\n")
    assert _key(repo, "scripts/qemu.sh", "--key") != before


def test_changed_guest_test_changes_only_initramfs_key(repo: Path, tmp_path: Path) -> None:
    kdir = _fake_kernel_dir(tmp_path)
    q0 = _key(repo, "scripts/qemu.sh", "--key")
    k0 = _key(repo, "scripts/kernel.sh", "debian-6.12", "--key")
    i0 = _key(repo, "scripts/initramfs.sh", str(kdir), "--key")
    (repo / "guest-tests" / "new_test.c").write_text("int main(void) { return 0; }\n")
    assert _key(repo, "scripts/initramfs.sh", str(kdir), "--key") != i0
    assert _key(repo, "scripts/qemu.sh", "--key") == q0
    assert _key(repo, "scripts/kernel.sh", "debian-6.12", "--key") == k0


def test_changed_config_fragment_changes_kernel_key(repo: Path) -> None:
    k0 = _key(repo, "scripts/kernel.sh", "debian-6.12", "--key")
    with open(repo / "kernel" / "cosim.config", "a") as f:
        f.write("CONFIG_PRINTK_CALLER=y\n")
    assert _key(repo, "scripts/kernel.sh", "debian-6.12", "--key") != k0


def test_a_kernels_patches_change_its_key_only(repo: Path) -> None:
    """kernel/patches/debian-6.1/ is part of 6.1's key; 6.12 (no patch dir) keeps its own."""
    k61 = _key(repo, "scripts/kernel.sh", "debian-6.1", "--key")
    k612 = _key(repo, "scripts/kernel.sh", "debian-6.12", "--key")
    assert k61 != k612
    (repo / "kernel" / "patches" / "debian-6.1" / "0099-extra.patch").write_text(
        "--- a/x\n+++ b/x\n")
    assert _key(repo, "scripts/kernel.sh", "debian-6.1", "--key") != k61
    assert _key(repo, "scripts/kernel.sh", "debian-6.12", "--key") == k612


def _fake_source_kernel_dir(tmp: Path) -> Path:
    """A kernel product as kernel.sh leaves one for a source build: Image, config, SOURCE."""
    k = _fake_kernel_dir(tmp)
    src = tmp / "linux"
    src.mkdir()
    (src / "Makefile").write_text("# a kernel tree\n")
    (k / "config").write_text("CONFIG_MODULES=y\n")
    (k / "SOURCE").write_text(f"{src}\n")
    return k


def test_changed_guest_kmod_changes_only_kmod_key(repo: Path, tmp_path: Path) -> None:
    kdir = _fake_source_kernel_dir(tmp_path)
    k0 = _key(repo, "scripts/kernel.sh", "debian-6.12", "--key")
    m0 = _key(repo, "scripts/kmod.sh", str(kdir), "--key")
    assert m0 == _key(repo, "scripts/kmod.sh", str(kdir), "--key"), "key must be stable"
    i0 = _key(repo, "scripts/initramfs.sh", str(kdir), "--key")
    with open(repo / "guest-kmod" / "cosim_ep_dma.c", "a") as f:
        f.write("/* a change to the test driver */\n")
    assert _key(repo, "scripts/kmod.sh", str(kdir), "--key") != m0
    assert _key(repo, "scripts/kernel.sh", "debian-6.12", "--key") == k0
    # Without a module product the initramfs does not depend on guest-kmod/ sources at all.
    assert _key(repo, "scripts/initramfs.sh", str(kdir), "--key") == i0


def test_changed_register_header_changes_kmod_key_not_kernel_key(repo: Path,
                                                                  tmp_path: Path) -> None:
    kdir = _fake_source_kernel_dir(tmp_path)
    k0 = _key(repo, "scripts/kernel.sh", "debian-6.12", "--key")
    m0 = _key(repo, "scripts/kmod.sh", str(kdir), "--key")
    with open(repo / "guest-tests" / "include" / "cosim_ep.h", "a") as f:
        f.write("/* a new register */\n")
    assert _key(repo, "scripts/kmod.sh", str(kdir), "--key") != m0
    assert _key(repo, "scripts/kernel.sh", "debian-6.12", "--key") == k0


def test_rebuilt_kernel_changes_kmod_key(repo: Path, tmp_path: Path) -> None:
    # An incremental source-tree build keeps its product directory: the Image tells.
    kdir = _fake_source_kernel_dir(tmp_path)
    m0 = _key(repo, "scripts/kmod.sh", str(kdir), "--key")
    (kdir / "Image").write_bytes(b"\1" * 64)
    assert _key(repo, "scripts/kmod.sh", str(kdir), "--key") != m0


def test_kmod_products_change_initramfs_key(repo: Path, tmp_path: Path) -> None:
    kdir = _fake_kernel_dir(tmp_path)
    kmod = tmp_path / "kmod"
    (kmod / "extra").mkdir(parents=True)
    (kmod / "extra" / "cosim_ep_dma.ko").write_bytes(b"ko v1")
    without = _key(repo, "scripts/initramfs.sh", str(kdir), "--key")
    i0 = _key(repo, "scripts/initramfs.sh", str(kdir), str(kmod), "--key")
    assert i0 != without
    (kmod / "extra" / "cosim_ep_dma.ko").write_bytes(b"ko v2")
    assert _key(repo, "scripts/initramfs.sh", str(kdir), str(kmod), "--key") != i0


def test_kmod_refuses_a_kernel_without_source(repo: Path, tmp_path: Path) -> None:
    kdir = _fake_kernel_dir(tmp_path)
    out = subprocess.run(["bash", "scripts/kmod.sh", str(kdir), "--key"], cwd=repo,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "not built from source" in out.stderr


def _git_tree(tmp: Path) -> Path:
    """A stand-in for a developer's kernel checkout: what kernel.sh checks, under git."""
    t = tmp / "linux"
    (t / "arch/arm64").mkdir(parents=True)
    (t / "drivers").mkdir()
    (t / "Makefile").write_text("all:\n\tfalse\n")
    (t / "drivers/smmu.c").write_text("int x;\n")
    (t / ".gitignore").write_text("*.o\n")
    for cmd in (["init", "-q"], ["add", "-A"],
                ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base"]):
        subprocess.run(["git", "-C", str(t), *cmd], check=True, capture_output=True)
    return t


def test_git_tree_is_keyed_by_its_content(repo: Path, tmp_path: Path) -> None:
    tree = _git_tree(tmp_path)
    key = lambda: _key(repo, "scripts/kernel.sh", str(tree), "--key")  # noqa: E731
    k0 = key()
    assert len(k0) == 16
    src = tree / "drivers/smmu.c"
    src.touch()  # a new mtime, the same files: kbuild would rebuild, the key stays
    assert key() == k0
    src.write_text("int y;\n")
    k1 = key()
    assert k1 != k0
    src.write_text("int x;\n")  # the change undone: the first build's products again
    assert key() == k0
    (tree / "drivers/built.o").write_bytes(b"\0")  # ignored by the tree's .gitignore
    assert key() == k0
    (tree / "drivers/new.c").write_text("int z;\n")  # untracked, not ignored: a new input
    assert key() not in (k0, k1)
    plain = tmp_path / "plain"
    shutil.copytree(tree, plain, ignore=shutil.ignore_patterns(".git"))
    assert _key(repo, "scripts/kernel.sh", str(plain), "--key") == ""  # no git: kbuild decides


def test_git_tree_built_before_is_taken_from_cache(repo: Path, tmp_path: Path) -> None:
    tree = _git_tree(tmp_path)
    cache = tmp_path / "cache"
    snap = cache / "kernel" / f"treesnap-{_key(repo, 'scripts/kernel.sh', str(tree), '--key')}"
    snap.mkdir(parents=True)
    (snap / "Image").write_bytes(b"\0" * 64)
    # The tree's Makefile fails: a build attempt would fail the call.
    r = subprocess.run(["bash", "scripts/kernel.sh", str(tree)], cwd=repo, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "COSIM_CACHE": str(cache)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "these files were built before" in r.stdout
    assert r.stdout.splitlines()[-1] == f"KERNEL_DIR={snap}"
    (tree / "drivers/smmu.c").write_text("int y;\n")
    r = subprocess.run(["bash", "scripts/kernel.sh", str(tree)], cwd=repo, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "COSIM_CACHE": str(cache)})
    assert r.returncode != 0 and "kernel build failed" in r.stderr, r.stdout + r.stderr


def test_prefetch_starts_only_for_sources_not_yet_unpacked(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cosim import setup
    monkeypatch.setenv("COSIM_CACHE", str(tmp_path))
    (tmp_path / "src" / "linux-source-6.1-6.1.1-1").mkdir(parents=True)
    (tmp_path / "src" / "linux-source-6.1-6.1.1-1" / ".unpacked").touch()
    # Unpacked already, a binary kernel, a path: nothing to fetch early.
    with setup.Prefetch(["debian-6.1", "debian-6.12-bin", str(tmp_path)]) as p:
        assert p.proc is None
    monkeypatch.setattr(setup, "SCRIPTS", tmp_path / "scripts")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "kernel.sh").write_text('echo "fetch $*"\n')
    with setup.Prefetch(["debian-7.2", "debian-6.1", "debian-6.12", "debian-7.2"]) as p:
        assert p.proc is not None
    assert p.proc is None  # waited for
    assert (tmp_path / "prefetch.log").read_text().splitlines() == [
        "fetch debian-7.2 --fetch", "fetch debian-6.12 --fetch"]


def test_fetch_only_is_a_no_op_for_a_binary_or_a_path(repo: Path, tmp_path: Path) -> None:
    for choice in ("debian-6.12-bin", str(tmp_path)):
        r = subprocess.run(["bash", "scripts/kernel.sh", choice, "--fetch"], cwd=repo,
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COSIM_CACHE": str(tmp_path / "cache")})
        assert r.returncode == 0 and r.stdout == "", (choice, r.stdout, r.stderr)


def test_setup_of_several_kernels_refuses_an_unknown_one_first() -> None:
    r = subprocess.run([sys.executable, "-m", "cosim", "setup", "--kernel",
                        "debian-6.12,debian-9.9"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "cosim setup: --kernel 'debian-9.9' is not a known kernel (choose one of debian-6.12, "
        "debian-6.1, debian-7.2, debian-6.12-bin, or a path to an arm64 Image or a kernel "
        "source tree)"]
    assert r.stdout == ""


def test_kmod_of_the_same_image_elsewhere_is_taken_from_cache(repo: Path, tmp_path: Path) -> None:
    # A source tree's build dir and its copy kept by content hold the same Image and config.
    built = _fake_source_kernel_dir(tmp_path / "a")
    kept = tmp_path / "b" / "treesnap-0123"
    shutil.copytree(built, kept)
    cache = tmp_path / "cache"
    env = {**os.environ, "COSIM_CACHE": str(cache)}
    key = _key(repo, "scripts/kmod.sh", str(built), "--key")
    assert _key(repo, "scripts/kmod.sh", str(kept), "--key") == key
    mods = cache / "kmod" / f"{built.name}-{key}"
    (mods / "extra").mkdir(parents=True)
    r = subprocess.run(["bash", "scripts/kmod.sh", str(kept)], cwd=repo, capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == f"KMOD_DIR={mods}"
