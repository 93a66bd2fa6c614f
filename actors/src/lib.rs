//! # faust-actors: the runtime of faust-rs
//!
//! Six layers, each using only those listed before it (`../shared/tools/module-cycles`
//! checks that no layer reaches up):
//! - [`model`]: records, codecs, the error type, and every name the runtime writes (internal
//!   topics, the store's key layout).
//! - [`metrics`]: the node's Prometheus metrics and the rate meter.
//! - [`state`]: tables, shards, windowed tables and where windows close, the sled store. No
//!   Kafka, no actors.
//! - [`io`]: the Kafka side: the partition reader, the outbox and its acknowledgements, dead
//!   letters, the changelog (written and restored), members, the write lease.
//! - [`api`]: what a user implements: [`Agent`], [`Event`], [`BatchAgent`],
//!   [`ConcurrentAgent`], error policies,
//!   `group_by`.
//! - `runtime`: the actors: consumer thread, coordinator, partition actors with their commit
//!   cycle and retry decisions, agent actors, exactly-once rounds, standbys.
//!
//! One event, layer by layer: the consumer (runtime) assigns a partition; its reader (io)
//! yields a batch of [`Record`]s (model); the partition actor lends its `TableSet` (state) and
//! outbox (io) to the agent actor, which decodes each record (model codecs) into an [`Event`]
//! (api) for the user's [`Agent`]; the event's table writes stay in the shard cache and its
//! outputs in the outbox until it ends; at the commit interval the partition's commit cycle
//! (runtime) waits for the outputs' acknowledgements, writes the changelog (io), applies one
//! sled batch with the offset (state), and commits the offset to Kafka.
//!
//! The items at this crate's root are what an app uses (the `faust` crate re-exports them);
//! `io` and `runtime` are public only so that the `faust-rs` node can assemble the runtime:
//! they are hidden from the docs and are not a stable API.

pub mod api;
#[doc(hidden)]
pub mod io;
pub mod metrics;
pub mod model;
#[doc(hidden)]
pub mod runtime;
pub mod state;

pub use api::agent::{Agent, AgentError, Event, SendOptions};
pub use api::batch::{Batch, BatchAgent, BatchEvent};
pub use api::concurrent::ConcurrentAgent;
pub use api::erased::AgentRef;
pub use api::fn_agent::{agent, AgentBuilder, FnAgent, Tables};
pub use api::fn_concurrent::{ConcurrentBuilder, FnConcurrentAgent, PreparedBuilder};
pub use api::policy::{DeadLetter, ErrorPolicy, OnError};
pub use metrics::Metrics;
pub use model::codec::{register_codec, Codec, CustomCodec, TopicCodecs};
pub use model::error::{Error, Result};
pub use model::names::{self, SOURCE_HEADER};
pub use model::partitioner::{self, Partitioner};
pub use model::record::{Header, Record};
pub use runtime::driver::Driver;
pub use state::spec::TableSpec;
pub use state::store::{OnClusterMismatch, Store};
pub use state::table::{GlobalTable, GlobalView, Table, TableView};
pub use state::window::{
    Clock, EventTime, ManualClock, SystemClock, Window, WindowKind, WindowResult,
};
pub use state::windowed::{WindowView, WindowedTable};
