//! The coordinator actor: the node's view of its group membership.
//!
//! It turns the consumer's rebalance callbacks into partition actors (started on the worker
//! arbiters, round robin), stops them with a commit on revoke and at shutdown, watches that they
//! stay alive (a partition actor that stops on its own is restarted from its last commit), and
//! computes per-agent throughput every second. Membership itself is Kafka's consumer group:
//! nothing here replaces it.
//!
//! Its parts, as submodules: `standbys` (warm copies placed by the members topic, promoted in
//! place on assignment), `globals` (each node's full copy of the global tables), `rounds`
//! (exactly once: node-wide commit rounds in one Kafka transaction, and the producer rebuilt
//! after it fails for good).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::join_all;
use rdkafka::producer::FutureProducer;

use crate::io::lease::Lease;
use crate::io::members::{Membership, Part};
use crate::io::outbox::Outbox;
use crate::io::reader::PartitionReader;
use crate::io::transactional::Transactions;
use crate::metrics::throughput::RateMeter;
use crate::metrics::Metrics;
use crate::runtime::consumer::NodeConsumer;
use crate::runtime::messages::{Abandon, Assigned, Input, Rebalances, Revoke, StopAll, Stray};
use crate::runtime::partition::{
    Forward, PartitionActor, PartitionInit, PartitionSettings, Stop, WorkFactory,
};
use crate::runtime::progress::{Progress, Watch};
use crate::runtime::standby::Standby;
use crate::runtime::start::start_of;
use crate::runtime::topology::{SourceTopic, Topology};
use crate::runtime::work::Work;
use crate::state::set::TableSet;
use crate::state::store::Store;

mod globals;
mod rounds;
mod standbys;
use futures::channel::oneshot;

/// What the coordinator needs to run partitions.
pub struct CoordinatorInit {
    /// The app, compiled: agents by source topic, tables, changelogs, global tables, codecs.
    pub topology: Arc<Topology>,
    /// Client settings (bootstrap, security) for the consumers that read changelogs.
    pub client: rdkafka::config::ClientConfig,
    /// The node's store.
    pub store: Store,
    /// The node's metrics.
    pub metrics: Metrics,
    /// Producer for what agents send (`None`: agents cannot send).
    pub producer: Option<FutureProducer>,
    /// Partition tuning.
    pub settings: PartitionSettings,
    /// Arbiters that run partition and agent actors.
    pub workers: Vec<ArbiterHandle>,
    /// Longest wait for partitions to commit and stop.
    pub stop_timeout: Duration,
    /// Standby replicas: `None` when the app has no tables or wants none.
    pub standbys: Option<StandbyPlan>,
    /// Exactly once: the node's transactional producer (`producer` is the same one), and
    /// commits run in node-wide rounds (see `coordinator::rounds`). `None`: at least once.
    pub transactions: Option<Transactions>,
    /// Whether the node may still write for its partitions (see `lease`).
    pub lease: Lease,
}

/// Where and how many standbys to keep.
pub struct StandbyPlan {
    /// This node's view of the group (and its heartbeat).
    pub membership: Membership,
    /// Standbys per partition.
    pub replicas: usize,
    /// Every partition of the source topics that have tables.
    pub parts: Vec<Part>,
}

pub(crate) struct Running {
    pub(crate) addr: Addr<PartitionActor>,
    /// Which start of the partition this is (see [`Join`](crate::runtime::messages::Join)).
    pub(crate) started: usize,
    /// Per topic of the task.
    progress: Vec<(Arc<str>, Arc<Progress>)>,
    revoked: Arc<AtomicBool>,
    /// The assignment was lost: the partition must commit nothing more.
    lost: Arc<AtomicBool>,
    /// Takes part in transaction rounds (exactly once; see `rounds`).
    pub(crate) joined: bool,
}

