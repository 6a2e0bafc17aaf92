//! `kache init [--undo]`: make every cargo build use kache by setting `build.rustc-wrapper` in
//! `$CARGO_HOME/config.toml`. The file is edited in place with `toml_edit`, so the user's
//! comments, layout and other settings survive; only our one key is added or removed.
//!
//! [`set_wrapper`] and [`unset_wrapper`] are pure text edits; [`run`] finds and writes the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use toml_edit::{DocumentMut, Item};

#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Remove the setting again (only when it names a kache binary)
    #[arg(long)]
    undo: bool,
    /// Replace another wrapper (such as sccache) already set there
    #[arg(long, conflicts_with = "undo")]
    force: bool,
    /// Also cache C/C++ from build scripts whose `cc` crate does not know kache: set
    /// CC="kache cc", CXX="kache c++" and CC_KNOWN_WRAPPER_CUSTOM=kache in cargo's [env]
    /// (never replacing a CC or CXX already set there; cargo's [env] never overrides a
    /// variable set in the environment)
    #[arg(long)]
    cc: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum InitError {
    #[error("{path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error("`build` in {path} is not a table")]
    BuildNotATable { path: String },
    #[error("`env` in {path} is not a table")]
    EnvNotATable { path: String },
    #[error(
        "build.rustc-wrapper is already set to {current} in {path}; remove it or run `kache init --force` to replace it"
    )]
    OtherWrapper { path: String, current: String },
}

/// What an edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The setting was added (or a kache at another path replaced).
    Set,
    /// It already named this kache; nothing to do.
    AlreadySet,
    /// Another wrapper was replaced (`--force`).
    Replaced(String),
    /// Our setting was removed.
    Removed,
    /// There was nothing of ours to remove; `Some` names another wrapper left in place.
    NotSet(Option<String>),
}

const KEY: &str = "rustc-wrapper";

