//! # runtime: the actors that run an app
//!
//! The top layer: it uses every layer below and none uses it. Following one event:
//! - [`consumer`]: the node's one Kafka consumer, its rebalance callbacks, and the thread that
//!   polls its main queue (rebalances only: records go straight to partitions).
//! - [`coordinator`]: turns assign/revoke into partition actors, watches them, keeps standbys
//!   and global copies, computes throughput.
//! - `start`: where a partition starts (one rule for assignment, promotion and restart).
//! - `partition`: the partition actor: reads its queue, hands batches in order to agent actors.
//!   Its submodules hold **the commit cycle** (`partition::cycle`: outputs acknowledged ->
//!   changelog -> store -> Kafka offset), **what decides a retry** (`partition::decide`, a pure
//!   function: retry with back-off, wait, give up, or the policy), restore and rewind.
//! - `agent_actor`: runs the user's agent over a batch, catching panics so that the supervisor
//!   restarts it and no event is lost; **triggers window closes** after each event and between
//!   batches, and stages their records.
//! - `policy`: applies an agent's error policy (skip, dead-letter, halt) to a failed event.
//! - `commit`: the changelog step of the commit cycle and how a failed step is reported.
//! - [`transaction`]: exactly once: node-wide commit rounds in one Kafka transaction.
//! - `standby` and `global`: warm copies of partitions owned elsewhere, and each node's full
//!   copy of the global tables, both tailing changelogs.
//! - `progress`: how far each partition got: lag, commit age, stalls, readiness.

pub(crate) mod agent_actor;
pub(crate) mod commit;
pub mod consumer;
pub mod coordinator;
pub(crate) mod fault_injection;
pub(crate) mod global;
pub mod messages;
pub(crate) mod partition;
pub use partition::PartitionSettings;
pub(crate) mod policy;
pub(crate) mod progress;
pub(crate) mod standby;
pub(crate) mod start;
pub mod topology;
pub mod transaction;
