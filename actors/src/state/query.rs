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
use crate::state::windowed::{window_key, CLOSED};

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

    fn window_entry(&self, start: i64, raw: &[u8]) -> Result<WindowEntry> {
        let (state, value) = raw.split_first().unwrap_or((&0, &[]));
        Ok(WindowEntry {
            start,
            value: Self::decode(self.spec.value_codec, "table value", value)?,
            closed: *state == CLOSED,
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