/// The coordinator actor; see the module doc.
pub struct Coordinator {
    pub(crate) init: CoordinatorInit,
    /// Tailers keeping this node's copies of the global tables.
    global_readers: Vec<Standby>,
    /// Whether the global copies reached the changelog ends seen at start (agents wait for it).
    globals_ready: bool,
    standbys: HashMap<(Arc<str>, i32), Standby>,
    /// Standbys asked to stop whose last writes may still be in flight.
    stopping: HashMap<(Arc<str>, i32), oneshot::Receiver<()>>,
    next_worker: usize,
    pub(crate) partitions: HashMap<(Arc<str>, i32), Running>,
    pub(crate) consumer: Option<Arc<NodeConsumer>>,
    stopping_all: bool,
    meters: HashMap<String, RateMeter>,
    /// This actor's address, for partitions that join transaction rounds.
    me: Option<Addr<Coordinator>>,
    /// The transactional producer failed for good: no rounds until a new one is built.
    pub(crate) broken: bool,
    /// A new transactional producer is being built.
    pub(crate) rebuilding: bool,
    /// Failed attempts to build one since it broke, and when to try next.
    pub(crate) rebuild_failures: u32,
    pub(crate) rebuild_after: Option<Instant>,
    /// When the producer failed for good recently (see `rounds::GIVE_UP_AFTER`).
    pub(crate) producer_failures: Vec<Instant>,
    /// Lag, commit age and stalls of the partitions, exported at each tick.
    watch: Watch,
    /// A round from the commit interval is waiting or under way.
    pub(crate) round_queued: bool,
}

impl Coordinator {
    /// Where the consumer thread reports rebalances and stray records: this coordinator.
    pub fn rebalances(addr: &Addr<Coordinator>) -> Rebalances {
        Rebalances {
            assigned: addr.clone().recipient(),
            revoke: addr.clone().recipient(),
            stray: addr.clone().recipient(),
        }
    }

    /// A coordinator for `init`'s agents.
    pub fn new(init: CoordinatorInit) -> Self {
        let stall_after = init.settings.stall_after;
        Coordinator {
            init,
            global_readers: Vec::new(),
            globals_ready: false,
            standbys: HashMap::new(),
            stopping: HashMap::new(),
            next_worker: 0,
            partitions: HashMap::new(),
            consumer: None,
            stopping_all: false,
            meters: HashMap::new(),
            me: None,
            broken: false,
            rebuilding: false,
            rebuild_failures: 0,
            rebuild_after: None,
            producer_failures: Vec::new(),
            round_queued: false,
            watch: Watch::new(stall_after),
        }
    }

    fn work_factory(&self, topic: &Arc<str>, partition: i32, source: &SourceTopic) -> WorkFactory {
        let db = self.init.store.db().clone();
        let path = self.init.store.path().clone();
        let specs = source.tables.clone();
        let globals = self.init.topology.global_specs();
        let sinks = self.init.topology.table_sinks.clone();
        let producer = self.init.producer.clone();
        let codecs = self.init.topology.codecs.clone();
        let cache = self.init.settings.cache_keys;
        let ahead = self.init.settings.max_timestamp_ahead;
        let lease = self.init.lease.clone();
        let doom = self.init.transactions.as_ref().map(Transactions::doom_flag);
        let topic = topic.clone();
        let app = self.init.topology.app_id.clone();
        let metrics = self.init.metrics.clone();
        Box::new(move || {
            let mut tables = TableSet::open(
                &db,
                path.clone(),
                app.clone(),
                topic.clone(),
                partition,
                specs.clone(),
                cache,
            )?
            .reading_globals(&db, &globals)?
            .with_sinks(&sinks);
            tables.attach_metrics(&metrics);
            let mut outbox = Outbox::new(producer.clone(), codecs.clone())
                .max_timestamp_ahead(ahead)
                .lease(lease.clone());
            if let Some(flag) = &doom {
                outbox = outbox.doom_flag(flag.clone());
            }
            Ok(Work::new(tables, outbox))
        })
    }

