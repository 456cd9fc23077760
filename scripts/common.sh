# Shared helpers for the set-up steps; sourced, never run.
# Every step prints what it does, whether it came from cache, and how long it took.
set -euo pipefail

COSIM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COSIM_CACHE="${COSIM_CACHE:-$HOME/.cache/cosim}"
mkdir -p "$COSIM_CACHE"

_step_t0=0
step_begin() { _step_t0=$(date +%s); echo "==> $*"; }
step_end() { echo "    done in $(( $(date +%s) - _step_t0 ))s"; }
step_cached() { echo "==> $1: from cache ($2)"; }
die() { echo "error: $*" >&2; exit 1; }

# take_lock NAME: one set-up of a product at a time (two concurrent runs would wreck each
# other's work trees); held until the script exits. Check the cache again after taking it.
take_lock() {
    mkdir -p "$COSIM_CACHE/locks"
    exec {_lockfd}>"$COSIM_CACHE/locks/$1.lock"
    if ! flock -n "$_lockfd"; then
        echo "==> waiting for another set-up of $1 to finish"
        flock "$_lockfd"
    fi
}

# hash_inputs FILE_OR_STRING...: one short key for a set of files and literal strings.
hash_inputs() {
    local item
    for item in "$@"; do
        if [ -f "$item" ]; then
            printf 'file %s\n' "$(basename "$item")"; sha256sum < "$item"
        elif [ -d "$item" ]; then
            (cd "$item" && find . -type f -not -path '*/.git/*' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
        else
            printf 'str %s\n' "$item"
        fi
    done | sha256sum | cut -c1-16
}

# Private apt configuration: bookworm, trixie and sid sources and arm64 binaries, without
# touching the machine's own apt setup. The index lives in a directory named by the hash of
# the source list: a checkout with another list (an older branch without bookworm) keeps its
# own index instead of dropping this one's on its next update.
APT_TOP="$COSIM_CACHE/apt"
apt_sources() {
    local mirror="${COSIM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    local kr=/usr/share/keyrings/debian-archive-keyring.gpg suite
    for suite in bookworm trixie sid; do echo "deb-src [signed-by=$kr] $mirror $suite main"; done
    for suite in bookworm trixie sid; do echo "deb [arch=arm64 signed-by=$kr] $mirror $suite main"; done
}
APT_DIR="$APT_TOP/$(apt_sources | sha256sum | cut -c1-12)"
apt_private_opts() {
    echo "-o Dir::Etc::SourceList=$APT_DIR/sources.list -o Dir::Etc::SourceParts=/dev/null" \
         "-o Dir::State::Lists=$APT_DIR/lists -o Dir::Cache=$APT_DIR/cache" \
         "-o Dir::State::Status=$APT_DIR/status -o Debug::NoLocking=1" \
         "-o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64" \
         "-o APT::Sandbox::User=root"
}
apt_private_setup() {
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    touch "$APT_DIR/status"
    local stamp="$APT_DIR/updated" fd
    # One writer at a time: a source fetch may run beside another step's (set-up prefetches).
    mkdir -p "$COSIM_CACHE/locks"
    exec {fd}>"$COSIM_CACHE/locks/apt-update.lock"
    flock "$fd"
    apt_sources > "$APT_DIR/sources.list.new"
    mv "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"
    # Refresh the index at most once a day: it decides versions, and so cache keys.
    if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440)" ]; then
        step_begin "private apt index (bookworm, trixie, sid; deb-src and arm64)"
        # shellcheck disable=SC2046
        apt-get $(apt_private_opts) -q update >"$APT_DIR/update.log" 2>&1 \
            || { tail -20 "$APT_DIR/update.log" >&2; die "private apt update failed"; }
        touch "$stamp"
        step_end
    fi
    exec {fd}>&-
}
apt_p() { apt-get $(apt_private_opts) "$@"; }
aptcache_p() { apt-cache $(apt_private_opts) "$@"; }

# dsc_of PKG/SUITE: the .dsc file name apt would fetch, which names the exact version.
dsc_of() {
    apt_p source --print-uris "$1" 2>/dev/null | awk "{print \$2}" | tr -d "'" | grep '\.dsc$' | head -1
}

# run_progress LOG PATTERN CMD...: run CMD with all its output in LOG and, every 15 s, print
# one line saying how far it got, so a 5-minute build is never one silent line (the interval:
# COSIM_PROGRESS_EVERY seconds). With ninja
# (non-tty) that is its own [n/m]; otherwise the number of LOG lines matching PATTERN
# (kbuild's "  CC" lines). Returns CMD's exit status.
run_progress() {
    local log="$1" pat="$2" pid t0 n=0 rc=0 at every="${COSIM_PROGRESS_EVERY:-15}"
    shift 2
    "$@" >"$log" 2>&1 &
    pid=$!; t0=$(date +%s)
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1; n=$((n + 1))
        [ $((n % every)) -eq 0 ] || continue
        at=$(tail -c 8192 "$log" | grep -aoE '^\[[0-9]+/[0-9]+\]' | tail -1 || true)
        if [ -n "$at" ]; then
            local done=${at#[}; done=${done%/*}; local all=${at#*/}; all=${all%]}
            echo "    $at $((100 * done / all))% after $(( $(date +%s) - t0 ))s"
        elif [ -n "$pat" ]; then
            echo "    $(grep -acE "$pat" "$log" || true) compiled after $(( $(date +%s) - t0 ))s"
        else
            echo "    still running after $(( $(date +%s) - t0 ))s"
        fi
    done
    wait "$pid" || rc=$?
    return "$rc"
}