fn parse(text: &str, path: &str) -> Result<DocumentMut, InitError> {
    text.parse::<DocumentMut>().map_err(|e| InitError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

/// The current `build.rustc-wrapper`, as the string it is, or as TOML when it is not one.
fn current(doc: &DocumentMut, path: &str) -> Result<Option<String>, InitError> {
    match doc.get("build") {
        None => Ok(None),
        Some(build) if build.is_table_like() => Ok(build.get(KEY).map(|v| match v.as_str() {
            Some(s) => s.to_owned(),
            None => v.to_string().trim().to_owned(),
        })),
        Some(_) => Err(InitError::BuildNotATable {
            path: path.to_owned(),
        }),
    }
}

/// cargo's config file and its `build.rustc-wrapper`, if set (for `kache doctor`).
pub(super) fn wrapper_setting() -> anyhow::Result<(PathBuf, Option<String>)> {
    let path = config_path(&cargo_home()?);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((path, None)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let shown = path.display().to_string();
    let value = current(&parse(&text, &shown)?, &shown)?;
    Ok((path, value))
}

/// Whether a wrapper setting names a kache binary (ours, or one installed elsewhere).
pub(super) fn names_kache(value: &str) -> bool {
    is_kache(value)
}

/// Whether a wrapper setting names a kache binary (ours, or one installed elsewhere).
fn is_kache(value: &str) -> bool {
    Path::new(value).file_name().is_some_and(|n| n == "kache")
}

/// Sets `build.rustc-wrapper = wrapper` in the config text `text` (read from `path`, named in
/// errors). Another wrapper is only replaced with `force`.
pub(crate) fn set_wrapper(
    text: &str,
    path: &str,
    wrapper: &str,
    force: bool,
) -> Result<(String, Outcome), InitError> {
    let mut doc = parse(text, path)?;
    let outcome = match current(&doc, path)? {
        Some(c) if c == wrapper => return Ok((text.to_owned(), Outcome::AlreadySet)),
        Some(c) if is_kache(&c) => Outcome::Set,
        Some(c) if force => Outcome::Replaced(c),
        Some(c) => {
            return Err(InitError::OtherWrapper {
                path: path.to_owned(),
                current: c,
            });
        }
        None => Outcome::Set,
    };
    if !doc.contains_key("build") {
        // A `[build]` section at the end, as a person would add it (indexing a missing key
        // would make an inline table at the top instead).
        doc.insert("build", Item::Table(toml_edit::Table::new()));
    }
    // `current` checked that `build` is absent or table-like, so indexing cannot panic.
    doc["build"][KEY] = toml_edit::value(wrapper);
    Ok((doc.to_string(), outcome))
}

/// Removes `build.rustc-wrapper` when it names a kache binary; an emptied `[build]` table
/// goes too, unless a comment sits on it.
pub(crate) fn unset_wrapper(text: &str, path: &str) -> Result<(String, Outcome), InitError> {
    let mut doc = parse(text, path)?;
    match current(&doc, path)? {
        None => return Ok((text.to_owned(), Outcome::NotSet(None))),
        Some(c) if !is_kache(&c) => return Ok((text.to_owned(), Outcome::NotSet(Some(c)))),
        Some(_) => {}
    }
    let mut now_empty = false;
    if let Some(build) = doc.get_mut("build") {
        let commented = match build {
            Item::Table(t) => t
                .decor()
                .prefix()
                .and_then(|p| p.as_str())
                .is_some_and(|p| p.contains('#')),
            _ => false,
        };
        if let Some(table) = build.as_table_like_mut() {
            table.remove(KEY);
            now_empty = table.is_empty() && !commented;
        }
    }
    if now_empty {
        doc.remove("build");
    }
    Ok((doc.to_string(), Outcome::Removed))
}

/// The `[env]` entries `--cc` manages, and the compiler each wraps (`None`: a plain value).
const CC_ENV: [(&str, Option<&str>); 3] = [
    ("CC", Some("cc")),
    ("CXX", Some("c++")),
    ("CC_KNOWN_WRAPPER_CUSTOM", None),
];

/// The `[env]` value `--cc` gives `name`.
fn cc_env_value(wrapper: &str, compiler: Option<&str>) -> String {
    match compiler {
        Some(c) => format!("{wrapper} {c}"),
        None => "kache".to_owned(),
    }
}

/// Whether an `[env]` value is one `--cc` wrote (it starts with a kache binary).
fn is_kache_env(value: &str) -> bool {
    value == "kache" || value.split(' ').next().is_some_and(is_kache)
}

/// Adds (or, with `undo`, removes) the `[env]` entries that route older `cc` crates through
/// kache. A `CC` or `CXX` that is not kache's is left alone and named in the second value.
pub(crate) fn edit_cc_env(
    text: &str,
    path: &str,
    wrapper: &str,
    undo: bool,
) -> Result<(String, Vec<String>), InitError> {
    let mut doc = parse(text, path)?;
    let mut left_alone = Vec::new();
    if !doc.contains_key("env") {
        if undo {
            return Ok((text.to_owned(), left_alone));
        }
        doc.insert("env", Item::Table(toml_edit::Table::new()));
    }
    let Some(env) = doc.get_mut("env").and_then(Item::as_table_like_mut) else {
        return Err(InitError::EnvNotATable {
            path: path.to_owned(),
        });
    };
    for (name, compiler) in CC_ENV {
        let current = env.get(name).map(|v| match v.as_str() {
            Some(s) => s.to_owned(),
            None => v.to_string().trim().to_owned(),
        });
        match current {
            Some(c) if !is_kache_env(&c) => left_alone.push(format!("{name} = {c}")),
            Some(_) if undo => {
                env.remove(name);
            }
            None if undo => {}
            _ => {
                env.insert(name, toml_edit::value(cc_env_value(wrapper, compiler)));
            }
        }
    }
    let empty = env.is_empty();
    if undo && empty {
        doc.remove("env");
    }
    Ok((doc.to_string(), left_alone))
}

/// `$CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither CARGO_HOME nor HOME is set")?;
    Ok(Path::new(&home).join(".cargo"))
}

/// The file cargo reads: `config.toml`, or the older `config` when only that exists.
fn config_path(home: &Path) -> PathBuf {
    let toml = home.join("config.toml");
    let legacy = home.join("config");
    if !toml.exists() && legacy.is_file() {
        legacy
    } else {
        toml
    }
}

/// Replaces `path` with `text` in one rename, writing through a symlink (dotfile managers
/// link these files) rather than replacing it.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".config.toml.kache-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(&target) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, &target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("writing {}", target.display()))
    })
}

