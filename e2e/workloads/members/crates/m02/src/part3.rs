//! Module 3 of m02: a record type, an enum and generic code over them.

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct M02Item3 {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind3 {
    Alpha,
    Beta(u32),
    Gamma { x: i64, y: i64 },
    Delta,
}

impl Kind3 {
    pub fn score(self) -> i64 {
        match self {
            Kind3::Alpha => 1,
            Kind3::Beta(v) => i64::from(v) * 5,
            Kind3::Gamma { x, y } => x * y - 3,
            Kind3::Delta => -1,
        }
    }
}

impl M02Item3 {
    pub fn new(id: u64, name: &str) -> Self {
        Self { id, name: name.to_owned(), tags: vec![format!("m02-3")], weight: Some(3) }
    }
}

pub fn summarize<T: std::fmt::Debug + Clone>(items: &[T]) -> String {
    let mut out = String::new();
    for (n, item) in items.iter().cloned().enumerate() {
        out.push_str(&format!("{n}:{item:?};"));
    }
    out
}

pub fn build(n: u64) -> Vec<M02Item3> {
    let mut v: Vec<M02Item3> = (0..n).map(|k| M02Item3::new(k, "item")).collect();
    v.sort();
    v.dedup();
    let mut map = std::collections::BTreeMap::new();
    for item in &v {
        map.entry(item.id % 7).or_insert_with(Vec::new).push(item.clone());
    }
    map.into_values().flatten().collect()
}

pub fn total(kinds: &[Kind3]) -> i64 {
    kinds.iter().map(|k| k.score()).sum::<i64>()
        + summarize(kinds).len() as i64
        + summarize(&build(kinds.len() as u64)).len() as i64
}
