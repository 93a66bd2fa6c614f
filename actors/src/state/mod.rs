//! # state: tables, windows and the store
//!
//! Uses `model` and `metrics` only: no Kafka client, no actor. Everything here is testable on
//! a sled store alone.
//! - [`window`]: what a window is (tumbling, hopping, sliding), event time, clocks.
//! - [`spec`]: what a table is to the runtime ([`spec::TableSpec`]) and the untyped interface
//!   it drives every shard through.
//! - [`shard`]: one table's part for one partition: write cache and per-event undo.
//! - [`table`]: the typed table handles agents keep ([`table::Table`], [`table::GlobalTable`]) and
//!   the views an event gets.
//! - [`set`]: every shard of one source partition ([`set::TableSet`]): what the partition actor
//!   owns, stages into one sled batch at commit, and whose window closes it collects.
//! - [`windowed`]: windowed tables: the handle ([`windowed::WindowedTable`]) and their shards:
//!   stream time, and **where windows close**: `close_due` returns the close records; the
//!   agent actor stages them (see `runtime::agent_actor`).
//! - [`store`]: the node's sled database, stamped with its Kafka cluster id, and the offsets
//!   and changelog positions it holds.
//! - [`query`]: reading a table from outside the agents (HTTP queries): JSON keys and
//!   values, committed state only.
//! - `hot_path`: the hot path's steps, exposed (hidden) for the criterion micro-benchmarks.

#[doc(hidden)]
pub mod hot_path;
pub mod query;
#[doc(hidden)]
pub mod set;
pub mod shard;
pub mod spec;
pub mod store;
pub mod table;
pub mod window;
pub mod windowed;
