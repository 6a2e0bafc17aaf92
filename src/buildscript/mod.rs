//! Build-script runs: cargo runs build scripts itself, not through `RUSTC_WRAPPER`, so kache
//! puts a launcher where cargo runs the script ([`launcher`]); the launcher hands the run to
//! kache ([`run`]), which keys it ([`key`]), restores a stored run ([`restore`]) or runs the
//! script and records it. Which packages' runs are cached is decided here.
//!
//! By default only registry and git packages (and vendored copies of them), whose sources
//! cannot change under the same version; `KACHE_BUILD_SCRIPTS=all` adds workspace and path
//! packages (their scripts are keyed by the whole package directory and everything they
//! declare, but a script reading an undeclared file outside its package would then be
//! restored stale, where cargo would not have rerun it either in the same target dir, but a
//! fresh target dir would); `KACHE_BUILD_SCRIPTS=off` turns the feature off.

pub(crate) mod key;
pub mod launcher;
pub(crate) mod restore;
pub mod run;

use std::path::Path;

/// Which packages' build-script runs are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Off,
    Registry,
    All,
}

impl Scope {
    /// From `KACHE_BUILD_SCRIPTS` (`registry` when unset or not understood: the safe default).
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Scope {
        match env("KACHE_BUILD_SCRIPTS").as_deref() {
            Some("off" | "0" | "false" | "no") => Scope::Off,
            Some("all") => Scope::All,
            _ => Scope::Registry,
        }
    }
}

/// Whether the package at `package_dir` has its build-script runs cached.
pub(crate) fn is_cached_package(
    scope: Scope,
    package_dir: &Path,
    cargo_home: Option<&Path>,
) -> bool {
    match scope {
        Scope::Off => false,
        Scope::All => true,
        Scope::Registry => {
            let under =
                |sub: &str| cargo_home.is_some_and(|h| package_dir.starts_with(h.join(sub)));
            // A vendored or registry source: cargo checks its files against this list.
            under("registry/src")
                || under("git/checkouts")
                || package_dir.join(".cargo-checksum.json").is_file()
        }
    }
}

/// `CARGO_HOME`, as cargo finds it.
pub(crate) fn cargo_home() -> Option<std::path::PathBuf> {
    std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(Into::into)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_and_git_packages_only_by_default() {
        let home = Path::new("/h/.cargo");
        let reg = Path::new("/h/.cargo/registry/src/index.crates.io-1/zstd-sys-2.0.0");
        let git = Path::new("/h/.cargo/git/checkouts/dep-0123/abcdef");
        let ws = Path::new("/work/ws/crates/core");
        assert!(is_cached_package(Scope::Registry, reg, Some(home)));
        assert!(is_cached_package(Scope::Registry, git, Some(home)));
        assert!(!is_cached_package(Scope::Registry, ws, Some(home)));
        assert!(is_cached_package(Scope::All, ws, Some(home)));
        assert!(!is_cached_package(Scope::Off, reg, Some(home)));
        assert_eq!(Scope::from_env(&|_| None), Scope::Registry);
        assert_eq!(Scope::from_env(&|_| Some("all".into())), Scope::All);
    }
}
