//! The C/C++ pipeline: `kache cc … -c x.c -o x.o`, as the `cc` crate runs it from build
//! scripts when `RUSTC_WRAPPER` is kache (or as `CC="kache cc"`).
//!
//! parse ([`args`]) → key ([`key`]) → lookup of direct-mode manifests through the stat cache →
//! restore (hit: the compiler and its preprocessor never run), or compile with `-MD -MF <tmp>`
//! added → record what it read ([`record`]) → store (miss). Entries, blobs, manifests, events
//! and the remote are the rustc pipeline's own, so `gc`, `verify`, `list`, `stats` and S3
//! sharing treat C entries like any other. Objects are restored by reflink or copy, never
//! hardlinked: a later plain compile or `ar` must not write through into a blob.
//!
//! Every fault here runs the compiler exactly as given, and its stdout passes through byte for
//! byte. This file is glue; it must not parse arguments or decide what is keyed.

pub(crate) mod args;
pub(crate) mod key;
pub(crate) mod record;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use self::args::{CcArgs, CcPassthrough};
use self::key::{CcKeyError, CcKeyInputs, CompilerInfo};
use self::record::RecordInputs;
use crate::compile;
use crate::config::Config;
use crate::events::Outcome;
use crate::frontend::{self, Done, Fault, Front, Hit, Kept, Ran, Stored, Trace, io_fault, ms};
use crate::fsutil;
use crate::invocation::Invocation;
use crate::key::KeyField;
use crate::key::invocation_key::resolve_program;
use crate::key::manifest::Manifest;
use crate::key::roots::{Roots, Spelling};
use crate::restore;
use crate::store::{Entry, StatCache, Store, StoredOutput};

/// Runs one C/C++ compiler invocation through the cache. Returns what it learned, what it
/// came to (for [`Trace::record`]) and the exit code. `crate_version` is the package's, for
/// a stored entry.
pub(crate) fn run(
    inv: &Invocation,
    config: &Config,
    crate_version: Option<String>,
) -> (Trace, Done, i32) {
    let mut c = CcRun {
        inv,
        config,
        crate_version,
        trace: Trace::default(),
    };
    let steps = c.cached();
    let (done, code) = frontend::conclude(inv, c.trace.ran, &config.dir, steps, &[]);
    (c.trace, done, code)
}

struct CcRun<'a> {
    inv: &'a Invocation,
    config: &'a Config,
    crate_version: Option<String>,
    trace: Trace,
}

/// What lookup and store need once the compile is known to be cacheable.
struct Prepared {
    args: CcArgs,
    cwd: PathBuf,
    out_dir: PathBuf,
    out_name: String,
    roots: Roots,
    remap: bool,
    info: CompilerInfo,
}

