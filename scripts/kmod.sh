#!/usr/bin/env bash
# The guest's own kernel modules (guest-kmod/: cosim_ep_dma.ko, the kdma/kswitch test driver,
# and cosim_drv_probe.ko, the driver-event probes) for a kernel kernel.sh built from source.
# Usage: kmod.sh KERNEL_DIR [--key]   Prints "KMOD_DIR=<dir>" last; <dir>/extra/*.ko when
# they built (a failure is a note, not fatal: the kernel is still usable, and the tests that
# need a module then say the kernel has none).
#
# Its own product, keyed by the kernel product (its directory name, which carries kernel.sh's
# key, and its Image, which changes on every incremental build of a source tree), guest-kmod/
# and the generated register headers: a module change rebuilds the modules only, in about a
# minute, not the kernel.
source "$(dirname "$0")/common.sh"

KDIR="${1:?usage: kmod.sh KERNEL_DIR [--key]}"
KDIR=$(realpath "$KDIR")
[ -f "$KDIR/Image" ] || die "$KDIR holds no kernel Image"
[ -f "$KDIR/SOURCE" ] && [ -f "$KDIR/config" ] \
    || die "$KDIR was not built from source by kernel.sh (no SOURCE or config): guest-kmod/ needs the kernel's source tree"
SRC=$(cat "$KDIR/SOURCE")
[ -f "$SRC/Makefile" ] || die "the source tree of $KDIR ($SRC) is gone"
KMOD_SRC="$COSIM_ROOT/guest-kmod"
KMOD_HDR="$COSIM_ROOT/guest-tests/include"
CROSS=aarch64-linux-gnu-
KMAKE=(make -s ARCH=arm64 CROSS_COMPILE=$CROSS -j"$(nproc)")
# Bump when build_kmod changes what it produces: it is part of the cache key.
KMOD_RECIPE="guest-kmod v1 (modules_prepare O= dir or the tree's build dir; vermagic checked)"
NAME=$(basename "$KDIR")
# Keyed by what the modules are built against, not by where the kernel lies: a source tree's
# build and its copy kept by content (kernel.sh user_tree) share one Image, and so modules.
KEY=$(hash_inputs "kernel" "$KDIR/Image" "$KDIR/config" "$KMOD_SRC" "$KMOD_HDR" "$KMOD_RECIPE")
OUT="$COSIM_CACHE/kmod/$NAME-$KEY"
if [ "${2:-}" = "--key" ]; then echo "KEY=$KEY"; exit 0; fi
take_lock "kmod-$NAME"
for d in "$COSIM_CACHE"/kmod/*-"$KEY"; do
    [ -d "$d/extra" ] && OUT="$d" && break
done
if [ -d "$OUT/extra" ]; then
    step_cached "guest-kmod for $(cat "$KDIR/VERSION" 2>/dev/null || echo "$NAME")" "$OUT"
    echo "KMOD_DIR=$OUT"; exit 0
fi

# The release the guest's `uname -r` prints (the kernel's banner), which a module's vermagic
# must start with for the guest to load it (CONFIG_MODVERSIONS is off: no symbol CRCs).
release=$(grep -a -m1 -o 'Linux version [^ ]*' "$KDIR/Image" | cut -d' ' -f3)
[ -n "$release" ] || die "no 'Linux version' banner in $KDIR/Image"

# build_kmod WORK: guest-kmod/ (a copy: kbuild writes an external module's objects into M=,
# and the source dir must stay clean, it is hashed into the key) built against the kernel's
# build tree when kernel.sh kept one (a source tree: incremental), else against a
# modules_prepare dir made from SOURCE with the kernel's own config. Without a
# Module.symvers (modules_prepare, or an Image-only build) modpost cannot resolve the
# kernel's symbols; KBUILD_MODPOST_WARN makes that a warning, and the guest's loader
# resolves them.
build_kmod() {
    local work="$1" obj warn=() ko vm
    cp -r "$KMOD_SRC" "$work/guest-kmod"
    if [ -f "$KDIR/build/.config" ]; then
        obj="$KDIR/build"
        # The Image build does not make what external modules link with (scripts/module.lds,
        # modpost): a cold tree build has none of it until modules_prepare runs there.
        (cd "$SRC" && "${KMAKE[@]}" O="$obj" modules_prepare) || return 1
    else
        obj="$work/obj"; mkdir -p "$obj"; cp "$KDIR/config" "$obj/.config"
        (cd "$SRC" && "${KMAKE[@]}" O="$obj" olddefconfig && "${KMAKE[@]}" O="$obj" modules_prepare) \
            || return 1
        cmp -s "$KDIR/config" "$obj/.config" \
            || { echo "olddefconfig changed the kernel's config in $obj"; return 1; }
    fi
    [ -f "$obj/Module.symvers" ] || warn=(KBUILD_MODPOST_WARN=1)
    (cd "$SRC" && "${KMAKE[@]}" O="$obj" M="$work/guest-kmod" COSIM_EP_INCLUDE="$KMOD_HDR" \
        "${warn[@]}" modules) || return 1
    mkdir -p "$work/extra"
    for ko in "$work"/guest-kmod/*.ko; do
        vm=$(modinfo -F vermagic "$ko")
        [ "${vm%% *}" = "$release" ] \
            || { echo "$(basename "$ko"): vermagic '$vm', but the kernel is $release"; return 1; }
        cp "$ko" "$work/extra/"
    done
    echo "$release" >"$work/RELEASE"
    rm -rf "$work/guest-kmod" "$work/obj"
}

step_begin "guest-kmod: building against $(cat "$KDIR/VERSION" 2>/dev/null || echo "$NAME") ($release)"
rm -rf "$OUT.new"; mkdir -p "$OUT.new"
if build_kmod "$OUT.new" >"$OUT.new/kmod.log" 2>&1; then
    rm -rf "$OUT"; mv "$OUT.new" "$OUT"
    step_end
else
    # Not cached: the next set-up tries again (a fix to guest-kmod/ changes the key anyway).
    grep -E 'error|Error|vermagic|olddefconfig' "$OUT.new/kmod.log" | head -10 >&2 || true
    rm -rf "$OUT.failed"; mv "$OUT.new" "$OUT.failed"; rm -rf "$OUT.failed/obj" "$OUT.failed/guest-kmod"
    echo "    note: guest-kmod/ did not build against this kernel (log: $OUT.failed/kmod.log)"
    OUT="$OUT.failed"
fi
echo "KMOD_DIR=$OUT"
