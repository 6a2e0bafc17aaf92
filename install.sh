#!/usr/bin/env bash
# Installs kache, makes cargo use it, and shows it working on a real build.
#
#   ./install.sh            # install into ~/.cargo/bin, run `kache init`, try a real build
#   ./install.sh --no-try   # install and init only
#
# Safe to run again: it reinstalls the binary and `kache init` leaves one setting.
set -euo pipefail
repo=$(cd "$(dirname "$0")" && pwd)
try=1
for arg in "$@"; do
    case "$arg" in
        --no-try) try=0 ;;
        *) echo "usage: ./install.sh [--no-try]" >&2; exit 2 ;;
    esac
done

command -v cargo >/dev/null || { echo "install.sh: cargo not found; install Rust first (https://rustup.rs)" >&2; exit 1; }

echo "==> building and installing kache"
# shellcheck source=e2e/static-link.sh
source "$repo/e2e/static-link.sh"
if ! cargo install --path "$repo" --locked --force --quiet "${STATIC_LINK[@]}"; then
    [ ${#STATIC_LINK[@]} -gt 0 ] || exit 1
    echo "==> linking statically failed (no static libc here?): installing a dynamically linked kache"
    cargo install --path "$repo" --locked --force --quiet
fi
bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
kache="$bin_dir/kache"
"$kache" --version

echo "==> pointing cargo at kache (build.rustc-wrapper in ${CARGO_HOME:-$HOME/.cargo}/config.toml)"
"$kache" init

if [ "$try" = 1 ]; then
    echo "==> trying it on a real workspace (a build script, C code, a proc-macro, registry crates)"
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/kache-try.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    cp -r "$repo/e2e/fixtures/ws" "$scratch/ws"
    cd "$scratch/ws"
    # cargo's defaults (dev profile, CARGO_INCREMENTAL unset): the members compile with
    # -C incremental, which kache caches too.
    export FIXTURE_GREETING=hello RUSTC_WRAPPER="$kache"
    ms() { echo $(( $(date +%s%N) / 1000000 )); }
    start=$(ms); cargo build --quiet; cold=$(( $(ms) - start ))
    rm -rf target
    start=$(ms); cargo build --quiet; warm=$(( $(ms) - start ))
    ./target/debug/fixture-app
    echo "first build ${cold} ms; rebuild from the cache after rm -rf target ${warm} ms"
    "$kache" stats
fi
echo "==> done: every cargo build now goes through kache ('kache init --undo' to stop)"
