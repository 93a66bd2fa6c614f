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

use crate::changelog::changelog_topic;
use crate::codec::Codec;
use crate::codec::TopicCodecs;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Target};
use crate::table::{GlobalTable, GlobalView, Table, TableKey, TableSpec, TableValue, TableView};
use crate::window::WindowedTable;
use crate::windowed::{WindowShard, WindowView};

/// Key of the next source offset in a partition tree.
pub(crate) const OFFSET_KEY: &[u8] = b"m/offset";

/// Name of the sled tree holding this node's full copy of global table `table`.
pub(crate) fn global_tree_name(table: &str) -> String {
    format!("global/{table}")
}

/// Name of the sled tree holding partition `partition` of `topic`.
pub(crate) fn tree_name(topic: &str, partition: i32) -> String {
    format!("partition/{topic}/{partition}")
}

pub(crate) fn count_key(table: &str) -> Vec<u8> {
    [b"m/count/".as_slice(), table.as_bytes()].concat()
}

pub(crate) fn data_prefix(table: &str) -> Vec<u8> {
    [b"d/".as_slice(), table.as_bytes(), b"\0"].concat()
}

/// Reads the next source offset recorded in a partition tree.
pub(crate) fn stored_offset(tree: &sled::Tree, path: &Path) -> Result<Option<i64>> {
    let raw = tree.get(OFFSET_KEY).map_err(|e| Error::store(path, e))?;
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
    let meta = [prefix.as_slice(), crate::windowed::STREAM_TIME_KEY].concat();
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

/// What the partition actor does with a shard without knowing its types.
pub(crate) trait ShardOps: Send {
    /// The current event succeeded: forget its undo log.
    fn end_event(&mut self);
    /// The current event failed: restore every key it changed.
    fn rollback_event(&mut self);
    /// Writes every dirty entry into `batch` and, as (key, value-or-tombstone) bytes, into
    /// `changes` for the changelog; returns the change in the number of keys.
    fn stage(&self, batch: &mut sled::Batch, changes: &mut Vec<Change>) -> Result<i64>;
    /// The staged batch is durable: entries become clean; the cache is trimmed to `max_cached`.
    fn committed(&mut self, max_cached: usize);
    /// Drops every cached entry, dirty ones included (rewind to the last commit).
    fn discard(&mut self);
    /// Whether anything waits for the next commit.
    fn has_dirty(&self) -> bool;
    fn as_any(&mut self) -> &mut dyn Any;
    /// Closes the windows that stream time has passed (windowed tables only): marks them closed,
    /// calls the table's callback and adds the records for its close topic to `out`.
    fn close_due(&mut self, _codecs: &TopicCodecs, _out: &mut Vec<CloseRecord>) -> Result<()> {
        Ok(())
    }
    /// Starts counting into the node's metrics (windowed tables count late and closed windows).
    fn attach_metrics(&mut self, _metrics: &Metrics) {}
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

/// Every table shard of one source partition, with the sled tree they live in.
///
/// Owned by the partition actor and lent, with each batch, to the agent actor: ownership moves
/// with the message, so a shard has exactly one writer at any time.
pub struct TableSet {
    /// The app id: prefix of the changelog topics.
    app_id: Arc<str>,
    topic: Arc<str>,
    partition: i32,
    tree: sled::Tree,
    path: Arc<Path>,
    specs: Vec<TableSpec>,
    shards: HashMap<Arc<str>, Box<dyn ShardOps>>,
    /// The node-wide copies of the global tables among `specs`.
    globals: HashMap<Arc<str>, sled::Tree>,
    counts: HashMap<Arc<str>, u64>,
    max_cached: usize,
}

/// A window's final value, encoded for its table's close topic.
pub(crate) struct CloseRecord {
    pub(crate) topic: Arc<str>,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

/// One table write as the changelog carries it: encoded key, encoded value or tombstone.
pub(crate) struct Change {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
}

/// The shard of table `name` with its types, or [`Error::TableTypeMismatch`].
fn typed<'a, S: 'static>(
    shards: &'a mut HashMap<Arc<str>, Box<dyn ShardOps>>,
    name: &str,
) -> Result<&'a mut S> {
    shards
        .get_mut(name)
        .and_then(|s| s.as_any().downcast_mut::<S>())
        .ok_or_else(|| Error::TableTypeMismatch {
            table: name.to_owned(),
        })
}

/// A batch ready to apply atomically, the key counts it will leave, and the writes each
/// table's changelog must receive first.
pub(crate) struct Staged {
    pub(crate) batch: sled::Batch,
    pub(crate) counts: Vec<(Arc<str>, u64, i64)>,
    /// (table, changelog topic, writes) of every table with writes.
    pub(crate) changes: Vec<(Arc<str>, String, Vec<Change>)>,
}

impl TableSet {
    /// Opens the shards of `specs` for `topic`/`partition` in `db`.
    pub(crate) fn open(
        db: &sled::Db,
        path: Arc<Path>,
        app_id: Arc<str>,
        topic: Arc<str>,
        partition: i32,
        specs: Vec<TableSpec>,
        max_cached: usize,
    ) -> Result<Self> {
        let tree = db
            .open_tree(tree_name(&topic, partition))
            .map_err(|e| Error::store(&path, e))?;
        let mut globals = HashMap::new();
        for spec in specs.iter().filter(|s| s.global) {
            let tree = db
                .open_tree(global_tree_name(&spec.name))
                .map_err(|e| Error::store(&path, e))?;
            globals.insert(spec.name.clone(), tree);
        }
        let mut shards: HashMap<Arc<str>, Box<dyn ShardOps>> = HashMap::new();
        for spec in &specs {
            if let Some(opener) = &spec.opener {
                shards.insert(spec.name.clone(), opener.open(tree.clone(), path.clone())?);
            }
        }
        let mut counts = HashMap::new();
        for spec in &specs {
            let raw = tree
                .get(count_key(&spec.name))
                .map_err(|e| Error::store(&path, e))?;
            let n = raw
                .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                .map_or(0, u64::from_be_bytes);
            counts.insert(spec.name.clone(), n);
        }
        Ok(TableSet {
            app_id,
            topic,
            partition,
            tree,
            path,
            specs,
            shards,
            globals,
            counts,
            max_cached,
        })
    }

    /// The typed shard of `table`, created on first use.
    pub(crate) fn view<K: TableKey, V: TableValue>(
        &mut self,
        table: &Table<K, V>,
    ) -> Result<TableView<'_, K, V>> {
        let name = table.name();
        if !self.shards.contains_key(name) {
            let spec = table.spec();
            if !self.specs.contains(&spec) {
                return Err(Error::UndeclaredTable {
                    table: name.to_owned(),
                    topic: self.topic.to_string(),
                });
            }
            let shard = Shard::<K, V>::new(spec.clone(), self.tree.clone(), self.path.clone());
            self.shards.insert(spec.name, Box::new(shard));
        }
        let shard = typed::<Shard<K, V>>(&mut self.shards, name)?;
        Ok(TableView { shard })
    }

    /// This partition's shard of the windowed `table`, for an event at time `time` (which
    /// advances the table's stream time).
    pub(crate) fn window_view<K: TableKey, V: TableValue>(
        &mut self,
        table: &WindowedTable<K, V>,
        time: i64,
    ) -> Result<WindowView<'_, K, V>> {
        let name = table.name();
        if !self.shards.contains_key(name) {
            return Err(Error::UndeclaredTable {
                table: name.to_owned(),
                topic: self.topic.to_string(),
            });
        }
        let shard = typed::<WindowShard<K, V>>(&mut self.shards, name)?;
        shard.advance(time)?;
        Ok(WindowView { shard, time })
    }

    /// Closes the windows stream time has passed in every windowed table (calling their
    /// callbacks) and sends the closed windows to their close topics through `outbox`; part of
    /// the current event, so a failure rolls the closes back with it.
    ///
    /// # Errors
    /// A close record does not encode, or the producer refused it.
    pub(crate) async fn close_windows(&mut self, outbox: &mut Outbox) -> Result<()> {
        let mut out = Vec::new();
        for shard in self.shards.values_mut() {
            shard.close_due(outbox.codecs(), &mut out)?;
        }
        for r in out {
            outbox
                .send_raw(
                    &r.topic,
                    Target::default(),
                    Some(&r.key),
                    Some(&r.value),
                    &[],
                )
                .await?;
        }
        Ok(())
    }

    /// Whether this partition has windowed tables (checked for closes between events too:
    /// processing time moves without events).
    pub(crate) fn has_windows(&self) -> bool {
        self.specs.iter().any(|s| s.window.is_some())
    }

    /// Counts late, closed and expired windows into `metrics` from now on.
    pub(crate) fn attach_metrics(&mut self, metrics: &Metrics) {
        self.shards
            .values_mut()
            .for_each(|s| s.attach_metrics(metrics));
    }

    /// The whole global `table` as this node holds it, with this partition's writes.
    pub(crate) fn global_view<K: TableKey, V: TableValue>(
        &mut self,
        table: &GlobalTable<K, V>,
    ) -> Result<GlobalView<'_, K, V>> {
        self.view(table.as_table())?;
        let name = table.name();
        let global = self
            .globals
            .get(name)
            .ok_or_else(|| Error::TableTypeMismatch {
                table: name.to_owned(),
            })?;
        let shard = typed::<Shard<K, V>>(&mut self.shards, name)?;
        Ok(GlobalView {
            shard,
            global,
            path: &self.path,
        })
    }

    pub(crate) fn end_event(&mut self) {
        self.shards.values_mut().for_each(|s| s.end_event());
    }

    pub(crate) fn rollback_event(&mut self) {
        self.shards.values_mut().for_each(|s| s.rollback_event());
    }

    /// Whether a commit has table writes to store.
    pub(crate) fn is_dirty(&self) -> bool {
        self.shards.values().any(|s| s.has_dirty())
    }

    /// Stages every dirty entry, the new key counts and `next_offset` into one batch.
    pub(crate) fn stage(&self, next_offset: Option<i64>) -> Result<Staged> {
        let mut batch = sled::Batch::default();
        let mut counts = Vec::new();
        let mut changes = Vec::new();
        for (name, shard) in &self.shards {
            let mut writes = Vec::new();
            let delta = shard.stage(&mut batch, &mut writes)?;
            if !writes.is_empty() {
                let topic = changelog_topic(&self.app_id, name);
                changes.push((name.clone(), topic, writes));
            }
            if delta != 0 {
                let old = self.counts.get(name).copied().unwrap_or(0);
                let new = old.saturating_add_signed(delta);
                batch.insert(count_key(name), &new.to_be_bytes());
                counts.push((name.clone(), new, delta));
            }
        }
        if let Some(offset) = next_offset {
            batch.insert(OFFSET_KEY, &offset.to_be_bytes());
        }
        Ok(Staged {
            batch,
            counts,
            changes,
        })
    }

    /// The staged batch was applied: take its counts and mark the cache clean.
    pub(crate) fn committed(&mut self, counts: &[(Arc<str>, u64, i64)]) {
        for (name, n, _) in counts {
            self.counts.insert(name.clone(), *n);
        }
        let max = self.max_cached;
        self.shards.values_mut().for_each(|s| s.committed(max));
    }

    /// Forgets everything not yet committed (after a lost batch or a failed delivery).
    pub(crate) fn discard(&mut self) {
        self.shards.values_mut().for_each(|s| s.discard());
    }

    /// The sled tree of this partition.
    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The number of keys of each declared table in this partition, as of the last commit.
    pub fn key_counts(&self) -> impl Iterator<Item = (&Arc<str>, u64)> {
        self.counts.iter().map(|(k, v)| (k, *v))
    }

    /// The partition this set belongs to.
    pub fn partition(&self) -> i32 {
        self.partition
    }
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
