//! Module 1 of m11: a record type, an enum and generic code over them.

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct M11Item1 {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind1 {
    Alpha,
    Beta(u32),
    Gamma { x: i64, y: i64 },
    Delta,
}

impl Kind1 {
    pub fn score(self) -> i64 {
        match self {
            Kind1::Alpha => 1,
            Kind1::Beta(v) => i64::from(v) * 3,
            Kind1::Gamma { x, y } => x * y - 1,
            Kind1::Delta => -1,
        }
    }
}

impl M11Item1 {
    pub fn new(id: u64, name: &str) -> Self {
        Self { id, name: name.to_owned(), tags: vec![format!("m11-1")], weight: Some(1) }
    }
}

pub fn summarize<T: std::fmt::Debug + Clone>(items: &[T]) -> String {
    let mut out = String::new();
    for (n, item) in items.iter().cloned().enumerate() {
        out.push_str(&format!("{n}:{item:?};"));
    }
    out
}

pub fn build(n: u64) -> Vec<M11Item1> {
    let mut v: Vec<M11Item1> = (0..n).map(|k| M11Item1::new(k, "item")).collect();
    v.sort();
    v.dedup();
    let mut map = std::collections::BTreeMap::new();
    for item in &v {
        map.entry(item.id % 7).or_insert_with(Vec::new).push(item.clone());
    }
    map.into_values().flatten().collect()
}

pub fn total(kinds: &[Kind1]) -> i64 {
    kinds.iter().map(|k| k.score()).sum::<i64>()
        + summarize(kinds).len() as i64
        + summarize(&build(kinds.len() as u64)).len() as i64
}