    fn start_partition(
        &mut self,
        topic: Arc<str>,
        partition: i32,
        inputs: Vec<Input>,
        consumer: Arc<NodeConsumer>,
        seek_on_start: bool,
    ) {
        let Some(source) = self.init.topology.source(&topic).cloned() else {
            tracing::error!(%topic, partition, "assigned a partition of a topic no agent consumes");
            return;
        };
        let revoked = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let progress: Vec<_> = inputs
            .iter()
            .map(|i| (i.topic.clone(), Progress::new(i.start.committed)))
            .collect();
        // Which start of a partition this is (a Join from an earlier one is refused).
        let started = self.next_worker;
        let init = PartitionInit {
            progress: progress.clone(),
            lease: self.init.lease.clone(),
            restore: self.restore_for(&source, partition),
            make_work: self.work_factory(&topic, partition, &source),
            topic: topic.clone(),
            partition,
            agents: source.agents,
            inputs,
            consumer,
            db: self.init.store.db().clone(),
            path: self.init.store.path().clone(),
            seek_on_start,
            revoked: revoked.clone(),
            lost: lost.clone(),
            settings: self.init.settings.clone(),
            metrics: self.init.metrics.clone(),
            join: self
                .me
                .clone()
                .filter(|_| self.init.transactions.is_some())
                .map(|c| (c.recipient(), started)),
        };
        let worker = &self.init.workers[self.next_worker % self.init.workers.len()];
        self.next_worker += 1;
        let addr = PartitionActor::start_in_arbiter(worker, move |_| PartitionActor::new(init));
        if let Some(old) = self.partitions.insert(
            (topic, partition),
            Running {
                addr,
                started,
                progress,
                revoked,
                lost,
                joined: false,
            },
        ) {
            old.revoked.store(true, Ordering::SeqCst);
            old.addr.do_send(Stop);
        }
    }

    fn stop_partitions(
        &mut self,
        keys: Vec<(Arc<str>, i32)>,
        ctx: &mut Context<Self>,
        done: impl FnOnce() + 'static,
    ) {
        for k in &keys {
            if let Some(r) = self.partitions.get(k) {
                r.revoked.store(true, Ordering::SeqCst);
            }
        }
        // Exactly once: the leaving partitions commit with everyone else first (their Prepare
        // is ahead of their Stop in the mailbox); at least once, each commits on Stop.
        let timeout = self.init.stop_timeout;
        ctx.wait(self.round().then(move |_, act, _| {
            let stops: Vec<_> = keys
                .iter()
                .filter_map(|k| act.partitions.remove(k))
                .map(|r| r.addr.send(Stop))
                .collect();
            async move {
                if tokio::time::timeout(timeout, join_all(stops))
                    .await
                    .is_err()
                {
                    tracing::error!(?timeout, "partitions did not stop in time");
                }
            }
            .into_actor(act)
            .map(move |_, _, _| done())
        }));
    }

    /// Exports each partition's lag (against the consumer's cached watermarks: no broker call),
    /// commit age and stall, and how many are not consuming yet.
    fn observe_partitions(&mut self) {
        let consumer = self.consumer.clone();
        let watermarks = |topic: &str, partition: i32| {
            crate::runtime::consumer::cached_watermarks(consumer.as_ref()?, topic, partition)
        };
        let running = self
            .partitions
            .iter()
            .filter(|(_, r)| r.addr.connected())
            .flat_map(|((_, p), r)| r.progress.iter().map(move |(t, g)| (t, *p, &**g)));
        self.watch.observe(running, watermarks, &self.init.metrics);
    }

