//! # io: the Kafka side
//!
//! Uses `model`, `metrics` and `state`.
//! - `reader`: one partition's own queue, read asynchronously in batches.
//! - `outbox`: where a record goes (`Target`), an event's records staged until it finishes,
//!   handed to the producer with their source offset, and their acknowledgements (a refused one
//!   names its source record).
//! - `dead_letter`: writing one dead letter, cut or re-stamped until the topic takes it.
//! - [`changelog`]: **where the changelog is written and restored**: a commit's table writes
//!   sent ahead of the offset, and a partition's tables rebuilt from its changelogs.
//! - [`members`]: who is in the group and what each holds (a compacted topic), and standby
//!   placement by rendezvous hashing.
//! - [`transactional`]: the node's transactional producer (exactly once), rebuilt after it
//!   fails for good; `fault_injection`: the crash tests' hooks (a cargo feature).
//! - [`hot_path`]: the output step exposed (hidden) for the criterion micro-benchmarks.
//! - [`lease`]: whether the node may still write for its partitions (a freeze longer than the
//!   session timeout suspends it until the group answers).

pub mod changelog;
pub(crate) mod dead_letter;
pub(crate) mod fault_injection;
#[doc(hidden)]
pub mod hot_path;
pub mod lease;
pub mod members;
pub(crate) mod outbox;
pub(crate) mod reader;
pub mod transactional;
