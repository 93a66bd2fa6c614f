//! Reading tables from outside the agents (the node's HTTP table queries): untyped, with JSON
//! keys and values, from what the store holds, that is the committed state. A query never
//! touches a partition actor's cache, so it cannot see an event's writes before they commit,
//! nor slow the partition down.
//!
//! Keys arrive as JSON and are encoded with the table's key codec, as an agent's would be; a
//! windowed table answers with each window of the key. [`Query`] does the reading for one
//! table; where the partition lives (and whether this node holds it) is the caller's business.

use serde_json::Value;

use crate::model::codec::Codec;
use crate::model::error::{Error, Result};
use crate::model::names::{count_key, data_prefix, global_tree_name, tree_name, STREAM_TIME_KEY};
use crate::state::spec::TableSpec;
use crate::state::store::Store;
use crate::state::windowed::{window_key, CLOSED, CLOSED_SESSION, OPEN_SESSION};

/// One window of a key in a windowed table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowEntry {
    /// The window's start, ms since the epoch.
    pub start: i64,
    /// The window's value.
    pub value: Value,
    /// Whether the window was closed (its final value was emitted).
    pub closed: bool,
}

/// One entry of a page of keys.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PageEntry {
    /// The key.
    pub key: Value,
    /// Its value (for a windowed table: its window, with the window's start).
    pub value: Value,
    /// The source partition whose shard holds it.
    pub partition: i32,
    /// The window's start, for a windowed table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_start: Option<i64>,
}

/// Reads one table of a store.
pub struct Query<'a> {
    store: &'a Store,
    spec: &'a TableSpec,
    prefix: Vec<u8>,
}

impl<'a> Query<'a> {
    /// Reads `spec`'s table in `store`.
    pub fn new(store: &'a Store, spec: &'a TableSpec) -> Self {
        Query {
            store,
            spec,
            prefix: data_prefix(&spec.name),
        }
    }

    /// The bytes of `key` in the table's key codec (what the store and changelog hold).
    ///
    /// # Errors
    /// The key does not encode with the codec (a JSON object for a `string` key, say).
    pub fn key_bytes(&self, key: &Value) -> Result<Vec<u8>> {
        self.spec.key_codec.encode("table key", key)
    }

    fn tree(&self, name: &str) -> Result<sled::Tree> {
        self.store
            .db()
            .open_tree(name)
            .map_err(|e| Error::store(self.store.path(), e))
    }

    fn decode(codec: Codec, what: &'static str, bytes: &[u8]) -> Result<Value> {
        codec.decode(what, bytes)
    }

    /// The value of `key` in `partition` of `topic` (a global table: in this node's copy).
    ///
    /// # Errors
    /// The key does not encode, the store failed, or the value does not decode.
    pub fn get(&self, topic: &str, partition: i32, key: &Value) -> Result<Option<Value>> {
        let tree = self.tree_of(topic, partition)?;
        let stored = [self.prefix.clone(), self.key_bytes(key)?].concat();
        let raw = tree
            .get(stored)
            .map_err(|e| Error::store(self.store.path(), e))?;
        raw.map(|v| Self::decode(self.spec.value_codec, "table value", &v))
            .transpose()
    }

    /// Every window of `key` in a windowed table's `partition` of `topic`, oldest first.
    ///
    /// # Errors
    /// As [`Query::get`].
    pub fn windows(&self, topic: &str, partition: i32, key: &Value) -> Result<Vec<WindowEntry>> {
        let tree = self.tree_of(topic, partition)?;
        let want = self.key_bytes(key)?;
        let mut out = Vec::new();
        for item in tree.scan_prefix([self.prefix.as_slice(), &[1]].concat()) {
            let (k, v) = item.map_err(|e| Error::store(self.store.path(), e))?;
            let Some((start, key)) = window_key(&k[self.prefix.len()..]) else {
                continue;
            };
            if key == want.as_slice() {
                out.push(self.window_entry(start, &v)?);
            }
        }
        Ok(out)
    }

    fn window_entry(&self, slot: i64, raw: &[u8]) -> Result<WindowEntry> {
        let (state, value) = raw.split_first().unwrap_or((&0, &[]));
        // A session is stored under its last event, its start first in the value.
        let (start, value) = match *state {
            OPEN_SESSION | CLOSED_SESSION if value.len() >= 8 => {
                let (first, value) = value.split_at(8);
                let first = i64::from_be_bytes(first.try_into().unwrap_or_default());
                (first, value)
            }
            _ => (slot, value),
        };
        Ok(WindowEntry {
            start,
            value: Self::decode(self.spec.value_codec, "table value", value)?,
            closed: *state == CLOSED || *state == CLOSED_SESSION,
        })
    }