    /// A lost assignment: the partitions drop their uncommitted work and stop, writing
    /// nothing (their new owners resume from the last commit).
    fn drop_partitions(
        &mut self,
        keys: Vec<(Arc<str>, i32)>,
        ctx: &mut Context<Self>,
        done: impl FnOnce() + 'static,
    ) {
        tracing::warn!(partitions = ?keys, "assignment lost: dropping uncommitted work, \
            committing nothing");
        let timeout = self.init.stop_timeout;
        let stops: Vec<_> = keys
            .iter()
            .filter_map(|k| self.partitions.remove(k))
            .map(|r| {
                // At once, not when the message arrives: a commit in between would write this
                // node's stale state after the new owner's.
                r.lost.store(true, Ordering::SeqCst);
                r.revoked.store(true, Ordering::SeqCst);
                r.addr.send(Abandon("the assignment was lost"))
            })
            .collect();
        ctx.wait(
            async move {
                let _ = tokio::time::timeout(timeout, join_all(stops)).await;
            }
            .into_actor(self)
            .map(move |_, _, _| done()),
        );
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.stopping
            .retain(|_, done| matches!(done.try_recv(), Ok(None)));
        self.reconcile_standbys();
        let now = Instant::now();
        for agent in &self.init.topology.agents {
            let total = self.init.metrics.agent_events(agent.name());
            let meter = self.meters.entry(agent.name().to_owned()).or_default();
            if let Some(rate) = meter.observe(now, total) {
                self.init
                    .metrics
                    .events_per_second
                    .with_label_values(&[agent.name()])
                    .set(rate);
            }
        }
        self.init.metrics.status().set_producer_broken(self.broken);
        self.observe_partitions();
        if self.stopping_all {
            return;
        }
        if self.broken {
            // Partitions restart only with the next producer.
            self.rebuild_producer(ctx);
            return;
        }
        let dead: Vec<_> = self
            .partitions
            .iter()
            .filter(|(_, r)| !r.addr.connected())
            .map(|(k, _)| k.clone())
            .collect();
        for (topic, partition) in dead {
            self.restart_partition(topic, partition);
        }
    }

    /// Restarts a task whose actor stopped on its own, from its last commit (the same rule as
    /// on assignment, see `start`; the store of a task that ran here holds every changelog
    /// write it made). No answer from the group: again at the next tick.
    fn restart_partition(&mut self, lead: Arc<str>, partition: i32) {
        let Some(consumer) = self.consumer.clone() else {
            return;
        };
        let topics = self.init.topology.topics_of(&lead);
        let exactly = self.init.transactions.is_some();
        let mut starts = Vec::new();
        for topic in topics {
            let timeout = Duration::from_secs(5);
            let Ok(group) = group_offset(&consumer, &topic, partition, timeout) else {
                return;
            };
            let store = &self.init.store;
            let stored = store.task_offset(&lead, &topic, partition).ok().flatten();
            let mut start = start_of(exactly, stored, group, true);
            // Seeking needs an offset: no commit yet means the beginning.
            start.at = start.at.or(Some(0));
            starts.push((topic, start));
        }
        self.partitions.remove(&(lead.clone(), partition));
        tracing::error!(topic = %lead, partition, ?starts,
            "partition actor stopped on its own; restarting it from its last commit");
        let mut inputs = Vec::new();
        for (topic, start) in starts {
            match PartitionReader::split(&consumer, topic.clone(), partition) {
                Some(reader) => inputs.push(Input {
                    topic,
                    start,
                    reader,
                }),
                None => {
                    tracing::error!(%topic, partition, "cannot split the partition queue again");
                    return;
                }
            }
        }
        self.start_partition(lead, partition, inputs, consumer, true);
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for (table, partitions) in self.init.topology.global_tables.clone() {
            match self.start_global_reader(&table, partitions) {
                Ok(reader) => self.global_readers.push(reader),
                Err(e) => {
                    tracing::error!(%table, error = %e, "cannot keep a copy of the global table")
                }
            }
        }
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.tick(ctx));
        self.me = Some(ctx.address());
        if self.init.transactions.is_some() {
            ctx.run_interval(self.init.settings.commit_interval, |act, ctx| {
                act.tick_round(ctx)
            });
        }
    }
}

