//! `kache explain <crate>`: why did the crate's latest compile miss?
//!
//! Compares what the latest miss was stored under (its key fields and its manifest of source
//! files and env-deps) with the nearest other stored entry of the same crate, and names every
//! field that differs. The differences come from [`crate::key::diff`]; this module says them
//! for people, and [`run`] only gathers the two sides from the event log and the store.

use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;

use super::format;
use crate::config::Config;
use crate::events::{self, BuildEvent, Outcome};
use crate::key::Label;
use crate::key::diff::{
    Change, Difference, Inputs, Part, diff, multiset_minus, option_name, without_unit_hashes,
};
use crate::store::catalog::StoredCompile;

#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    /// The crate, as rustc names it (`serde_json`; `serde-json` works too)
    #[arg(value_name = "CRATE")]
    crate_name: String,
    /// Print the explanation as JSON
    #[arg(long)]
    json: bool,
}

/// `text` broken at spaces into lines of at most `width` characters, each after `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A keyed environment value as recorded (`=value` or `unset`), for people.
fn keyed_env(v: &str) -> String {
    match v.strip_prefix('=') {
        Some(v) => format!("{v:?}"),
        None => "(unset)".to_owned(),
    }
}

fn short(v: &str) -> String {
    format::truncate(v, 60)
}

impl Difference {
    /// A short name for the difference, for lists: `-C extra-filename`, `env OUT_DIR`,
    /// `gen.rs`.
    pub(crate) fn label(&self) -> String {
        match self.part {
            Part::File => self
                .name
                .rsplit('/')
                .next()
                .unwrap_or(&self.name)
                .to_owned(),
            Part::EnvDep => format!("env {} (read by the crate)", self.name),
            Part::Field => match (&self.label, &self.change) {
                (Some(Label::Arg(flag)), Change::Changed { from, .. }) if flag == "-C" => {
                    format!("-C {}", option_name(from))
                }
                (Some(Label::Arg(flag)), _) => flag.clone(),
                _ => self.name.clone(),
            },
        }
    }

    /// One line for people, e.g. `env FOO: "a" → "b"` or `src/lib.rs: content changed`.
    pub(crate) fn describe(&self) -> String {
        use Change::*;
        let name = &self.name;
        match (self.part, &self.change) {
            (Part::File, Changed { .. }) => format!("{name}: content changed"),
            (Part::File, Moved { .. }) => {
                format!("{name}: same content as before, at a path with a new unit hash")
            }
            (Part::File, Added { .. }) => format!("{name}: read now, not before"),
            (Part::File, Removed { .. }) => format!("{name}: no longer read"),
            (Part::EnvDep, Changed { from, to }) => {
                format!(
                    "env {name} (read by the crate): {} → {}",
                    short(from),
                    short(to)
                )
            }
            (Part::EnvDep, Added { value }) => {
                format!("env {name} read now, not before (value {})", short(value))
            }
            (Part::EnvDep, Removed { .. }) => format!("env {name}: no longer read"),
            (Part::EnvDep, Moved { from, to }) => format!("env {name}: {from} → {to}"),
            (Part::Field, change) => match &self.label {
                Some(label) => describe_field(label, change),
                None => describe_field(&Label::Named(name.clone()), change),
            },
        }
    }
}

