//! The typed table API that agents use: [`Table`] names a table and its types, [`TableView`]
//! reads and writes the current partition's shard of it.
//!
//! A table is sharded by partition: the shard an event sees is the one of the event's own
//! partition, so the table must be keyed co-partitioned with the agent's source topic (count per
//! URL, keyed by URL, fed by a topic keyed by URL).

use std::marker::PhantomData;
use std::sync::Arc;

use crate::model::codec::Codec;
use crate::model::error::{Error, Result};
use crate::state::shard::Shard;
use crate::state::spec::{TableKey, TableSpec, TableValue};

/// A typed handle on a partitioned table, like Faust's `app.Table(name)`: cheap to clone, kept
/// in the agent, passed to [`crate::Event::table`] to reach the current partition's shard.
///
/// Keys and values default to the JSON codec; `key_codec`/`value_codec` change that.
pub struct Table<K, V> {
    spec: TableSpec,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Table {
            spec: self.spec.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Table").field(&self.spec).finish()
    }
}

impl<K: TableKey, V: TableValue> Table<K, V> {
    /// A table named `name` with JSON keys and values.
    pub fn new(name: &str) -> Self {
        Table {
            spec: TableSpec::plain(name),
            _types: PhantomData,
        }
    }

    /// Sets the codec of keys.
    pub fn key_codec(mut self, codec: Codec) -> Self {
        self.spec.key_codec = codec;
        self
    }

    /// Sets the codec of values.
    pub fn value_codec(mut self, codec: Codec) -> Self {
        self.spec.value_codec = codec;
        self
    }

    /// The untyped description, for `Agent::tables`.
    pub fn spec(&self) -> TableSpec {
        self.spec.clone().typed::<K, V>()
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

/// The current partition's shard of a table, borrowed for one event.
///
/// Reads go through the write cache to the store; writes stay in the cache until the next
/// commit, which writes each dirty key once. Writes made by an event that fails or panics are
/// rolled back, so a retried event never applies twice.
pub struct TableView<'a, K: TableKey, V: TableValue> {
    pub(crate) shard: &'a mut Shard<K, V>,
}

impl<K: TableKey, V: TableValue> TableView<'_, K, V> {
    /// The value of `key`, if any.
    ///
    /// # Errors
    /// The store failed, or the stored bytes do not decode with the table's value codec.
    pub fn get(&mut self, key: &K) -> Result<Option<V>> {
        self.shard.get(key)
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    /// As [`TableView::get`].
    pub fn contains(&mut self, key: &K) -> Result<bool> {
        Ok(self.shard.get(key)?.is_some())
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// As [`TableView::get`] (the previous value is loaded to keep the key count exact).
    pub fn insert(&mut self, key: K, value: V) -> Result<()> {
        self.shard.put(key, Some(value))
    }

    /// Removes `key`; a no-op when absent.
    ///
    /// # Errors
    /// As [`TableView::get`].
    pub fn remove(&mut self, key: &K) -> Result<()> {
        self.shard.put(key.clone(), None)
    }

    /// Replaces the value of `key` by `f(current)` and returns the new value: the counting idiom
    /// `view.update(url, |n| n.unwrap_or(0) + 1)`.
    ///
    /// # Errors
    /// As [`TableView::get`].
    pub fn update(&mut self, key: K, f: impl FnOnce(Option<V>) -> V) -> Result<V> {
        let new = f(self.shard.get(&key)?);
        self.shard.put(key, Some(new.clone()))?;
        Ok(new)
    }

    /// Every key and value of this partition's shard, with unflushed writes applied.
    ///
    /// # Errors
    /// The store failed or holds bytes that do not decode.
    pub fn items(&mut self) -> Result<Vec<(K, V)>> {
        self.shard.items()
    }
}

/// A table every node holds in full, like Faust's `app.GlobalTable` or Kafka Streams'
/// `GlobalKTable`: each node tails every partition of its changelog into a local copy, so an
/// agent reads any key from any partition. Writes go through the writing event's partition
/// (cached, changelogged and committed like any table write) and reach every node's copy from
/// the changelog; the writer sees its own writes at once.
pub struct GlobalTable<K, V> {
    table: Table<K, V>,
}

impl<K, V> Clone for GlobalTable<K, V> {
    fn clone(&self) -> Self {
        GlobalTable {
            table: self.table.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for GlobalTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GlobalTable")
            .field(&self.table.spec)
            .finish()
    }
}

impl<K: TableKey, V: TableValue> GlobalTable<K, V> {
    /// A global table named `name` with JSON keys and values.
    pub fn new(name: &str) -> Self {
        let mut table = Table::new(name);
        table.spec.global = true;
        GlobalTable { table }
    }

    /// Sets the codec of keys.
    pub fn key_codec(self, codec: Codec) -> Self {
        GlobalTable {
            table: self.table.key_codec(codec),
        }
    }

    /// Sets the codec of values.
    pub fn value_codec(self, codec: Codec) -> Self {
        GlobalTable {
            table: self.table.value_codec(codec),
        }
    }

    /// The untyped description, for `Agent::tables`.
    pub fn spec(&self) -> TableSpec {
        self.table.spec()
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        self.table.name()
    }

    pub(crate) fn as_table(&self) -> &Table<K, V> {
        &self.table
    }
}

/// A global table as one event sees it: every key of every partition.
pub struct GlobalView<'a, K: TableKey, V: TableValue> {
    pub(crate) shard: &'a mut Shard<K, V>,
    pub(crate) global: &'a sled::Tree,
    pub(crate) path: &'a std::path::Path,
    /// `Err(topic)`: read by an agent of `topic`, which does not write the table.
    pub(crate) writes: std::result::Result<(), Arc<str>>,
}

impl<K: TableKey, V: TableValue> GlobalView<'_, K, V> {
    /// The value of `key`, from any partition (this event's own writes first).
    ///
    /// # Errors
    /// The store failed or holds bytes that do not decode.
    pub fn get(&mut self, key: &K) -> Result<Option<V>> {
        if let Some(mine) = self.shard.pending(key) {
            return Ok(mine);
        }
        self.shard.read_from(self.global, self.path, key)
    }

    /// Whether `key` has a value in any partition.
    ///
    /// # Errors
    /// As [`GlobalView::get`].
    pub fn contains(&mut self, key: &K) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Sets `key` (written through this event's partition).
    ///
    /// # Errors
    /// As [`TableView::insert`].
    pub fn insert(&mut self, key: K, value: V) -> Result<()> {
        self.writable()?;
        self.shard.put(key, Some(value))
    }

    /// Removes `key` (written through this event's partition).
    ///
    /// # Errors
    /// As [`TableView::remove`].
    pub fn remove(&mut self, key: &K) -> Result<()> {
        self.writable()?;
        self.shard.put(key.clone(), None)
    }

    /// Only the agents of the topic that declares a global table write it: their partitions
    /// hold its shards and changelog partitions.
    fn writable(&self) -> Result<()> {
        self.writes
            .as_ref()
            .map_err(|topic| Error::GlobalTableReadOnly {
                table: self.shard.name().to_owned(),
                topic: topic.to_string(),
            })
            .copied()
    }

    /// Every key and value of the whole table as this node holds it.
    ///
    /// # Errors
    /// As [`GlobalView::get`].
    pub fn items(&mut self) -> Result<Vec<(K, V)>> {
        self.shard.items_in(self.global, self.path)
    }
}