impl CcRun<'_> {
    /// parse → key → lookup → restore, or compile → store. A passthrough is returned, not
    /// run.
    fn cached(&mut self) -> Result<Done, Fault> {
        let key_start = Instant::now();
        let cwd = std::env::current_dir().map_err(io_fault("current directory"))?;
        let args = match CcArgs::parse(&self.inv.raw_args) {
            Ok(a) => a,
            Err(reason) => return Ok(passthrough(reason)),
        };
        // These make the compiler write a dependency file of its own.
        if ["DEPENDENCIES_OUTPUT", "SUNPRO_DEPENDENCIES"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
        {
            return Ok(passthrough(CcPassthrough::DependencyFlags));
        }
        self.trace.crate_name = Some(
            Path::new(&args.source)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        self.trace.crate_types = vec![args.lang.name().to_owned()];
        let store = Store::open(&self.config.dir)?;
        let called_as = self.inv.compiler_chain[0].clone();
        let path_var = std::env::var("PATH").ok();
        let resolved = resolve_program(&called_as, &cwd, path_var.as_deref())
            .and_then(|p| p.canonicalize().ok())
            .ok_or_else(|| CcKeyError::NoCompiler(called_as.clone()))?;
        let info = key::compiler_info(&resolved, store.dir())?;
        let output = cwd.join(&args.output);
        let (Some(out_dir), Some(out_name)) = (
            output.parent().map(Path::to_owned),
            output.file_name().map(|n| n.to_string_lossy().into_owned()),
        ) else {
            return Ok(passthrough(CcPassthrough::NoOutput));
        };
        if std::fs::symlink_metadata(&output).is_ok_and(|m| !m.file_type().is_file()) {
            return Ok(passthrough(CcPassthrough::OutputNotAFile));
        }
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
        // A build script's compiles write under its OUT_DIR, whose place in cargo's layout
        // names the target dir; objects elsewhere root at their own dir.
        let script_out = std::env::var_os("OUT_DIR")
            .map(PathBuf::from)
            .filter(|d| out_dir.starts_with(d))
            .unwrap_or_else(|| out_dir.clone());
        let triple = std::env::var("TARGET").ok();
        let roots =
            Roots::for_script_run(&cwd, &script_out, triple.as_deref(), cargo_home.as_deref());
        // The assembler does not take every prefix map gcc does, so assembly keys its paths
        // as they are (no relocation hits) rather than risk an object naming another checkout.
        let remap = info.prefix_map && !args.lang.is_assembly();
        let env = key::keyed_vars(std::env::vars(), &self.config.key_env_vars);
        let assembler = resolve_program(Path::new(&info.assembler), &cwd, path_var.as_deref())
            .and_then(|p| p.canonicalize().ok());
        let mut stat = StatCache::new(store.conn());
        let (inv_key, key_fields) = key::invocation_key(
            &CcKeyInputs {
                args: &args,
                called_as: &called_as,
                resolved: &resolved,
                info: &info,
                remap: remap.then_some(&roots),
                cwd: &compile_dir(&cwd),
                env: &env,
                assembler: assembler.as_deref(),
            },
            &mut stat,
        )?;
        self.trace.key_ms = ms(key_start.elapsed());
        let p = Prepared {
            args,
            cwd,
            out_dir,
            out_name,
            roots,
            remap,
            info,
        };

        let mut matches = frontend::matches_here(&p.roots, &p.cwd);
        let mut restore = |entry, outcome, stat: &mut StatCache, warning: &mut _| {
            restore_hit(&store, stat, &p, entry, outcome, warning)
        };
        // System headers sit in the compiler's own include dirs, under no root.
        let system_dirs: Vec<String> = (p.info.system_dirs.iter())
            .flat_map(|(_, dirs)| dirs.iter().cloned())
            .collect();
        let lookup = frontend::Lookup {
            config: self.config,
            store: &store,
            inv_key: &inv_key,
            system_dirs: &system_dirs,
            front: Front::Compile,
        };
        let looked = frontend::lookup(
            &lookup,
            &mut stat,
            &mut matches,
            &mut restore,
            &mut self.trace.seen,
        );
        let (hit, remote) = looked?;
        if let Some(hit) = hit {
            return Ok(Done::Hit(hit));
        }
        let kept = self.compile_and_store(&store, &mut stat, &p, &inv_key, key_fields)?;
        if let Kept::Stored(s) = &kept {
            frontend::queue_upload(remote.as_ref(), store.dir(), &s.entry_key, &inv_key);
        }
        Ok(Done::Ran(kept))
    }

    /// Runs the compiler (recorded in the trace) and stores its object, unless it failed or
    /// what it did cannot be replayed.
    fn compile_and_store(
        &mut self,
        store: &Store,
        stat: &mut StatCache,
        p: &Prepared,
        inv_key: &str,
        key_fields: Vec<KeyField>,
    ) -> Result<Kept, Fault> {
        let output = p.out_dir.join(&p.out_name);
        // The compiler must never write through a link into a blob.
        restore::remove_if_present(&output).map_err(io_fault(format!(
            "removing old output {}",
            output.display()
        )))?;
        // Next to the object, not in the store: the compiler can write there (it must write
        // the object), while a read-only store would make the compile itself fail.
        let depfile = p.out_dir.join(format!(
            ".{}.kache-{}-{:x}.d",
            p.out_name,
            std::process::id(),
            fsutil::unique_suffix()
        ));
        let mut compile_args: Vec<OsString> = Vec::new();
        if p.remap {
            // Ours first: the user's own maps come later and win (the last match wins).
            // Roots come longest first; the longest must be last to win where they nest.
            let roots: Vec<_> = p.roots.iter().collect();
            compile_args.extend(
                roots.iter().rev().map(|r| {
                    OsString::from(format!("-ffile-prefix-map={}={}", r.path, r.remap_to))
                }),
            );
        }
        compile_args.extend(self.inv.raw_args.iter().cloned());
        compile_args.extend(["-MD".into(), "-MF".into(), depfile.clone().into_os_string()]);
        let compile_start = SystemTime::now();
        let compiled = compile::run_captured(&self.inv.compiler_chain, &compile_args)
            .map_err(io_fault(format!("running {}", self.inv.rustc().display())))?;
        self.trace.ran = Some(Ran {
            exit_code: compiled.exit_code,
            compile_ms: ms(compiled.elapsed),
        });
        let depfile_text = std::fs::read_to_string(&depfile);
        let _ = std::fs::remove_file(&depfile);
        if compiled.exit_code != 0 {
            return Ok(Kept::Not);
        }
        let crate_name = self.trace.crate_name.clone().unwrap_or_default();
        crate::testhook::crash_point("after_compile", &crate_name);
        // A hit replays the output as text; output that is not must not come back altered.
        if std::str::from_utf8(&compiled.stdout).is_err()
            || std::str::from_utf8(&compiled.stderr).is_err()
        {
            return Ok(Kept::NotStored("not_stored (output not UTF-8)".into()));
        }
        let store_start = Instant::now();
        let depfile_text = match depfile_text {
            Ok(t) => t,
            // `.s` is not preprocessed: the compiler writes no depfile, and the source is the
            // only input it reports (`.include`/`.incbin` are refused by `record`).
            Err(_) if p.args.lang == args::Lang::Asm => {
                format!("x.o: {}\n", p.args.source.replace(' ', "\\ "))
            }
            Err(e) => return Err(io_fault("reading the compiler's depfile")(e)),
        };
        let env = |name: &str| std::env::var(name).ok();
        let recorded = record::record(
            &depfile_text,
            &RecordInputs {
                args: &p.args,
                cwd: &p.cwd,
                roots: &p.roots,
                info: &p.info,
                env: &env,
                compile_start,
            },
            stat,
        )
        .map_err(io_fault("recording the compile's inputs"))?;
        let manifest: Manifest = match recorded {
            Ok(m) => m,
            Err(why) => {
                tracing::debug!("not storing: {why}");
                return Ok(Kept::NotStored(format!("not_stored ({why})")));
            }
        };
        let meta = std::fs::metadata(&output)
            .map_err(io_fault(format!("reading {}", output.display())))?;
        let (blob, size) = store.ingest_blob(&output, false)?;
        crate::testhook::crash_point("after_blob", &crate_name);
        let _ = stat.record_trusted(&output, &blob);
        let _ = stat.record_trusted(&store.blob_path(&blob), &blob);
        use std::os::unix::fs::PermissionsExt;
        let entry = Entry {
            key: manifest.entry_key(inv_key),
            invocation_key: inv_key.to_owned(),
            crate_name: crate_name.clone(),
            crate_version: self.crate_version.clone(),
            crate_types: self.trace.crate_types.clone(),
            outputs: vec![StoredOutput {
                name: p.out_name.clone(),
                blob,
                mode: meta.permissions().mode(),
                size,
            }],
            stdout: template(&p.roots, &compiled.stdout),
            stderr: template(&p.roots, &compiled.stderr),
            depinfo: None,
            compile_ms: ms(compiled.elapsed),
            key_fields,
        };
        crate::testhook::crash_point("before_commit", &crate_name);
        store.commit_entry(&entry, &manifest, stat)?;
        crate::testhook::crash_point("after_commit", &crate_name);
        crate::store::maintenance::maybe_start_background_gc(store, self.config.max_size);
        Ok(Kept::Stored(Stored {
            entry_key: entry.key.clone(),
            size: entry.size(),
            store_ms: ms(store_start.elapsed()),
        }))
    }
}

fn passthrough(reason: CcPassthrough) -> Done {
    Done::Passthrough(reason.to_string())
}

/// Puts the stored object at this invocation's `-o` and replays the compiler's output.
/// `None` when the entry turned out unusable (it is dropped, and the compile runs).
fn restore_hit(
    store: &Store,
    stat: &mut StatCache,
    p: &Prepared,
    mut entry: Entry,
    outcome: Outcome,
    warning: &mut Option<String>,
) -> Result<Option<Hit>, Fault> {
    // The output path is not keyed: the object goes where this command asks for it.
    let [output] = entry.outputs.as_mut_slice() else {
        tracing::debug!("C entry {} has other than one output", entry.key);
        return Ok(None);
    };
    output.name = p.out_name.clone();
    let (Some(stdout), Some(stderr)) = (
        p.roots
            .fill(&String::from_utf8_lossy(&entry.stdout), Spelling::Plain),
        p.roots
            .fill(&String::from_utf8_lossy(&entry.stderr), Spelling::Plain),
    ) else {
        return Ok(None);
    };
    let restore_start = Instant::now();
    let expected = restore::Expected {
        outputs: std::slice::from_ref(&p.out_name),
        depinfo: "",
        links: None,
    };
    let stats = match restore::restore_entry(store, &entry, &p.out_dir, expected, &p.roots, stat) {
        Ok(s) => s,
        Err(e) => {
            // Self-healing: a damaged entry is dropped and the compile runs.
            frontend::drop_unrestorable(store, &entry.key, e, Front::Compile, warning)?;
            return Ok(None);
        }
    };
    crate::testhook::crash_point("mid_restore", &entry.crate_name);
    let _ = std::io::stdout().write_all(stdout.as_bytes());
    let _ = std::io::stderr().write_all(stderr.as_bytes());
    let restore_ms = ms(restore_start.elapsed());
    if let Err(e) = store.flush_stat_cache(stat) {
        tracing::debug!("cannot update the stat cache: {e}");
    }
    Ok(Some(Hit {
        outcome,
        entry_key: entry.key.clone(),
        compile_ms: entry.compile_ms,
        size: entry.size(),
        linked: stats,
        restore_ms,
    }))
}

/// The directory the compiler records as the compile directory in debug info: `$PWD` when
/// it names the working directory (what gcc's `getpwd` and clang do, so a checkout reached
/// through a symlink is recorded by that spelling), else the working directory.
fn compile_dir(cwd: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    match (std::env::var_os("PWD"), std::fs::metadata(".")) {
        (Some(pwd), Ok(here))
            if Path::new(&pwd).is_absolute()
                && std::fs::metadata(&pwd).is_ok_and(|m| same(&m, &here)) =>
        {
            PathBuf::from(pwd)
        }
        _ => cwd.to_owned(),
    }
}

/// Output replayed on a hit, with this checkout's root paths turned into placeholders
/// (`bytes` is UTF-8: other output is not stored).
fn template(roots: &Roots, bytes: &[u8]) -> Vec<u8> {
    roots
        .template(&String::from_utf8_lossy(bytes), Spelling::Plain)
        .into_owned()
        .into_bytes()
}