fn describe_field(label: &Label, change: &Change) -> String {
    use Change::*;
    if let Label::Env(var) = label {
        // Only set variables are keyed (besides the user's extra list), so a variable
        // missing on one side was unset there.
        let (from, to) = match change {
            Changed { from, to } | Moved { from, to } => (from.as_str(), to.as_str()),
            Added { value } => ("unset", value.as_str()),
            Removed { value } => (value.as_str(), "unset"),
        };
        if let Some(sep) = match var.as_str() {
            "RUSTFLAGS" => Some(' '),
            "CARGO_ENCODED_RUSTFLAGS" => Some('\u{1f}'),
            _ => None,
        } {
            let words = |v: &str| -> Vec<String> {
                v.strip_prefix('=')
                    .unwrap_or_default()
                    .split(sep)
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            let (a, b) = (words(from), words(to));
            let (added, removed) = (multiset_minus(&b, &a), multiset_minus(&a, &b));
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("`{}` added", added.join(" ")));
            }
            if !removed.is_empty() {
                parts.push(format!("`{}` removed", removed.join(" ")));
            }
            if parts.is_empty() {
                parts.push(format!("{} → {}", keyed_env(from), keyed_env(to)));
            }
            return format!("{var} changed: {}", parts.join(", "));
        }
        return match change {
            // Keyed as unset on one side only: the variable joined or left the key
            // (`KACHE_KEY_ENV_VARS`).
            Added { .. } if from == to => format!("env {var} is now keyed (unset)"),
            Removed { .. } if from == to => format!("env {var} is no longer keyed"),
            _ => format!(
                "env {var}: {} → {}",
                short(&keyed_env(from)),
                short(&keyed_env(to))
            ),
        };
    }
    if let Label::Extern(dep) = label {
        return match change {
            Changed { from, to } | Moved { from, to } => {
                // `<path> <content hash>`: the same path (up to cargo's unit hash) means the
                // dependency was rebuilt with other inputs.
                let path = |v: &str| v.rsplit_once(' ').map(|(p, _)| p.to_owned());
                let unhashed = |v: &str| path(v).map(|p| without_unit_hashes(&p));
                if unhashed(from) == unhashed(to) {
                    format!("dependency {dep} changed (its compiled output differs)")
                } else {
                    format!(
                        "dependency {dep}: {} → {}",
                        short(&path(from).unwrap_or_else(|| from.clone())),
                        short(&path(to).unwrap_or_else(|| to.clone()))
                    )
                }
            }
            Added { .. } => format!("dependency {dep} added"),
            Removed { .. } => format!("dependency {dep} removed"),
        };
    }
    let name = match label {
        Label::Named(name) => name.as_str(),
        _ => "",
    };
    let what = match label {
        Label::Arg(flag) => flag.clone(),
        Label::Named(_) => match name {
            "cfg" => "--cfg".to_owned(),
            "check-cfg" => "--check-cfg".to_owned(),
            "emit" => "--emit".to_owned(),
            "input" => "input file".to_owned(),
            "clippy-conf" => "clippy configuration".to_owned(),
            other => other.to_owned(),
        },
        other => other.to_string(),
    };
    match (name, change) {
        (
            "toolchain" | "rustc-release" | "linker" | "driver" | "target-json" | "clippy-conf",
            Changed { .. },
        ) => {
            format!("{what} changed")
        }
        // Incremental and non-incremental compiles make other bytes (KACHE_INCREMENTAL=cache).
        ("incremental", Added { .. }) => {
            "compiled with -C incremental, the stored entry without".to_owned()
        }
        ("incremental", Removed { .. }) => {
            "compiled without -C incremental, the stored entry with".to_owned()
        }
        (_, Changed { from, to } | Moved { from, to }) => {
            format!("{what}: `{}` → `{}`", short(from), short(to))
        }
        (_, Added { value }) => format!("{what} `{}` added", short(value)),
        (_, Removed { value }) => format!("{what} `{}` removed", short(value)),
    }
}

/// The whole answer, as `--json` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct Explanation {
    pub crate_name: String,
    /// The crate's newest event in the log, if any.
    pub latest_result: Option<Outcome>,
    pub passthrough_reason: Option<String>,
    /// The warning kache printed on that event, when it degraded to a plain compile.
    pub warning: Option<String>,
    /// The compile explained: the latest miss that was stored (else the newest entry).
    pub explained: Option<EntryInfo>,
    /// The stored entry it is compared with.
    pub nearest: Option<EntryInfo>,
    pub differences: Vec<Described>,
}

#[derive(Debug, Serialize)]
pub(crate) struct EntryInfo {
    pub key: String,
    pub crate_version: Option<String>,
    pub crate_types: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    pub last_used: i64,
    pub hits: u64,
    pub compile_ms: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Described {
    #[serde(flatten)]
    pub difference: Difference,
    pub summary: String,
}

fn info(c: &StoredCompile) -> EntryInfo {
    EntryInfo {
        key: c.entry.key.clone(),
        crate_version: c.entry.crate_version.clone(),
        crate_types: c.entry.crate_types.clone(),
        created: c.created,
        last_used: c.last_used,
        hits: c.hits,
        compile_ms: c.entry.compile_ms,
    }
}

fn inputs(c: &StoredCompile) -> Inputs<'_> {
    Inputs {
        fields: &c.entry.key_fields,
        manifest: c.manifest.as_ref(),
    }
}

