//! Module 2 of m05: a record type, an enum and generic code over them.

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct M05Item2 {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind2 {
    Alpha,
    Beta(u32),
    Gamma { x: i64, y: i64 },
    Delta,
}

impl Kind2 {
    pub fn score(self) -> i64 {
        match self {
            Kind2::Alpha => 1,
            Kind2::Beta(v) => i64::from(v) * 4,
            Kind2::Gamma { x, y } => x * y - 2,
            Kind2::Delta => -1,
        }
    }
}

impl M05Item2 {
    pub fn new(id: u64, name: &str) -> Self {
        Self { id, name: name.to_owned(), tags: vec![format!("m05-2")], weight: Some(2) }
    }
}

pub fn summarize<T: std::fmt::Debug + Clone>(items: &[T]) -> String {
    let mut out = String::new();
    for (n, item) in items.iter().cloned().enumerate() {
        out.push_str(&format!("{n}:{item:?};"));
    }
    out
}

pub fn build(n: u64) -> Vec<M05Item2> {
    let mut v: Vec<M05Item2> = (0..n).map(|k| M05Item2::new(k, "item")).collect();
    v.sort();
    v.dedup();
    let mut map = std::collections::BTreeMap::new();
    for item in &v {
        map.entry(item.id % 7).or_insert_with(Vec::new).push(item.clone());
    }
    map.into_values().flatten().collect()
}

pub fn total(kinds: &[Kind2]) -> i64 {
    kinds.iter().map(|k| k.score()).sum::<i64>()
        + summarize(kinds).len() as i64
        + summarize(&build(kinds.len() as u64)).len() as i64
}
