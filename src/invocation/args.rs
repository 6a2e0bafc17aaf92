//! rustc's command line, parsed once into what the rest of kache needs.
//!
//! Every argument keeps its position (`ArgItem::span`) so the compile step can drop or add
//! flags without re-spelling the ones it leaves alone. This module only reads argfiles; it does
//! not look at any other file.

use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::PassthroughReason;

/// One option or positional argument, in rustc's own spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgItem {
    /// Canonical flag name (`--cfg`, `-C`, ...), or `""` for a positional argument.
    pub flag: String,
    pub value: Option<String>,
    /// Token positions in [`RustcArgs::tokens`].
    pub span: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EmitKind {
    Link,
    Metadata,
    DepInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Emit {
    pub kind: EmitKind,
    /// `--emit=kind=PATH`.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extern {
    pub name: String,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NativeLib {
    /// `static`, `dylib`, `framework`, or empty when unspecified.
    pub kind: String,
    pub name: String,
}

/// The parsed command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct RustcArgs {
    /// All arguments, argfiles expanded.
    pub tokens: Vec<String>,
    pub items: Vec<ArgItem>,
    pub crate_name: Option<String>,
    pub crate_types: Vec<String>,
    pub input: Option<String>,
    pub emits: Vec<Emit>,
    pub out_dir: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub target: Option<String>,
    pub externs: Vec<Extern>,
    /// `-L [kind=]path`.
    pub search_paths: Vec<(String, PathBuf)>,
    pub native_libs: Vec<NativeLib>,
    /// `-C key[=value]`.
    pub codegen: Vec<(String, Option<String>)>,
    pub is_test: bool,
    pub prints: Vec<String>,
    pub version_probe: bool,
    /// Positions of `-C incremental=…` items: left out of the key, and of the compile with
    /// `KACHE_INCREMENTAL=strip`.
    pub incremental_items: Vec<usize>,
}

/// Flags that take a value, in their short and long spellings.
const VALUE_FLAGS: &[&str] = &[
    "-C",
    "-L",
    "-l",
    "-o",
    "-A",
    "-W",
    "-D",
    "-F",
    "-Z",
    "--cfg",
    "--check-cfg",
    "--crate-type",
    "--crate-name",
    "--edition",
    "--emit",
    "--print",
    "--out-dir",
    "--explain",
    "--target",
    "--cap-lints",
    "--extern",
    "--sysroot",
    "--error-format",
    "--json",
    "--color",
    "--diagnostic-width",
    "--remap-path-prefix",
    "--remap-path-scope",
    "--env-set",
    "--codegen",
    "--force-warn",
    "--allow",
    "--warn",
    "--deny",
    "--forbid",
    "--extern-location",
    "--crate-attr",
];

impl RustcArgs {
    /// Parses rustc's arguments. `cwd` resolves relative `@argfile`s.
    pub(crate) fn parse(raw: &[OsString], cwd: &Path) -> Result<Self, PassthroughReason> {
        let mut tokens = Vec::with_capacity(raw.len());
        for arg in raw {
            let s = arg.to_str().ok_or(PassthroughReason::NonUtf8Argument)?;
            match s.strip_prefix('@') {
                Some(file) if !file.is_empty() => {
                    let text = std::fs::read_to_string(cwd.join(file))
                        .map_err(|_| PassthroughReason::UnreadableArgfile)?;
                    tokens.extend(text.lines().map(str::to_owned));
                }
                _ => tokens.push(s.to_owned()),
            }
        }
        let mut args = RustcArgs {
            tokens,
            ..Self::default()
        };
        args.split_items();
        args.interpret()?;
        Ok(args)
    }

    fn split_items(&mut self) {
        let mut i = 0;
        while i < self.tokens.len() {
            let tok = &self.tokens[i];
            let start = i;
            i += 1;
            let (flag, value) = if let Some(long) = tok.strip_prefix("--") {
                match long.split_once('=') {
                    Some((name, v)) => (format!("--{name}"), Some(v.to_owned())),
                    None if VALUE_FLAGS.contains(&tok.as_str()) && i < self.tokens.len() => {
                        i += 1;
                        (tok.clone(), Some(self.tokens[i - 1].clone()))
                    }
                    None => (tok.clone(), None),
                }
            } else if tok.len() >= 2 && tok.starts_with('-') {
                let short = &tok[..2];
                if VALUE_FLAGS.contains(&short) {
                    if tok.len() > 2 {
                        (short.to_owned(), Some(tok[2..].to_owned()))
                    } else if i < self.tokens.len() {
                        i += 1;
                        (short.to_owned(), Some(self.tokens[i - 1].clone()))
                    } else {
                        (short.to_owned(), None)
                    }
                } else {
                    (tok.clone(), None)
                }
            } else {
                (String::new(), Some(tok.clone()))
            };
            let flag = if flag == "--codegen" {
                "-C".to_owned()
            } else {
                flag
            };
            self.items.push(ArgItem {
                flag,
                value,
                span: start..i,
            });
        }
    }

    fn interpret(&mut self) -> Result<(), PassthroughReason> {
        let mut positionals = 0;
        for (index, item) in self.items.iter().enumerate() {
            let value = item.value.as_deref().unwrap_or_default();
            match item.flag.as_str() {
                "" => {
                    positionals += 1;
                    self.input = Some(value.to_owned());
                }
                "--crate-name" => self.crate_name = Some(value.to_owned()),
                "--crate-type" => self
                    .crate_types
                    .extend(value.split(',').map(|t| t.trim().to_owned())),
                "--emit" => {
                    for part in value.split(',') {
                        let (kind, path) = match part.split_once('=') {
                            Some((k, p)) => (k, Some(PathBuf::from(p))),
                            None => (part, None),
                        };
                        let kind = match kind {
                            "link" => EmitKind::Link,
                            "metadata" => EmitKind::Metadata,
                            "dep-info" => EmitKind::DepInfo,
                            other => {
                                return Err(PassthroughReason::UnsupportedEmit(other.to_owned()));
                            }
                        };
                        self.emits.push(Emit { kind, path });
                    }
                }
                "--out-dir" => self.out_dir = Some(PathBuf::from(value)),
                "-o" => self.output = Some(PathBuf::from(value)),
                "--target" => self.target = Some(value.to_owned()),
                "--test" => self.is_test = true,
                "--print" => self.prints.push(value.to_owned()),
                "-V" | "-vV" | "--version" | "-h" | "--help" | "--explain" => {
                    self.version_probe = true
                }
                "-v" => {}
                "--extern" => {
                    let (name, path) = match value.split_once('=') {
                        Some((n, p)) => (n, Some(PathBuf::from(p))),
                        None => (value, None),
                    };
                    // `--extern priv:name=path` and similar modifiers precede the name.
                    let name = name.rsplit(':').next().unwrap_or(name);
                    self.externs.push(Extern {
                        name: name.to_owned(),
                        path,
                    });
                }
                "-L" => {
                    let (kind, path) = match value.split_once('=') {
                        Some((k, p)) => (k.to_owned(), p),
                        None => ("all".to_owned(), value),
                    };
                    self.search_paths.push((kind, PathBuf::from(path)));
                }
                "-l" => {
                    let (kind, name) = match value.split_once('=') {
                        Some((k, n)) => (k.split(':').next().unwrap_or(k).to_owned(), n),
                        None => (String::new(), value),
                    };
                    // `-l name:rename` links `name`.
                    let name = name.split(':').next().unwrap_or(name);
                    self.native_libs.push(NativeLib {
                        kind,
                        name: name.to_owned(),
                    });
                }
                "-C" => {
                    let (key, v) = match value.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (value.to_owned(), None),
                    };
                    if key == "incremental" {
                        self.incremental_items.push(index);
                    }
                    self.codegen.push((key, v));
                }
                _ => {}
            }
        }
        if positionals > 1 {
            self.input = None;
        }
        Ok(())
    }

    /// Why this invocation cannot be cached, if it cannot; `None` means cacheable.
    /// `cache_incremental` is false with `KACHE_INCREMENTAL=pass`.
    pub(crate) fn passthrough_reason(&self, cache_incremental: bool) -> Option<PassthroughReason> {
        if self.version_probe || !self.prints.is_empty() {
            return Some(PassthroughReason::Probe);
        }
        let input = match self.input.as_deref() {
            None => return Some(PassthroughReason::NoInput),
            Some("-") => return Some(PassthroughReason::StdinInput),
            Some(i) => i,
        };
        debug_assert!(!input.is_empty());
        if !self.incremental_items.is_empty() && !cache_incremental {
            return Some(PassthroughReason::Incremental);
        }
        if self.output.is_some() {
            return Some(PassthroughReason::ExplicitOutput);
        }
        if self.out_dir.is_none() {
            return Some(PassthroughReason::NoOutDir);
        }
        for t in &self.crate_types {
            if !matches!(
                t.as_str(),
                "lib" | "rlib" | "bin" | "dylib" | "cdylib" | "staticlib" | "proc-macro"
            ) {
                return Some(PassthroughReason::UnsupportedCrateType(t.clone()));
            }
        }
        for (key, value) in &self.codegen {
            let v = value.as_deref().unwrap_or_default();
            let unsupported = match key.as_str() {
                "save-temps" => v != "no" && v != "n" && v != "off" && v != "false",
                "split-debuginfo" => v != "off",
                _ => false,
            };
            if unsupported {
                return Some(PassthroughReason::UnsupportedCodegen(format!("{key}={v}")));
            }
        }
        None
    }

    /// The value of `-C key=…` (the last one wins, as in rustc).
    pub(crate) fn codegen_value(&self, key: &str) -> Option<&str> {
        self.codegen
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The crate types, with rustc's default (`bin`) when none is given and `--test` as `bin`.
    pub(crate) fn effective_crate_types(&self) -> Vec<&str> {
        if self.is_test || self.crate_types.is_empty() {
            return vec!["bin"];
        }
        self.crate_types.iter().map(String::as_str).collect()
    }

    /// The emit kinds, with rustc's default (`link`) when none is given.
    pub(crate) fn emit_kinds(&self) -> Vec<EmitKind> {
        if self.emits.is_empty() {
            return vec![EmitKind::Link];
        }
        let mut kinds: Vec<EmitKind> = self.emits.iter().map(|e| e.kind).collect();
        kinds.dedup();
        kinds
    }

    /// Whether the output is produced by a linker (its identity goes in the key).
    pub(crate) fn links(&self) -> bool {
        self.emit_kinds().contains(&EmitKind::Link)
            && self
                .effective_crate_types()
                .iter()
                .any(|t| matches!(*t, "bin" | "dylib" | "cdylib" | "proc-macro"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RustcArgs {
        let raw: Vec<OsString> = args.iter().map(OsString::from).collect();
        RustcArgs::parse(&raw, Path::new("/")).expect("parse")
    }

    const CARGO_LIB: &[&str] = &[
        "--crate-name",
        "foo",
        "--edition=2021",
        "src/lib.rs",
        "--error-format=json",
        "--json=diagnostic-rendered-ansi,artifacts,future-incompat",
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "-C",
        "embed-bitcode=no",
        "-C",
        "debuginfo=2",
        "--cfg",
        "feature=\"default\"",
        "-C",
        "metadata=abc",
        "-C",
        "extra-filename=-abc",
        "--out-dir",
        "/ws/target/debug/deps",
        "-L",
        "dependency=/ws/target/debug/deps",
        "--extern",
        "itoa=/ws/target/debug/deps/libitoa-1.rmeta",
        "-lstatic=add",
        "--cap-lints",
        "allow",
    ];

    #[test]
    fn parses_a_cargo_lib_invocation() {
        let a = parse(CARGO_LIB);
        assert_eq!(a.crate_name.as_deref(), Some("foo"));
        assert_eq!(a.input.as_deref(), Some("src/lib.rs"));
        assert_eq!(a.crate_types, vec!["lib"]);
        assert_eq!(
            a.emit_kinds(),
            vec![EmitKind::DepInfo, EmitKind::Metadata, EmitKind::Link]
        );
        assert_eq!(a.out_dir, Some(PathBuf::from("/ws/target/debug/deps")));
        assert_eq!(a.codegen_value("extra-filename"), Some("-abc"));
        assert_eq!(a.externs[0].name, "itoa");
        assert_eq!(a.search_paths[0].0, "dependency");
        assert_eq!(
            a.native_libs[0],
            NativeLib {
                kind: "static".into(),
                name: "add".into()
            }
        );
        assert!(a.passthrough_reason(true).is_none());
        assert!(!a.links());
    }

    #[test]
    fn spans_cover_every_token() {
        let a = parse(CARGO_LIB);
        let covered: usize = a.items.iter().map(|i| i.span.len()).sum();
        assert_eq!(covered, a.tokens.len());
    }

    #[test]
    fn probes_pass_through() {
        assert_eq!(
            parse(&["-vV"]).passthrough_reason(false),
            Some(PassthroughReason::Probe)
        );
        let p = parse(&["-", "--crate-name", "___", "--print=file-names"]);
        assert_eq!(p.passthrough_reason(false), Some(PassthroughReason::Probe));
        assert_eq!(
            parse(&["-", "--crate-name", "x"]).passthrough_reason(false),
            Some(PassthroughReason::StdinInput)
        );
        assert_eq!(
            parse(&["--crate-name", "x"]).passthrough_reason(false),
            Some(PassthroughReason::NoInput)
        );
    }

    #[test]
    fn unknown_emit_and_incremental_pass_through() {
        let mut v = CARGO_LIB.to_vec();
        v.push("--emit=asm");
        let raw: Vec<OsString> = v.iter().map(OsString::from).collect();
        assert!(matches!(
            RustcArgs::parse(&raw, Path::new("/")),
            Err(PassthroughReason::UnsupportedEmit(k)) if k == "asm"
        ));
        let mut v = CARGO_LIB.to_vec();
        v.extend(["-C", "incremental=/ws/target/debug/incremental"]);
        let a = parse(&v);
        assert_eq!(
            a.passthrough_reason(false),
            Some(PassthroughReason::Incremental)
        );
        assert_eq!(a.passthrough_reason(true), None);
        assert!(parse(CARGO_LIB).passthrough_reason(false).is_none());
        assert_eq!(a.incremental_items.len(), 1);
    }

    #[test]
    fn attached_and_detached_spellings_agree() {
        let a = parse(&["-Copt-level=3", "-Lnative=/x", "--cfg=foo", "x.rs"]);
        let b = parse(&[
            "-C",
            "opt-level=3",
            "-L",
            "native=/x",
            "--cfg",
            "foo",
            "x.rs",
        ]);
        let flags = |r: &RustcArgs| {
            r.items
                .iter()
                .map(|i| (i.flag.clone(), i.value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(flags(&a), flags(&b));
    }

    #[test]
    fn argfile_is_expanded() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("args"), "--crate-name\nfoo\nsrc/lib.rs\n").expect("write");
        let a = RustcArgs::parse(&[OsString::from("@args")], dir.path()).expect("parse");
        assert_eq!(a.crate_name.as_deref(), Some("foo"));
        assert_eq!(a.input.as_deref(), Some("src/lib.rs"));
        let missing = RustcArgs::parse(&[OsString::from("@nope")], dir.path());
        assert!(matches!(missing, Err(PassthroughReason::UnreadableArgfile)));
    }

    #[test]
    fn test_harness_is_a_bin_and_links() {
        let a = parse(&[
            "--test",
            "src/lib.rs",
            "--out-dir",
            "/o",
            "--crate-name",
            "t",
        ]);
        assert_eq!(a.effective_crate_types(), vec!["bin"]);
        assert!(a.links());
    }

    #[test]
    fn split_debuginfo_other_than_off_passes_through() {
        let a = parse(&["x.rs", "--out-dir", "/o", "-C", "split-debuginfo=packed"]);
        assert!(matches!(
            a.passthrough_reason(false),
            Some(PassthroughReason::UnsupportedCodegen(_))
        ));
    }
}