    /// Up to `limit` entries of the partitions `partitions` of `topic`, in the order of their
    /// encoded keys, after the key `after` (encoded bytes) when given.
    ///
    /// # Errors
    /// As [`Query::get`].
    pub fn page(
        &self,
        topic: &str,
        partitions: &[i32],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<PageEntry>, Option<Vec<u8>>)> {
        let mut raw: Vec<(Vec<u8>, i32, sled::IVec)> = Vec::new();
        for &p in partitions {
            let tree = self.tree_of(topic, p)?;
            let start = match after {
                Some(a) => [self.prefix.as_slice(), a, &[0]].concat(),
                None => self.prefix.clone(),
            };
            for item in tree.range(start..).take(limit + 1) {
                let (k, v) = item.map_err(|e| Error::store(self.store.path(), e))?;
                if !k.starts_with(&self.prefix) {
                    break;
                }
                let rest = &k[self.prefix.len()..];
                if rest == STREAM_TIME_KEY {
                    continue;
                }
                raw.push((rest.to_vec(), p, v));
            }
        }
        raw.sort_by(|a, b| a.0.cmp(&b.0));
        let more = raw.len() > limit;
        raw.truncate(limit);
        let next = more.then(|| raw.last().map(|r| r.0.clone())).flatten();
        let mut out = Vec::with_capacity(raw.len());
        for (k, partition, v) in raw {
            let windowed = self.spec.window.is_some();
            let (key_bytes, window_start) = match windowed.then(|| window_key(&k)).flatten() {
                Some((start, key)) => (key.to_vec(), Some(start)),
                None => (k, None),
            };
            let key = Self::decode(self.spec.key_codec, "table key", &key_bytes)?;
            let value = match window_start {
                Some(start) => {
                    serde_json::to_value(self.window_entry(start, &v)?).map_err(|e| {
                        Error::Encode {
                            what: "window",
                            codec: "json",
                            reason: e.to_string(),
                        }
                    })?
                }
                None => Self::decode(self.spec.value_codec, "table value", &v)?,
            };
            out.push(PageEntry {
                key,
                value,
                partition,
                window_start,
            });
        }
        Ok((out, next))
    }

    /// The number of keys the table holds in `partition` of `topic` (as of the last commit).
    ///
    /// # Errors
    /// The store failed.
    pub fn count(&self, topic: &str, partition: i32) -> Result<u64> {
        let tree = self.tree(&tree_name(topic, partition))?;
        let raw = tree
            .get(count_key(&self.spec.name))
            .map_err(|e| Error::store(self.store.path(), e))?;
        Ok(raw
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    fn tree_of(&self, topic: &str, partition: i32) -> Result<sled::Tree> {
        match self.spec.global {
            true => self.tree(&global_tree_name(&self.spec.name)),
            false => self.tree(&tree_name(topic, partition)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::model::codec::TopicCodecs;
    use crate::state::set::TableSet;
    use crate::state::store::OnClusterMismatch;
    use crate::state::table::Table;
    use crate::state::windowed::WindowedTable;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "c", OnClusterMismatch::Fail, 1 << 20).unwrap();
        (dir, store)
    }

    fn set(store: &Store, specs: Vec<TableSpec>) -> TableSet {
        let path = store.path().clone();
        TableSet::open(store.db(), path, "app".into(), "t".into(), 0, specs, 100).unwrap()
    }

    fn commit(set: &mut TableSet) {
        let staged = set.stage_lead(1).unwrap();
        set.tree().apply_batch(staged.batch).unwrap();
        set.committed(&staged.counts);
    }

    #[test]
    fn a_key_reads_its_committed_value_and_pages_walk_every_key_once() {
        let (_dir, store) = store();
        let table = Table::<String, u64>::new("counts").key_codec(Codec::String);
        let mut set = set(&store, vec![table.spec()]);
        for (i, k) in ["b", "a", "d", "c", "e"].iter().enumerate() {
            set.view(&table)
                .unwrap()
                .insert((*k).into(), i as u64)
                .unwrap();
            set.end_event();
        }
        let spec = table.spec();
        let q = Query::new(&store, &spec);
        assert_eq!(
            q.get("t", 0, &json!("a")).unwrap(),
            None,
            "not committed yet"
        );
        commit(&mut set);
        set.view(&table).unwrap().insert("a".into(), 99).unwrap();
        assert_eq!(
            q.get("t", 0, &json!("a")).unwrap(),
            Some(json!(1)),
            "committed only"
        );
        assert_eq!(q.count("t", 0).unwrap(), 5);
        let (first, next) = q.page("t", &[0], None, 2).unwrap();
        let keys: Vec<Value> = first.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, [json!("a"), json!("b")]);
        assert_eq!(next.as_deref(), Some(&b"b"[..]));
        let (rest, end) = q.page("t", &[0], next.as_deref(), 10).unwrap();
        let keys: Vec<Value> = rest.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, [json!("c"), json!("d"), json!("e")]);
        assert_eq!(end, None);
    }

    #[test]
    fn a_windowed_key_answers_with_each_of_its_windows() {
        let (_dir, store) = store();
        let table = WindowedTable::<String, u64>::tumbling("w", Duration::from_secs(10));
        let mut set = set(&store, vec![table.spec()]);
        for (key, t) in [("a", 1_000), ("a", 2_000), ("b", 3_000), ("a", 12_000)] {
            let mut view = set.window_view(&table, t).unwrap();
            view.update(key.into(), |n| n.unwrap_or(0) + 1).unwrap();
            set.close_windows(&TopicCodecs::default()).unwrap();
            set.end_event();
        }
        commit(&mut set);
        let spec = table.spec();
        let q = Query::new(&store, &spec);
        let windows = q.windows("t", 0, &json!("a")).unwrap();
        let seen: Vec<(i64, Value, bool)> = windows
            .into_iter()
            .map(|w| (w.start, w.value, w.closed))
            .collect();
        assert_eq!(seen, [(0, json!(2), true), (10_000, json!(1), false)]);
        assert!(q.windows("t", 0, &json!("zzz")).unwrap().is_empty());
        let (page, _) = q.page("t", &[0], None, 10).unwrap();
        assert_eq!(page.len(), 3, "two windows of a, one of b: {page:?}");
        assert_eq!(page[0].window_start, Some(0));
    }
}