pub(crate) fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(&cargo_home()?);
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {shown}"))),
    };
    let exe = std::env::current_exe().context("finding the kache binary")?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let exe = exe
        .to_str()
        .context("the kache binary's path is not valid UTF-8")?;
    let (mut new_text, outcome) = if args.undo {
        unset_wrapper(&text, &shown)?
    } else {
        set_wrapper(&text, &shown, exe, args.force)?
    };
    if args.cc || args.undo {
        let (edited, left_alone) = edit_cc_env(&new_text, &shown, exe, args.undo)?;
        new_text = edited;
        for kept in left_alone {
            println!("[env] {kept} in {shown} is not kache's; left alone");
        }
        if args.cc && !args.undo {
            println!("set CC, CXX and CC_KNOWN_WRAPPER_CUSTOM in [env] of {shown}");
        }
    }
    if args.undo && new_text.trim().is_empty() && new_text != text && !path.is_symlink() {
        // Nothing left but what `kache init` wrote (an empty cargo config means the same as
        // none): remove the file rather than leave an empty one behind.
        std::fs::remove_file(&path).with_context(|| format!("removing {shown}"))?;
    } else if new_text != text {
        write_atomically(&path, &new_text)?;
    }
    match &outcome {
        Outcome::Set => {
            println!("set build.rustc-wrapper in {shown}: cargo now builds through kache")
        }
        Outcome::AlreadySet => println!("build.rustc-wrapper in {shown} already names this kache"),
        Outcome::Replaced(old) => {
            println!("replaced build.rustc-wrapper {old} with kache in {shown}")
        }
        Outcome::Removed => println!("removed build.rustc-wrapper from {shown}"),
        Outcome::NotSet(None) => println!("{shown} sets no kache wrapper; nothing to undo"),
        Outcome::NotSet(Some(other)) => {
            println!("build.rustc-wrapper in {shown} is {other}, not kache; left alone")
        }
    }
    if !args.undo && !args.cc {
        println!(
            "C/C++ from build scripts is cached when their cc crate knows kache (cc 1.2.66 and \
             later); for older ones run `kache init --cc`"
        );
    }
    if !args.undo
        && let Some(env) = std::env::var_os("RUSTC_WRAPPER").filter(|v| !v.is_empty())
        && !is_kache(&env.to_string_lossy())
    {
        eprintln!(
            "kache: note: RUSTC_WRAPPER={} is set in this environment and overrides the config file",
            env.to_string_lossy()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "# my cargo settings\n[net]\ngit-fetch-with-cli = true # keep\n";

    #[test]
    fn set_is_idempotent_and_keeps_comments() {
        let (once, outcome) = set_wrapper(USER, "c", "/bin/kache", false).expect("set");
        assert_eq!(outcome, Outcome::Set);
        assert!(once.starts_with(USER), "{once}");
        assert!(
            once.contains("[build]\nrustc-wrapper = \"/bin/kache\""),
            "{once}"
        );
        let (twice, outcome) = set_wrapper(&once, "c", "/bin/kache", false).expect("set");
        assert_eq!(outcome, Outcome::AlreadySet);
        assert_eq!(once, twice);
        // A kache at another path is ours to update.
        let (moved, outcome) = set_wrapper(&once, "c", "/opt/kache", false).expect("set");
        assert_eq!(outcome, Outcome::Set);
        assert_eq!(moved.matches("rustc-wrapper").count(), 1, "{moved}");
        assert!(moved.contains("\"/opt/kache\""));
    }

    #[test]
    fn cc_env_is_added_and_removed_without_touching_the_users() {
        let user = "[env]\nCC = \"clang\"\nFOO = \"bar\"\n";
        let (set, kept) = edit_cc_env(user, "c", "/bin/kache", false).expect("set");
        assert_eq!(kept, vec!["CC = clang".to_owned()]);
        assert!(set.contains("CC = \"clang\""), "{set}");
        assert!(set.contains("CXX = \"/bin/kache c++\""), "{set}");
        assert!(set.contains("CC_KNOWN_WRAPPER_CUSTOM = \"kache\""), "{set}");
        let (again, _) = edit_cc_env(&set, "c", "/bin/kache", false).expect("set");
        assert_eq!(again, set, "idempotent");
        let (undone, _) = edit_cc_env(&set, "c", "/bin/kache", true).expect("undo");
        assert_eq!(undone, user);
        let (fresh, kept) = edit_cc_env("", "c", "/bin/kache", false).expect("set");
        assert!(kept.is_empty());
        assert!(fresh.contains("CC = \"/bin/kache cc\""), "{fresh}");
        let (gone, _) = edit_cc_env(&fresh, "c", "/bin/kache", true).expect("undo");
        assert_eq!(gone.trim(), "");
    }

    #[test]
    fn undo_removes_only_our_setting() {
        let with_build = "[build]\njobs = 4\n";
        let (set, _) = set_wrapper(with_build, "c", "/bin/kache", false).expect("set");
        let (undone, outcome) = unset_wrapper(&set, "c").expect("undo");
        assert_eq!(outcome, Outcome::Removed);
        assert_eq!(undone, with_build);
        let (set, _) = set_wrapper(USER, "c", "/bin/kache", false).expect("set");
        let (undone, _) = unset_wrapper(&set, "c").expect("undo");
        assert_eq!(undone.trim_end(), USER.trim_end());
        let (again, outcome) = unset_wrapper(&undone, "c").expect("undo");
        assert_eq!(outcome, Outcome::NotSet(None));
        assert_eq!(again, undone);
    }

    #[test]
    fn another_wrapper_is_left_alone_unless_forced() {
        let sccache = "[build]\nrustc-wrapper = \"sccache\"\n";
        assert!(matches!(
            set_wrapper(sccache, "c", "/bin/kache", false),
            Err(InitError::OtherWrapper { .. })
        ));
        let (forced, outcome) = set_wrapper(sccache, "c", "/bin/kache", true).expect("force");
        assert_eq!(outcome, Outcome::Replaced("sccache".into()));
        assert!(forced.contains("/bin/kache") && !forced.contains("sccache"));
        let (undone, outcome) = unset_wrapper(sccache, "c").expect("undo");
        assert_eq!(outcome, Outcome::NotSet(Some("sccache".into())));
        assert_eq!(undone, sccache);
    }

    #[test]
    fn dotted_keys_and_bad_files() {
        let dotted = "build.jobs = 2\n";
        let (set, _) = set_wrapper(dotted, "c", "/bin/kache", false).expect("set");
        let parsed: toml::Table = toml::from_str(&set).expect("valid toml");
        assert_eq!(
            parsed["build"]["rustc-wrapper"].as_str(),
            Some("/bin/kache")
        );
        assert_eq!(parsed["build"]["jobs"].as_integer(), Some(2));
        assert!(matches!(
            set_wrapper("build = 3\n", "c", "/bin/kache", false),
            Err(InitError::BuildNotATable { .. })
        ));
        assert!(matches!(
            set_wrapper("[build\n", "c", "/bin/kache", false),
            Err(InitError::Parse { .. })
        ));
    }
}
