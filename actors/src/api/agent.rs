//! What a user implements: the [`Agent`] trait, and the [`Event`] it handles.
//!
//! An agent consumes one or more topics. Each event arrives decoded with its topic's codecs,
//! together with the table shards of its partition and a way to send records to other topics.
//! Events of one partition are handled one at a time, in offset order.

use std::fmt;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::io::outbox::Outbox;
use crate::io::outbox::Target;
pub use crate::model::codec::TopicCodecs;
use crate::model::error::Result;
use crate::model::record::{Header, Record};
use crate::state::set::TableSet;
use crate::state::spec::{TableKey, TableSpec, TableValue};
use crate::state::table::{GlobalTable, GlobalView, Table, TableView};
use crate::state::windowed::WindowView;
use crate::state::windowed::WindowedTable;

/// A stream processor, like Faust's `@app.agent(topic)`.
///
/// The value is shared by the actors of every partition, so it holds configuration and table
/// handles, not mutable state: state lives in tables, where it is sharded, stored and committed
/// with the offsets. Returning an error retries the event after a back-off; a panic restarts the
/// agent's actor and retries the event. Either way the event's table writes are rolled back
/// first, so nothing is applied twice and nothing is skipped.
pub trait Agent: Send + Sync + 'static {
    /// Type of record keys (decoded with the topic's key codec).
    type Key: DeserializeOwned + 'static;
    /// Type of record values (decoded with the topic's value codec).
    type Value: DeserializeOwned + 'static;

    /// The agent's name: metric label, log field, and later the prefix of its internal topics.
    fn name(&self) -> &str;

    /// The topics this agent consumes.
    fn topics(&self) -> Vec<String>;

    /// The tables this agent reads or writes; each is sharded like the agent's source topic.
    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }

    /// Handles one event.
    ///
    /// # Errors
    /// Any error: the event's table writes are undone and the event is retried after a back-off.
    fn handle(
        &self,
        event: &mut Event<'_, Self::Key, Self::Value>,
    ) -> impl Future<Output = Result<(), AgentError>>;

    /// Called when this node starts processing `partition` of `topic`.
    fn on_assign(&self, _topic: &str, _partition: i32) {}

    /// Called after `partition` of `topic` was committed and before it is released.
    fn on_revoke(&self, _topic: &str, _partition: i32) {}
}

