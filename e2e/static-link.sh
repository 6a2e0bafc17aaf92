# Sourced by install.sh and e2e/run-tests (bash): how cargo links kache on this host.
#
# A cache hit is a whole process that lives ~3 ms, and with glibc's dynamic loader a third
# of it went to loading and binding libc, libm and libgcc_s (measured in
# docs/benchmarks-analysis.md). On a Linux host with glibc, kache is therefore linked
# statically as a static-pie (so ASLR stays). rustc links statically only with an explicit
# `--target` (without one the flag would also reach proc-macros, which cannot be static), so
# the binaries land in `target/<host>/<profile>`. Elsewhere: cargo's defaults.
#
#   STATIC_LINK      the arguments to add to `cargo build|test|install` (may be empty)
#   STATIC_LINK_DIR  where, under the target dir, the profile dirs are ("" or "<host>/")

STATIC_LINK=()
STATIC_LINK_DIR=""
static_link_host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
case "$static_link_host" in
    *-linux-gnu*)
        STATIC_LINK=(--target "$static_link_host"
            --config "target.$static_link_host.rustflags=[\"-C\", \"target-feature=+crt-static\"]")
        STATIC_LINK_DIR="$static_link_host/"
        ;;
esac
unset static_link_host
