#!/usr/bin/env bash
# Guest kernel. Usage: kernel.sh CHOICE
#   debian-6.12       Debian trixie's linux-source-6.12, allnoconfig + kernel/cosim.config (default)
#   debian-6.1        Debian bookworm's linux-source-6.1, same fragment, with kernel/patches/debian-6.1/
#   debian-7.2        Debian sid's linux-source-7.2, same fragment
#   debian-6.12-bin   Debian trixie's stock arm64 binary kernel (no iommufd, modules in initramfs)
#   PATH/TO/Image     an arm64 Image you built
#   PATH/TO/linux     a kernel source tree, built out of tree with the repo's fragment
# Prints "KERNEL_DIR=<dir>" last: the dir holds Image, config, uapi headers (include/),
# SOURCE (the source tree's path) for a kernel built from source, and modules/ for the stock
# binary kernel. The guest-kmod/ modules are scripts/kmod.sh's product.
source "$(dirname "$0")/common.sh"

CHOICE="${1:-debian-6.12}"
KEY_ONLY=""; [ "${2:-}" = "--key" ] && KEY_ONLY=1
# --fetch: only download and unpack a Debian source (set-up runs it while QEMU compiles).
FETCH_ONLY=""; [ "${2:-}" = "--fetch" ] && FETCH_ONLY=1
FRAG="$COSIM_ROOT/kernel/cosim.config"
CROSS=aarch64-linux-gnu-
KMAKE=(make ARCH=arm64 CROSS_COMPILE=$CROSS -j"$(nproc)")
# Bump when build_tree changes what it produces: it is part of the cache key.
# The guest-kmod/ modules are not built here: scripts/kmod.sh builds them as their own product,
# so a module change does not rebuild the kernel.
BUILD_RECIPE="allnoconfig+fragment Image headers_install v4 (SOURCE, no modules)"
# What the guest cannot boot or be tested without: a fragment option of these the tree did not
# take fails the build. The rest of the fragment is what some areas use (iommufd, KUnit...):
# an older kernel without them builds, says which it lacks, and those areas report unsupported.
REQUIRED_OPTS="PCI_HOST_GENERIC PCI_MSI ARM_GIC_V3_ITS SERIAL_AMBA_PL011_CONSOLE BLK_DEV_INITRD
    RD_GZIP DEVTMPFS IOMMU_API PCI_ATS"

# build_tree SRC OUT: allnoconfig + fragment, Image, uapi headers into OUT, and OUT/SOURCE
# naming the source tree (kmod.sh builds guest-kmod/ against it with OUT/config).
build_tree() {
    local src="$1" out="$2"
    mkdir -p "$out/build"
    # Not -s: kbuild's "  CC" lines are what the progress line counts.
    kernel_build() {
        # &&: set -e does not hold inside a function run as a condition.
        cd "$src" && "${KMAKE[@]}" O="$out/build" allnoconfig &&
        KCONFIG_CONFIG="$out/build/.config" scripts/kconfig/merge_config.sh -m -O "$out/build" \
            "$out/build/.config" "$FRAG" >/dev/null &&
        "${KMAKE[@]}" O="$out/build" olddefconfig &&
        "${KMAKE[@]}" O="$out/build" Image &&
        "${KMAKE[@]}" O="$out/build" INSTALL_HDR_PATH="$out/hdr" headers_install
    }
    run_progress "$out/build.log" '^  (CC|AS) ' kernel_build || {
        grep -E 'error|Error|not clean' "$out/build.log" | head -20 >&2 || true
        die "kernel build failed in $src (log: $out/build.log)"
    }
    # Tell which requested options the tree did not take (renamed or missing there), and fail
    # when one of them is one the guest needs (REQUIRED_OPTS, the driver, the test modules).
    local missing="" required=""
    while IFS= read -r line; do
        case "$line" in CONFIG_*=y) grep -qx "$line" "$out/build/.config" || missing="$missing ${line%=y}" ;; esac
    done < "$FRAG"
    for opt in $REQUIRED_OPTS ARM_SMMU_V3 MODULES KPROBES; do
        grep -qx "CONFIG_$opt=y" "$out/build/.config" || required="$required $opt"
    done
    [ -z "$missing" ] || echo "    note: fragment options this tree did not take:$missing" | tee "$out/missing-options"
    [ -z "$required" ] || die "kernel in $src lacks what the guest needs:$required (log: $out/build.log)"
    cp "$out/build/arch/arm64/boot/Image" "$out/Image"
    cp "$out/build/.config" "$out/config"
    rm -rf "$out/include"; cp -r "$out/hdr/include" "$out/include"
    rm -rf "$out/extra" "$out/kmod.log"  # what a v3 build of an incremental tree left
    echo "$src" >"$out/SOURCE"
}

