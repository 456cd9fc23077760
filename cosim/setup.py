"""Build products for a run: QEMU, the guest kernel, its guest-kmod/ modules and the
initramfs, via scripts/.

Each step is a shell script that prints its progress (from cache or built, and how long) and
ends with one `NAME=value` line naming its product; this module runs them and reads that line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
KERNEL_CHOICES = ("debian-6.12", "debian-6.1", "debian-7.2", "debian-6.12-bin")


class SetupError(Exception):
    """A set-up step failed; the message says which and why (the script printed details)."""


@dataclass(frozen=True)
class Products:
    qemu: Path
    kernel_dir: Path
    initramfs: Path
    # kmod.sh's product (extra/*.ko) for a kernel built from source; None for an Image or the
    # stock binary kernel, which have no source tree to build guest-kmod/ against.
    kmod_dir: Path | None = None

    @property
    def image(self) -> Path:
        return self.kernel_dir / "Image"

    @property
    def kernel_version(self) -> str:
        f = self.kernel_dir / "VERSION"
        return f.read_text().strip() if f.exists() else "unknown"


def check_kernel_choice(choice: str) -> None:
    """Refuse an unknown kernel choice before any build starts."""
    if choice in KERNEL_CHOICES:
        return
    if "/" in choice or choice.startswith((".", "~")):
        p = Path(choice).expanduser()
        if not p.exists():
            raise SetupError(f"--kernel {choice}: no such file or directory")
        return
    raise SetupError(f"--kernel {choice!r} is not a known kernel (choose one of "
                     f"{', '.join(KERNEL_CHOICES)}, or a path to an arm64 Image or a kernel "
                     "source tree)")


def run_step(script: str, *args: str, quiet: bool = False) -> str:
    """Run scripts/<script> ARGS, echo its progress, return the value of its last KEY=VALUE line."""
    cmd = ["bash", str(SCRIPTS / script), *args]
    # Its own process group, so an interrupted caller can stop the whole step (make and its
    # compilers), not only the script; a terminal's Ctrl-C is forwarded the same way.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    last = ""
    tail: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-30:]
            if "=" in line and line.split("=", 1)[0].isupper() and not line.startswith(" "):
                last = line.split("=", 1)[1]
            elif not quiet:
                print(line, flush=True)
        rc = proc.wait()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    if rc != 0:
        if quiet:
            print("\n".join(tail), file=sys.stderr)
        raise SetupError(f"set-up step {script} {' '.join(args)} failed (exit {rc})")
    if not last:
        raise SetupError(f"set-up step {script} printed no product path")
    return last


# The Debian source package of each choice built from source (scripts/kernel.sh).
SOURCE_PACKAGES = {"debian-6.12": "linux-source-6.12", "debian-6.1": "linux-source-6.1",
                   "debian-7.2": "linux-source-7.2"}


def cache_dir() -> Path:
    return Path(os.environ.get("COSIM_CACHE", Path.home() / ".cache" / "cosim"))


class Prefetch:
    """Downloads and unpacks of Debian kernel sources (`kernel.sh CHOICE --fetch`, one after
    another) in the background, while QEMU or another kernel compiles: the network and the
    disk are idle then. A choice's own build waits for its fetch on the package's lock."""

    def __init__(self, kernels: list[str]) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        cache = cache_dir()
        # A source unpacked once needs no early fetch (a newer Debian version is kernel.sh's
        # to fetch; it is rare, and then it only runs late).
        todo = [k for k in dict.fromkeys(kernels) if k in SOURCE_PACKAGES
                and not any((cache / "src").glob(f"{SOURCE_PACKAGES[k]}-*/.unpacked"))]
        if not todo:
            return
        cache.mkdir(parents=True, exist_ok=True)
        self.log = cache / "prefetch.log"
        script = " && ".join(f"bash {SCRIPTS / 'kernel.sh'} {k} --fetch" for k in todo)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(["bash", "-c", script], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def close(self, stop: bool = False) -> None:
        """Wait for the fetches; with `stop` (set-up ended early: a failure, Ctrl-C), stop
        them instead. A stopped or failed fetch leaves nothing marked unpacked: the build step
        fetches again and names what failed."""
        if self.proc is None:
            return
        if stop:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(stop=exc_type is not None)


def ensure_all(kernels: list[str], quiet: bool = False) -> list[Products]:
    """ensure() for each kernel in turn, every Debian source fetched in the background from
    the start."""
    for k in kernels:
        check_kernel_choice(k)
    with Prefetch(kernels):
        return [ensure(k, quiet=quiet, prefetch=False) for k in kernels]


def ensure(kernel: str = "debian-6.12", quiet: bool = False, prefetch: bool = True) -> Products:
    """Build (or take from cache) everything a run needs."""
    check_kernel_choice(kernel)
    if subprocess.run(["bash", str(SCRIPTS / "host-packages.sh")]).returncode != 0:
        raise SetupError("set-up step host-packages.sh failed")
    with Prefetch([kernel] if prefetch else []):
        return _ensure(kernel, quiet)


def _ensure(kernel: str, quiet: bool) -> Products:
    # COSIM_QEMU points at a QEMU you built yourself (e.g. while developing qemu-patches/).
    override = os.environ.get("COSIM_QEMU")
    if override:
        qemu = Path(override)
        if not os.access(qemu, os.X_OK):
            raise SetupError(f"COSIM_QEMU={override} is not an executable file")
        print(f"==> qemu: COSIM_QEMU={qemu} (not built by set-up)")
    else:
        qemu = Path(run_step("qemu.sh", quiet=quiet))
    kdir = Path(run_step("kernel.sh", kernel, quiet=quiet))
    kmod = None
    if (kdir / "SOURCE").is_file():  # built from source: guest-kmod/ builds against it
        kmod = Path(run_step("kmod.sh", str(kdir), quiet=quiet))
    initrd = Path(run_step("initramfs.sh", str(kdir), *([str(kmod)] if kmod else []), quiet=quiet))
    return Products(qemu, kdir, initrd, kmod)
