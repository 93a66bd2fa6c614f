//! # faust-actors: the actix runtime of faust-rs
//!
//! Module map, following one event:
//! - [`consumer`]: the node's one Kafka consumer, its rebalance callbacks, and the thread that
//!   polls its main queue (rebalances only: records go straight to partitions).
//! - `reader`: one partition's own queue, read asynchronously in batches.
//! - [`coordinator`]: turns assign/revoke into partition actors, watches them, computes
//!   throughput.
//! - `partition`: the partition actor: reads its queue, hands batches in order to agent actors,
//!   runs the commit cycle (outputs acknowledged -> store -> Kafka offset).
//! - `commit`: the commit cycle's two halves: outputs, changelogs and store tree while the
//!   partition waits; flush and Kafka offset commit while it goes on.
//! - `global`: each node's full copy of the global tables.
//! - `agent_actor`: runs the user's agent over a batch, catching panics so that the supervisor
//!   restarts it and no event is lost.
//! - [`agent`]: the [`Agent`] trait users implement and the [`Event`] they handle.
//! - [`batch`]: [`BatchAgent`], events handled in batches of up to n or within a time.
//! - [`table`] and `shard`: typed tables, sharded by partition, with a write cache and per-event
//!   undo, stored in sled.
//! - [`window`] and `windowed`: windowed tables (tumbling, hopping, sliding), their stream
//!   time, and closing and expiring windows.
//! - [`changelog`]: changelog topics, and restoring a partition's tables from them.
//! - [`members`]: who is in the group and what each holds (a compacted topic), and standby
//!   placement by rendezvous hashing.
//! - `start`: where a partition starts (one rule for assignment and restart).
//! - `standby`: warm copies of partitions owned elsewhere, tailing their changelogs.
//! - [`store`]: the node's sled database, stamped with its Kafka cluster id.
//! - [`codec`]: JSON, MessagePack, string and raw codecs for keys and values, codecs an app
//!   registers, and which codecs each topic uses.
//! - `outbox`: where a record goes (`Target`), an event's records staged until it finishes,
//!   handed to the producer with their source offset, and their acknowledgements (a refused
//!   one names its source record).
//! - [`lease`]: whether the node may still write for its partitions (a freeze longer than the
//!   session timeout suspends it until the group answers).
//! - [`fault`]: the one place that classifies a failure: transient, this record, or fatal.
//! - [`policy`]: what happens to events that cannot be processed (skip, dead-letter, stop).
//! - [`repartition`]: `group_by`, re-keying a stream through an internal topic.
//! - [`record`]: the owned record that crosses actors.
//! - [`transaction`]: exactly once: node-wide commit rounds in one Kafka transaction.
//! - `progress`: how far each partition got: lag, commit age, stalls, readiness.
//! - [`metrics`] and [`throughput`]: Prometheus metrics and the rate meter.
//! - [`error`]: this crate's one error type.
//! - `hot_path`: the hot path's steps, exposed (hidden) for the criterion micro-benchmarks.

pub mod agent;
mod agent_actor;
pub mod batch;
pub mod changelog;
pub mod codec;
mod commit;
pub mod consumer;
pub mod coordinator;
pub mod error;
pub mod fault;
mod global;
#[doc(hidden)]
pub mod hot_path;
pub mod lease;
pub mod members;
pub mod metrics;
mod outbox;
mod partition;
pub mod policy;
mod progress;
mod reader;
pub mod record;
pub mod repartition;
mod shard;
mod standby;
mod start;
pub mod store;
pub mod table;
pub mod throughput;
pub mod transaction;
pub mod window;
mod windowed;

pub use agent::{Agent, AgentError, AgentRef, Event, SendOptions, SOURCE_HEADER};
pub use batch::{Batch, BatchAgent, BatchEvent};
pub use codec::{register_codec, Codec, CustomCodec, TopicCodecs};
pub use consumer::ConsumerThread;
pub use coordinator::{Coordinator, CoordinatorInit, StandbyPlan, StopAll};
pub use error::{Error, Result};
pub use members::Membership;
pub use metrics::Metrics;
pub use outbox::Outbox;
pub use partition::PartitionSettings;
pub use policy::{DeadLetter, ErrorPolicy, OnError};
pub use record::{Header, Record};
pub use shard::TableSet;
pub use store::{OnClusterMismatch, Store};
pub use table::{GlobalTable, GlobalView, Table, TableSpec, TableView};
pub use transaction::Transactions;
pub use window::{
    Clock, EventTime, ManualClock, SystemClock, Window, WindowKind, WindowResult, WindowedTable,
};
pub use windowed::WindowView;
