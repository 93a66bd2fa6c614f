//! The coordinator actor: the node's view of its group membership.
//!
//! It turns the consumer's rebalance callbacks into partition actors (started on the worker
//! arbiters, round robin), stops them with a commit on revoke and at shutdown, watches that they
//! stay alive (a partition actor that stops on its own is restarted from its last commit), and
//! computes per-agent throughput every second. Membership itself is Kafka's consumer group:
//! nothing here replaces it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::join_all;
use rdkafka::producer::FutureProducer;

use crate::agent::AgentRef;
use crate::agent_actor::Work;
use crate::codec::TopicCodecs;
use crate::consumer::{NodeConsumer, NodeContext};
use crate::lease::Lease;
use crate::members::{Membership, Part};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::partition::{
    Forward, PartitionActor, PartitionInit, PartitionSettings, Stop, WorkFactory,
};
use crate::progress::{Progress, Watch};
use crate::reader::PartitionReader;
use crate::record::Record;
use crate::shard::TableSet;
use crate::standby::Standby;
use crate::start::{start_of, Start};
use crate::store::Store;
use crate::throughput::RateMeter;
use crate::transaction::{Abandon, Transactions};

mod standbys;
use futures::channel::oneshot;

/// One newly assigned partition, its queue already split off the consumer.
pub(crate) struct AssignedPart {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// Where it starts, and the group's commit (see `start`).
    pub(crate) start: Start,
    pub(crate) reader: PartitionReader<NodeContext>,
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

/// What the coordinator needs to run partitions.
pub struct CoordinatorInit {
    /// The app id: prefix of changelog topics, base of the restore consumer's group id.
    pub app_id: String,
    /// Client settings (bootstrap, security) for the consumers that read changelogs.
    pub client: rdkafka::config::ClientConfig,
    /// Every registered agent.
    pub agents: Vec<AgentRef>,
    /// The node's store.
    pub store: Store,
    /// The node's metrics.
    pub metrics: Metrics,
    /// Producer for what agents send (`None`: agents cannot send).
    pub producer: Option<FutureProducer>,
    /// Codecs per topic.
    pub codecs: Arc<TopicCodecs>,
    /// Partition tuning.
    pub settings: PartitionSettings,
    /// Arbiters that run partition and agent actors.
    pub workers: Vec<ArbiterHandle>,
    /// Longest wait for partitions to commit and stop.
    pub stop_timeout: Duration,
    /// Standby replicas: `None` when the app has no tables or wants none.
    pub standbys: Option<StandbyPlan>,
    /// Global tables and their partition counts: this node keeps a full copy of each.
    pub global_tables: Vec<(Arc<str>, i32)>,
    /// Exactly once: the node's transactional producer (`producer` is the same one), and
    /// commits run in node-wide rounds (see `transaction`). `None`: at least once.
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
    progress: Arc<Progress>,
    revoked: Arc<AtomicBool>,
    /// Takes part in transaction rounds (exactly once; see `transaction::Join`).
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
    by_topic: HashMap<String, Vec<AgentRef>>,
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
    /// When the producer failed for good recently (see `transaction::GIVE_UP_AFTER`).
    pub(crate) producer_failures: Vec<Instant>,
    /// Lag, commit age and stalls of the partitions, exported at each tick.
    watch: Watch,
    /// A round from the commit interval is waiting or under way.
    pub(crate) round_queued: bool,
}

impl Coordinator {
    /// A coordinator for `init`'s agents.
    pub fn new(init: CoordinatorInit) -> Self {
        let stall_after = init.settings.stall_after;
        let mut by_topic: HashMap<String, Vec<AgentRef>> = HashMap::new();
        for agent in &init.agents {
            for topic in agent.topics() {
                by_topic.entry(topic).or_default().push(agent.clone());
            }
        }
        Coordinator {
            init,
            global_readers: Vec::new(),
            globals_ready: false,
            standbys: HashMap::new(),
            stopping: HashMap::new(),
            by_topic,
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

    fn work_factory(&self, topic: &Arc<str>, partition: i32, agents: &[AgentRef]) -> WorkFactory {
        let db = self.init.store.db().clone();
        let path = self.init.store.path().clone();
        let specs: Vec<_> = agents.iter().flat_map(AgentRef::tables).collect();
        let producer = self.init.producer.clone();
        let codecs = self.init.codecs.clone();
        let cache = self.init.settings.cache_keys;
        let ahead = self.init.settings.max_timestamp_ahead;
        let lease = self.init.lease.clone();
        let doom = self.init.transactions.as_ref().map(Transactions::doom_flag);
        let topic = topic.clone();
        let app: Arc<str> = Arc::from(self.init.app_id.as_str());
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
            )?;
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
        start: Start,
        reader: PartitionReader<NodeContext>,
        consumer: Arc<NodeConsumer>,
        seek_on_start: bool,
    ) {
        let Some(agents) = self.by_topic.get(&*topic).cloned() else {
            tracing::error!(%topic, partition, "assigned a partition of a topic no agent consumes");
            return;
        };
        let revoked = Arc::new(AtomicBool::new(false));
        let progress = Progress::new(start.committed);
        let init = PartitionInit {
            progress: progress.clone(),
            lease: self.init.lease.clone(),
            restore: self.restore_for(&agents, partition),
            make_work: self.work_factory(&topic, partition, &agents),
            topic: topic.clone(),
            partition,
            agents,
            reader,
            consumer,
            db: self.init.store.db().clone(),
            path: self.init.store.path().clone(),
            start,
            seek_on_start,
            revoked: revoked.clone(),
            settings: self.init.settings.clone(),
            metrics: self.init.metrics.clone(),
            join: self.me.clone().filter(|_| self.init.transactions.is_some()),
        };
        let worker = &self.init.workers[self.next_worker % self.init.workers.len()];
        self.next_worker += 1;
        let addr = PartitionActor::start_in_arbiter(worker, move |_| PartitionActor::new(init));
        if let Some(old) = self.partitions.insert(
            (topic, partition),
            Running {
                addr,
                progress,
                revoked,
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
            crate::consumer::cached_watermarks(consumer.as_ref()?, topic, partition)
        };
        let running = self
            .partitions
            .iter()
            .filter(|(_, r)| r.addr.connected())
            .map(|((t, p), r)| (t, *p, &*r.progress));
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
        for agent in &self.init.agents {
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
        self.init
            .metrics
            .producer_broken
            .set(i64::from(self.broken));
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
            let Some(consumer) = self.consumer.clone() else {
                continue;
            };
            // The same rule as on assignment (see `start`); the store of a partition that ran
            // here holds every changelog write it made. No answer: again at the next tick.
            let Ok(group) = group_offset(&consumer, &topic, partition, Duration::from_secs(5))
            else {
                continue;
            };
            let stored = self
                .init
                .store
                .next_offset(&topic, partition)
                .ok()
                .flatten();
            let exactly = self.init.transactions.is_some();
            let mut start = start_of(exactly, stored, group, true);
            // Seeking needs an offset: no commit yet means the beginning.
            start.at = start.at.or(Some(0));
            self.partitions.remove(&(topic.clone(), partition));
            tracing::error!(%topic, partition, ?start,
                "partition actor stopped on its own; restarting it from its last commit");
            match PartitionReader::split(&consumer, topic.clone(), partition) {
                Some(reader) => {
                    self.start_partition(topic, partition, start, reader, consumer, true)
                }
                None => {
                    tracing::error!(%topic, partition, "cannot split the partition queue again")
                }
            }
        }
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for (table, partitions) in self.init.global_tables.clone() {
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
        let globals = (!self.globals_ready && !self.init.global_tables.is_empty())
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
                    act.start_partition(p.topic, p.partition, p.start, p.reader, consumer, false);
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
            self.drop_partitions(msg.parts, ctx, move || {
                let _ = done.send(());
            });
            self.init.lease.rejoined();
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
        let key = (msg.0.topic.clone(), msg.0.partition);
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
    match crate::consumer::group_offsets(consumer, &tpl, timeout) {
        Ok(offsets) => Ok(offsets.get(&(topic.to_owned(), partition)).copied()),
        Err(e) => {
            tracing::error!(%topic, partition, error = %e, "cannot read the group's offset");
            Err(())
        }
    }
}