# patched_tree SRC PATCHDIR: a copy of the pristine unpacked SRC with PATCHDIR/*.patch applied
# (in name order), made once per patch set; prints its path. The pristine tree stays as it is
# (cosim mutate and other kernels' builds share it): the copy is hard links, and patch writes
# each file it changes anew, so the links to the pristine files are broken, not written through.
patched_tree() {
    local src="$1" pdir="$2" dst p
    dst="$src+$(hash_inputs "$pdir" | cut -c1-8)"
    if [ ! -f "$dst/.patched" ]; then
        step_begin "kernel: applying $(ls "$pdir"/*.patch | wc -l) patch(es) from ${pdir#"$COSIM_ROOT/"}" >&2
        rm -rf "$dst"; cp -al "$src" "$dst"; rm -f "$dst/.unpacked"
        for p in "$pdir"/*.patch; do
            patch -d "$dst" -p1 -s -N --no-backup-if-mismatch <"$p" >&2 || die "patch $p does not apply to $src"
        done
        touch "$dst/.patched"
        step_end >&2
    fi
    echo "$dst"
}

debian_source() {  # debian_source PKG SUITE: the suite's source package, with kernel/patches/CHOICE/
    local pkg="$1" suite="$2" deb ver src pdir="$COSIM_ROOT/kernel/patches/$CHOICE" patches=()
    apt_private_setup
    deb=$(apt_p download --print-uris "$pkg/$suite" 2>/dev/null | awk '{print $2}' | head -1)
    [ -n "$deb" ] || die "$pkg not found in Debian $suite"
    ver=${deb#"${pkg}_"}; ver=${ver%_all.deb}
    # The patches are part of the key (a kernel without any keeps the key it always had).
    [ -d "$pdir" ] && patches=("$pdir")
    KEY=$(hash_inputs "$pkg $ver" "$FRAG" "$BUILD_RECIPE" "${patches[@]}")
    OUT="$COSIM_CACHE/kernel/$pkg-$KEY"
    if [ -n "$KEY_ONLY" ]; then echo "KEY=$KEY"; exit 0; fi
    take_lock "$pkg"
    if [ -f "$OUT/Image" ]; then step_cached "kernel $pkg $ver" "$OUT"; return; fi
    [ -z "$FETCH_ONLY" ] || [ ! -f "$COSIM_CACHE/src/$pkg-$ver/.unpacked" ] || exit 0
    src="$COSIM_CACHE/src/$pkg-$ver"
    if [ ! -f "$src/.unpacked" ]; then
        step_begin "kernel: fetching $pkg $ver"
        rm -rf "$src" "$src.dl"; mkdir -p "$src.dl"
        (cd "$src.dl" && apt_p download "$pkg/$suite" >/dev/null 2>&1) || die "downloading $pkg failed"
        dpkg-deb -x "$src.dl"/*.deb "$src.dl/x"
        mkdir -p "$src"; tar -xf "$src.dl"/x/usr/src/"$pkg".tar.* -C "$src" --strip-components=1
        rm -rf "$src.dl"; touch "$src/.unpacked"
        step_end
    fi
    [ -z "$FETCH_ONLY" ] || exit 0
    [ ${#patches[@]} -eq 0 ] || { src=$(patched_tree "$src" "$pdir") || exit 1; }
    step_begin "kernel: building $pkg $ver (allnoconfig + kernel/cosim.config${patches:+ + kernel/patches/$CHOICE})"
    rm -rf "$OUT.new"; build_tree "$src" "$OUT.new"
    rm -rf "$OUT.new/build" "$OUT.new/hdr"
    echo "$pkg $ver${patches:+ + $(cd "$pdir" && ls ./*.patch | wc -l) patch(es)}" >"$OUT.new/VERSION"
    rm -rf "$OUT"; mv "$OUT.new" "$OUT"
    step_end
}

debian_binary() {  # stock trixie arm64 kernel: metapackage -> the real image package
    apt_private_setup
    local real deb ver rel vmlinuz opt missing=""
    real=$(aptcache_p depends "linux-image-arm64:arm64/trixie" 2>/dev/null \
           | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    real=${real%:arm64}
    [ -n "$real" ] || die "cannot resolve Debian trixie's linux-image-arm64"
    deb=$(apt_p download --print-uris "$real:arm64/trixie" 2>/dev/null | awk '{print $2}' | head -1)
    ver=${deb#"${real}_"}; ver=${ver%_arm64.deb}
    KEY=$(hash_inputs "$real $ver" "stock v2 (Image, config, modules/RELEASE with modules.dep)")
    OUT="$COSIM_CACHE/kernel/$real-$KEY"
    if [ -n "$KEY_ONLY" ]; then echo "KEY=$KEY"; exit 0; fi
    if [ -f "$OUT/Image" ]; then step_cached "kernel $real $ver (stock binary)" "$OUT"; return; fi
    step_begin "kernel: fetching stock binary $real $ver"
    rm -rf "$OUT.new"; mkdir -p "$OUT.new/dl"
    (cd "$OUT.new/dl" && apt_p download "$real:arm64/trixie" >/dev/null 2>&1) || die "downloading $real failed"
    dpkg-deb -x "$OUT.new"/dl/*.deb "$OUT.new/x"
    vmlinuz=$(ls "$OUT.new"/x/boot/vmlinuz-* | head -1)
    # trixie ships a plain Image as vmlinuz; older releases gzip'd it.
    if [ "$(head -c2 "$vmlinuz" | od -An -tx1 | tr -d ' ')" = "1f8b" ]; then
        zcat "$vmlinuz" >"$OUT.new/Image"
    else
        cp "$vmlinuz" "$OUT.new/Image"
    fi
    # arm64 Image header: "ARMd" magic at offset 56 (an EFI zboot image would not boot with -kernel).
    [ "$(dd if="$OUT.new/Image" bs=1 skip=56 count=4 2>/dev/null)" = "ARMd" ] \
        || die "$vmlinuz is neither an arm64 Image nor a gzip'd one"
    cp "$OUT.new"/x/boot/config-* "$OUT.new/config"
    # What the guest needs before any module can load must be built in: the virt machine's
    # PCIe host bridge, MSIs through the GICv3 ITS, the PL011 console, a gzip'd initramfs.
    for opt in $REQUIRED_OPTS; do
        grep -qx "CONFIG_$opt=y" "$OUT.new/config" || missing="$missing $opt"
    done
    grep -qE '^CONFIG_ARM_SMMU_V3=[ym]$' "$OUT.new/config" || missing="$missing ARM_SMMU_V3"
    [ -z "$missing" ] || die "stock kernel $real lacks what the guest needs built in:$missing"
    # modules/RELEASE/ as an installed system has it (Debian's postinst runs depmod, so the
    # package itself carries no modules.dep): initramfs.sh picks its subset from there.
    mkdir -p "$OUT.new/modules"
    cp -a "$OUT.new"/x/usr/lib/modules/. "$OUT.new/modules/" 2>/dev/null \
        || cp -a "$OUT.new"/x/lib/modules/. "$OUT.new/modules/"
    rel=$(ls "$OUT.new/modules" | head -1)
    [ -n "$rel" ] && [ -d "$OUT.new/modules/$rel/kernel" ] || die "$real carries no modules"
    mkdir -p "$OUT.new/depmod-root/lib"; ln -s ../../modules "$OUT.new/depmod-root/lib/modules"
    depmod -b "$OUT.new/depmod-root" "$rel" || die "depmod failed on $real's modules"
    rm -rf "$OUT.new/dl" "$OUT.new/x" "$OUT.new/depmod-root"
    echo "$real $ver (stock binary)" >"$OUT.new/VERSION"
    rm -rf "$OUT"; mv "$OUT.new" "$OUT"
    step_end
}

user_image() {  # an arm64 Image the user built
    local img; img=$(realpath "$1")
    # arm64 Image header: "ARMd" magic at offset 56.
    [ "$(dd if="$img" bs=1 skip=56 count=4 2>/dev/null)" = "ARMd" ] \
        || die "$1 is not an arm64 kernel Image (no ARMd magic at offset 56)"
    KEY=$(hash_inputs "$img")
    OUT="$COSIM_CACHE/kernel/image-$KEY"
    if [ -f "$OUT/Image" ]; then step_cached "kernel Image $1" "$OUT"; return; fi
    step_begin "kernel: using Image $1"
    mkdir -p "$OUT.new"; cp "$img" "$OUT.new/Image"
    # uapi headers: the build tree's, when the Image sits in one; else the default kernel's.
    local tree; tree=$(dirname "$(dirname "$(dirname "$(dirname "$img")")")")
    if [ -f "$tree/.config" ]; then cp "$tree/.config" "$OUT.new/config"; fi
    echo "Image $img" >"$OUT.new/VERSION"
    rm -rf "$OUT"; mv "$OUT.new" "$OUT"
    step_end
}

# git_content SRC: what a git work tree's files are (HEAD, the changes to it, the untracked
# files that are not ignored), or nothing when SRC is not the top of a git work tree.
git_content() {
    local src="$1" top
    top=$(git -C "$src" rev-parse --show-toplevel 2>/dev/null) || return 0
    [ "$(realpath "$top")" = "$src" ] || return 0
    git -C "$src" rev-parse HEAD 2>/dev/null || echo "no HEAD"
    git -C "$src" diff HEAD --binary 2>/dev/null | sha256sum
    (cd "$src" && git ls-files -z --others --exclude-standard | LC_ALL=C sort -z \
        | xargs -0 -r sha256sum)
}

snap_key() {  # snap_key SRC CONTENT: the key of a git tree's build by its content
    hash_inputs "tree $1" "$(printf '%s' "$2" | sha256sum)" "$FRAG" "$BUILD_RECIPE"
}

user_tree() {  # a kernel source tree: out-of-tree build, incremental on the next call
    local src content snap; src=$(realpath "$1")
    [ -f "$src/Makefile" ] && [ -d "$src/arch/arm64" ] || die "$1 is not a kernel source tree (no Makefile or arch/arm64)"
    [ ! -f "$src/.config" ] || die "$1 has an in-tree .config; run 'make mrproper' there (we build out of tree)"
    # Keyed by the tree's path: kbuild itself decides what a change rebuilds.
    OUT="$COSIM_CACHE/kernel/tree-$(hash_inputs "tree $src")"
    # A git work tree is also keyed by its content: the same files as a build before (a
    # mutant applied again, a change undone) take that build's products, with no kbuild pass.
    if [ -n "$KEY_ONLY" ]; then
        content=$(git_content "$src")
        echo "KEY=${content:+$(snap_key "$src" "$content")}"; exit 0
    fi
    # Two builds of one tree (two runs, or a run beside `cosim mutate`) share its output dir.
    take_lock "$(basename "$OUT")"
    content=$(git_content "$src")
    snap=""
    [ -z "$content" ] || snap="$COSIM_CACHE/kernel/treesnap-$(snap_key "$src" "$content")"
    if [ -n "$snap" ] && [ -f "$snap/Image" ]; then
        step_cached "kernel source tree $src (these files were built before)" "$snap"
        OUT="$snap"; return
    fi
    step_begin "kernel: building source tree $src (incremental)"
    build_tree "$src" "$OUT"
    echo "tree $src $(cd "$src" && git describe --always --dirty 2>/dev/null || true)" >"$OUT/VERSION"
    # Files changed during the build: kbuild built a mixture, which no content names.
    [ -z "$snap" ] || [ "$(git_content "$src")" = "$content" ] || snap=""
    if [ -n "$snap" ]; then
        # What a later run with the same files needs (kmod.sh builds against SOURCE and config).
        rm -rf "$snap.new"; mkdir -p "$snap.new"
        cp -r "$OUT/Image" "$OUT/config" "$OUT/include" "$OUT/SOURCE" "$OUT/VERSION" "$snap.new/"
        [ ! -f "$OUT/missing-options" ] || cp "$OUT/missing-options" "$snap.new/"
        rm -rf "$snap"; mv "$snap.new" "$snap"
    fi
    step_end
}

# Only the Debian sources have a download worth starting early.
case "$CHOICE" in debian-6.12|debian-6.1|debian-7.2) ;; *) [ -z "$FETCH_ONLY" ] || exit 0 ;; esac
case "$CHOICE" in
    debian-6.12) debian_source linux-source-6.12 trixie ;;
    debian-6.1) debian_source linux-source-6.1 bookworm ;;
    debian-7.2) debian_source linux-source-7.2 sid ;;
    debian-6.12-bin) debian_binary ;;
    */*|.*|~*)
        if [ -d "$CHOICE" ]; then user_tree "$CHOICE"
        elif [ -f "$CHOICE" ]; then user_image "$CHOICE"
        else die "kernel path $CHOICE does not exist"; fi ;;
    *) die "unknown kernel choice '$CHOICE' (choose debian-6.12, debian-6.1, debian-7.2, debian-6.12-bin, or a path to an Image or a source tree)" ;;
esac
echo "KERNEL_DIR=$OUT"
