//! The partition actor: one per assigned task (partition `p` of each topic of a co-partitioned
//! group, see `topology`), on a worker arbiter. It is named after the group's lead topic, and
//! keeps each topic's offsets apart ([`Positions`]).
//!
//! It reads its topics' partition queues in batches (each batch from one topic; the queues are
//! merged as their records arrive), hands each batch in order to the agent actors of that topic (one batch in flight, awaited: that await is the back-pressure that leaves unread
//! records in librdkafka's bounded queue), and runs the commit cycle:
//!
//! 1. no batch in flight (a batch and the first half run under `ctx.wait`, so they never
//!    interleave);
//! 2. wait until every record the agents sent is acknowledged, and write the changed table
//!    entries to their changelogs;
//! 3. apply the dirty table entries, the key counts and the next source offset to the sled tree
//!    in one atomic batch; processing resumes here;
//! 4. on the arbiter, after the previous cycle's: flush sled to disk, then commit the source
//!    offset to Kafka (`cycle`, its steps in `cycle::steps`). A cycle that finds this still running is skipped; on revoke,
//!    stop and halt the whole cycle is awaited.
//!
//! An offset is therefore committed only after every effect of the events before it is
//! durable. If a batch's state is lost (an agent actor vanished with it) or an output was not
//! delivered, the partition rewinds: uncommitted table writes are dropped and the consumer seeks
//! back to the last commit, so those events are processed again.
//!
//! Submodules: `cycle` (the commit cycle), `decide` (what to do about a failed event: a pure
//! function), `exactly` (its side of exactly-once rounds), `handlers` (stop, forwarded
//! records), `restore` (tables from changelogs), `rewind` (halt and seek back).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use prometheus::{IntCounter, IntGauge};

use crate::api::erased::AgentRef;
use crate::io::changelog::Restore;
use crate::io::lease::Lease;
use crate::io::reader::PartitionReader;
use crate::metrics::status::Fatal;
use crate::metrics::Metrics;
use crate::model::error::Error;
use crate::model::positions::Positions;
use crate::model::record::Record;
use crate::runtime::agent_actor::{close_windows_between_batches, AgentActor};
use crate::runtime::consumer::{NodeConsumer, NodeContext};
pub(crate) use crate::runtime::messages::{Forward, Stop};
use crate::runtime::messages::{Input, Join};
use crate::runtime::progress::Progress;
use crate::runtime::work::Work;
use cycle::steps::Tail;

mod batch;
mod cycle;
pub(crate) mod decide;
mod exactly;
mod handlers;
mod restore;
mod rewind;

/// Tuning of partition actors, from the node's config.
#[derive(Debug, Clone)]
pub struct PartitionSettings {
    /// How often the commit cycle runs.
    pub commit_interval: Duration,
    /// Most records handed to an agent at once.
    pub max_batch: usize,
    /// First back-off after an agent error or panic; doubles per retry of the same event.
    pub retry_backoff: Duration,
    /// Longest back-off between retries of one event.
    pub retry_backoff_max: Duration,
    /// Clean cache entries kept per table and partition after a commit.
    pub cache_keys: usize,
    /// Commits are node-wide Kafka transactions (see `coordinator::rounds`), not this actor's cycle.
    pub exactly_once: bool,
    /// Outputs stamped further ahead of the clock than this are refused at once (see
    /// `outbox`): the broker would refuse them, and their produce batch with them.
    pub max_timestamp_ahead: Duration,
    /// A partition with records waiting and no commit progress for this long is stalled.
    pub stall_after: Duration,
}

/// One agent of the partition: its actor and the metrics of its events.
#[derive(Clone)]
pub(super) struct AgentSlot {
    agent: AgentRef,
    /// The task's topics this agent consumes.
    topics: Vec<String>,
    addr: Addr<AgentActor>,
    /// `faust_events_total` of each of its topics.
    events: Vec<(Arc<str>, IntCounter)>,
    depth: IntGauge,
}

