//! # state: tables, windows and the store
//!
//! Uses `model` and `metrics` only: no Kafka client, no actor. Everything here is testable on
//! a sled store alone.
//! - [`table`]: the typed table handles agents keep ([`table::Table`], [`table::GlobalTable`]) and
//!   the views an event gets.
//! - [`shard`]: one table's part for one partition: write cache and per-event undo.
//! - [`set`]: every shard of one source partition ([`set::TableSet`]): what the partition actor
//!   owns, stages into one sled batch at commit, and whose window closes it collects.
//! - [`window`]: windows (tumbling, hopping, sliding), event time, the windowed table handle.
//! - `windowed`: windowed storage: stream time, and **where windows close**: `close_due`
//!   returns the close records; the agent actor sends them (see `runtime::agent_actor`).
//! - [`store`]: the node's sled database, stamped with its Kafka cluster id, and the offsets
//!   and changelog positions it holds.
//! - `hot_path`: the hot path's steps, exposed (hidden) for the criterion micro-benchmarks.

#[doc(hidden)]
pub mod hot_path;
pub mod set;
pub mod shard;
pub mod store;
pub mod table;
pub mod window;
pub(crate) mod windowed;
