//! Which kind of compiler a word names: the one place that decides whether `kache <word> …`
//! wraps a compiler (and which pipeline it takes) or is a command for the CLI parser.
//!
//! A path (it contains `/`) always names a program: its file name says whether it is rustc,
//! a C/C++ driver, or some other program (run unchanged). A bare name is a compiler only when
//! it is a known family name; any other bare word is left to the command-line parser, so
//! `kache stat` is an unknown command rather than a run of `stat`. Must not look at the
//! filesystem.

use std::ffi::OsStr;

/// The C/C++ compiler drivers by their plain names: the one list of them (a build script's
/// key hashes each one `PATH` finds, too).
pub(crate) const C_DRIVERS: &[&str] = &["gcc", "cc", "c++", "g++", "clang", "clang++"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompilerFamily {
    /// rustc, a `*-rustc`, or clippy-driver: the rustc pipeline.
    Rust,
    /// gcc, clang, cc, c++, g++, clang++ and their target-prefixed or versioned forms.
    C,
    /// A path to some other program: run unchanged, never cached.
    Other,
}

impl CompilerFamily {
    /// The family of `word` (`argv[1]`), or `None` when it is not a compiler at all.
    pub(crate) fn classify(word: &OsStr) -> Option<CompilerFamily> {
        let bytes = word.as_encoded_bytes();
        let is_path = bytes.contains(&b'/');
        let name = std::path::Path::new(word)
            .file_name()
            .and_then(OsStr::to_str)
            .unwrap_or_default();
        let family = family_of_name(name);
        match family {
            Some(f) => Some(f),
            None if is_path => Some(CompilerFamily::Other),
            None => None,
        }
    }
}

fn family_of_name(name: &str) -> Option<CompilerFamily> {
    let name = name.strip_suffix(".exe").unwrap_or(name);
    if name.is_empty() || name.starts_with('-') {
        return None;
    }
    if name == "rustc"
        || name.ends_with("-rustc")
        || name.starts_with("rustc-")
        || name == "clippy-driver"
    {
        return Some(CompilerFamily::Rust);
    }
    let unversioned = strip_version(name);
    let is_driver = C_DRIVERS.iter().any(|d| {
        unversioned == *d
            || unversioned
                .strip_suffix(d)
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('-'))
    });
    is_driver.then_some(CompilerFamily::C)
}

/// `gcc-12` → `gcc`, `clang-14.0` → `clang`; other names unchanged.
fn strip_version(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((base, v))
            if !base.is_empty()
                && !v.is_empty()
                && v.starts_with(|c: char| c.is_ascii_digit())
                && v.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            base
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(word: &str) -> Option<CompilerFamily> {
        CompilerFamily::classify(OsStr::new(word))
    }

    #[test]
    fn rust_names() {
        for w in [
            "rustc",
            "/tc/bin/rustc",
            "clippy-driver",
            "x86_64-unknown-linux-gnu-rustc",
            "./rustc",
        ] {
            assert_eq!(of(w), Some(CompilerFamily::Rust), "{w}");
        }
    }

    #[test]
    fn c_drivers_with_prefixes_and_versions() {
        for w in [
            "cc",
            "c++",
            "gcc",
            "g++",
            "clang",
            "clang++",
            "gcc-12",
            "clang-14",
            "x86_64-linux-gnu-gcc",
            "x86_64-linux-gnu-gcc-12",
            "aarch64-linux-gnu-g++",
            "/usr/bin/cc",
            "/opt/llvm/bin/clang++-17.0",
        ] {
            assert_eq!(of(w), Some(CompilerFamily::C), "{w}");
        }
    }

    #[test]
    fn other_paths_run_and_other_words_are_commands() {
        assert_eq!(of("/usr/bin/stat"), Some(CompilerFamily::Other));
        assert_eq!(of("./build.sh"), Some(CompilerFamily::Other));
        for w in [
            "ls", "stat", "stats", "sh", "gc", "-cc", "ccache", "tcc", "icc",
        ] {
            assert_eq!(of(w), None, "{w}");
        }
    }
}
