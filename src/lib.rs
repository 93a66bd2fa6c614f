//! # faust-rs
//!
//! Faust-style stream processing for Rust: write an [`Agent`] that consumes a Kafka topic, keep
//! state in [`Table`]s sharded by partition and stored locally, and scale by starting more
//! nodes. Kafka is the distributed engine: membership, partitioning and durability ride on
//! consumer groups, partitions and committed offsets.
//!
//! Module map, in the order a node starts:
//! - `app`: [`App`], an app's agents and timers, registered in code.
//! - [`config`]: typed configuration from defaults, a TOML file and `FAUST__*` variables, with
//!   every error reported at once.
//! - `topology`: the app compiled once from its agents and config: agents as configured,
//!   every topic to find or create, tables and changelogs per source topic, global tables,
//!   standby plan, codecs, the leader's partition. Every check of the app against its config.
//! - `cli`: the `worker` / `validate` / `send` / `tables` / `table get` command line that
//!   [`App::main`] runs; `ask`: how the last two ask a running node over HTTP.
//! - `node`: running an app ([`App::run`], [`App::spawn`]): its subsystems (broker, store, web, runtime, services) started
//!   in order and stopped in reverse.
//! - `handle`: [`NodeInfo`], [`NodeReport`] and [`NodeHandle`], a node on a thread of its own.
//! - `clients`: librdkafka settings of the node's clients; reaching the broker at start-up.
//! - `topics`: finding and creating the topics the topology needs, checking partition counts.
//! - `standbys`: joining the members topic when the app has tables (standby placement, and
//!   where table queries are forwarded).
//! - `web`: `/metrics` (Prometheus), `/healthz`, `/readyz` and the table queries.
//! - `reset`: `faust-node reset`: offsets back, internal topics deleted, the store wiped.
//! - `queries`: `GET /tables...`: a table's keys and values from the node that holds them,
//!   forwarded there by any node.
//! - [`testing`]: [`testing::TestDriver`], an app's agents run over records a test pipes in,
//!   without a broker.
//! - [`timer`]: periodic tasks (every interval or cron), optionally on the leader only.
//! - [`send`]: `faust-node send`, one record produced by hand.
//! - [`embedded`]: the in-process broker used when `broker.bootstrap = "embedded"`.
//! - [`generator`] and `demo`: synthetic page views, and the agents `faust-node` runs on them.
//! - [`error`]: this crate's error type.
//!
//! The runtime itself (actors, tables, store, codecs) is the `faust-actors` crate, whose
//! user-facing types are re-exported here.

mod app;
mod ask;
mod cli;
mod clients;
pub mod config;
#[doc(hidden)]
pub mod demo;
pub mod embedded;
pub mod error;
pub mod generator;
mod handle;
mod node;
mod queries;
mod reset;
pub mod send;
mod standbys;
pub mod testing;
pub mod timer;
mod topics;
mod topology;
mod web;

pub use app::App;
pub use cli::init_logging;
pub use config::Config;
pub use error::Error;
pub use faust_actors::{
    agent, register_codec, Agent, AgentBuilder, AgentError, Batch, BatchAgent, BatchEvent, Clock,
    Codec, ConcurrentAgent, ConcurrentBuilder, CustomCodec, DeadLetter, ErrorPolicy, Event,
    EventTime, FnAgent, FnConcurrentAgent, GlobalTable, GlobalView, Header, ManualClock, Metrics,
    OnError, Partitioner, PreparedBuilder, Record, SendOptions, Store, SystemClock, Table,
    TableSpec, TableView, Tables, Window, WindowKind, WindowResult, WindowView, WindowedTable,
    SOURCE_HEADER,
};
pub use handle::{NodeHandle, NodeInfo, NodeReport};
pub use timer::{Timer, TimerContext};

/// The README's code blocks, compiled as doctests so the documented example keeps working.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
