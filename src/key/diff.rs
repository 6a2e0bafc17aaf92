//! What differs between the inputs of two compiles: the key fields of their invocation keys
//! and their manifests (source files and env-deps). `kache explain` describes the result.
//!
//! Owns pairing values (a changed option rather than one removed and one added, a file that
//! only moved to a path with a new unit hash) and ordering causes before consequences. Must
//! not read the store or the log, and must not phrase anything for people.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::manifest::Manifest;
use super::{KeyField, Label};

/// Which part of the key a difference is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Part {
    /// A field of the invocation key (arguments, toolchain, keyed env, dependencies).
    Field,
    /// A source file the compile read (from dep-info).
    File,
    /// A variable the crate read with `env!`/`option_env!` (from dep-info).
    EnvDep,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub(crate) enum Change {
    Added {
        value: String,
    },
    Removed {
        value: String,
    },
    Changed {
        from: String,
        to: String,
    },
    /// A file read from another path with the same content.
    Moved {
        from: String,
        to: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Difference {
    pub part: Part,
    /// The field's label (`arg -C`, `env FOO`, `extern serde`), the file's path or the
    /// variable's name.
    pub name: String,
    #[serde(flatten)]
    pub change: Change,
    /// Only a consequence of cargo giving the unit a new hash (paths and `-C metadata` that
    /// differ in nothing but that hash), not a cause of the miss by itself.
    pub derived: bool,
    /// The key field's label, for a difference in a field.
    #[serde(skip)]
    pub label: Option<Label>,
}

/// What one compile was keyed on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs<'a> {
    pub fields: &'a [KeyField],
    pub manifest: Option<&'a Manifest>,
}

/// Whether a field's values form a set: a swapped value is one removed and one added.
fn is_set(label: &Label) -> bool {
    matches!(label, Label::Named(name) if matches!(name.as_str(), "cfg" | "check-cfg" | "emit"))
}

/// Every difference between what `old` and `new` were keyed on, invocation fields first.
/// Causes come first (environment, then sources, then arguments, then dependencies), and
/// differences that only follow from a new unit hash last.
pub(crate) fn diff(old: Inputs, new: Inputs) -> Vec<Difference> {
    let mut out = diff_fields(old.fields, new.fields);
    let empty = Manifest::default();
    let (om, nm) = (
        old.manifest.unwrap_or(&empty),
        new.manifest.unwrap_or(&empty),
    );
    let files = |m: &Manifest| -> BTreeMap<String, String> {
        m.files
            .iter()
            .map(|f| (f.path.clone(), f.hash.clone()))
            .collect()
    };
    out.extend(pair_moved_files(diff_maps(
        Part::File,
        &files(om),
        &files(nm),
    )));
    let envs = |m: &Manifest| -> BTreeMap<String, String> {
        m.env
            .iter()
            .map(|e| (e.name.clone(), env_value(e.value.as_deref())))
            .collect()
    };
    out.extend(diff_maps(Part::EnvDep, &envs(om), &envs(nm)));
    for d in &mut out {
        if let Change::Changed { from, to } = &d.change
            && d.part != Part::File
            && without_unit_hashes(from) == without_unit_hashes(to)
        {
            d.derived = true;
        }
    }
    out.sort_by_key(|d| (d.derived, rank(d)));
    out
}

fn rank(d: &Difference) -> u8 {
    match d.part {
        Part::Field if matches!(d.label, Some(Label::Env(_))) => 0,
        Part::File | Part::EnvDep => 1,
        Part::Field if matches!(d.label, Some(Label::Extern(_))) => 3,
        Part::Field => 2,
    }
}

/// `s` with every cargo unit hash (a run of exactly 16 lowercase hex digits standing alone,
/// as in `libfoo-0123456789abcdef.rlib` or `metadata=0123456789abcdef`) replaced by `#`.
/// Content hashes are longer, so they stay.
pub(crate) fn without_unit_hashes(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .count();
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let ends_word = bytes
            .get(i + run)
            .is_none_or(|b| !b.is_ascii_alphanumeric());
        if run == 16 && starts_word && ends_word {
            out.push('#');
            i += run;
        } else {
            let step = run.max(1);
            // Runs are ASCII; otherwise step over one whole character.
            let end = if run > 0 {
                i + step
            } else {
                i + s[i..].chars().next().map_or(1, char::len_utf8)
            };
            out.push_str(&s[i..end]);
            i = end;
        }
    }
    out
}

