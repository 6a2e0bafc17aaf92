//! Path roots: the workspace (rustc's working directory), the target directory, `CARGO_HOME`
//! and the toolchain sysroot. Which roots an invocation has, and how each is found, is
//! [`discover`]'s business; this file owns what is done with them.
//!
//! A path under a root is keyed as `${root}/rest`, so the same workspace checked out at another
//! path produces the same keys; rustc is given `--remap-path-prefix` for the same roots so the
//! artifacts embed no machine-local path; and text that must name real paths (dep-info files,
//! replayed diagnostics and artifact notifications) is stored with placeholders and filled in
//! for the current checkout on restore.

use std::borrow::Cow;
use std::path::Path;

mod discover;

pub(crate) use discover::RootSources;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Root {
    pub name: &'static str,
    pub path: String,
    /// What rustc writes instead of `path` in artifacts.
    pub remap_to: &'static str,
}

/// How paths are spelled in a piece of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spelling {
    Plain,
    /// Makefile-style dep-info: spaces escaped as `\ `.
    DepInfo,
    /// Inside JSON strings.
    Json,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Roots {
    /// Longest path first, so nested roots (a target dir inside the workspace) win.
    roots: Vec<Root>,
}

impl Roots {
    pub(crate) fn new(mut roots: Vec<Root>) -> Self {
        roots.retain(|r| r.path.len() > 1 && r.path.starts_with('/'));
        roots.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        roots.dedup_by(|a, b| a.path == b.path);
        Roots { roots }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Root> {
        self.roots.iter()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Root> {
        self.roots.iter().find(|r| r.name == name)
    }

    /// Replaces every root path in `text` by `${name}` (for keys).
    pub(crate) fn relativize<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.replace(text, Spelling::Plain, |r| format!("${{{}}}", r.name))
    }

    /// Replaces every root path in `text` by a placeholder that [`Roots::fill`] undoes.
    pub(crate) fn template<'a>(&self, text: &'a str, spelling: Spelling) -> Cow<'a, str> {
        self.replace(text, spelling, |r| placeholder(r.name))
    }

    /// Puts this checkout's root paths back into a templated text. `None` when the text names
    /// a root this invocation does not have.
    pub(crate) fn fill(&self, text: &str, spelling: Spelling) -> Option<String> {
        let mut out = text.to_owned();
        for r in &self.roots {
            let p = placeholder(r.name);
            if out.contains(&p) {
                out = out.replace(&p, &spell(&r.path, spelling));
            }
        }
        (!out.contains(PLACEHOLDER_OPEN)).then_some(out)
    }

    /// `--remap-path-prefix` arguments for rustc; the longest root comes last because rustc
    /// lets the last matching mapping win.
    pub(crate) fn remap_args(&self) -> Vec<String> {
        self.roots
            .iter()
            .rev()
            .filter(|r| r.name != "sysroot")
            .map(|r| format!("--remap-path-prefix={}={}", r.path, r.remap_to))
            .collect()
    }

    fn replace<'a>(
        &self,
        text: &'a str,
        spelling: Spelling,
        with: impl Fn(&Root) -> String,
    ) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for r in &self.roots {
            let needle = spell(&r.path, spelling);
            if !out.contains(needle.as_str()) {
                continue;
            }
            let replacement = with(r);
            let mut result = String::with_capacity(out.len());
            let mut rest: &str = &out;
            while let Some(pos) = rest.find(needle.as_str()) {
                let after = &rest[pos + needle.len()..];
                result.push_str(&rest[..pos]);
                if at_boundary(after) {
                    result.push_str(&replacement);
                } else {
                    result.push_str(&needle);
                }
                rest = after;
            }
            result.push_str(rest);
            out = Cow::Owned(result);
        }
        out
    }
}

const PLACEHOLDER_OPEN: &str = "\u{1}kache:";

fn placeholder(name: &str) -> String {
    format!("{PLACEHOLDER_OPEN}{name}\u{1}")
}

fn spell(path: &str, spelling: Spelling) -> String {
    match spelling {
        Spelling::Plain => path.to_owned(),
        Spelling::DepInfo => path.replace(' ', "\\ "),
        Spelling::Json => {
            let quoted = serde_json::to_string(path).unwrap_or_else(|_| path.to_owned());
            quoted.trim_matches('"').to_owned()
        }
    }
}

/// A root matches only as a whole path: `/ws` is not a prefix of `/ws2`.
fn at_boundary(after: &str) -> bool {
    !after
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+'))
}

fn root(name: &'static str, path: &Path, remap_to: &'static str) -> Root {
    let mut p = path.to_string_lossy().into_owned();
    while p.len() > 1 && p.ends_with('/') {
        p.pop();
    }
    Root {
        name,
        path: p,
        remap_to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Roots {
        Roots::new(vec![
            root("ws", Path::new("/a/ws"), "."),
            root("target", Path::new("/a/ws/target"), "/kache/target"),
            root("cargo_home", Path::new("/home/u/.cargo/"), "/kache/cargo"),
        ])
    }

    #[test]
    fn longest_root_wins_and_boundaries_hold() {
        let r = roots();
        assert_eq!(
            r.relativize("-L dependency=/a/ws/target/debug/deps"),
            "-L dependency=${target}/debug/deps"
        );
        assert_eq!(r.relativize("/a/ws/src/lib.rs"), "${ws}/src/lib.rs");
        assert_eq!(r.relativize("/a/ws2/src/lib.rs"), "/a/ws2/src/lib.rs");
        assert_eq!(r.relativize("/a/ws"), "${ws}");
    }

    #[test]
    fn template_round_trips_to_another_checkout() {
        let text = "/a/ws/target/debug/deps/x.d: /home/u/.cargo/registry/src/a.rs src/lib.rs\n";
        let t = roots().template(text, Spelling::DepInfo);
        assert!(!t.contains("/a/ws"));
        let other = Roots::new(vec![
            root("ws", Path::new("/b/my ws"), "."),
            root("target", Path::new("/b/my ws/target"), "/kache/target"),
            root("cargo_home", Path::new("/home/v/.cargo"), "/kache/cargo"),
        ]);
        assert_eq!(
            other.fill(&t, Spelling::DepInfo).as_deref(),
            Some("/b/my\\ ws/target/debug/deps/x.d: /home/v/.cargo/registry/src/a.rs src/lib.rs\n")
        );
        let missing = Roots::new(vec![root("ws", Path::new("/c"), ".")]);
        assert_eq!(missing.fill(&t, Spelling::DepInfo), None);
    }

    #[test]
    fn remap_args_put_the_longest_last() {
        let args = roots().remap_args();
        assert_eq!(
            args.last().map(String::as_str),
            Some("--remap-path-prefix=/home/u/.cargo=/kache/cargo")
        );
        let ws = args.iter().position(|a| a.contains("/a/ws=."));
        let target = args.iter().position(|a| a.contains("/a/ws/target="));
        assert!(ws < target);
    }

    #[test]
    fn json_spelling_matches_escaped_paths() {
        let r = Roots::new(vec![root("target", Path::new("/t/a\"b"), "/kache/target")]);
        let t = r.template(r#"{"artifact":"/t/a\"b/x.rmeta"}"#, Spelling::Json);
        assert!(!t.contains("/t/a"));
    }
}
