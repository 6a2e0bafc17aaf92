//! rustc's dep-info (`--emit=dep-info`): the files and environment variables a compile read.
//!
//! Format (Makefile rules, spaces in paths escaped as `\ `):
//! ```text
//! out.d: src/lib.rs src/a.rs
//! src/lib.rs:
//! # env-dep:NAME=value      (value escaped: \n, \r, \\)
//! # env-dep:UNSET_NAME
//! ```

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DepInfo {
    /// Every prerequisite, in first-seen order, unescaped.
    pub files: Vec<String>,
    /// `# env-dep:` lines: name and value (`None` when the variable was unset).
    pub env: Vec<(String, Option<String>)>,
}

impl DepInfo {
    pub(crate) fn parse(text: &str) -> Self {
        let mut info = DepInfo::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# env-dep:") {
                let (name, value) = match rest.split_once('=') {
                    Some((n, v)) => (n, Some(unescape_env(v))),
                    None => (rest, None),
                };
                if !info.env.iter().any(|(n, _)| n == name) {
                    info.env.push((name.to_owned(), value));
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some(colon) = find_rule_colon(line) else {
                continue;
            };
            for dep in split_escaped(&line[colon + 1..]) {
                if !info.files.contains(&dep) {
                    info.files.push(dep);
                }
            }
        }
        info
    }
}

/// The first `:` that is not escaped and is followed by a space or the end of the line
/// (a Windows drive letter's colon is not).
fn find_rule_colon(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn split_escaped(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                cur.push(' ');
                chars.next();
            }
            ' ' | '\t' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn unescape_env(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_files_and_env_deps() {
        let text = "/t/deps/foo-1.d: src/lib.rs src/my\\ mod.rs /o/out/gen.rs\n\n\
                    /t/deps/libfoo-1.rmeta: src/lib.rs src/my\\ mod.rs /o/out/gen.rs\n\n\
                    src/lib.rs:\nsrc/my\\ mod.rs:\n/o/out/gen.rs:\n\n\
                    # env-dep:GREETING=hi\\nthere\n# env-dep:OPTIONAL\n\
                    # env-dep:WIN=C:\\\\x\n";
        let d = DepInfo::parse(text);
        assert_eq!(
            d.files,
            vec!["src/lib.rs", "src/my mod.rs", "/o/out/gen.rs"]
        );
        assert_eq!(
            d.env,
            vec![
                ("GREETING".into(), Some("hi\nthere".into())),
                ("OPTIONAL".into(), None),
                ("WIN".into(), Some("C:\\x".into())),
            ]
        );
    }

    #[test]
    fn empty_and_garbage_are_harmless() {
        assert_eq!(DepInfo::parse(""), DepInfo::default());
        assert_eq!(DepInfo::parse("no rule here\n# comment\n").files.len(), 0);
    }
}