impl AgentSlot {
    /// `n` events of `topic` done.
    fn count(&self, topic: &str, n: u64) {
        if let Some((_, c)) = self.events.iter().find(|(t, _)| &**t == topic) {
            c.inc_by(n);
        }
    }
}

/// Owns one task: its readers, its table shards, its offsets.
pub(crate) struct PartitionActor {
    /// The lead topic of the task's group.
    topic: Arc<str>,
    /// Every topic of the group, lead first.
    topics: Vec<Arc<str>>,
    partition: i32,
    agents: Vec<AgentRef>,
    slots: Vec<AgentSlot>,
    readers: Vec<Arc<PartitionReader<NodeContext>>>,
    consumer: Arc<NodeConsumer>,
    db: sled::Db,
    path: Arc<std::path::Path>,
    work: Option<Work>,
    /// Reopens the partition's state from the store when a batch took it down with it.
    make_work: WorkFactory,
    restore: Option<Arc<Restore>>,
    /// The next offsets whose effects are committed (store and Kafka), where known.
    committed: Positions,
    /// The next offsets whose effects are in the store tree (flushed, or being flushed and
    /// committed by the commit cycle's second half); where a rewind goes.
    stored: Positions,
    /// The last commit's second half; the next waits for it.
    tail: Option<Tail>,
    /// Whether that second half is still running.
    flushing: Arc<AtomicBool>,
    /// The next offsets after the last finished event.
    next: Positions,
    /// Offsets of the first records seen: where a rewind goes when nothing was committed yet.
    first_seen: Positions,
    revoked: Arc<AtomicBool>,
    /// Set by the coordinator as soon as it learns the assignment was lost, before the
    /// `Abandon` message arrives: from then on the partition commits nothing.
    lost: Arc<AtomicBool>,
    /// Set when Stop arrives: no batch is taken after the final commit (its effects would be
    /// uncommitted, and its outputs sent again by the next owner).
    stopping: bool,
    seek_on_start: bool,
    /// The stream of batches from the reader (cancelled when the partition halts).
    reading: Option<SpawnHandle>,
    /// Halted by the `stop` error policy: no batch is taken any more.
    halted: bool,
    /// Counted in the assigned-partitions gauge (set once started successfully).
    counted: bool,
    settings: PartitionSettings,
    metrics: Metrics,
    /// Exactly once: the coordinator whose transaction rounds this partition joins.
    join: Option<(Recipient<Join>, usize)>,
    /// Exactly once: uncommitted work was dropped outside a round, so the open transaction
    /// holds outputs of events that will be processed again: the next round must abort.
    poisoned: bool,
    /// Exactly once: paused in a round until its decision, or until it has joined rounds.
    in_round: bool,
    /// Records that arrived during a round, handled after its decision.
    deferred: Vec<Record>,
    /// How far each topic got, for the coordinator's lag and stall metrics.
    pub(crate) progress: Vec<(Arc<str>, Arc<Progress>)>,
    /// Nothing is committed while the node may have lost its partitions.
    pub(crate) lease: Lease,
    /// The lease lapsed at the last commit (said once).
    lease_lapsed: bool,
    /// `faust_latency_seconds` of each of the task's topics.
    latency: Vec<(Arc<str>, prometheus::Histogram)>,
}

/// Opens a partition's tables and outbox (at start, and after a lost batch).
pub(crate) type WorkFactory = Box<dyn Fn() -> Result<Work, Error> + Send>;