/// An error returned by an agent: any `std::error::Error`, or a message.
pub struct AgentError(Box<dyn std::error::Error + Send + Sync + 'static>);

#[derive(Debug)]
struct Message(String);
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Message {}

impl AgentError {
    /// An error that is just a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        AgentError(Box::new(Message(message.to_string())))
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for AgentError {
    fn from(e: E) -> Self {
        AgentError(Box::new(e))
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// One event as an agent sees it: the decoded key and value, where the record came from, the
/// table shards of its partition, and sending to other topics.
pub struct Event<'a, K, V> {
    pub(crate) record: &'a Record,
    pub(crate) key: Option<K>,
    pub(crate) value: V,
    pub(crate) tables: &'a mut TableSet,
    pub(crate) outbox: &'a mut Outbox,
    pub(crate) sinks: &'a [String],
}

pub use crate::model::names::SOURCE_HEADER;

impl<K, V> Event<'_, K, V> {
    /// The decoded key; `None` when the record had no key.
    pub fn key(&self) -> Option<&K> {
        self.key.as_ref()
    }

    /// The decoded value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The topic the record came from.
    pub fn topic(&self) -> &str {
        &self.record.topic
    }

    /// The partition the record came from; also the partition of every table shard it sees.
    pub fn partition(&self) -> i32 {
        self.record.partition
    }

    /// The record's offset in its partition.
    pub fn offset(&self) -> i64 {
        self.record.offset
    }

    /// The record's timestamp in milliseconds since the epoch, if the broker gave one.
    pub fn timestamp(&self) -> Option<i64> {
        self.record.timestamp
    }

    /// The record's headers.
    pub fn headers(&self) -> &[Header] {
        &self.record.headers
    }

    /// The whole raw record (bytes as they were on the topic).
    pub fn record(&self) -> &Record {
        self.record
    }

    /// This task's shard of `table` (partition `p` of every topic of the task sees shard `p`).
    ///
    /// Reads see every write of this task so far, committed or not, in the order the task
    /// processed its events (one actor processes all of a task's topics, one batch at a time);
    /// never a write of another partition.
    ///
    /// # Errors
    /// The table is not declared by an agent of this task, or is used with other types.
    pub fn table<TK: TableKey, TV: TableValue>(
        &mut self,
        table: &Table<TK, TV>,
    ) -> Result<TableView<'_, TK, TV>> {
        self.tables.view(table)
    }

    /// Stream-table join: the value `table` holds for this event's key, from this task's shard
    /// (`None` for an event without a key, or a key the table does not hold). The table's
    /// key type is the event's, and the agent declares the table in
    /// [`tables`](crate::Agent::tables), which makes its topic and the table's writers'
    /// topics one co-partitioned task. Shorthand for `event.table(&t)?.get(key)`.
    ///
    /// # Errors
    /// As [`table`](Self::table), or the stored value does not decode.
    pub fn join<TV: TableValue>(&mut self, table: &Table<K, TV>) -> Result<Option<TV>>
    where
        K: TableKey,
    {
        match self.key.as_ref() {
            Some(key) => self.tables.view(table)?.get(key),
            None => Ok(None),
        }
    }

    /// This partition's shard of the windowed `table`, at this event's time (from the table's
    /// [`crate::EventTime`] source); seeing the event moves the table's stream time forward.
    ///
    /// # Errors
    /// The table is not declared by an agent of this topic or is used with other types, or the
    /// event has no time ([`Error::NoEventTime`](crate::Error::NoEventTime)).
    pub fn window<TK: TableKey, TV: TableValue>(
        &mut self,
        table: &WindowedTable<TK, TV>,
    ) -> Result<WindowView<'_, TK, TV>>
    where
        V: 'static,
    {
        let time = table.time_of(self.record, &self.value)?;
        self.tables.window_view(table, time)
    }

    /// The global `table`: every key of every partition, as this node holds it.
    ///
    /// # Errors
    /// The table is not declared by an agent of this topic, or is used with other types.
    pub fn global<TK: TableKey, TV: TableValue>(
        &mut self,
        table: &GlobalTable<TK, TV>,
    ) -> Result<GlobalView<'_, TK, TV>> {
        self.tables.global_view(table)
    }

    /// Sends `key`/`value` to `topic`, encoded with that topic's codecs. The next commit waits
    /// until the broker acknowledged it, so an event's output is never lost behind its offset.
    ///
    /// # Errors
    /// The key or value does not encode, or the producer refused the record.
    pub async fn send<SK: Serialize + ?Sized, SV: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&SK>,
        value: &SV,
    ) -> Result<()> {
        self.outbox
            .send_encoded(topic, Target::default(), key, value, Vec::new())
            .await
    }

    /// Sends `key`/`value` to every sink of this agent (`[agents.<name>] sinks` in the config),
    /// like a Faust agent's `yield` to its `sink=[...]`; a no-op for an agent without sinks.
    /// Each record carries a [`SOURCE_HEADER`] naming this event and this event's timestamp (as
    /// Kafka Streams' `to()` does), so event time flows through. Acknowledged before commit,
    /// like [`Event::send`].
    ///
    /// # Errors
    /// As [`Event::send`].
    pub async fn emit<SK: Serialize + ?Sized, SV: Serialize + ?Sized>(
        &mut self,
        key: Option<&SK>,
        value: &SV,
    ) -> Result<()> {
        if self.sinks.is_empty() {
            return Ok(());
        }
        let r = self.record;
        let to = Target::at(r.timestamp);
        let source = Header {
            key: SOURCE_HEADER.into(),
            value: Some(format!("{}/{}/{}", r.topic, r.partition, r.offset).into_bytes()),
        };
        let (last, others) = self.sinks.split_last().expect("sinks checked above");
        for sink in others {
            let headers = vec![source.clone()];
            self.outbox
                .send_encoded(sink, to, key, value, headers)
                .await?;
        }
        self.outbox
            .send_encoded(last, to, key, value, vec![source])
            .await
    }

    /// Sends `key`/`value` to `topic` like [`Event::send`], to the partition and with the headers
    /// `options` give.
    ///
    /// # Errors
    /// As [`Event::send`].
    pub async fn send_with<SK: Serialize + ?Sized, SV: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&SK>,
        value: &SV,
        options: &SendOptions,
    ) -> Result<()> {
        self.outbox
            .send_encoded(topic, options.target, key, value, options.headers.clone())
            .await
    }

    /// Sends this event's record, unchanged (key, value, headers and timestamp as they arrived), to
    /// `topic`, like Faust's `stream.forward`/`through`. Acknowledged before commit.
    ///
    /// # Errors
    /// The producer refused the record.
    pub async fn forward(&mut self, topic: &str) -> Result<()> {
        let r = self.record;
        self.outbox
            .send_raw(
                topic,
                Target::at(r.timestamp),
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
            )
            .await
    }

    /// Sends raw bytes to `topic` (optionally to one `partition`), with headers.
    ///
    /// # Errors
    /// The producer refused the record.
    pub async fn send_raw(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<()> {
        self.outbox
            .send_raw(
                topic,
                Target {
                    partition,
                    timestamp: None,
                },
                key,
                value,
                headers,
            )
            .await
    }
}

/// Where and with what headers [`Event::send_with`] sends a record.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    target: Target,
    headers: Vec<Header>,
}

impl SendOptions {
    /// The defaults: the partitioner picks the partition by key; no headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends to this partition instead of the key's.
    pub fn partition(mut self, partition: i32) -> Self {
        self.target.partition = Some(partition);
        self
    }

    /// Stamps the record with this timestamp (ms since the epoch) instead of the current time.
    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.target.timestamp = Some(timestamp_ms);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }
}
