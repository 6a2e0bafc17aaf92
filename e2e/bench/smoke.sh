#!/usr/bin/env bash
# Smoke test of the benchmark harness: N=1 on a tiny generated 2-crate workspace, contenders
# no cache + kache (+ sccache when installed), into a temporary out dir; checks the report.
#
#   e2e/bench/smoke.sh                  # builds kache (cargo build --release) if needed
#   KACHE_BIN=/path/to/kache e2e/bench/smoke.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kache-bench-smoke.XXXXXX")
trap '[ -n "${KEEP_SMOKE:-}" ] || rm -rf "$tmp"' EXIT

python3 "$here/bench.py" --self-test

# The fixture: a binary crate depending on a library crate of the same workspace.
ws="$tmp/fixture/smokeapp"
mkdir -p "$ws/src" "$ws/smokelib/src"
cat > "$ws/Cargo.toml" <<'TOML'
[package]
name = "smokeapp"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
smokelib = { path = "smokelib" }

[workspace]
members = ["smokelib"]
TOML
cat > "$ws/src/main.rs" <<'RS'
fn main() {
    println!("{}", smokelib::greeting(&smokelib::Config::default()));
}
RS
cat > "$ws/smokelib/Cargo.toml" <<'TOML'
[package]
name = "smokelib"
version = "0.1.0"
edition = "2021"
publish = false
TOML
cat > "$ws/smokelib/src/lib.rs" <<'RS'
//! A small library with generics so it takes a moment to compile.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Config { pub name: String, pub times: usize }

pub fn greeting(c: &Config) -> String {
    let name = if c.name.is_empty() { "kache" } else { &c.name };
    std::iter::repeat(format!("hello, {name}")).take(c.times.max(1)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn greets() { assert_eq!(super::greeting(&Default::default()), "hello, kache"); }
}
RS

if [ -n "${KACHE_BIN:-}" ]; then
    kache="$KACHE_BIN"
else
    (cd "$repo" && cargo build --release --quiet)
    kache="$repo/target/release/kache"
fi

contenders=nocache,kache
if command -v sccache >/dev/null 2>&1; then contenders=nocache,sccache,kache; fi

out="$tmp/out"
BENCH_PROG=e2e/bench/run python3 "$here/bench.py" --workload "$ws" -n 1 \
    --contenders "$contenders" --kache "$kache" --out "$out" --scratch "$tmp/scratch" \
    --timeout 600

passed=0; failed=0
check() {  # check DESCRIPTION COMMAND...
    if "${@:2}"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $1" >&2; fi
}
check "benchmarks.md written" test -s "$out/benchmarks.md"
check "results JSON written" test -s "$out/bench/results-smokeapp.json"
check "wall-time chart written" grep -q "<svg" "$out/bench/smokeapp-wall.svg"
check "report has the wall-time table" grep -q "| cold |" "$out/benchmarks.md"
check "every run succeeded, every scenario measured for every contender" python3 - \
    "$out/bench/results-smokeapp.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))
runs = res["runs"]
bad = [r for r in runs if not r.get("ok")]
for r in bad:
    print(f"failed: {r['scenario']} {r['contender']}: {r.get('error')} ({r['log']})", file=sys.stderr)
want = {(s, c) for s in res["config"]["scenarios"] for c in res["config"]["contenders"]}
got = {(r["scenario"], r["contender"]) for r in runs if r.get("ok")}
missing = want - got
if missing:
    print(f"missing: {sorted(missing)}", file=sys.stderr)
kache = [r for r in runs if r["contender"] == "kache" and r.get("ok")]
no_events = [r["scenario"] for r in kache if not r.get("kache_events", {}).get("events")
             and r["scenario"] != "noop"]
if no_events:
    print(f"kache wrote no events in: {no_events}", file=sys.stderr)
disk = {d["contender"] for d in res["disk"]}
if disk != set(res["config"]["contenders"]):
    print(f"disk measured for {disk} only", file=sys.stderr)
sys.exit(1 if bad or missing or no_events or disk != set(res["config"]["contenders"]) else 0)
PY
echo "bench smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