/// Everything needed to start a partition actor.
pub(crate) struct PartitionInit {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) agents: Vec<AgentRef>,
    /// The task's topics, lead first: where each starts, and its queue.
    pub(crate) inputs: Vec<Input>,
    pub(crate) consumer: Arc<NodeConsumer>,
    pub(crate) db: sled::Db,
    pub(crate) path: Arc<std::path::Path>,
    pub(crate) make_work: WorkFactory,
    /// The changelogs to replay before processing (`None`: the agents have no tables).
    pub(crate) restore: Option<Restore>,
    /// Seek back to `start` first (a restart after the previous actor died mid-batch).
    pub(crate) seek_on_start: bool,
    pub(crate) revoked: Arc<AtomicBool>,
    /// The assignment was lost (see the actor's field).
    pub(crate) lost: Arc<AtomicBool>,
    pub(crate) settings: PartitionSettings,
    pub(crate) metrics: Metrics,
    /// Exactly once: the coordinator to join (see `coordinator::rounds`).
    pub(crate) join: Option<(Recipient<Join>, usize)>,
    /// Shared with the coordinator (see `progress`), per topic.
    pub(crate) progress: Vec<(Arc<str>, Arc<Progress>)>,
    /// Whether the node may still write for its partitions.
    pub(crate) lease: Lease,
}

