//! Every message the runtime's actors exchange, in one file: who may ask whom for what. The
//! handlers live with their actors (`coordinator` and its `rounds`, `partition`, `agent_actor`).
//!
//! - The consumer thread tells the coordinator of rebalances (`Assigned`, `Revoke`) and of
//!   records that reach the main queue (`Stray`); the node asks it to stop ([`StopAll`]).
//! - The coordinator tells a partition actor to stop with a commit (`Stop`), to take a stray
//!   record (`Forward`), and, under exactly once, to take part in a round (`Prepare`) or to
//!   drop its uncommitted work (`Abandon`); a partition asks to join rounds (`Join`).
//! - A partition actor lends its work to an agent actor with each batch (`Process`).

use std::sync::{mpsc, Arc};

use actix::prelude::*;
use futures::channel::oneshot;
use futures::future::Shared;

use crate::io::reader::PartitionReader;
pub(crate) use crate::io::transactional::Outcome;
use crate::model::error::Error;
use crate::model::positions::Positions;
use crate::model::record::Record;
use crate::runtime::consumer::{NodeConsumer, NodeContext};
use crate::runtime::start::Start;
use crate::runtime::work::Work;

// The coordinator's inbox (from the consumer thread and the node).

/// One topic's partition of a newly assigned task, its queue already split off the consumer.
pub(crate) struct Input {
    pub(crate) topic: Arc<str>,
    /// Where it starts, and the group's commit (see `start`).
    pub(crate) start: Start,
    pub(crate) reader: PartitionReader<NodeContext>,
}

/// One newly assigned task: partition `partition` of every topic of the group led by `topic`
/// (see `topology`).
pub(crate) struct AssignedPart {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// The lead's partition first, then the group's other topics'.
    pub(crate) inputs: Vec<Input>,
}

/// Partitions newly assigned to this node.
pub(crate) struct Assigned {
    pub(crate) parts: Vec<AssignedPart>,
    pub(crate) consumer: Arc<NodeConsumer>,
}

impl Message for Assigned {
    type Result = ();
}

/// Partitions being revoked: commit and stop them, then signal `done`.
pub(crate) struct Revoke {
    pub(crate) parts: Vec<(Arc<str>, i32)>,
    /// The assignment was lost (the group moved on without this node): nothing is committed.
    pub(crate) lost: bool,
    pub(crate) done: mpsc::SyncSender<()>,
}

impl Message for Revoke {
    type Result = ();
}

/// A record that arrived on the consumer's main queue.
pub(crate) struct Stray(pub(crate) Record);

impl Message for Stray {
    type Result = ();
}

/// Commit and stop every partition (node shutdown); later assignments are ignored.
pub struct StopAll;

impl Message for StopAll {
    type Result = ();
}

/// Where the consumer thread reports: the coordinator, known only by the messages it takes
/// (made by `Coordinator::rebalances`).
#[derive(Clone)]
pub struct Rebalances {
    pub(crate) assigned: Recipient<Assigned>,
    pub(crate) revoke: Recipient<Revoke>,
    pub(crate) stray: Recipient<Stray>,
}

// The partition actor's inbox (from the coordinator).

/// Commit, stop the agents and stop: sent on revoke and at shutdown.
pub(crate) struct Stop;

impl Message for Stop {
    type Result = ();
}

/// A record that reached the consumer's main queue instead of the partition's own queue.
pub(crate) struct Forward(pub(crate) Record);

impl Message for Forward {
    type Result = ();
}

// Exactly-once rounds (see `coordinator::rounds`).

/// A round's decision, shared by every partition in it (a canceled one: no decision, abort).
pub(crate) type Decision = Shared<oneshot::Receiver<Outcome>>;

/// A partition's vote in a round.
pub(crate) enum Vote {
    /// Everything before `next` is written to the transaction; `wrote` when anything changed
    /// since the last commit.
    Ready {
        partition: i32,
        /// Each topic of the task with its next offset.
        next: Positions,
        wrote: bool,
    },
    /// The transaction must not commit, because of this.
    Abort(String),
}

/// Asks a partition to finish its batch, write its changes to the transaction, vote, and wait
/// for `decision`.
pub(crate) struct Prepare {
    pub(crate) vote: oneshot::Sender<Vote>,
    pub(crate) decision: Decision,
}

impl Message for Prepare {
    type Result = ();
}

/// A started partition asks to take part in rounds; it reads its queue once answered `true`.
pub(crate) struct Join {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// Which start of the partition asks (the coordinator numbers them): a partition actor
    /// replaced meanwhile is refused.
    pub(crate) started: usize,
}

impl Message for Join {
    type Result = bool;
}

/// Drop uncommitted work and stop, writing nothing: the producer failed for good (the partition
/// restarts with the next one, see the module doc), or the assignment was lost. Says which.
pub(crate) struct Abandon(pub(crate) &'static str);

impl Message for Abandon {
    type Result = ();
}

/// Why partitions abandon their work when the transactional producer fails for good.
pub(crate) const PRODUCER_FAILED: &str = "the transactional producer failed";

// The agent actor's inbox (from the partition actor).

/// Handle `records[start..]` with `work`.
pub(crate) struct Process {
    pub(crate) records: Arc<[Record]>,
    pub(crate) start: usize,
    pub(crate) work: Work,
}

impl Message for Process {
    type Result = Processed;
}

/// Why the agent stopped before the end of the batch.
pub(crate) enum Stopped {
    /// The agent panicked on `records[next..next + count]` (one event, or one batch); the
    /// actor restarts.
    Panicked(String, usize),
    /// The agent returned an error for `records[next..next + count]`.
    Failed(String, usize),
    /// `records[next]` does not decode (`reason`: key, value, null_value).
    Invalid { reason: &'static str, error: Error },
}

/// The batch's outcome; `work` always comes back.
pub(crate) struct Processed {
    pub(crate) work: Work,
    /// Index of the first record not finished (`records.len()` when all were).
    pub(crate) next: usize,
    pub(crate) stopped: Option<Stopped>,
}