pub(crate) fn run(config: &Config, args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let events = events::read_all(&config.dir)
        .with_context(|| format!("reading the event log in {}", config.dir.display()))?;
    let store = super::open_existing(config)?;
    if let Some(store) = &store {
        // Hits are recorded in the event log; fold them in so the counts shown are current.
        store
            .fold_usage(&super::uses(&events))
            .context("folding usage")?;
    }
    let mut name = args.crate_name.clone();
    let known = |n: &str| -> anyhow::Result<bool> {
        let in_log = events.iter().any(|e| e.crate_name.as_deref() == Some(n));
        let stored = match &store {
            Some(s) => !s.crate_compiles(n)?.is_empty(),
            None => false,
        };
        Ok(in_log || stored)
    };
    if !known(&name)? {
        // People type package names; rustc's crate names use `_`.
        let underscored = name.replace('-', "_");
        if underscored != name && known(&underscored)? {
            name = underscored;
        } else {
            let hint = match &store {
                Some(s) => {
                    let similar: Vec<String> = s
                        .crate_names()?
                        .into_iter()
                        .filter(|c| c.contains(&underscored) || underscored.contains(c.as_str()))
                        .take(5)
                        .collect();
                    if similar.is_empty() {
                        " (`kache list` shows what is stored)".to_owned()
                    } else {
                        format!(" (did you mean {}?)", similar.join(", "))
                    }
                }
                None => String::new(),
            };
            bail!(
                "no crate named `{}` in the cache or its event log{hint}",
                args.crate_name
            );
        }
    }
    let compiles = match &store {
        Some(s) => s.crate_compiles(&name)?,
        None => Vec::new(),
    };
    let explanation = explain(&name, &events, &compiles);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print!("{}", render(&explanation, crate::store::now_secs()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Picks the compile to explain and its nearest stored neighbour, and compares them.
pub(crate) fn explain(
    name: &str,
    events: &[BuildEvent],
    compiles: &[StoredCompile],
) -> Explanation {
    let ours: Vec<&BuildEvent> = events
        .iter()
        .filter(|e| e.crate_name.as_deref() == Some(name))
        .collect();
    let latest = ours.last();
    // The newest miss whose entry is still stored; else the newest stored entry.
    let explained = ours
        .iter()
        .rev()
        .filter(|e| e.result == Outcome::Miss)
        .find_map(|e| {
            let key = e.cache_key.as_deref()?;
            compiles.iter().find(|c| c.entry.key == key)
        })
        .or(compiles.first());
    let nearest = explained.and_then(|target| {
        compiles
            .iter()
            .filter(|c| c.entry.key != target.entry.key)
            .min_by_key(|c| diff(inputs(c), inputs(target)).len())
    });
    let differences = match (explained, nearest) {
        (Some(t), Some(n)) => diff(inputs(n), inputs(t))
            .into_iter()
            .map(|d| Described {
                summary: d.describe(),
                difference: d,
            })
            .collect(),
        _ => Vec::new(),
    };
    Explanation {
        crate_name: name.to_owned(),
        latest_result: latest.map(|e| e.result),
        passthrough_reason: latest.and_then(|e| e.passthrough_reason.clone()),
        warning: latest.and_then(|e| e.warning.clone()),
        explained: explained.map(info),
        nearest: nearest.map(info),
        differences,
    }
}

fn describe_entry(e: &EntryInfo, now: i64) -> String {
    let mut what = e.crate_types.join(", ");
    if what.is_empty() {
        what = "test harness".to_owned();
    }
    format!(
        "{} ({what}), stored {}, compiled in {}, {}",
        e.crate_version.as_deref().unwrap_or("?"),
        format::ago(now - e.created),
        format::duration_ms(e.compile_ms),
        format::count(e.hits, "hit", "hits")
    )
}

pub(crate) fn render(x: &Explanation, now: i64) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let name = &x.crate_name;
    match (x.latest_result, &x.passthrough_reason) {
        (Some(Outcome::Passthrough), reason) => {
            let _ = writeln!(
                o,
                "{name}: its latest invocation was not cached ({})",
                reason.as_deref().unwrap_or("passthrough")
            );
            if reason.as_deref() == Some("incremental") {
                let _ = writeln!(
                    o,
                    "  cargo asked for -C incremental, which KACHE_INCREMENTAL=pass runs uncached;\n  \
                     unset KACHE_INCREMENTAL (its default, cache, caches such compiles)"
                );
            }
        }
        (Some(Outcome::Error), _) => {
            let _ = writeln!(
                o,
                "{name}: kache met a fault on its latest invocation and compiled without\n\
                 the cache: {}",
                x.warning.as_deref().unwrap_or("(no warning recorded)")
            );
        }
        (Some(r), _) if r.is_hit() => {
            let _ = writeln!(o, "{name}: its latest invocation was a hit");
        }
        _ => {}
    }
    let Some(target) = &x.explained else {
        let _ = writeln!(o, "{name}: nothing stored to explain");
        return o;
    };
    let _ = writeln!(o, "{name} {}", describe_entry(target, now));
    let Some(nearest) = &x.nearest else {
        let _ = writeln!(
            o,
            "this is the only stored entry of {name}: nothing earlier to compare with\n\
             (it missed because it was the first compile with these inputs)"
        );
        return o;
    };
    let _ = writeln!(o, "nearest other entry: {}", describe_entry(nearest, now));
    if x.differences.is_empty() {
        let _ = writeln!(
            o,
            "no recorded input differs: the entry was probably evicted or cleared, or\n\
             stored by a concurrent build, when this compile looked for it"
        );
        return o;
    }
    let (causes, derived): (Vec<&Described>, Vec<&Described>) =
        x.differences.iter().partition(|d| !d.difference.derived);
    if !causes.is_empty() {
        let n = causes.len() as u64;
        let _ = writeln!(
            o,
            "{}, why it missed:",
            format::count(n, "difference", "differences")
        );
        for d in &causes {
            let _ = writeln!(o, "  - {}", d.summary);
        }
    }
    if !derived.is_empty() {
        let _ = writeln!(
            o,
            "{}{} only because cargo gave the unit a new hash:",
            if causes.is_empty() { "" } else { "and " },
            format::count(derived.len() as u64, "path differs", "paths differ"),
        );
        let names: Vec<String> = derived.iter().map(|d| d.difference.label()).collect();
        o.push_str(&wrap(&names.join(", "), 76, "  "));
        if causes.is_empty() {
            // Nothing kache keys differs, so the hash changed for a reason only cargo sees.
            o.push_str(&wrap(
                "cargo hashes a package's identity into it: for a path dependency outside \
                 the workspace (`../sibling`, a `[patch]` there) that includes its absolute \
                 path, so moving it gives new symbols; a new cargo or profile does too",
                76,
                "",
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyField;
    use crate::key::manifest::{Manifest, ManifestEnv, ManifestFile};

    fn f(label: &str, value: &str) -> KeyField {
        KeyField {
            label: label.into(),
            value: value.into(),
        }
    }

    fn summaries(old: &[KeyField], new: &[KeyField]) -> Vec<String> {
        diff(
            Inputs {
                fields: old,
                manifest: None,
            },
            Inputs {
                fields: new,
                manifest: None,
            },
        )
        .iter()
        .map(Difference::describe)
        .collect()
    }

    #[test]
    fn incremental_is_named() {
        let off = [f("cfg", "a")];
        let on = [f("cfg", "a"), f("incremental", "on")];
        assert_eq!(
            summaries(&off, &on),
            vec!["compiled with -C incremental, the stored entry without"]
        );
        let passed = Explanation {
            crate_name: "app".into(),
            latest_result: Some(Outcome::Passthrough),
            passthrough_reason: Some("incremental".into()),
            warning: None,
            explained: None,
            nearest: None,
            differences: Vec::new(),
        };
        let text = render(&passed, 0);
        assert!(text.contains("not cached (incremental)"), "{text}");
        assert!(text.contains("KACHE_INCREMENTAL"), "{text}");
    }

    #[test]
    fn identical_inputs_have_no_differences() {
        let fields = [f("arg -C", "opt-level=0"), f("cfg", "a")];
        assert!(summaries(&fields, &fields).is_empty());
    }

    #[test]
    fn rustflags_and_cfg() {
        let old = [f("cfg", "feature=\"a\"")];
        let new = [
            f("cfg", "feature=\"a\""),
            f("cfg", "foo"),
            f("env RUSTFLAGS", "=--cfg foo"),
        ];
        assert_eq!(
            summaries(&old, &new),
            vec!["RUSTFLAGS changed: `--cfg foo` added", "--cfg `foo` added"]
        );
    }

    #[test]
    fn repeated_options_pair_by_name() {
        let old = [
            f("arg -C", "opt-level=0"),
            f("arg -C", "embed-bitcode=no"),
            f("arg -C", "debuginfo=2"),
        ];
        let new = [
            f("arg -C", "embed-bitcode=no"),
            f("arg -C", "opt-level=3"),
            f("arg -C", "strip=symbols"),
        ];
        assert_eq!(
            summaries(&old, &new),
            vec![
                "-C: `opt-level=0` → `opt-level=3`",
                "-C `debuginfo=2` removed",
                "-C `strip=symbols` added"
            ]
        );
    }

    #[test]
    fn env_and_dependencies() {
        let old = [
            f("env FOO", "=a"),
            f("extern itoa", "${target}/debug/deps/libitoa-1.rmeta h1"),
        ];
        let new = [
            f("env FOO", "=b"),
            f("extern itoa", "${target}/debug/deps/libitoa-1.rmeta h2"),
            f("env BAR", "unset"),
        ];
        assert_eq!(
            summaries(&old, &new),
            vec![
                "env FOO: \"a\" → \"b\"",
                "env BAR is now keyed (unset)",
                "dependency itoa changed (its compiled output differs)",
            ]
        );
    }

    #[test]
    fn unit_hash_changes_are_derived() {
        assert_eq!(
            without_unit_hashes("${out}/libitoa-d62e748016f8bd79.rmeta metadata=0123456789abcdef"),
            "${out}/libitoa-#.rmeta metadata=#"
        );
        let content = "0123456789abcdef0123456789abcdef";
        assert_eq!(without_unit_hashes(content), content, "longer runs stay");
        let old = [
            f("arg -C", "extra-filename=-31c727794fbb6823"),
            f("env OUT_DIR", "=${target}/build/core-a9151bf21c1a692e/out"),
        ];
        let new = [
            f("arg -C", "extra-filename=-c4079a95db1cfc03"),
            f("env OUT_DIR", "=${target}/build/core-44262da262a9b9b1/out"),
            f("cfg", "fixture_flag"),
        ];
        let got = diff(
            Inputs {
                fields: &old,
                manifest: None,
            },
            Inputs {
                fields: &new,
                manifest: None,
            },
        );
        let flags: Vec<(String, bool)> = got.iter().map(|d| (d.name.clone(), d.derived)).collect();
        assert_eq!(
            flags,
            vec![
                ("cfg".to_string(), false),
                ("env OUT_DIR".to_string(), true),
                ("arg -C".to_string(), true),
            ]
        );
        // A generated file read from the new OUT_DIR: moved when alike, changed when not.
        let manifest = |dir: &str, hash: &str| Manifest {
            files: vec![ManifestFile {
                path: format!("${{target}}/build/core-{dir}/out/gen.rs"),
                hash: hash.into(),
            }],
            env: Vec::new(),
        };
        let (a, b, c) = (
            manifest("a9151bf21c1a692e", "h1"),
            manifest("44262da262a9b9b1", "h1"),
            manifest("44262da262a9b9b1", "h2"),
        );
        let one = |x: &Manifest, y: &Manifest| {
            diff(
                Inputs {
                    fields: &[],
                    manifest: Some(x),
                },
                Inputs {
                    fields: &[],
                    manifest: Some(y),
                },
            )
        };
        let moved = one(&a, &b);
        assert_eq!(moved.len(), 1);
        assert!(moved[0].derived && matches!(moved[0].change, Change::Moved { .. }));
        let changed = one(&a, &c);
        assert_eq!(changed.len(), 1);
        assert!(!changed[0].derived);
        assert!(changed[0].describe().ends_with("gen.rs: content changed"));
    }

    #[test]
    fn manifest_files_and_env_deps() {
        let manifest = |hash: &str, greeting: Option<&str>, extra: bool| {
            let mut files = vec![ManifestFile {
                path: "src/lib.rs".into(),
                hash: hash.into(),
            }];
            if extra {
                files.push(ManifestFile {
                    path: "src/new.rs".into(),
                    hash: "x".into(),
                });
            }
            Manifest {
                files,
                env: vec![ManifestEnv {
                    name: "GREETING".into(),
                    value: greeting.map(str::to_owned),
                    absolute: false,
                }],
            }
        };
        let (a, b) = (
            manifest("h1", Some("hi"), false),
            manifest("h2", None, true),
        );
        let got: Vec<String> = diff(
            Inputs {
                fields: &[],
                manifest: Some(&a),
            },
            Inputs {
                fields: &[],
                manifest: Some(&b),
            },
        )
        .iter()
        .map(Difference::describe)
        .collect();
        assert_eq!(
            got,
            vec![
                "src/lib.rs: content changed",
                "src/new.rs: read now, not before",
                "env GREETING (read by the crate): \"hi\" → (unset)",
            ]
        );
    }
}
