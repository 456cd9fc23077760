#!/usr/bin/env bash
# Host packages needed to build QEMU, the guest kernel and the guest tests.
source "$(dirname "$0")/common.sh"

PKGS=(build-essential ninja-build pkg-config libglib2.0-dev libpixman-1-dev libfdt-dev
      libzmq3-dev flex bison bc cpio xz-utils zstd libssl-dev libelf-dev
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross dpkg-dev python3-venv rsync kmod
      debian-archive-keyring)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    step_cached "host packages" "all ${#PKGS[@]} installed"
    exit 0
fi
step_begin "host packages: installing ${missing[*]}"
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
${SUDO:-} apt-get -q update >/dev/null
${SUDO:-} apt-get -q install -y --no-install-recommends "${missing[@]}" >/tmp/cosim-apt-install.log 2>&1 \
    || { tail -20 /tmp/cosim-apt-install.log >&2; die "apt-get install failed (log: /tmp/cosim-apt-install.log)"; }
step_end
