//! # faust-rs
//!
//! Faust-style stream processing for Rust: write an [`Agent`] that consumes a Kafka topic, keep
//! state in [`Table`]s sharded by partition and stored locally, and scale by starting more
//! nodes. Kafka is the distributed engine: membership, partitioning and durability ride on
//! consumer groups, partitions and committed offsets.
//!
//! Module map:
//! - [`node`]: [`App`] (an app's agents) and running it as a node: start-up, shutdown,
//!   [`NodeHandle`] for tests and embedding.
//! - [`config`]: typed configuration from defaults, a TOML file and `FAUST__*` variables, with
//!   every error reported at once.
//! - `cli`: the `worker` / `validate` / `send` command line that [`App::main`] runs.
//! - `clients`: librdkafka settings of the node's clients; reaching the broker at start-up.
//! - `handle`: [`NodeHandle`], a node on a thread of its own.
//! - [`send`]: `faust-node send`, one record produced by hand.
//! - [`timer`]: periodic tasks (every interval or cron), optionally on the leader only.
//! - `topics`: creating missing topics, checking partition counts.
//! - `standbys`: which partitions this node keeps standby copies of.
//! - `web`: `/metrics` (Prometheus), `/healthz` and `/readyz`.
//! - [`embedded`]: the in-process broker used when `broker.bootstrap = "embedded"`.
//! - [`generator`]: synthetic page views for demos and benchmarks.
//! - [`demo`]: the page-view counting agent that `faust-node` runs, and its windowed twin.
//! - [`error`]: this crate's error type.
//!
//! The runtime itself (actors, tables, store, codecs) is the `faust-actors` crate, whose
//! user-facing types are re-exported here.

mod cli;
mod clients;
pub mod config;
pub mod demo;
pub mod embedded;
pub mod error;
pub mod generator;
mod handle;
pub mod node;
pub mod send;
mod standbys;
pub mod timer;
mod topics;
mod web;

pub use cli::init_logging;
pub use config::Config;
pub use error::Error;
pub use faust_actors::{
    register_codec, Agent, AgentError, Batch, BatchAgent, BatchEvent, Clock, Codec, CustomCodec,
    DeadLetter, ErrorPolicy, Event, EventTime, GlobalTable, GlobalView, Header, ManualClock,
    Metrics, OnError, Record, SendOptions, Store, SystemClock, Table, TableSpec, TableView, Window,
    WindowKind, WindowResult, WindowView, WindowedTable, SOURCE_HEADER,
};
pub use node::{App, NodeHandle, NodeInfo, NodeReport};
pub use timer::{Timer, TimerContext};

/// The README's code blocks, compiled as doctests so the documented example keeps working.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
