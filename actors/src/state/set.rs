//! Every table shard of one source partition ([`TableSet`]): what the partition actor owns and
//! lends to its agents with each batch. At commit it stages every dirty shard, the key counts
//! and the next source offset into one sled batch, with the writes each changelog must receive
//! first; between events it collects the windows stream time has closed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::metrics::Metrics;
use crate::model::codec::TopicCodecs;
use crate::model::error::{Error, Result};
use crate::model::names::{changelog_topic, count_key, global_tree_name, offset_key, tree_name};
use crate::model::positions::Positions;
use crate::state::shard::Shard;
use crate::state::spec::{Change, CloseRecord, ShardOps};
use crate::state::spec::{TableKey, TableSpec, TableValue};
use crate::state::table::{GlobalTable, GlobalView, Table, TableView};
use crate::state::windowed::WindowedTable;
use crate::state::windowed::{WindowShard, WindowView};

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
    /// The node-wide copies of the global tables: those among `specs`, which this partition's
    /// agents write, and those of other topics' agents ([`TableSet::reading_globals`]).
    globals: HashMap<Arc<str>, sled::Tree>,
    /// Global tables other topics' agents write, as declared: read-only here.
    foreign: Vec<TableSpec>,
    /// Their typed read-only shards, created on first use.
    readers: HashMap<Arc<str>, Box<dyn std::any::Any + Send>>,
    /// The sink topics of each table with a coalesced change stream.
    sinks: HashMap<Arc<str>, Vec<String>>,
    counts: HashMap<Arc<str>, u64>,
    max_cached: usize,
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
    /// (table, sink topic) of every table with writes and a change stream: its writes go
    /// there too.
    pub(crate) streams: Vec<(Arc<str>, String)>,
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
            foreign: Vec::new(),
            readers: HashMap::new(),
            sinks: HashMap::new(),
            counts,
            max_cached,
        })
    }

    /// Sends the writes of each table in `sinks` (those this set holds) to its sink topics too,
    /// at each commit: its coalesced change stream (see [`Staged::streams`]).
    pub(crate) fn with_sinks(mut self, sinks: &BTreeMap<Arc<str>, Vec<String>>) -> Self {
        self.sinks = sinks
            .iter()
            .filter(|(name, _)| self.specs.iter().any(|s| s.name == **name))
            .map(|(name, topics)| (name.clone(), topics.clone()))
            .collect();
        self
    }

    /// Lets this partition's agents read every global table of the app in `globals`, also
    /// those other topics' agents write (read-only: their writes belong to the partitions of the
    /// topic that declares them).
    ///
    /// # Errors
    /// The store cannot open a global table's tree.
    pub(crate) fn reading_globals(mut self, db: &sled::Db, globals: &[TableSpec]) -> Result<Self> {
        for spec in globals {
            if self.globals.contains_key(&spec.name) {
                continue;
            }
            let tree = db
                .open_tree(global_tree_name(&spec.name))
                .map_err(|e| Error::store(&self.path, e))?;
            self.globals.insert(spec.name.clone(), tree);
            self.foreign.push(spec.clone());
        }
        Ok(self)
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

    /// Every window of `key` in this partition's shard of `table` that has not expired, in
    /// start order, without moving stream time (the test driver's read).
    pub(crate) fn windows_of<K: TableKey, V: TableValue>(
        &mut self,
        table: &WindowedTable<K, V>,
        key: &K,
    ) -> Result<Vec<(crate::state::window::Window, V)>> {
        let name = table.name();
        if !self.shards.contains_key(name) {
            return Err(Error::UndeclaredTable {
                table: name.to_owned(),
                topic: self.topic.to_string(),
            });
        }
        typed::<WindowShard<K, V>>(&mut self.shards, name)?.windows(key, i64::MIN, i64::MAX)
    }

    /// Closes the windows stream time has passed in every windowed table (calling their
    /// callbacks) and returns the closed windows' records for their close topics. Sending them
    /// is the caller's (the agent actor's): a close is part of the current event, so a failure
    /// rolls the closes back with it.
    ///
    /// # Errors
    /// A close record does not encode, or a window cannot be read or deleted.
    pub(crate) fn close_windows(&mut self, codecs: &TopicCodecs) -> Result<Vec<CloseRecord>> {
        let mut out = Vec::new();
        for shard in self.shards.values_mut() {
            shard.close_due(codecs, &mut out)?;
        }
        Ok(out)
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
        let name = table.name();
        if let Some(spec) = self.foreign.iter().find(|s| &*s.name == name) {
            if *spec != table.spec() {
                return Err(Error::TableTypeMismatch {
                    table: name.to_owned(),
                });
            }
            let tree = &self.globals[name];
            let reader = self.readers.entry(spec.name.clone()).or_insert_with(|| {
                Box::new(Shard::<K, V>::new(
                    spec.clone(),
                    tree.clone(),
                    self.path.clone(),
                ))
            });
            let shard =
                reader
                    .downcast_mut::<Shard<K, V>>()
                    .ok_or_else(|| Error::TableTypeMismatch {
                        table: name.to_owned(),
                    })?;
            return Ok(GlobalView {
                shard,
                global: tree,
                path: &self.path,
                writes: Err(self.topic.clone()),
            });
        }
        self.view(table.as_table())?;
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
            writes: Ok(()),
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

    /// Stages every dirty entry, the new key counts and the next offset of each source topic
    /// into one batch.
    pub(crate) fn stage(&self, next: &Positions) -> Result<Staged> {
        let mut batch = sled::Batch::default();
        let mut counts = Vec::new();
        let mut changes = Vec::new();
        let mut streams = Vec::new();
        for (name, shard) in &self.shards {
            let mut writes = Vec::new();
            let delta = shard.stage(&mut batch, &mut writes)?;
            if !writes.is_empty() {
                if let Some(sinks) = self.sinks.get(name) {
                    streams.extend(sinks.iter().map(|s| (name.clone(), s.clone())));
                }
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
        for (topic, offset) in next.iter() {
            batch.insert(offset_key(&self.topic, topic), &offset.to_be_bytes());
        }
        Ok(Staged {
            batch,
            counts,
            changes,
            streams,
        })
    }

    /// [`stage`](Self::stage) with only the lead topic's next offset (one-topic tasks).
    pub(crate) fn stage_lead(&self, next: i64) -> Result<Staged> {
        self.stage(&Positions::of([(self.topic.clone(), next)]))
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
#[path = "set_tests.rs"]
mod tests;
