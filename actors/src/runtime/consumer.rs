//! The node's one Kafka consumer: its rebalance callbacks and the thread that serves them.
//!
//! The consumer's main queue is polled by a dedicated OS thread ([`ConsumerThread`]), because
//! librdkafka runs rebalance callbacks on the thread that polls, and our revoke callback must
//! block until the revoked partitions are committed. Records themselves never pass through that
//! thread: each partition's queue is split off before assignment and read by its partition actor.
//!
//! - Only the leads of the app's co-partitioned groups are subscribed (see `topology`): with
//!   each lead partition `p`, the callback assigns partition `p` of the group's other topics
//!   too, and revokes them with it, so one node always holds all of a task.
//! - Assign: for each partition, the start offset is the store's (the offset its tables reflect)
//!   when it has one, else the group's committed offset (exactly once: always the group's, which
//!   a `read_committed` consumer reads only once no transaction holding it is pending); the
//!   queue is split, the partitions are assigned, and the coordinator starts a partition actor
//!   for each.
//! - Revoke: the coordinator commits and stops the partition actors (bounded wait); only then
//!   does the callback return and librdkafka release the partitions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::io::changelog::reads_committed;
use crate::io::reader::PartitionReader;
use crate::metrics::Metrics;
use crate::model::error::{Error, Result};
use crate::model::record::Record;
use crate::runtime::messages::{Assigned, AssignedPart, Input, Rebalances, Revoke, Stray};
use crate::runtime::start::{start_of, Start};
use crate::runtime::topology::Topology;
use crate::state::store::Store;

/// The consumer type of a node.
pub(crate) type NodeConsumer = BaseConsumer<NodeContext>;

/// Callbacks of the node's consumer.
pub struct NodeContext {
    store: Store,
    /// The app: the changelogs of each source topic's tables.
    topology: Arc<Topology>,
    /// Bound on the broker calls made while assigning.
    timeout: Duration,
    metrics: Metrics,
    revoke_timeout: Duration,
    coordinator: OnceLock<Rebalances>,
    consumer: OnceLock<Weak<NodeConsumer>>,
    /// Exactly once (the consumer reads `read_committed`): the store is updated only after a
    /// transaction commits, so it may lag; the group's committed offset is the truth.
    committed_only: bool,
}

impl ClientContext for NodeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            // `/healthz` says so until the node reaches a broker again; the consumer keeps
            // retrying on its own, and nothing uncommitted is lost meanwhile.
            self.metrics.status().set_broker_up(false);
            tracing::error!(error = %error, reason,
                "lost every broker; retrying (processing resumes when one answers)");
            return;
        }
        tracing::error!(error = %error, reason, "Kafka client error");
    }
}

/// One assigned partition, as plain data (no librdkafka list outlives the callback).
struct Part {
    topic: Arc<str>,
    partition: i32,
}

impl NodeContext {
    fn parts(tpl: &TopicPartitionList) -> Vec<Part> {
        tpl.elements()
            .iter()
            .map(|e| Part {
                topic: Arc::from(e.topic()),
                partition: e.partition(),
            })
            .collect()
    }

