//! Offsets of a task's topics: a task reads partition `p` of every topic of its co-partitioned
//! group, and its next, stored and committed offsets are one per topic. A handful of topics at
//! most, so a small vector in topic order, compared as a whole.

use std::sync::Arc;

/// An offset per topic (topics without one are absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions(Vec<(Arc<str>, i64)>);

impl Positions {
    /// No offsets.
    pub fn new() -> Self {
        Positions(Vec::new())
    }

    /// The offsets of `pairs` (a topic given twice keeps its last offset).
    pub fn of(pairs: impl IntoIterator<Item = (Arc<str>, i64)>) -> Self {
        let mut out = Positions::new();
        for (topic, offset) in pairs {
            out.set(topic, offset);
        }
        out
    }

    /// The offset of `topic`, if it has one.
    pub fn get(&self, topic: &str) -> Option<i64> {
        self.0.iter().find(|(t, _)| &**t == topic).map(|(_, o)| *o)
    }

    /// Sets the offset of `topic`.
    pub fn set(&mut self, topic: Arc<str>, offset: i64) {
        match self.0.binary_search_by(|(t, _)| (**t).cmp(&*topic)) {
            Ok(i) => self.0[i].1 = offset,
            Err(i) => self.0.insert(i, (topic, offset)),
        }
    }

    /// Sets the offset of `topic` unless it has one.
    pub fn set_if_absent(&mut self, topic: &Arc<str>, offset: i64) {
        if self.get(topic).is_none() {
            self.set(topic.clone(), offset);
        }
    }

    /// Whether no topic has an offset.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each topic's offset, in topic order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, i64)> {
        self.0.iter().map(|(t, o)| (t, *o))
    }

    /// These offsets, with `other`'s for the topics these lack.
    pub fn or(&self, other: &Positions) -> Positions {
        let mut out = self.clone();
        for (t, o) in other.iter() {
            out.set_if_absent(t, o);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_kept_per_topic_and_compared_as_a_whole() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut p = Positions::new();
        assert!(p.is_empty());
        p.set(b.clone(), 5);
        p.set(a.clone(), 3);
        p.set(b.clone(), 7);
        assert_eq!(p.get("a"), Some(3));
        assert_eq!(p.get("b"), Some(7));
        assert_eq!(p.get("c"), None);
        let order: Vec<_> = p.iter().map(|(t, o)| (t.to_string(), o)).collect();
        assert_eq!(order, [("a".to_string(), 3), ("b".to_string(), 7)]);
        assert_eq!(p, Positions::of([(b.clone(), 7), (a.clone(), 3)]));
        assert_ne!(p, Positions::of([(a.clone(), 3)]));
        let first = Positions::of([(a.clone(), 1), (Arc::from("c"), 9)]);
        let merged = Positions::of([(a.clone(), 3)]).or(&first);
        assert_eq!(merged, Positions::of([(a, 3), (Arc::from("c"), 9)]));
    }
}
