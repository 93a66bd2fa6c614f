//! Table shards: the part of each table that belongs to one partition, cached in memory and
//! stored in one sled tree per source partition.
//!
//! Layout of a partition's tree (`partition/<topic>/<partition>`):
//! - `d/<table>\0<key bytes>` -> value bytes, encoded with the table's codecs;
//! - `m/offset` -> the next source offset to read, written in the same batch as the data, so the
//!   store always says which events its tables already contain;
//! - `m/count/<table>` -> number of keys of that table in this partition.
//!
//! Writes go to a cache (one entry per key, marked dirty). An event's writes are remembered in an
//! undo log until the event ends, so a failing or panicking event leaves no trace. The commit
//! cycle stages every dirty entry into one `sled::Batch` with the offset and the counts, applies
//! it atomically, then marks the entries clean.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::model::codec::Codec;
use crate::model::error::{Error, Result};
use crate::model::names::{data_prefix, STREAM_TIME_KEY};
use crate::state::spec::{Change, ShardOps, TableKey, TableSpec, TableValue};

/// Reads the lead topic's next source offset recorded in a task's tree.
#[cfg(test)]
pub(crate) fn stored_offset(tree: &sled::Tree, path: &Path) -> Result<Option<i64>> {
    stored_offset_at(tree, crate::model::names::OFFSET_KEY, path)
}

/// Reads the next source offset recorded under `key` (see `names::offset_key`).
pub(crate) fn stored_offset_at(tree: &sled::Tree, key: &[u8], path: &Path) -> Result<Option<i64>> {
    let raw = tree.get(key).map_err(|e| Error::store(path, e))?;
    Ok(raw.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok().map(i64::from_be_bytes)))
}

/// How a shard's keys become store and changelog bytes. Table keys use their codec as is;
/// windowed tables put the window's start in front (see `windowed`).
pub(crate) trait ShardKey: std::hash::Hash + Eq + Clone + Send + 'static {
    /// The key's bytes (after the table's prefix in the store; as is in the changelog).
    fn encode_key(&self, codec: Codec) -> Result<Vec<u8>>;
    /// The key back from its bytes.
    fn decode_key(codec: Codec, bytes: &[u8]) -> Result<Self>;
    /// Counted in the table's key count (bookkeeping entries are not).
    fn counted(&self) -> bool {
        true
    }
    /// Written after every other change of a commit: on a changelog that holds a prefix of a
    /// commit's records, this entry's presence proves the rest arrived.
    fn written_last(&self) -> bool {
        false
    }
}

impl<T: TableKey> ShardKey for T {
    fn encode_key(&self, codec: Codec) -> Result<Vec<u8>> {
        codec.encode("table key", self)
    }

    fn decode_key(codec: Codec, bytes: &[u8]) -> Result<Self> {
        codec.decode("table key", bytes)
    }
}

/// How a shard's values become bytes; table values use their codec as is.
pub(crate) trait ShardValue: Clone + Send + 'static {
    /// The value's bytes.
    fn encode_value(&self, codec: Codec) -> Result<Vec<u8>>;
    /// The value back from its bytes.
    fn decode_value(codec: Codec, bytes: &[u8]) -> Result<Self>;
}

impl<T: TableValue> ShardValue for T {
    fn encode_value(&self, codec: Codec) -> Result<Vec<u8>> {
        codec.encode("table value", self)
    }

    fn decode_value(codec: Codec, bytes: &[u8]) -> Result<Self> {
        codec.decode("table value", bytes)
    }
}

/// The number of counted keys of `table` in `tree` (its bookkeeping entry excluded).
pub(crate) fn count_keys(tree: &sled::Tree, table: &str) -> u64 {
    let prefix = data_prefix(table);
    let meta = [prefix.as_slice(), STREAM_TIME_KEY].concat();
    tree.scan_prefix(&prefix)
        .keys()
        .filter(|k| k.as_ref().map_or(true, |k| k.as_ref() != meta.as_slice()))
        .count() as u64
}

#[derive(Clone)]
struct Entry<V> {
    value: Option<V>,
    /// Changed since the last commit.
    dirty: bool,
    /// The key exists in the store (as of the last commit): keeps key counts exact.
    stored: bool,
}

/// One table's shard for one partition, typed.
pub(crate) struct Shard<K, V> {
    spec: TableSpec,
    tree: sled::Tree,
    path: Arc<Path>,
    prefix: Vec<u8>,
    cache: HashMap<K, Entry<V>>,
    /// Previous entries of the keys the current event changed (`None`: was not cached).
    undo: Vec<(K, Option<Entry<V>>)>,
}

impl<K: ShardKey, V: ShardValue> Shard<K, V> {
    pub(crate) fn new(spec: TableSpec, tree: sled::Tree, path: Arc<Path>) -> Self {
        Shard {
            prefix: data_prefix(&spec.name),
            spec,
            tree,
            path,
            cache: HashMap::new(),
            undo: Vec::new(),
        }
    }