    /// The group's committed offsets for `tpl`, as plain data.
    fn committed(
        &self,
        consumer: &NodeConsumer,
        tpl: &TopicPartitionList,
    ) -> HashMap<(String, i32), i64> {
        group_offsets(consumer, tpl, self.timeout).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the group's committed offsets");
            HashMap::new()
        })
    }

    /// Whether the store holds the latest state of the task's tables: every changelog record
    /// is applied (no other node wrote since).
    fn store_is_latest(&self, consumer: &NodeConsumer, lead: &str, partition: i32) -> Result<bool> {
        let changelogs = self.topology.source(lead).map(|s| &s.changelogs);
        for (table, changelog) in changelogs.into_iter().flatten() {
            let (_, high) = consumer
                .fetch_watermarks(changelog, partition, self.timeout)
                .map_err(|e| {
                    Error::kafka(format!("reading the end of {changelog}[{partition}]"), e)
                })?;
            if self.store.changelog_applied(lead, partition, table)? != high {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Where `topic`'s partition of the task `lead`/`p` starts (see `start`); `latest` tells
    /// whether the store holds the task's latest state, asked once per task.
    fn start_offset(
        &self,
        consumer: &NodeConsumer,
        (lead, topic, p): (&str, &str, i32),
        committed: Option<i64>,
        latest: &mut Option<bool>,
    ) -> Start {
        if self.committed_only {
            return start_of(true, None, committed, false);
        }
        let stored = match self.store.task_offset(lead, topic, p) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%topic, partition = p, error = %e, "cannot read the stored offset");
                None
            }
        };
        let latest = *latest.get_or_insert_with(|| match self.store_is_latest(consumer, lead, p) {
            Ok(latest) => latest,
            Err(e) => {
                tracing::warn!(%topic, partition = p, error = %e,
                    "cannot compare the store with the changelog; starting from the group's commit");
                false
            }
        });
        start_of(false, stored, committed, latest)
    }

    /// `tpl` (leads) with partition `p` of every other topic of each lead's group.
    fn with_followers(&self, tpl: &TopicPartitionList) -> TopicPartitionList {
        let mut all = tpl.clone();
        for part in Self::parts(tpl) {
            for topic in self.topology.topics_of(&part.topic).iter().skip(1) {
                all.add_partition(topic, part.partition);
            }
        }
        all
    }

    fn on_assign(&self, consumer: &NodeConsumer, leads: &mut TopicPartitionList) {
        // Only leads are subscribed: the group's other topics' partition `p` is assigned with
        // the lead's, here, so a task's partitions are always on one node (see `topology`).
        let mut tpl = self.with_followers(leads);
        let committed = self.committed(consumer, &tpl);
        let Some(arc) = self.consumer.get().and_then(Weak::upgrade) else {
            tracing::error!("assignment received while the consumer is shutting down");
            return;
        };
        let mut assigned = Vec::new();
        for lead in Self::parts(leads) {
            let p = lead.partition;
            let mut latest = None;
            let mut inputs = Vec::new();
            let group = self.topology.topics_of(&lead.topic);
            for topic in group.iter().cloned() {
                let key = (topic.to_string(), p);
                let at = (&*lead.topic, &*topic, p);
                let start =
                    self.start_offset(consumer, at, committed.get(&key).copied(), &mut latest);
                if let Some(offset) = start.at {
                    if let Err(e) = tpl.set_partition_offset(&topic, p, Offset::Offset(offset)) {
                        tracing::error!(%topic, partition = p, error = %e,
                            "cannot set the start offset");
                    }
                }
                match PartitionReader::split(&arc, topic.clone(), p) {
                    Some(reader) => inputs.push(Input {
                        topic,
                        start,
                        reader,
                    }),
                    None => tracing::error!(%topic, partition = p,
                        "cannot split the partition queue; the task will not be processed"),
                }
            }
            if inputs.len() == group.len() {
                assigned.push(AssignedPart {
                    topic: lead.topic,
                    partition: p,
                    inputs,
                });
            }
        }
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(&tpl),
            _ => consumer.assign(&tpl),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "assign failed");
        }
        self.metrics
            .rebalances_total
            .with_label_values(&["assign"])
            .inc();
        match self.coordinator.get() {
            Some(c) => c.assigned.do_send(Assigned {
                parts: assigned,
                consumer: arc.clone(),
            }),
            None => tracing::error!("assignment received before the coordinator started"),
        }
        drop(arc);
    }

    fn on_revoke(&self, consumer: &NodeConsumer, tpl: &TopicPartitionList) {
        let parts: Vec<(Arc<str>, i32)> = Self::parts(tpl)
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect();
        self.metrics
            .rebalances_total
            .with_label_values(&["revoke"])
            .inc();
        if let Some(c) = self.coordinator.get() {
            let (done, wait) = mpsc::sync_channel(1);
            let started = Instant::now();
            c.revoke.do_send(Revoke {
                parts: parts.clone(),
                lost: consumer.assignment_lost(),
                done,
            });
            match wait.recv_timeout(self.revoke_timeout) {
                Ok(()) => tracing::info!(?parts, took = ?started.elapsed(),
                    "revoked partitions committed and released"),
                Err(mpsc::RecvTimeoutError::Timeout) => tracing::error!(?parts,
                    timeout = ?self.revoke_timeout,
                    "revoked partitions did not finish committing in time; releasing them \
                     (their last commit stands, later events will be processed again)"),
                // The coordinator is gone (node stopping): its partitions were already stopped.
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
        }
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => {
                consumer.incremental_unassign(&self.with_followers(tpl))
            }
            _ => consumer.unassign(),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "unassign failed");
        }
    }
}

impl ConsumerContext for NodeContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer, tpl),
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign after a rebalance error failed");
                }
            }
        }
    }

    fn main_queue_min_poll_interval(&self) -> rdkafka::util::Timeout {
        rdkafka::util::Timeout::After(Duration::from_millis(100))
    }
}

