#!/usr/bin/env bash
# Guest userland: busybox-static (arm64, Debian trixie) + guest/init + guest-tests binaries
# built against the kernel's uapi headers, packed into a gzip'd cpio.
# Usage: initramfs.sh KERNEL_DIR   Prints "INITRAMFS=<file>" last.
source "$(dirname "$0")/common.sh"

KDIR="${1:?usage: initramfs.sh KERNEL_DIR}"
[ -f "$KDIR/Image" ] || die "$KDIR holds no kernel Image"
apt_private_setup
BB_DEB=$(apt_p download --print-uris "busybox-static:arm64/trixie" 2>/dev/null | awk '{print $2}' | head -1)
[ -n "$BB_DEB" ] || die "busybox-static (arm64) not found in Debian trixie"

# uapi headers: the kernel's own, or the default source kernel's for an Image or the stock binary.
KHDR="$KDIR/include"
if [ ! -d "$KHDR/linux" ]; then
    KHDR=$("$COSIM_ROOT/scripts/kernel.sh" debian-6.12 | sed -n 's/^KERNEL_DIR=//p')/include
fi
MODS=""; [ -d "$KDIR/modules" ] && MODS="$KDIR/modules"
KEY=$(hash_inputs "$BB_DEB" "$COSIM_ROOT/guest" "$COSIM_ROOT/guest-tests" "$KHDR/linux/version.h" \
      "$KHDR/linux/iommufd.h" "$KHDR/linux/vfio.h" "mods:$MODS" "initramfs v1")
OUT="$COSIM_CACHE/initramfs/$KEY"
if [ "${2:-}" = "--key" ]; then echo "KEY=$KEY"; exit 0; fi
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
    mkdir -p "$R/lib/modules"; cp -a "$MODS/." "$R/lib/modules/"
    printf '%s\n' arm_smmu_v3 >"$R/etc/modules-load"
fi
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) \
    | gzip -6 >"$OUT.new/initramfs.cpio.gz"
ls "$R/tests" >"$OUT.new/tests.list"
rm -rf "$R"
rm -rf "$OUT"; mv "$OUT.new" "$OUT"
step_end
echo "INITRAMFS=$OUT/initramfs.cpio.gz"
