#!/usr/bin/env python3
"""A stand-in for kache that caches nothing: it runs rustc and appends one schema-1 event per
invocation to $KACHE_DIR/events.jsonl. Only for testing the harness itself
(`KACHE_BENCH_MOCK=1 e2e/bench/smoke.sh`) before a real kache binary exists."""
import json
import os
import subprocess
import sys
import time

ts = int(time.time() * 1000)
t0 = time.monotonic()
rustc, args = sys.argv[1], sys.argv[2:]
rc = subprocess.call([rustc, *args])
ms = (time.monotonic() - t0) * 1000
has_input = any(a.endswith(".rs") for a in args)
crate = args[args.index("--crate-name") + 1] if "--crate-name" in args[:-1] else None
event = {
    "schema": 1, "ts": ts, "crate_name": crate, "crate_version": os.environ.get("CARGO_PKG_VERSION"),
    "crate_types": [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--crate-type"],
    "result": "miss" if has_input else "passthrough", "elapsed_ms": ms,
    "compile_time_ms": ms, "size": 0, "cache_key": None, "key_ms": 0.0, "lookup_ms": 0.0,
    "restore_ms": 0.0, "store_ms": 0.0, "compiler_runs": 1, "reflinked_bytes": 0,
    "hardlinked_bytes": 0, "copied_bytes": 0, "downloaded_bytes": 0,
    "passthrough_reason": None if has_input else "no_input", "warning": None, "exit_code": rc,
}
cache_dir = os.environ.get("KACHE_DIR")
if cache_dir:
    os.makedirs(cache_dir, exist_ok=True)
    fd = os.open(os.path.join(cache_dir, "events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (json.dumps(event) + "\n").encode())
    os.close(fd)
sys.exit(rc)