    /// The table's name.
    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }

    fn store_key(&self, key: &K) -> Result<Vec<u8>> {
        let mut k = self.prefix.clone();
        k.extend(key.encode_key(self.spec.key_codec)?);
        Ok(k)
    }

    fn load(&mut self, key: &K) -> Result<&mut Entry<V>> {
        if !self.cache.contains_key(key) {
            let raw = self
                .tree
                .get(self.store_key(key)?)
                .map_err(|e| Error::store(&self.path, e))?;
            let value = match raw {
                Some(bytes) => Some(V::decode_value(self.spec.value_codec, &bytes)?),
                None => None,
            };
            let entry = Entry {
                stored: value.is_some(),
                value,
                dirty: false,
            };
            self.cache.insert(key.clone(), entry);
        }
        self.cache.get_mut(key).ok_or_else(|| Error::ActorGone {
            context: "reading the table cache".into(),
        })
    }

    pub(crate) fn get(&mut self, key: &K) -> Result<Option<V>> {
        Ok(self.load(key)?.value.clone())
    }

    pub(crate) fn put(&mut self, key: K, value: Option<V>) -> Result<()> {
        let before = self.load(&key)?.clone();
        if !self.undo.iter().any(|(k, _)| *k == key) {
            self.undo.push((key.clone(), Some(before)));
        }
        let entry = self.load(&key)?;
        entry.value = value;
        entry.dirty = true;
        Ok(())
    }

    /// Sets `key`, which the caller knows has no value in the cache or the store (a new
    /// window): unlike [`Shard::put`], no store read.
    pub(crate) fn put_absent(&mut self, key: K, value: V) {
        let before = self.cache.get(&key).cloned();
        let stored = before.as_ref().is_some_and(|e| e.stored);
        if !self.undo.iter().any(|(k, _)| *k == key) {
            self.undo.push((key.clone(), before));
        }
        let entry = Entry {
            value: Some(value),
            dirty: true,
            stored,
        };
        self.cache.insert(key, entry);
    }

    /// The value this event or an uncommitted earlier one wrote for `key`, if any.
    pub(crate) fn pending(&self, key: &K) -> Option<Option<V>> {
        self.cache
            .get(key)
            .filter(|e| e.dirty)
            .map(|e| e.value.clone())
    }

    /// `key` read straight from `tree` (a global table's copy), not through the cache.
    pub(crate) fn read_from(&self, tree: &sled::Tree, path: &Path, key: &K) -> Result<Option<V>> {
        let raw = tree
            .get(self.store_key(key)?)
            .map_err(|e| Error::store(path, e))?;
        raw.map(|b| V::decode_value(self.spec.value_codec, &b))
            .transpose()
    }

    pub(crate) fn items(&mut self) -> Result<Vec<(K, V)>> {
        let tree = self.tree.clone();
        let path = self.path.clone();
        self.items_in(&tree, &path)
    }

    /// Every entry of `tree` under this table, with the cache's writes applied.
    pub(crate) fn items_in(&mut self, tree: &sled::Tree, path: &Path) -> Result<Vec<(K, V)>> {
        let mut all: HashMap<K, V> = HashMap::new();
        for item in tree.scan_prefix(&self.prefix) {
            let (k, v) = item.map_err(|e| Error::store(path, e))?;
            let key = K::decode_key(self.spec.key_codec, &k[self.prefix.len()..])?;
            all.insert(key, V::decode_value(self.spec.value_codec, &v)?);
        }
        for (k, e) in self
            .cache
            .iter()
            .filter(|(_, e)| e.dirty || !self.spec.global)
        {
            match &e.value {
                Some(v) => all.insert(k.clone(), v.clone()),
                None => all.remove(k),
            };
        }
        Ok(all.into_iter().collect())
    }
}

impl<K: ShardKey, V: ShardValue> ShardOps for Shard<K, V> {
    fn end_event(&mut self) {
        self.undo.clear();
    }

    fn rollback_event(&mut self) {
        while let Some((key, before)) = self.undo.pop() {
            match before {
                Some(entry) => self.cache.insert(key, entry),
                None => self.cache.remove(&key),
            };
        }
    }

    fn stage(&self, batch: &mut sled::Batch, changes: &mut Vec<Change>) -> Result<i64> {
        let mut delta = 0i64;
        let dirty = self.cache.iter().filter(|(_, e)| e.dirty);
        let (last, first): (Vec<_>, Vec<_>) = dirty.partition(|(k, _)| k.written_last());
        for (key, entry) in first.into_iter().chain(last) {
            let raw = key.encode_key(self.spec.key_codec)?;
            let k = [self.prefix.as_slice(), &raw].concat();
            let counted = i64::from(key.counted());
            let value = match &entry.value {
                Some(v) => {
                    let bytes = v.encode_value(self.spec.value_codec)?;
                    batch.insert(k, bytes.as_slice());
                    delta += counted * i64::from(!entry.stored);
                    Some(bytes)
                }
                None => {
                    batch.remove(k);
                    delta -= counted * i64::from(entry.stored);
                    None
                }
            };
            changes.push(Change { key: raw, value });
        }
        Ok(delta)
    }

    fn committed(&mut self, max_cached: usize) {
        self.cache.retain(|_, e| e.value.is_some() || !e.dirty);
        for e in self.cache.values_mut() {
            e.stored = e.value.is_some();
            e.dirty = false;
        }
        if self.cache.len() > max_cached {
            // Everything is clean now: dropping entries only costs a re-read from sled.
            self.cache.clear();
        }
    }

    fn discard(&mut self) {
        self.cache.clear();
        self.undo.clear();
    }

    fn has_dirty(&self) -> bool {
        self.cache.values().any(|e| e.dirty)
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}