impl PartitionActor {
    pub(crate) fn new(init: PartitionInit) -> Self {
        let topics: Vec<Arc<str>> = init.inputs.iter().map(|i| i.topic.clone()).collect();
        let latency = topics
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    init.metrics.latency_seconds.with_label_values(&[&**t]),
                )
            })
            .collect();
        let at = |f: fn(&Input) -> Option<i64>| {
            Positions::of(
                init.inputs
                    .iter()
                    .filter_map(|i| Some((i.topic.clone(), f(i)?))),
            )
        };
        let (start_at, committed) = (at(|i| i.start.at), at(|i| i.start.committed));
        PartitionActor {
            topic: init.topic,
            topics,
            partition: init.partition,
            agents: init.agents,
            slots: Vec::new(),
            readers: init
                .inputs
                .into_iter()
                .map(|i| Arc::new(i.reader))
                .collect(),
            consumer: init.consumer,
            db: init.db,
            path: init.path,
            work: None,
            make_work: init.make_work,
            restore: init.restore.map(Arc::new),
            // A store ahead of the group: the first commit moves the group there.
            committed,
            stored: start_at.clone(),
            tail: None,
            flushing: Arc::new(AtomicBool::new(false)),
            next: start_at,
            first_seen: Positions::new(),
            revoked: init.revoked,
            lost: init.lost,
            stopping: false,
            seek_on_start: init.seek_on_start,
            reading: None,
            halted: false,
            counted: false,
            settings: init.settings,
            metrics: init.metrics,
            join: init.join,
            poisoned: false,
            in_round: false,
            deferred: Vec::new(),
            progress: init.progress,
            latency,
            lease: init.lease,
            lease_lapsed: false,
        }
    }

    /// Opens the tables, starts the agents, and starts reading and committing.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        match (self.make_work)() {
            Ok(work) => self.work = Some(work),
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.partition, error = %e,
                    "cannot open the partition's tables; the partition is not processed");
                ctx.stop();
                return;
            }
        }
        let label = self.partition.to_string();
        self.slots = self
            .agents
            .iter()
            .map(|agent| {
                let (erased, metrics) = (agent.clone(), self.metrics.clone());
                let addr = Supervisor::start(move |_| AgentActor::new(erased, metrics));
                let topics = agent.topics();
                for topic in &topics {
                    agent.agent.on_assign(topic, self.partition);
                }
                AgentSlot {
                    agent: agent.clone(),
                    events: topics
                        .iter()
                        .map(|t| {
                            let c = self.metrics.events_total.with_label_values(&[
                                agent.name(),
                                t,
                                &label,
                            ]);
                            (Arc::from(t.as_str()), c)
                        })
                        .collect(),
                    topics,
                    addr,
                    depth: self
                        .metrics
                        .mailbox_depth
                        .with_label_values(&[agent.name()]),
                }
            })
            .collect();
        self.count_held(1);
        self.counted = true;
        if self.seek_on_start {
            self.rewind(ctx);
        }
        match self.join.clone() {
            Some((coordinator, started)) => self.join_rounds(ctx, coordinator, started),
            None => self.start_reading(ctx),
        }
    }

    /// Reads the partition's queue and runs the commit interval.
    fn start_reading(&mut self, ctx: &mut Context<Self>) {
        // Batching agents: wait (at most `within`) for `n` records before handing them over.
        let take = self
            .agents
            .iter()
            .filter_map(|a| a.agent.take())
            .reduce(|a, b| (a.0.max(b.0), a.1.min(b.1)));
        let max = self.settings.max_batch.max(take.map_or(0, |t| t.0));
        let streams = self.readers.iter().cloned().map(|reader| {
            Box::pin(futures::stream::unfold(
                reader,
                move |r: Arc<PartitionReader<NodeContext>>| async move {
                    let mut batch = r.next_batch(max).await;
                    if let Some((n, within)) = take {
                        crate::api::batch::fill(&mut batch, n, within, |k| r.next_batch(k)).await;
                    }
                    Some((batch, r))
                },
            ))
        });
        // Each topic's batches in order; the topics' as they come.
        self.reading = Some(ctx.add_stream(futures::stream::select_all(streams)));
        ctx.run_interval(self.settings.commit_interval, |act, ctx| {
            match act.work.take() {
                Some(work) if work.tables.has_windows() && !act.stopping => {
                    let close = close_windows_between_batches(work).into_actor(act);
                    ctx.wait(close.then(|work, act, _| {
                        act.work = Some(work);
                        act.commit(false).map(|_, _, _| ())
                    }));
                }
                work => {
                    act.work = work;
                    if act.needs_commit() {
                        ctx.wait(act.commit(false).map(|_, _, _| ()));
                    }
                }
            }
        });
        self.progress.iter().for_each(|(_, p)| p.consuming());
        tracing::info!(topic = %self.topic, partition = self.partition, start = ?self.next,
            committed = ?self.committed, "partition started");
    }

    /// Adds (`sign` = 1) or removes (-1) this partition from the held-partition and table-key
    /// gauges.
    fn count_held(&self, sign: i64) {
        if let Some(work) = &self.work {
            for (table, n) in work.tables.key_counts() {
                let keys = self.metrics.table_keys.with_label_values(&[table]);
                keys.add(sign * n as i64);
            }
        }
        let held = self
            .metrics
            .assigned_partitions
            .with_label_values(&["active"]);
        held.add(sign);
        let status = self.metrics.status();
        for topic in &self.topics {
            status.set_held(topic, self.partition, sign > 0);
        }
    }

    /// Whether a commit cycle has work: events or writes not in the store yet, or a stored
    /// offset Kafka has not confirmed (its second half failed, say on a rebalance, and no new
    /// event would otherwise bring the cycle back).
    fn needs_commit(&self) -> bool {
        self.work.as_ref().is_some_and(|w| {
            self.next != self.stored
                || self.committed != self.stored
                || w.tables.is_dirty()
                || w.outbox.has_pending()
        })
    }
}

impl Actor for PartitionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        match self.restore.clone() {
            None => self.begin(ctx),
            Some(restore) => ctx.wait(self.restore_tables(restore)),
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if !self.counted {
            return;
        }
        self.count_held(-1);
        let status = self.metrics.status();
        status.set_halted(&self.topic, self.partition, false);
        tracing::info!(topic = %self.topic, partition = self.partition,
            committed = ?self.committed, "partition stopped");
    }
}

impl StreamHandler<Vec<Record>> for PartitionActor {
    fn handle(&mut self, batch: Vec<Record>, ctx: &mut Self::Context) {
        // After Stop, records stay uncommitted and go to the partition's next owner.
        if self.in_round {
            // actix runs a wait registered by a message handler (the round's Prepare) only
            // from its next turn, so a batch can arrive while the partition is paused in a
            // round: it waits for the round's decision (an abort's seek back reaches it).
            self.mark_first_seen(&batch);
            self.deferred.extend(batch);
            return;
        }
        if self.metrics.status().fatal() == Some(Fatal::StoreFailed) {
            // The store cannot write: nothing more is processed (the node is stopping; the
            // records are read again from the last commit after the restart).
            return;
        }
        if !self.stopping && !self.halted {
            ctx.wait(self.process(batch));
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}
