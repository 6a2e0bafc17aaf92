//! The C/C++ path with the real gcc on this machine (issue 11): `kache gcc -c x.c -o x.o` as
//! the `cc` crate runs it, checked against the compiler run without kache.
//!
//! Every case looks at the exact hit/miss events, the program's output, and that a restored
//! object is byte-identical to what the compiler wrote. One test runs a real cargo build
//! whose build script compiles C through the `cc` crate (offline, cc 1.11.1 from the local
//! registry), with `RUSTC_WRAPPER` as a bare name and as an absolute path.

use crate::support;
use crate::support_s3;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{BuildEvent, Compiler, EventCursor, Outcome, kache_bin_under_test};
use serde_json::Value;

/// A directory with C sources, a kache cache, and helpers to compile with and without kache.
struct CProject {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
    log: EventCursor,
}

impl CProject {
    fn new() -> CProject {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canonicalize");
        let cache = root.join("kache-cache");
        fs::create_dir_all(&cache).expect("mkdir cache");
        let p = CProject {
            log: EventCursor::new(&cache),
            _tmp: tmp,
            root,
            cache,
        };
        p.write("src/main.c", MAIN_C);
        p.write("inc2/greet.h", "#define GREETING \"hello\"\n");
        fs::create_dir_all(p.root.join("inc1")).expect("mkdir");
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }

    /// `kache <compiler> <args>` in `dir`, with a clean kache environment.
    fn kache_in(&self, dir: &Path, compiler: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(kache_bin_under_test());
        cmd.arg(compiler).args(args).current_dir(dir);
        clean_env(&mut cmd);
        cmd.env("KACHE_DIR", &self.cache)
            .env("KACHE_CONFIG", "/dev/null");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run kache")
    }

    fn kache(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.kache_in(&self.root, "gcc", args, env)
    }