/// A partition's (low, high) watermarks as last seen in fetch responses: librdkafka's cache,
/// no broker call (rdkafka does not expose it). `None` until the partition was fetched.
pub(crate) fn cached_watermarks(
    consumer: &NodeConsumer,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client outlives the call; librdkafka only reads `topic` and writes the two
    // offsets, under its own lock.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}

/// The group's committed offsets for `tpl`, as plain data (no librdkafka list outlives the
/// call); partitions without a commit are left out.
pub(crate) fn group_offsets(
    consumer: &NodeConsumer,
    tpl: &TopicPartitionList,
    timeout: Duration,
) -> std::result::Result<HashMap<(String, i32), i64>, KafkaError> {
    let list = consumer.committed_offsets(tpl.clone(), timeout)?;
    let map = list
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect();
    drop(list);
    Ok(map)
}

/// What the consumer thread needs.
pub struct ConsumerInit {
    /// The consumer's settings (group, bootstrap, security, isolation level).
    pub config: ClientConfig,
    /// The app: its source topics (subscribed) and their tables' changelogs.
    pub topology: Arc<Topology>,
    /// The node's store (where a newly assigned partition starts).
    pub store: Store,
    /// The node's metrics.
    pub metrics: Metrics,
    /// Longest wait for the coordinator to commit and stop revoked partitions.
    pub revoke_timeout: Duration,
    /// Told of rebalances and stray records.
    pub coordinator: Rebalances,
}

/// The thread that owns the consumer and polls its main queue.
pub struct ConsumerThread {
    stop: Arc<AtomicBool>,
    finished: mpsc::Receiver<()>,
    handle: Option<JoinHandle<()>>,
}

impl ConsumerThread {
    /// Creates the consumer, subscribes to the topology's source topics, and starts polling.
    ///
    /// # Errors
    /// librdkafka rejected the configuration or the subscription.
    pub fn start(init: ConsumerInit) -> Result<Self> {
        let ConsumerInit {
            config,
            topology,
            store,
            metrics,
            revoke_timeout,
            coordinator,
        } = init;
        let topics = topology.source_topics();
        let config = &config;
        let context = NodeContext {
            store,
            topology,
            timeout: revoke_timeout,
            metrics: metrics.clone(),
            revoke_timeout,
            coordinator: OnceLock::new(),
            consumer: OnceLock::new(),
            committed_only: reads_committed(config),
        };
        let consumer: Arc<NodeConsumer> = Arc::new(
            config
                .create_with_context(context)
                .map_err(|e| Error::kafka("creating the consumer", e))?,
        );
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        let _ = consumer.context().coordinator.set(coordinator.clone());
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| Error::kafka(format!("subscribing to {topics:?}"), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (done, finished) = mpsc::channel();
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("faust-consumer".into())
            .spawn(move || {
                poll_loop(consumer, &flag, &coordinator, &metrics);
                let _ = done.send(());
            })
            .map_err(|source| Error::Io {
                action: "cannot start the consumer thread for",
                path: "faust-consumer".into(),
                source,
            })?;
        Ok(ConsumerThread {
            stop,
            finished,
            handle: Some(handle),
        })
    }

    /// Leaves the group and closes the consumer, waiting at most `timeout`. Call after the
    /// partition actors have stopped (they hold the partition queues).
    ///
    /// # Errors
    /// [`Error::Timeout`] when the close did not finish in time (the thread is left behind).
    pub fn close(mut self, timeout: Duration) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.finished.recv_timeout(timeout) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(h) = self.handle.take() {
                    let _ = h.join();
                }
                Ok(())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout {
                context: "closing the Kafka consumer".into(),
                after: timeout,
            }),
        }
    }
}

fn poll_loop(
    consumer: Arc<NodeConsumer>,
    stop: &AtomicBool,
    coordinator: &Rebalances,
    metrics: &Metrics,
) {
    metrics.status().set_consumer_up(true);
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(msg)) => {
                // Queues are split before assignment, so this is not expected; never drop it.
                let topic: Arc<str> = Arc::from(rdkafka::Message::topic(&msg));
                let record = Record::read(&topic, &msg);
                tracing::warn!(%topic, partition = record.partition, offset = record.offset,
                    "record arrived on the main queue; forwarding it to its partition");
                coordinator.stray.do_send(Stray(record));
            }
            Some(Err(e)) => tracing::error!(error = %e, "consumer error"),
        }
    }
    // The partition readers hold the consumer too; it must be closed here, where the final
    // rebalance can be served, so wait (bounded) until they are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&consumer) > 1 && Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(20));
    }
    if Arc::strong_count(&consumer) > 1 {
        tracing::error!("partition queues still open at shutdown; closing the consumer anyway");
    }
    metrics.status().set_consumer_up(false);
    // Dropping the last handle closes the consumer queue and serves the final revoke.
    drop(consumer);
    tracing::info!("consumer closed");
}
