#!/usr/bin/env bash
# Guest userland: busybox-static (arm64, Debian trixie) + guest/init + guest-tests binaries
# built against the kernel's uapi headers, packed into a gzip'd cpio.
# Usage: initramfs.sh KERNEL_DIR [KMOD_DIR] [--key]   Prints "INITRAMFS=<file>" last.
# KMOD_DIR is kmod.sh's product for that kernel (its extra/*.ko), when it has one.
source "$(dirname "$0")/common.sh"

KEY_ONLY=""; ARGS=()
for a in "$@"; do if [ "$a" = "--key" ]; then KEY_ONLY=1; else ARGS+=("$a"); fi; done
KDIR="${ARGS[0]:?usage: initramfs.sh KERNEL_DIR [KMOD_DIR] [--key]}"
KMOD_DIR="${ARGS[1]:-}"
[ -f "$KDIR/Image" ] || die "$KDIR holds no kernel Image"
apt_private_setup
BB_DEB=$(apt_p download --print-uris "busybox-static:arm64/trixie" 2>/dev/null | awk '{print $2}' | head -1)
[ -n "$BB_DEB" ] || die "busybox-static (arm64) not found in Debian trixie"

# uapi headers: the kernel's own, or the default source kernel's for an Image or the stock
# binary, or for a kernel older than iommufd (6.1: no linux/iommufd.h). The uapi only grows, so
# tests built against newer headers run on the older kernel and find out there what it lacks
# (no /dev/iommu, an unknown ioctl): those areas report unsupported.
KHDR="$KDIR/include"
if [ ! -d "$KHDR/linux" ] || [ ! -f "$KHDR/linux/iommufd.h" ]; then
    KHDR=$("$COSIM_ROOT/scripts/kernel.sh" debian-6.12 | sed -n 's/^KERNEL_DIR=//p')/include
fi
MODS=""; [ -d "$KDIR/modules" ] && MODS="$KDIR/modules"
# Modules the guest loads at boot when the kernel has them as modules (a stock kernel): the SMMU
# driver and VFIO with its type1 backend and vfio-pci. Built-in ones are skipped; their
# dependencies come along from the kernel's modules.dep. Order is load order.
WANT_MODS="arm_smmu_v3 vfio vfio_iommu_type1 vfio_pci"
# The guest-kmod/ modules, when kmod.sh built them for this kernel; they go to /lib/cosim/:
# init loads cosim_drv_probe.ko, the kdma and kswitch tests load cosim_ep_dma.ko. Keyed by
# their contents: rebuilt modules that came out the same leave the initramfs cached.
KMODS="${KMOD_DIR:+$KMOD_DIR/extra}"; KMOD_KEY="$KMODS"
[ -n "$KMODS" ] && [ -d "$KMODS" ] || { KMODS=""; KMOD_KEY="no guest-kmod modules"; }
KEY=$(hash_inputs "$BB_DEB" "$COSIM_ROOT/guest" "$COSIM_ROOT/guest-tests" "$KHDR/linux/version.h" \
      "$KHDR/linux/iommufd.h" "$KHDR/linux/vfio.h" "mods:$MODS" "modset v2:$WANT_MODS unxz depmod" \
      "$KMOD_KEY" "initramfs v2")
OUT="$COSIM_CACHE/initramfs/$KEY"
if [ -n "$KEY_ONLY" ]; then echo "KEY=$KEY"; exit 0; fi
take_lock initramfs
if [ -f "$OUT/initramfs.cpio.gz" ]; then
    step_cached "initramfs (busybox + guest-tests)" "$OUT"
    echo "INITRAMFS=$OUT/initramfs.cpio.gz"; exit 0
fi