    /// The same command without kache.
    fn plain(&self, compiler: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(compiler);
        cmd.args(args).current_dir(&self.root);
        clean_env(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run the compiler")
    }

    /// Results of the events since the last call.
    fn results(&mut self) -> Vec<Outcome> {
        self.log.take().iter().map(|e| e.result).collect()
    }

    fn events(&mut self) -> Vec<BuildEvent> {
        self.log.take()
    }

    /// Compiles `src/main.c` with `flags` through kache into `obj`, checks it against the
    /// compiler's own object, links and runs it; returns the event result and the output.
    fn build(&mut self, flags: &[&str], env: &[(&str, &str)]) -> (Outcome, String) {
        let mut args = vec!["-c", "src/main.c", "-o", "out/main.o"];
        args.extend_from_slice(flags);
        fs::create_dir_all(self.path("out")).expect("mkdir out");
        let o = self.kache(&args, env);
        assert!(o.status.success(), "kache gcc failed: {}", stderr(&o));
        let results = self.results();
        assert_eq!(results.len(), 1, "one event per compile: {results:?}");
        let run = self.link_and_run("out/main.o");
        // The reference: the same compile without kache.
        let mut ref_args = vec!["-c", "src/main.c", "-o", "out/ref.o"];
        ref_args.extend_from_slice(flags);
        let r = self.plain("gcc", &ref_args, env);
        assert!(r.status.success(), "{}", stderr(&r));
        assert_eq!(
            run,
            self.link_and_run("out/ref.o"),
            "kache's object behaves differently"
        );
        (results[0], run)
    }

    fn link_and_run(&self, obj: &str) -> String {
        let exe = self.path("out/prog");
        fs::create_dir_all(self.path("out")).expect("mkdir out");
        let o = self.plain("gcc", &[obj, "-o", exe.to_str().expect("utf-8")], &[]);
        assert!(o.status.success(), "link: {}", stderr(&o));
        let out = Command::new(&exe).output().expect("run the program");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many entries the store holds.
    fn entries(&self) -> usize {
        let o = support::kache_command(&self.cache, &["list", "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).expect("list --json");
        v.as_array().map(Vec::len).unwrap_or(0)
    }
}

fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("KACHE_")
            || k.starts_with("CARGO")
            || k.starts_with("RUSTC")
            || [
                "CPATH",
                "C_INCLUDE_PATH",
                "SOURCE_DATE_EPOCH",
                "CC",
                "CFLAGS",
            ]
            .contains(&&*k)
        {
            cmd.env_remove(key);
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const MAIN_C: &str = "#include <stdio.h>\n#include \"greet.h\"\n\
    #ifndef EXTRA\n#define EXTRA \"\"\n#endif\n\
    int main(void) { printf(\"%s%s\\n\", GREETING, EXTRA); return 0; }\n";

const INC: [&str; 4] = ["-Isrc", "-Iinc1", "-Iinc2", "-O1"];

#[test]
fn c_change_matrix() {
    let mut p = CProject::new();
    assert_eq!(p.build(&INC, &[]), (Outcome::Miss, "hello\n".into()));
    let first = fs::read(p.path("out/main.o")).expect("object");
    assert_eq!(p.build(&INC, &[]), (Outcome::LocalHit, "hello\n".into()));
    assert_eq!(
        fs::read(p.path("out/main.o")).expect("object"),
        first,
        "the restored object is the bytes the compiler wrote"
    );

    // Edit the source; put it back.
    p.write("src/main.c", &MAIN_C.replace("%s%s\\n", "%s%s!\\n"));
    assert_eq!(p.build(&INC, &[]), (Outcome::Miss, "hello!\n".into()));
    p.write("src/main.c", MAIN_C);
    assert_eq!(p.build(&INC, &[]).0, Outcome::LocalHit);

    // Edit a header keeping its size and mtime.
    let header = p.path("inc2/greet.h");
    let mtime = fs::metadata(&header)
        .expect("meta")
        .modified()
        .expect("mtime");
    p.write("inc2/greet.h", "#define GREETING \"HELLO\"\n");
    fs::File::options()
        .write(true)
        .open(&header)
        .expect("open")
        .set_modified(mtime)
        .expect("set mtime");
    assert_eq!(p.build(&INC, &[]), (Outcome::Miss, "HELLO\n".into()));
    p.write("inc2/greet.h", "#define GREETING \"hello\"\n");
    assert_eq!(p.build(&INC, &[]).0, Outcome::LocalHit);

    // A header that shadows another: earlier on the -I path, and next to the source.
    p.write("inc1/greet.h", "#define GREETING \"shadow-I\"\n");
    assert_eq!(p.build(&INC, &[]), (Outcome::Miss, "shadow-I\n".into()));
    p.write("src/greet.h", "#define GREETING \"shadow-src\"\n");
    assert_eq!(p.build(&INC, &[]), (Outcome::Miss, "shadow-src\n".into()));
    fs::remove_file(p.path("src/greet.h")).expect("rm");
    fs::remove_file(p.path("inc1/greet.h")).expect("rm");
    assert_eq!(p.build(&INC, &[]), (Outcome::LocalHit, "hello\n".into()));
    // A system header shadowed on the -I path: its absence is one of the many names a hit
    // checks against the directory's listing.
    p.write(
        "inc1/stdio.h",
        "#include_next <stdio.h>\n#define EXTRA \" (own stdio.h)\"\n",
    );
    assert_eq!(
        p.build(&INC, &[]),
        (Outcome::Miss, "hello (own stdio.h)\n".into())
    );
    fs::remove_file(p.path("inc1/stdio.h")).expect("rm");
    assert_eq!(p.build(&INC, &[]), (Outcome::LocalHit, "hello\n".into()));

    // A -D, other CFLAGS; and back.
    let with_d = [&INC[..], &["-DEXTRA=\" world\""]].concat();
    assert_eq!(
        p.build(&with_d, &[]),
        (Outcome::Miss, "hello world\n".into())
    );
    let o2 = [&INC[..], &["-O2"]].concat();
    assert_eq!(p.build(&o2, &[]).0, Outcome::Miss);
    assert_eq!(p.build(&INC, &[]).0, Outcome::LocalHit);
    assert_eq!(p.build(&with_d, &[]).0, Outcome::LocalHit);

    // CPATH: the header comes from another directory.
    p.write("cpath/greet.h", "#define GREETING \"from CPATH\"\n");
    let no_inc2 = ["-Isrc", "-Iinc1", "-O1"];
    let cpath = p.path("cpath");
    let cpath = [("CPATH", cpath.to_str().expect("utf-8"))];
    assert_eq!(
        p.build(&no_inc2, &cpath),
        (Outcome::Miss, "from CPATH\n".into())
    );
    p.write("cpath2/greet.h", "#define GREETING \"from CPATH 2\"\n");
    let cpath2 = p.path("cpath2");
    let cpath2 = [("CPATH", cpath2.to_str().expect("utf-8"))];
    assert_eq!(
        p.build(&no_inc2, &cpath2),
        (Outcome::Miss, "from CPATH 2\n".into())
    );
    assert_eq!(p.build(&no_inc2, &cpath).0, Outcome::LocalHit);
}

#[test]
fn compiler_identity_and_time_macros() {
    let mut p = CProject::new();
    // CC change: `cc` and `gcc` are different names (and may be different compilers).
    assert_eq!(p.build(&INC, &[]).0, Outcome::Miss);
    let o = p.kache_in(
        &p.root,
        "cc",
        &[
            "-c",
            "src/main.c",
            "-o",
            "out/cc.o",
            "-Isrc",
            "-Iinc1",
            "-Iinc2",
            "-O1",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(p.results(), [Outcome::Miss]);

    // The compiler swapped at the same path.
    let bin = p.path("bin");
    fs::create_dir_all(&bin).expect("mkdir");
    let gcc = bin.join("gcc");
    // gcc finds cc1 relative to itself, so the stand-in at this path is a script.
    let real = Path::new("/usr/bin/gcc").canonicalize().expect("gcc");
    let install = |script: &str| {
        let _ = fs::remove_file(&gcc);
        fs::write(&gcc, script).expect("write script");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&gcc, fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    install(&format!("#!/bin/sh\nexec {} \"$@\"\n", real.display()));
    let args = [
        "-c",
        "src/main.c",
        "-o",
        "out/swap.o",
        "-Isrc",
        "-Iinc1",
        "-Iinc2",
    ];
    let gcc_s = gcc.to_str().expect("utf-8");
    for want in [Outcome::Miss, Outcome::LocalHit] {
        let o = p.kache_in(&p.root, gcc_s, &args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(p.results(), [want]);
    }
    install(&format!(
        "#!/bin/sh\nexec {} -DEXTRA='\" swapped\"' \"$@\"\n",
        real.display()
    ));
    let o = p.kache_in(&p.root, gcc_s, &args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(p.results(), [Outcome::Miss]);
    assert_eq!(p.link_and_run("out/swap.o"), "hello swapped\n");

    // Another assembler first in PATH (gcc runs `as` from PATH here): a miss, then hits.
    let as_dir = p.path("asbin");
    fs::create_dir_all(&as_dir).expect("mkdir");
    let real_as = Path::new("/usr/bin/as").canonicalize().expect("as");
    fs::write(
        as_dir.join("as"),
        format!("#!/bin/sh\nexec {} \"$@\"\n", real_as.display()),
    )
    .expect("write as");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(as_dir.join("as"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        as_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cc_args = [
        "-c",
        "src/main.c",
        "-o",
        "out/as.o",
        "-Isrc",
        "-Iinc1",
        "-Iinc2",
        "-O1",
    ];
    for want in [Outcome::Miss, Outcome::LocalHit] {
        let o = p.kache_in(&p.root, "gcc", &cc_args, &[("PATH", &path)]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(p.results(), [want], "another as");
    }

    // __DATE__ without SOURCE_DATE_EPOCH is never stored; with it, it is, and keyed.
    p.write(
        "src/main.c",
        &MAIN_C.replace("GREETING, EXTRA", "GREETING, __DATE__"),
    );
    assert_eq!(p.build(&INC, &[]).0, Outcome::Miss);
    assert_eq!(
        p.build(&INC, &[]).0,
        Outcome::Miss,
        "__DATE__ without SOURCE_DATE_EPOCH is not stored"
    );
    assert_eq!(
        p.entries(),
        5,
        "gcc, cc, the stand-in before and after the swap, another as"
    );
    let sde = [("SOURCE_DATE_EPOCH", "0")];
    assert_eq!(
        p.build(&INC, &sde),
        (Outcome::Miss, "helloJan  1 1970\n".into())
    );
    assert_eq!(
        p.build(&INC, &sde),
        (Outcome::LocalHit, "helloJan  1 1970\n".into())
    );
    let sde2 = [("SOURCE_DATE_EPOCH", "100000000")];
    assert_eq!(
        p.build(&INC, &sde2),
        (Outcome::Miss, "helloMar  3 1973\n".into())
    );
}

#[test]
fn failures_warnings_and_probes_replay_exactly() {
    let mut p = CProject::new();
    // A failing compile: same stderr and exit code as gcc, nothing stored, still a miss.
    p.write("src/bad.c", "int main(void) { return undefined_thing; }\n");
    let args = ["-c", "src/bad.c", "-o", "out/bad.o"];
    fs::create_dir_all(p.path("out")).expect("mkdir");
    for _ in 0..2 {
        let o = p.kache(&args, &[]);
        let r = p.plain("gcc", &args, &[]);
        assert_eq!(o.status.code(), r.status.code());
        assert_ne!(o.status.code(), Some(0));
        assert_eq!(stderr(&o), stderr(&r));
        assert_eq!(p.results(), [Outcome::Miss]);
    }
    assert_eq!(p.entries(), 0, "a failed compile is never stored");

    // Warnings are replayed on a hit.
    p.write("src/warn.c", "int f(void) { int unused; return 0; }\n");
    let args = ["-Wall", "-c", "src/warn.c", "-o", "out/warn.o"];
    let r = p.plain("gcc", &args, &[]);
    assert!(stderr(&r).contains("unused"), "{}", stderr(&r));
    for want in [Outcome::Miss, Outcome::LocalHit] {
        let o = p.kache(&args, &[]);
        assert!(o.status.success());
        assert_eq!(stderr(&o), stderr(&r), "{want:?}");
        assert_eq!(p.results(), [want]);
    }

    // cc's probes and `-E` expansion: stdout byte for byte, a recorded reason, nothing stored.
    for (args, reason) in [
        (&["-E", "src/main.c", "-Iinc2"][..], "c_preprocess"),
        (&["--version"][..], "c_not_a_compile"),
        (
            &["-c", "src/main.c", "-Iinc2", "-o", "out/x.o", "-MD"][..],
            "c_dependency_flags",
        ),
    ] {
        let o = p.kache(args, &[]);
        let r = p.plain("gcc", args, &[]);
        assert_eq!(o.stdout, r.stdout, "{args:?}");
        assert_eq!(o.status.code(), r.status.code());
        let ev = p.events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].result, Outcome::Passthrough);
        assert_eq!(ev[0].passthrough_reason.as_deref(), Some(reason));
        assert_eq!(ev[0].compiler, Compiler::C);
    }
}

/// A configure-style probe compiling to `/dev/null`: kache must neither remove the device
/// nor put a file in its place, on the first compile or the second (the one that would hit).
/// A device made here, not the machine's `/dev/null`, so a regression cannot break the host.
#[test]
#[ignore = "needs root: mknod makes the character device"]
fn an_output_that_is_a_device_is_never_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let mut p = CProject::new();
    let dev = p.path("out/null");
    fs::create_dir_all(p.path("out")).expect("mkdir");
    let status = Command::new("mknod")
        .args([dev.to_str().expect("utf-8"), "c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(status.success(), "mknod");
    let args = ["-c", "src/main.c", "-Iinc2", "-o", "out/null"];
    for _ in 0..2 {
        let o = p.kache(&args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            stderr(&o),
            "",
            "no warning: the compile just passes through"
        );
        let kind = fs::symlink_metadata(&dev).expect("still there").file_type();
        assert!(kind.is_char_device(), "{} was replaced", dev.display());
        let ev = p.events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].result, Outcome::Passthrough);
        assert_eq!(
            ev[0].passthrough_reason.as_deref(),
            Some("c_output_not_a_file")
        );
    }
    assert_eq!(p.entries(), 0);
}

#[test]
fn assembly_is_cached_unless_it_pulls_in_unreported_files() {
    let mut p = CProject::new();
    fs::create_dir_all(p.path("out")).expect("mkdir");
    // `.s` (no preprocessor, so no depfile) and `.S` (preprocessed) are cached.
    p.write("src/f.s", ".text\n.globl f\nf: ret\n");
    p.write("src/g.S", "#define RET ret\n.text\n.globl g\ng: RET\n");
    for src in ["src/f.s", "src/g.S"] {
        let args = ["-c", src, "-o", "out/asm.o"];
        for want in [Outcome::Miss, Outcome::LocalHit] {
            let o = p.kache(&args, &[]);
            assert!(o.status.success(), "{}", stderr(&o));
            assert!(stderr(&o).is_empty(), "{}", stderr(&o));
            assert_eq!(p.results(), [want], "{src}");
        }
    }
    // `.incbin` reads a file the compiler does not report: never stored.
    p.write("src/blob.bin", "data");
    p.write("src/h.S", ".section .rodata\n.incbin \"src/blob.bin\"\n");
    let args = ["-c", "src/h.S", "-o", "out/h.o"];
    for _ in 0..2 {
        let o = p.kache(&args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(p.results(), [Outcome::Miss]);
    }
}

#[test]
fn a_relocated_checkout_hits_and_embeds_neither_path() {
    let mut p = CProject::new();
    // Two checkouts of one package (a Cargo.toml marks the workspace root, as in a build
    // script's working directory), compiled with absolute paths and debug info like cc does.
    for ws in ["one/ws", "two/deeper/ws"] {
        p.write(&format!("{ws}/Cargo.toml"), "[package]\nname = \"x\"\n");
        p.write(&format!("{ws}/csrc/main.c"), MAIN_C);
        p.write(
            &format!("{ws}/csrc/include/greet.h"),
            "#define GREETING \"hi\"\n",
        );
        fs::create_dir_all(p.path(&format!("{ws}/out"))).expect("mkdir");
    }
    let mut objects = Vec::new();
    for (ws, want) in [
        ("one/ws", Outcome::Miss),
        ("two/deeper/ws", Outcome::LocalHit),
    ] {
        let dir = p.path(ws);
        let d = dir.to_str().expect("utf-8");
        let (src, inc, out) = (
            format!("{d}/csrc/main.c"),
            format!("-I{d}/csrc/include"),
            format!("{d}/out/main.o"),
        );
        let o = p.kache_in(
            &dir,
            "gcc",
            &["-g", "-O1", &inc, "-c", &src, "-o", &out],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(p.results(), [want], "{ws}");
        let bytes = fs::read(&out).expect("object");
        for name in ["one/ws", "two/deeper"] {
            assert!(
                memchr_find(&bytes, name.as_bytes()).is_none(),
                "the object from {ws} names {name}"
            );
        }
        assert_eq!(p.link_and_run(&out), "hi\n");
        objects.push(bytes);
    }
    assert_eq!(objects[0], objects[1]);

    // Reached through a symlink (`$PWD` spells it), gcc records that spelling as the compile
    // directory, so an object stored from the real path (which names `.`) must not stand in.
    // Relative arguments, so only the compile directory differs.
    let args = [
        "-g",
        "-O1",
        "-Icsrc/include",
        "-c",
        "csrc/main.c",
        "-o",
        "out/rel.o",
    ];
    let real = p.path("one/ws");
    let o = p.kache_in(
        &real,
        "gcc",
        &args,
        &[("PWD", real.to_str().expect("utf-8"))],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(p.results(), [Outcome::Miss]);
    let link = p.path("three");
    std::os::unix::fs::symlink(p.path("one"), &link).expect("symlink");
    let dir = link.join("ws");
    let o = p.kache_in(&dir, "gcc", &args, &[("PWD", dir.to_str().expect("utf-8"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(p.results(), [Outcome::Miss]);
    let out = format!("{}/out/rel.o", dir.display());
    let bytes = fs::read(&out).expect("object");
    assert!(
        memchr_find(&bytes, b"three/ws").is_some(),
        "gcc names the symlinked spelling"
    );
    assert_eq!(p.link_and_run(&out), "hi\n");
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
#[ignore = "needs root: bind-mounts the cache read-only (and --features fault-injection for its crash)"]
fn parallel_compiles_and_faults_never_break_the_build() {
    let mut p = CProject::new();
    fs::create_dir_all(p.path("out")).expect("mkdir");
    for i in 0..6 {
        p.write(
            &format!("src/f{i}.c"),
            &format!("int f{i}(void) {{ return {i}; }}\n"),
        );
    }
    let compile_all = |p: &CProject| {
        let children: Vec<_> = (0..6)
            .map(|i| {
                let mut cmd = Command::new(kache_bin_under_test());
                cmd.args(["gcc", "-O1", "-c"])
                    .arg(format!("src/f{i}.c"))
                    .arg("-o")
                    .arg(format!("out/f{i}.o"))
                    .current_dir(&p.root);
                clean_env(&mut cmd);
                cmd.env("KACHE_DIR", &p.cache)
                    .env("KACHE_CONFIG", "/dev/null");
                cmd.spawn().expect("spawn")
            })
            .collect();
        for mut c in children {
            assert!(c.wait().expect("wait").success());
        }
    };
    compile_all(&p);
    assert_eq!(p.results(), vec![Outcome::Miss; 6]);
    let stored: Vec<Vec<u8>> = (0..6)
        .map(|i| fs::read(p.path(&format!("out/f{i}.o"))).expect("obj"))
        .collect();
    compile_all(&p);
    assert_eq!(p.results(), vec![Outcome::LocalHit; 6]);
    for (i, bytes) in stored.iter().enumerate() {
        assert_eq!(
            &fs::read(p.path(&format!("out/f{i}.o"))).expect("obj"),
            bytes
        );
    }

    // A damaged blob: one warning, the compile runs, the object is right.
    let blobs = p.cache.join("blobs");
    for dir in fs::read_dir(&blobs).expect("blobs").flatten() {
        for f in fs::read_dir(dir.path()).expect("blob dir").flatten() {
            fs::write(f.path(), b"garbage").expect("damage");
        }
    }
    let args = ["-O1", "-c", "src/f0.c", "-o", "out/f0.o"];
    let o = p.kache(&args, &[]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("damaged"), "{}", stderr(&o));
    assert_eq!(p.results(), [Outcome::Miss]);
    assert_eq!(&fs::read(p.path("out/f0.o")).expect("obj"), &stored[0]);

    // An unusable cache directory: one warning line, the compile runs as given.
    let file = p.path("not-a-dir");
    fs::write(&file, "x").expect("write");
    let mut cmd = Command::new(kache_bin_under_test());
    cmd.args(["gcc", "-O1", "-c", "src/f1.c", "-o", "out/f1.o"])
        .current_dir(&p.root);
    clean_env(&mut cmd);
    let o = cmd
        .env("KACHE_DIR", &file)
        .env("KACHE_CONFIG", "/dev/null")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert_eq!(&fs::read(p.path("out/f1.o")).expect("obj"), &stored[1]);

    // A read-only cache dir (root cannot write either), warm and empty, and a source it has
    // not seen: the lookup misses and the compile runs (its depfile must not go in the store).
    p.write("src/new.c", "int fresh(void) { return 7; }\n");
    let r = p.plain(
        "gcc",
        &["-O1", "-c", "src/new.c", "-o", "out/new-ref.o"],
        &[],
    );
    assert!(r.status.success());
    let want = fs::read(p.path("out/new-ref.o")).expect("obj");
    let empty = p.path("empty-cache");
    fs::create_dir_all(&empty).expect("mkdir");
    match (
        support::Mount::read_only_bind(&p.cache),
        support::Mount::read_only_bind(&empty),
    ) {
        (Ok(_warm), Ok(_empty)) => {
            for dir in [&p.cache, &empty] {
                let mut cmd = Command::new(kache_bin_under_test());
                cmd.args(["gcc", "-O1", "-c", "src/new.c", "-o", "out/new.o"])
                    .current_dir(&p.root);
                clean_env(&mut cmd);
                let o = cmd
                    .env("KACHE_DIR", dir)
                    .env("KACHE_CONFIG", "/dev/null")
                    .output()
                    .expect("run");
                assert!(o.status.success(), "{}: {}", dir.display(), stderr(&o));
                assert!(stderr(&o).lines().count() <= 1, "{}", stderr(&o));
                assert_eq!(fs::read(p.path("out/new.o")).expect("obj"), want);
            }
        }
        (Err(e), _) | (_, Err(e)) => panic!("cannot bind-mount the cache read-only: {e}"),
    }

    // kache killed between compiling and storing: the next run compiles and stores.
    let o = p.kache(
        &["-c", "src/f2.c", "-o", "out/f2.o"],
        &[("KACHE_TEST_CRASH_AT", "after_compile")],
    );
    assert!(!o.status.success(), "the crash hook kills kache");
    let _ = p.results();
    for want in [Outcome::Miss, Outcome::LocalHit] {
        let o = p.kache(&["-c", "src/f2.c", "-o", "out/f2.o"], &[]);
        assert!(o.status.success());
        assert_eq!(p.results(), [want]);
    }
}

/// A real cargo build whose build script compiles C through the cc crate: cc hands the
/// compiles to kache because `RUSTC_WRAPPER` is named kache, given as an absolute path and as
/// a bare name found in `PATH`.
#[test]
fn cargo_build_script_with_cc_crate() {
    let p = CProject::new();
    let ws = p.path("ccws");
    let files = [
        (
            "Cargo.toml",
            "[package]\nname = \"ccfix\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [build-dependencies]\ncc = { version = \"=1.11.1\", features = [\"parallel\"] }\n",
        ),
        (
            "build.rs",
            "fn main() { cc::Build::new().file(\"csrc/a.c\").file(\"csrc/b.c\")\
             .include(\"csrc/include\").compile(\"fix\"); }\n",
        ),
        ("csrc/include/g.h", "#define GREETING \"hi from C\"\n"),
        (
            "csrc/a.c",
            "#include \"g.h\"\nconst char *fix_a(void) { return GREETING; }\n",
        ),
        ("csrc/b.c", "int fix_b(int x) { return x * 2; }\n"),
        (
            "src/main.rs",
            "use std::ffi::CStr;\nextern \"C\" { fn fix_a() -> *const std::os::raw::c_char; \
             fn fix_b(x: i32) -> i32; }\nfn main() { unsafe { println!(\"{} {}\", \
             CStr::from_ptr(fix_a()).to_str().unwrap(), fix_b(21)); } }\n",
        ),
    ];
    for (rel, text) in files {
        p.write(&format!("ccws/{rel}"), text);
    }
    let kache = kache_bin_under_test();
    let kache_dir = kache.parent().expect("bin dir").to_owned();
    let cargo = support::cargo_program();
    let run_with = |wrapper: &str, extra_path: Option<&Path>, extra: &[&str]| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["run", "--offline", "-q"])
            .args(extra)
            .current_dir(&ws);
        clean_env(&mut cmd);
        cmd.env("RUSTC_WRAPPER", wrapper)
            .env("KACHE_DIR", &p.cache)
            .env("KACHE_CONFIG", "/dev/null")
            .env("CARGO_INCREMENTAL", "0");
        if let Some(dir) = extra_path {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![dir.to_owned()];
            dirs.extend(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(dirs).expect("PATH"));
        }
        let o = cmd.output().expect("cargo");
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let run = |wrapper: &str, extra_path: Option<&Path>| run_with(wrapper, extra_path, &[]);
    let c_results = |p: &CProject| -> Vec<(String, Outcome)> {
        let mut r: Vec<(String, Outcome)> = support::events(&p.cache)
            .into_iter()
            .filter(|e| e.compiler == Compiler::C)
            .map(|e| (support::crate_name(&e).to_owned(), e.result))
            .collect();
        // By source file, then in log order: a file's miss comes before its hit.
        r.sort_by(|a, b| a.0.cmp(&b.0));
        r
    };
    assert_eq!(run(kache.to_str().expect("utf-8"), None), "hi from C 42\n");
    let c = |name: &str, outcome| (name.to_owned(), outcome);
    assert_eq!(
        c_results(&p),
        [c("a.c", Outcome::Miss), c("b.c", Outcome::Miss)]
    );
    fs::remove_dir_all(ws.join("target")).expect("rm target");
    assert_eq!(run("kache", Some(&kache_dir)), "hi from C 42\n");
    assert_eq!(
        c_results(&p),
        [
            c("a.c", Outcome::Miss),
            c("a.c", Outcome::LocalHit),
            c("b.c", Outcome::Miss),
            c("b.c", Outcome::LocalHit)
        ]
    );

    // A profile change (cc passes other flags) misses; back, both profiles hit.
    let abs = kache.to_str().expect("utf-8");
    let mut log = EventCursor::new(&p.cache);
    let c_of = |events: Vec<BuildEvent>| -> Vec<Outcome> {
        events
            .iter()
            .filter(|e| e.compiler == Compiler::C)
            .map(|e| e.result)
            .collect()
    };
    assert_eq!(run_with(abs, None, &["--release"]), "hi from C 42\n");
    assert_eq!(c_of(log.take()), [Outcome::Miss, Outcome::Miss]);
    fs::remove_dir_all(ws.join("target")).expect("rm target");
    assert_eq!(run(abs, None), "hi from C 42\n");
    assert_eq!(run_with(abs, None, &["--release"]), "hi from C 42\n");
    assert_eq!(c_of(log.take()), [Outcome::LocalHit; 4]);
}

/// C entries travel through S3 like rustc's: machine A compiles and pushes, machine B (an
/// empty cache) gets a remote hit with the same object, without running the compiler.
#[test]
fn c_entries_are_shared_through_s3() {
    let server = support_s3::MotoServer::start("kache-cc-e2e");
    let remote = server.kache_env();
    let mut p = CProject::new();
    fs::create_dir_all(p.path("out")).expect("mkdir");
    let args = ["-O1", "-Iinc2", "-c", "src/main.c", "-o", "out/main.o"];
    let env_a: Vec<(&str, &str)> = remote.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = p.kache(&args, &env_a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(p.results(), [Outcome::Miss]);
    let built = fs::read(p.path("out/main.o")).expect("object");

    let mut push = Command::new(kache_bin_under_test());
    push.args(["sync", "--push", "--json"]);
    clean_env(&mut push);
    push.env("KACHE_DIR", &p.cache)
        .env("KACHE_CONFIG", "/dev/null");
    for (k, v) in &remote {
        push.env(k, v);
    }
    let out = push.output().expect("kache sync --push");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["push"]["failed"], 0, "{report}");
    assert_eq!(report["push"]["remaining"], 0, "{report}");

    let cache_b = p.path("machine-b-cache");
    fs::create_dir_all(&cache_b).expect("mkdir");
    fs::remove_file(p.path("out/main.o")).expect("rm");
    let mut env_b = env_a.clone();
    let cache_b_s = cache_b.to_str().expect("utf-8").to_owned();
    env_b.push(("KACHE_DIR", &cache_b_s));
    // Below what the fetched entry takes: the remote hit must start a gc, as rustc's does.
    env_b.push(("KACHE_MAX_SIZE", "1"));
    let o = p.kache(&args, &env_b);
    assert!(o.status.success(), "{}", stderr(&o));
    let events = support::events(&cache_b);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].result, Outcome::RemoteHit, "{:?}", events[0]);
    assert_eq!(events[0].compiler_runs, 0);
    assert_eq!(fs::read(p.path("out/main.o")).expect("object"), built);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stats = support::kache_command(&cache_b, &["stats", "--json"]);
        let stats: Value = serde_json::from_slice(&stats.stdout).expect("stats JSON");
        if stats["store"]["size"] == 0 && !support::auto_gc_running(&cache_b) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no gc after a remote hit past the limit: {stats}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
