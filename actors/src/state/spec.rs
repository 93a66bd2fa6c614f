//! What a table is, to the runtime: [`TableSpec`] (name, codecs, kind) as agents declare it,
//! what its keys and values must be, and the untyped interface the runtime drives any shard
//! through (`ShardOps`): end or roll back an event, stage a commit, close due windows.

use std::any::Any;
use std::hash::Hash;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::model::codec::{Codec, TopicCodecs};
use crate::model::error::Result;
use crate::model::shape::{shape_of, Shape};
use crate::state::window::WindowKind;

/// What a table key must be: encodable, hashable for the write cache, cloneable for the undo log.
pub trait TableKey: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + 'static> TableKey for T {}

/// What a table value must be: encodable and cloneable for the undo log.
pub trait TableValue: Serialize + DeserializeOwned + Clone + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + 'static> TableValue for T {}

/// The untyped description of a table: its name and codecs. Agents list these in
/// `Agent::tables` so the runtime can open, count and flush them.
#[derive(Clone)]
pub struct TableSpec {
    /// Table name, unique in the app; later the changelog topic is `<app-id>-<name>-changelog`.
    pub name: Arc<str>,
    /// Codec of keys, in the store and in the changelog.
    pub key_codec: Codec,
    /// Codec of values, in the store and in the changelog.
    pub value_codec: Codec,
    /// A global table: every node holds every partition (see [`GlobalTable`](crate::GlobalTable)).
    pub global: bool,
    /// The window kind of a windowed table (see [`crate::WindowedTable`]).
    pub window: Option<WindowKind>,
    /// The topic a windowed table sends closed windows to, if any.
    pub close_topic: Option<Arc<str>>,
    /// Opens the typed shard of a windowed table (windowed shards open with their partition, so
    /// that windows restored from the changelog close even before the next event).
    pub(crate) opener: Option<Arc<dyn ShardOpener>>,
    /// What the key and value types ask their deserializers for (see `model::shape`).
    pub(crate) shapes: (Shape, Shape),
}

/// Opens one partition's shard of a table whose types only its handle knows.
pub(crate) trait ShardOpener: Send + Sync {
    fn open(&self, tree: sled::Tree, path: Arc<std::path::Path>) -> Result<Box<dyn ShardOps>>;
}

impl PartialEq for TableSpec {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.name,
            self.key_codec,
            self.value_codec,
            self.global,
            self.window,
        ) == (
            &other.name,
            other.key_codec,
            other.value_codec,
            other.global,
            other.window,
        ) && self.close_topic == other.close_topic
    }
}

impl Eq for TableSpec {}

impl std::fmt::Debug for TableSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSpec")
            .field("name", &self.name)
            .field("key_codec", &self.key_codec)
            .field("value_codec", &self.value_codec)
            .field("global", &self.global)
            .field("window", &self.window)
            .field("close_topic", &self.close_topic)
            .finish()
    }
}

impl TableSpec {
    /// A plain (not windowed, not global) table named `name`, with JSON keys and values.
    pub(crate) fn plain(name: &str) -> Self {
        TableSpec {
            name: Arc::from(name),
            key_codec: Codec::Json,
            value_codec: Codec::Json,
            global: false,
            window: None,
            close_topic: None,
            opener: None,
            shapes: (Shape::Unknown, Shape::Unknown),
        }
    }

    /// With the shapes of key type `K` and value type `V`.
    pub(crate) fn typed<K: DeserializeOwned, V: DeserializeOwned>(mut self) -> Self {
        self.shapes = (shape_of::<K>(), shape_of::<V>());
        self
    }

    /// What the table's key and value types ask their deserializers for: start-up checks
    /// them against the table's codecs ([`Codec::cannot_decode`]).
    pub fn shapes(&self) -> &(Shape, Shape) {
        &self.shapes
    }

    pub(crate) fn new_windowed(name: &str, kind: WindowKind) -> Self {
        TableSpec {
            window: Some(kind),
            ..TableSpec::plain(name)
        }
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
