//! Which environment variables go in the key.
//!
//! rustc itself reads the environment only through `env!`/`option_env!` (reported as
//! `# env-dep:` in dep-info and checked through the manifest) and a few variables of its own
//! and of the linker, listed here. Everything cargo sets for a crate (`CARGO_PKG_*`,
//! `CARGO_MANIFEST_DIR`, `OUT_DIR`, ...) is keyed too, because proc-macros read it behind
//! rustc's back; cargo's own settings that cannot reach the compiler are left out. Values are
//! keyed with root paths relativised, so a checkout at another path keys alike. [`KeyEnv`] is
//! everything a rustc key reads from the environment, read in one place.

use std::path::PathBuf;

/// `CARGO_*` prefixes that configure cargo itself and never reach the compiled code.
/// Secrets (registry tokens) are among them, so they never end up in stored key fields.
const CARGO_IGNORED_PREFIXES: &[&str] = &[
    "CARGO_MAKEFLAGS",
    "CARGO_HOME",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_",
    "CARGO_TERM_",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRIES_",
    "CARGO_REGISTRY_",
    "CARGO_LOG",
    "CARGO_ALIAS_",
    "CARGO_CACHE_RUSTC_INFO",
    "CARGO_INCREMENTAL",
    "CARGO_PROFILE_",
    "CARGO_UNSTABLE_",
    "CARGO_TARGET_",
    "CARGO_CREDENTIAL_",
    "CARGO_FUTURE_INCOMPAT_",
    "CARGO_ENCODED_RUSTDOCFLAGS",
];

/// Variables outside `CARGO_*` that change what rustc or the linker produce.
const COMPILER_VARS: &[&str] = &[
    "OUT_DIR",
    "RUSTFLAGS",
    "RUSTC_BOOTSTRAP",
    "RUST_TARGET_PATH",
    "RUSTC_FORCE_RUSTC_VERSION",
    "SDKROOT",
    "MACOSX_DEPLOYMENT_TARGET",
    "IPHONEOS_DEPLOYMENT_TARGET",
    "TVOS_DEPLOYMENT_TARGET",
    "WATCHOS_DEPLOYMENT_TARGET",
    "XROS_DEPLOYMENT_TARGET",
    "LIBRARY_PATH",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
    "CLIPPY_DISABLE_DOCS_LINKS",
];

/// Whether `name` is keyed (besides the user's extra list).
pub(crate) fn is_keyed(name: &str) -> bool {
    if COMPILER_VARS.contains(&name) {
        return true;
    }
    name.starts_with("CARGO") && !CARGO_IGNORED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The keyed variables of `vars`, sorted by name, plus every name in `extra` (unset ones keyed
/// as unset, since setting them later must change the key).
pub(crate) fn keyed_vars(
    vars: impl Iterator<Item = (String, String)>,
    extra: &[String],
) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = vars
        .filter(|(k, _)| is_keyed(k) || extra.contains(k))
        .map(|(k, v)| (k, Some(v)))
        .collect();
    for name in extra {
        if !out.iter().any(|(k, _)| k == name) {
            out.push((name.clone(), None));
        }
    }
    out.sort();
    out
}

/// The environment a rustc invocation's key reads: read once at the edge
/// ([`KeyEnv::from_env`]) and passed in, so a test can build one by hand.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyEnv {
    pub(crate) rustup_toolchain: Option<String>,
    /// `CARGO_HOME`, else `~/.cargo`: a root.
    pub(crate) cargo_home: Option<PathBuf>,
    /// The package being compiled: a root.
    pub(crate) manifest_dir: Option<PathBuf>,
    /// The keyed variables ([`keyed_vars`]).
    pub(crate) keyed: Vec<(String, Option<String>)>,
    pub(crate) path_var: Option<String>,
    /// Where clippy starts looking for its configuration (`CLIPPY_CONF_DIR`, else
    /// `CARGO_MANIFEST_DIR`).
    pub(crate) driver_conf_dir: Option<PathBuf>,
}

impl KeyEnv {
    /// This process's environment, with the user's extra keyed variables.
    pub(crate) fn from_env(key_env_vars: &[String]) -> Self {
        let var_path = |name: &str| std::env::var_os(name).map(PathBuf::from);
        KeyEnv {
            rustup_toolchain: std::env::var("RUSTUP_TOOLCHAIN").ok(),
            cargo_home: var_path("CARGO_HOME")
                .or_else(|| var_path("HOME").map(|h| h.join(".cargo"))),
            manifest_dir: var_path("CARGO_MANIFEST_DIR"),
            keyed: keyed_vars(std::env::vars(), key_env_vars),
            path_var: std::env::var("PATH").ok(),
            driver_conf_dir: var_path("CLIPPY_CONF_DIR").or_else(|| var_path("CARGO_MANIFEST_DIR")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        assert!(is_keyed("CARGO_PKG_VERSION"));
        assert!(is_keyed("CARGO_MANIFEST_DIR"));
        assert!(is_keyed("CARGO_ENCODED_RUSTFLAGS"));
        assert!(is_keyed("OUT_DIR"));
        assert!(is_keyed("RUSTFLAGS"));
        assert!(!is_keyed("CARGO_MAKEFLAGS"));
        assert!(!is_keyed("CARGO_REGISTRY_TOKEN"));
        assert!(!is_keyed("CARGO_TERM_COLOR"));
        assert!(!is_keyed("HOME"));
        assert!(!is_keyed("PATH"));
    }

    #[test]
    fn extra_vars_are_keyed_even_when_unset() {
        let vars = vec![
            ("HOME".to_string(), "/h".to_string()),
            ("MY_FLAG".to_string(), "1".to_string()),
            ("CARGO_PKG_NAME".to_string(), "x".to_string()),
        ];
        let got = keyed_vars(vars.into_iter(), &["MY_FLAG".into(), "OTHER".into()]);
        assert_eq!(
            got,
            vec![
                ("CARGO_PKG_NAME".into(), Some("x".into())),
                ("MY_FLAG".into(), Some("1".into())),
                ("OTHER".into(), None),
            ]
        );
    }
}