impl Handler<Assigned> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Assigned, ctx: &mut Self::Context) {
        if self.stopping_all {
            return;
        }
        self.consumer = Some(msg.consumer.clone());
        self.init.lease.rejoined();
        // A standby of a newly assigned partition is stopped first (its writes land in the
        // store), so the partition's restore replays only the rest: promotion in place.
        let mut writes_landing = Vec::new();
        for p in &msg.parts {
            let key = (p.topic.clone(), p.partition);
            if let Some(standby) = self.standbys.remove(&key) {
                tracing::info!(topic = %p.topic, partition = p.partition, "promoting the standby");
                self.init.metrics.standby_promotions_total.inc();
                self.init
                    .metrics
                    .assigned_partitions
                    .with_label_values(&["standby"])
                    .dec();
                writes_landing.push(standby.stop());
            }
            writes_landing.extend(self.stopping.remove(&key));
        }
        let bound = self.init.stop_timeout;
        let globals = (!self.globals_ready && !self.init.topology.global_tables.is_empty())
            .then(|| self.globals_caught_up());
        self.globals_ready = true;
        ctx.wait(
            async move {
                if let Some(caught_up) = globals {
                    caught_up.await;
                }
                let _ = tokio::time::timeout(bound, join_all(writes_landing)).await;
            }
            .into_actor(self)
            .map(move |_, act, _| {
                for p in msg.parts {
                    let consumer = msg.consumer.clone();
                    act.start_partition(p.topic, p.partition, p.inputs, consumer, false);
                }
                act.reconcile_standbys();
            }),
        );
    }
}

impl Handler<Revoke> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Revoke, ctx: &mut Self::Context) {
        let done = msg.done;
        if msg.lost {
            // The lease stays suspended (after a freeze) until every lost partition has
            // dropped its work: none of them may write in between.
            let lease = self.init.lease.clone();
            self.drop_partitions(msg.parts, ctx, move || {
                lease.rejoined();
                let _ = done.send(());
            });
            return;
        }
        self.init.lease.rejoined();
        self.stop_partitions(msg.parts, ctx, move || {
            let _ = done.send(());
        });
    }
}

impl Handler<Stray> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Stray, _ctx: &mut Self::Context) {
        let lead = self.init.topology.lead_of(&msg.0.topic).cloned();
        let key = (lead.unwrap_or_else(|| msg.0.topic.clone()), msg.0.partition);
        match self.partitions.get(&key) {
            Some(r) => r.addr.do_send(Forward(msg.0)),
            None => tracing::error!(topic = %key.0, partition = key.1, offset = msg.0.offset,
                "record for a partition this node does not hold; not processed here"),
        }
    }
}

impl Handler<StopAll> for Coordinator {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: StopAll, ctx: &mut Self::Context) -> Self::Result {
        self.stopping_all = true;
        let held = self.standbys.len() as i64;
        self.init
            .metrics
            .assigned_partitions
            .with_label_values(&["standby"])
            .sub(held);
        let mut standbys_done: Vec<_> = self.standbys.drain().map(|(_, s)| s.stop()).collect();
        standbys_done.extend(self.global_readers.drain(..).map(Standby::stop));
        standbys_done.extend(self.stopping.drain().map(|(_, r)| r));
        let membership = self.init.standbys.take().map(|plan| plan.membership);
        let keys: Vec<_> = self.partitions.keys().cloned().collect();
        let (tx, rx) = futures::channel::oneshot::channel();
        self.stop_partitions(keys, ctx, move || {
            let _ = tx.send(());
        });
        let bound = self.init.stop_timeout;
        Box::pin(
            async move {
                let _ = rx.await;
                let _ = tokio::time::timeout(bound, join_all(standbys_done)).await;
                if let Some(m) = membership {
                    let _ = tokio::task::spawn_blocking(move || m.leave()).await;
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.consumer = None;
                act.tick(ctx);
            }),
        )
    }
}

/// The group's committed offset of one partition (`None`: none yet; `Err`: no answer, logged).
fn group_offset(
    consumer: &NodeConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<i64>, ()> {
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    match crate::runtime::consumer::group_offsets(consumer, &tpl, timeout) {
        Ok(offsets) => Ok(offsets.get(&(topic.to_owned(), partition)).copied()),
        Err(e) => {
            tracing::error!(%topic, partition, error = %e, "cannot read the group's offset");
            Err(())
        }
    }
}
