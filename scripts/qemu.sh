#!/usr/bin/env bash
# QEMU: Debian trixie's qemu 10.0.x source package, our qemu-patches/series on top,
# only qemu-system-aarch64 built. Prints "QEMU=<binary>" last.
source "$(dirname "$0")/common.sh"

apt_private_setup
DSC=$(dsc_of qemu/trixie)
[ -n "$DSC" ] || die "no qemu source package found in trixie"
VER=${DSC#qemu_}; VER=${VER%.dsc}
case "$VER" in *:10.0.*|10.0.*) ;; *) die "trixie's qemu is $VER, expected 10.0.x" ;; esac

# Only what changes the binary is in the key: source version, patches, configure flags.
# bzip2 would make meson want the edk2 blobs the +ds tarball lacks. The device set is only
# the virt board and ours (configs/devices/aarch64-softmmu/cosim.mak, from patch 0004):
# the other boards and PCI devices were most of the build.
CONFIGURE_FLAGS=(--target-list=aarch64-softmmu --disable-docs --disable-tools --disable-user
    --disable-gtk --disable-sdl --disable-vnc --disable-opengl --disable-rust
    --disable-download --disable-werror --disable-bzip2 --disable-install-blobs
    --enable-fdt=system --disable-slirp --disable-debug-info --disable-guest-agent
    --disable-libusb --disable-spice --disable-curses --disable-xen --disable-kvm
    --without-default-devices --with-devices-aarch64=cosim)
PATCHES="$COSIM_ROOT/qemu-patches"
KEY=$(hash_inputs "qemu $VER" "$PATCHES" "configure ${CONFIGURE_FLAGS[*]}")
OUT="$COSIM_CACHE/qemu/$KEY"
BIN="$OUT/qemu-system-aarch64"
if [ "${1:-}" = "--key" ]; then echo "KEY=$KEY"; exit 0; fi
take_lock qemu
if [ -x "$BIN" ]; then
    step_cached "qemu $VER + $(grep -cvE '^\s*(#|$)' "$PATCHES/series" 2>/dev/null || true) patches" "$OUT"
    echo "QEMU=$BIN"; exit 0
fi

# Pristine source, shared by every patch set.
SRC="$COSIM_CACHE/src/qemu-$VER"
if [ ! -f "$SRC/.unpacked" ]; then
    step_begin "qemu: fetching source package $VER"
    rm -rf "$SRC" "$SRC.dl"; mkdir -p "$SRC.dl"
    (cd "$SRC.dl" && apt_p source --download-only qemu/trixie >fetch.log 2>&1) \
        || { tail -5 "$SRC.dl/fetch.log" >&2; die "fetching qemu source failed"; }
    (cd "$SRC.dl" && dpkg-source --no-check -x "$DSC" "$SRC" >unpack.log 2>&1) \
        || { tail -5 "$SRC.dl/unpack.log" >&2; die "unpacking qemu source failed"; }
    rm -rf "$SRC.dl"; touch "$SRC/.unpacked"
    step_end
fi

# Build tree: a fresh copy with our patches, so a failed patch never poisons the source.
WORK="$COSIM_CACHE/qemu/$KEY.work"
rm -rf "$WORK"; mkdir -p "$WORK"
step_begin "qemu: copying source and applying qemu-patches/series"
cp -a "$SRC/." "$WORK/src"
if [ -f "$PATCHES/series" ]; then
    while read -r p; do
        case "$p" in ''|'#'*) continue ;; esac
        [ -f "$PATCHES/$p" ] || die "qemu-patches/series names $p, which does not exist"
        if ! (cd "$WORK/src" && patch -p1 --forward --batch --no-backup-if-mismatch \
                -r "$WORK/reject.rej" <"$PATCHES/$p" >"$WORK/patch.log" 2>&1); then
            echo "error: patch $p does not apply to qemu $VER" >&2
            grep -E 'FAILED|can.t find|malformed|Reversed' "$WORK/patch.log" >&2 || tail -5 "$WORK/patch.log" >&2
            if [ -s "$WORK/reject.rej" ]; then echo "--- rejected hunks:" >&2; cat "$WORK/reject.rej" >&2; fi
            exit 1
        fi
        echo "    applied $p"
    done < "$PATCHES/series"
fi
step_end

# Meson >= 1.5 is not in the +ds tarball's python/wheels; keep it in a tools venv.
TOOLS="$COSIM_CACHE/tools-venv"
if [ ! -x "$TOOLS/bin/meson" ]; then
    step_begin "qemu: build tools venv (meson, pycotap)"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" -q install 'meson>=1.5,<2' pycotap >/dev/null
    step_end
fi

step_begin "qemu: configure + build qemu-system-aarch64 (log: $WORK/build.log)"
mkdir -p "$WORK/build"
qemu_build() {
    # &&: set -e does not hold inside a function run as a condition.
    cd "$WORK/build" &&
    PATH="$TOOLS/bin:$PATH" ../src/configure --python="$TOOLS/bin/python3" "${CONFIGURE_FLAGS[@]}" &&
    PATH="$TOOLS/bin:$PATH" ninja -j"$(nproc)" qemu-system-aarch64
}
run_progress "$WORK/build.log" "" qemu_build || {
    grep -E 'error|Error|ERROR' "$WORK/build.log" | head -30 >&2 || true
    die "qemu build failed (full log: $WORK/build.log)"
}
mkdir -p "$OUT.new"
cp "$WORK/build/qemu-system-aarch64" "$OUT.new/"
# Firmware-free boot: we pass -kernel, so only the device-tree path needs no blobs.
echo "qemu $VER" >"$OUT.new/VERSION"; cp -r "$PATCHES" "$OUT.new/patches" 2>/dev/null || true
rm -rf "$OUT"; mv "$OUT.new" "$OUT"
rm -rf "$WORK"
step_end
echo "QEMU=$BIN"