/// A file that is only read from a path with a new unit hash (a build script's `OUT_DIR`)
/// shows as one file moved, or changed when its content differs too.
fn pair_moved_files(mut diffs: Vec<Difference>) -> Vec<Difference> {
    let mut out = Vec::new();
    while let Some(d) = diffs.pop() {
        let Change::Removed { value: old_hash } = &d.change else {
            out.push(d);
            continue;
        };
        let key = without_unit_hashes(&d.name);
        let partner = diffs.iter().position(|a| {
            matches!(a.change, Change::Added { .. }) && without_unit_hashes(&a.name) == key
        });
        match partner {
            Some(j) => {
                let added = diffs.remove(j);
                let Change::Added { value: new_hash } = added.change else {
                    continue;
                };
                out.push(if &new_hash == old_hash {
                    Difference {
                        part: Part::File,
                        name: added.name.clone(),
                        change: Change::Moved {
                            from: d.name,
                            to: added.name,
                        },
                        derived: true,
                        label: None,
                    }
                } else {
                    Difference {
                        part: Part::File,
                        name: added.name,
                        change: Change::Changed {
                            from: old_hash.clone(),
                            to: new_hash,
                        },
                        derived: false,
                        label: None,
                    }
                });
            }
            None => out.push(d),
        }
    }
    out.reverse();
    out
}

fn env_value(v: Option<&str>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "(unset)".to_owned(),
    }
}

fn diff_maps(
    part: Part,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<Difference> {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let change = match (old.get(name), new.get(name)) {
                (Some(a), Some(b)) if a == b => return None,
                (Some(a), Some(b)) => Change::Changed {
                    from: a.clone(),
                    to: b.clone(),
                },
                (None, Some(b)) => Change::Added { value: b.clone() },
                (Some(a), None) => Change::Removed { value: a.clone() },
                (None, None) => return None,
            };
            Some(Difference {
                part,
                name: name.clone(),
                change,
                derived: false,
                label: None,
            })
        })
        .collect()
}

/// Compares field lists label by label, treating a label's values as a multiset (a label
/// such as `arg -C` or `cfg` appears many times).
fn diff_fields(old: &[KeyField], new: &[KeyField]) -> Vec<Difference> {
    let mut labels: Vec<&Label> = Vec::new();
    for f in new.iter().chain(old) {
        if !labels.contains(&&f.label) {
            labels.push(&f.label);
        }
    }
    let values = |fields: &[KeyField], label: &Label| -> Vec<String> {
        fields
            .iter()
            .filter(|f| &f.label == label)
            .map(|f| f.value.clone())
            .collect()
    };
    let mut out = Vec::new();
    for label in labels {
        let (a, b) = (values(old, label), values(new, label));
        let mut removed = multiset_minus(&a, &b);
        let mut added = multiset_minus(&b, &a);
        let field = |change| Difference {
            part: Part::Field,
            name: label.to_string(),
            change,
            derived: false,
            label: Some(label.clone()),
        };
        if !is_set(label) {
            // Pair a removed and an added value that set the same option (`opt-level=0` and
            // `opt-level=3`), or the only two there are.
            let single = removed.len() == 1 && added.len() == 1;
            let mut i = 0;
            while i < removed.len() {
                let name = option_name(&removed[i]);
                match added.iter().position(|v| single || option_name(v) == name) {
                    Some(j) => out.push(field(Change::Changed {
                        from: removed.remove(i),
                        to: added.remove(j),
                    })),
                    None => i += 1,
                }
            }
        }
        out.extend(
            removed
                .into_iter()
                .map(|value| field(Change::Removed { value })),
        );
        out.extend(
            added
                .into_iter()
                .map(|value| field(Change::Added { value })),
        );
    }
    out
}

pub(crate) fn option_name(value: &str) -> &str {
    value.split('=').next().unwrap_or(value)
}

pub(crate) fn multiset_minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut rest: Vec<&String> = b.iter().collect();
    a.iter()
        .filter(|v| match rest.iter().position(|r| r == v) {
            Some(i) => {
                rest.swap_remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}
