//! # runtime: the actors that run an app
//!
//! The top layer: it uses every layer below and none uses it. Following one event:
//! - [`topology`]: the app compiled for the runtime, and its **tasks**: topics that feed the
//!   same tables are one co-partitioned group, and partition `p` of all of them is one task.
//! - [`consumer`]: the node's one Kafka consumer, its rebalance callbacks (which assign a
//!   group's other topics with its lead, so a task is never split), and the thread that polls
//!   its main queue (rebalances only: records go straight to partitions).
//! - [`coordinator`]: turns assign/revoke into partition actors, watches them, keeps standbys
//!   and global copies, computes throughput; **exactly once**, it runs node-wide commit rounds
//!   in one Kafka transaction (`coordinator::rounds`).
//! - `start`: where a partition starts (one rule for assignment, promotion and restart).
//! - `partition`: the partition actor, one per task: reads its topics' queues, hands batches in
//!   order to agent actors (`partition::batch`), keeps each topic's offsets.
//!   Its submodules hold **the commit cycle** (`partition::cycle`, its steps in
//!   `partition::cycle::steps`: outputs acknowledged -> changelog -> store -> Kafka offset),
//!   **what decides a retry** (`partition::decide`, a pure function: retry with back-off, wait,
//!   give up, or the policy), exactly-once rounds (`partition::exactly`), restore and rewind.
//! - `agent_actor`: runs the user's agent over a batch, catching panics so that the supervisor
//!   restarts it and no event is lost; **triggers window closes** after each event and between
//!   batches, and stages their records.
//! - `ahead`: a concurrent agent's events prepared ahead, up to N at once, in order per key.
//! - `work`: a partition's tables, outbox and refused records, lent with each batch.
//! - `policy`: applies an agent's error policy (skip, dead-letter, halt) to a failed event.
//! - `standby`: warm copies of partitions owned elsewhere, and each node's full copy of the
//!   global tables, both tailing changelogs (the coordinator places them: `coordinator::
//!   standbys`, `coordinator::globals`).
//! - `progress`: how far each partition got: lag, commit age, stalls, readiness.
//! - [`driver`]: the test driver: the agents, tables, windows and policies of an app over
//!   records a test pipes in, without broker, actors or threads.

pub(crate) mod agent_actor;
pub(crate) mod ahead;
pub mod consumer;
pub mod coordinator;
pub mod driver;
pub mod messages;
pub(crate) mod partition;
pub use partition::PartitionSettings;
pub(crate) mod policy;
pub(crate) mod progress;
pub(crate) mod standby;
pub(crate) mod start;
pub mod topology;
pub(crate) mod work;