BBDIR="$COSIM_CACHE/src/${BB_DEB%.deb}"
if [ ! -x "$BBDIR/bin/busybox" ]; then
    step_begin "initramfs: fetching $BB_DEB"
    rm -rf "$BBDIR" "$BBDIR.dl"; mkdir -p "$BBDIR.dl"
    (cd "$BBDIR.dl" && apt_p download "busybox-static:arm64/trixie" >/dev/null 2>&1) \
        || die "downloading busybox-static failed"
    dpkg-deb -x "$BBDIR.dl"/*.deb "$BBDIR.dl/x"
    mkdir -p "$BBDIR/bin"; cp "$BBDIR.dl"/x/usr/bin/busybox "$BBDIR/bin/" 2>/dev/null || cp "$BBDIR.dl"/x/bin/busybox "$BBDIR/bin/"
    rm -rf "$BBDIR.dl"
    step_end
fi

# ship_modules MODS ROOT: the closure of WANT_MODS from MODS/RELEASE (resolved by the host's
# kmod against the kernel's full modules.dep), decompressed, because busybox's modprobe/insmod
# take plain .ko; a modules.dep for just that subset (host depmod, which busybox modprobe reads);
# and /etc/modules-load listing the wanted ones that are modules, for guest/init.
ship_modules() {
    local mods="$1" root="$2" rel dr m line ko dst shipped=""
    rel=$(ls "$mods" | head -1)
    [ -f "$mods/$rel/modules.dep" ] || die "$mods/$rel has no modules.dep (kernel.sh runs depmod)"
    # kmod wants BASE/lib/modules/RELEASE; point a scratch base at the kernel's tree.
    dr=$(mktemp -d); mkdir -p "$dr/lib"; ln -s "$(realpath "$mods")" "$dr/lib/modules"
    mkdir -p "$root/lib/modules/$rel"
    for m in $WANT_MODS; do
        line=$(modprobe -d "$dr" -S "$rel" --show-depends "$m" 2>&1) \
            || { rm -rf "$dr"; die "module $m: $line"; }
        case "$line" in builtin*) continue ;; esac
        while read -r _ ko; do
            [ -n "$ko" ] || continue
            ko=${ko#"$dr/lib/modules/$rel/"}
            dst="$root/lib/modules/$rel/${ko%.[gx]z}"; dst=${dst%.zst}
            [ -f "$dst" ] && continue
            mkdir -p "$(dirname "$dst")"
            case "$ko" in
                *.xz) xz -dc "$mods/$rel/$ko" >"$dst" ;;
                *.gz) gzip -dc "$mods/$rel/$ko" >"$dst" ;;
                *.zst) zstd -qdc "$mods/$rel/$ko" >"$dst" ;;
                *) cp "$mods/$rel/$ko" "$dst" ;;
            esac
        done <<<"$(grep '^insmod ' <<<"$line")"
        shipped="$shipped $m"
    done
    rm -rf "$dr"
    cp "$mods/$rel"/modules.{builtin,builtin.modinfo} "$root/lib/modules/$rel/"
    depmod -b "$root" "$rel" || die "depmod failed on the shipped modules"
    # busybox reads the text files only; the .bin indexes are kmod's.
    rm -f "$root/lib/modules/$rel"/*.bin
    [ -z "$shipped" ] || printf '%s\n' $shipped >"$root/etc/modules-load"
    echo "    modules:$shipped (+ dependencies: $(find "$root/lib/modules/$rel" -name '*.ko' | wc -l) files," \
         "$(du -sh "$root/lib/modules" | cut -f1))"
}

step_begin "initramfs: building guest-tests and packing"
rm -rf "$OUT.new"; mkdir -p "$OUT.new/root"/{bin,sbin,proc,sys,dev,tmp,tests,etc,root}
R="$OUT.new/root"
cp "$BBDIR/bin/busybox" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
cp "$COSIM_ROOT/guest/init" "$R/init"; chmod +x "$R/init"
if [ -f "$COSIM_ROOT/guest-tests/Makefile" ]; then
    make -s -C "$COSIM_ROOT/guest-tests" KHDR="$KHDR" O="$OUT.new/tests" >"$OUT.new/tests.log" 2>&1 || {
        tail -20 "$OUT.new/tests.log" >&2
        die "guest-tests failed to build against $KHDR (log: $OUT.new/tests.log)"
    }
    find "$OUT.new/tests" -maxdepth 1 -type f -perm -u+x -exec cp {} "$R/tests/" \;
fi
if [ -n "$MODS" ]; then
    ship_modules "$MODS" "$R"
fi
if [ -n "$KMODS" ]; then
    mkdir -p "$R/lib/cosim"; cp "$KMODS"/*.ko "$R/lib/cosim/"
fi
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) \
    | gzip -6 >"$OUT.new/initramfs.cpio.gz"
ls "$R/tests" >"$OUT.new/tests.list"
rm -rf "$R"
rm -rf "$OUT"; mv "$OUT.new" "$OUT"
step_end
echo "INITRAMFS=$OUT/initramfs.cpio.gz"
