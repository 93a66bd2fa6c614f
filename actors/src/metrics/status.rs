//! The node's status as typed state: what the node, `/healthz`, `/readyz` and leadership read.
//! Each setter also sets the gauge that reports it, so a metric is only ever written from
//! here and never read back to decide anything: renaming a metric changes no behaviour.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{Gauge, IntGauge, IntGaugeVec};
use tokio::sync::watch;

/// A failure the node cannot go on with: it stops and exits with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fatal {
    /// A store write failed for good (disk full, I/O error).
    StoreFailed,
    /// The transactional producer kept being fenced (another live node with this one's id).
    ProducerGivenUp,
}

/// The gauges that report the status.
#[derive(Clone)]
pub(crate) struct Reports {
    pub(crate) consumer_up: Gauge,
    pub(crate) broker_up: IntGauge,
    pub(crate) producer_broken: IntGauge,
    pub(crate) producer_given_up: IntGauge,
    pub(crate) membership_suspended: IntGauge,
    pub(crate) store_failed: IntGauge,
    pub(crate) partition_active: IntGaugeVec,
    pub(crate) partition_halted: IntGaugeVec,
    pub(crate) partition_stalled: IntGaugeVec,
    pub(crate) partitions_not_ready: IntGauge,
}

/// Per-partition facts: which partitions are held, halted, stalled.
#[derive(Default)]
struct Partitions {
    held: HashSet<(Arc<str>, i32)>,
    halted: BTreeSet<(Arc<str>, i32)>,
    stalled: BTreeSet<(Arc<str>, i32)>,
    not_ready: i64,
}

struct Inner {
    consumer_up: AtomicBool,
    broker_up: AtomicBool,
    producer_broken: AtomicBool,
    suspended: AtomicBool,
    partitions: Mutex<Partitions>,
    fatal: watch::Sender<Option<Fatal>>,
    reports: Option<Reports>,
}

/// The node's status; cheap to clone, shared by every part of the node.
#[derive(Clone)]
pub struct Status(Arc<Inner>);

impl Default for Status {
    fn default() -> Self {
        Status::new(None)
    }
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status")
            .field("consumer_up", &self.consumer_up())
            .field("broker_up", &self.broker_up())
            .field("producer_broken", &self.producer_broken())
            .field("suspended", &self.suspended())
            .field("fatal", &self.fatal())
            .finish()
    }
}

impl Status {
    /// A status reported by `reports` (`None`: not reported), broker up, nothing else yet.
    pub(crate) fn new(reports: Option<Reports>) -> Self {
        let (fatal, _) = watch::channel(None);
        Status(Arc::new(Inner {
            consumer_up: AtomicBool::new(false),
            broker_up: AtomicBool::new(true),
            producer_broken: AtomicBool::new(false),
            suspended: AtomicBool::new(false),
            partitions: Mutex::new(Partitions::default()),
            fatal,
            reports,
        }))
    }

    fn report(&self, f: impl FnOnce(&Reports)) {
        if let Some(r) = &self.0.reports {
            f(r);
        }
    }

    /// The consumer thread serves the group (`faust_consumer_up`).
    pub fn set_consumer_up(&self, up: bool) {
        self.0.consumer_up.store(up, Ordering::SeqCst);
        self.report(|r| r.consumer_up.set(f64::from(u8::from(up))));
    }

    /// Whether the consumer thread serves the group.
    pub fn consumer_up(&self) -> bool {
        self.0.consumer_up.load(Ordering::SeqCst)
    }

    /// The node reaches a broker (`faust_broker_up`).
    pub fn set_broker_up(&self, up: bool) {
        self.0.broker_up.store(up, Ordering::SeqCst);
        self.report(|r| r.broker_up.set(i64::from(up)));
    }

    /// Whether the node reaches a broker.
    pub fn broker_up(&self) -> bool {
        self.0.broker_up.load(Ordering::SeqCst)
    }

    /// The transactional producer failed for good and is not rebuilt yet
    /// (`faust_producer_broken`).
    pub fn set_producer_broken(&self, broken: bool) {
        self.0.producer_broken.store(broken, Ordering::SeqCst);
        self.report(|r| r.producer_broken.set(i64::from(broken)));
    }

    /// Whether the transactional producer is broken.
    pub fn producer_broken(&self) -> bool {
        self.0.producer_broken.load(Ordering::SeqCst)
    }

    /// The node writes nothing until the group answers (`faust_membership_suspended`).
    pub fn set_suspended(&self, suspended: bool) {
        self.0.suspended.store(suspended, Ordering::SeqCst);
        self.report(|r| r.membership_suspended.set(i64::from(suspended)));
    }

    /// Whether the node's writes are suspended (see `io::lease`).
    pub fn suspended(&self) -> bool {
        self.0.suspended.load(Ordering::SeqCst)
    }

    /// The node must stop (`faust_store_failed` or `faust_producer_given_up`); the first
    /// failure is the one kept.
    pub fn fail(&self, fatal: Fatal) {
        self.0.fatal.send_if_modified(|f| {
            let first = f.is_none();
            if first {
                *f = Some(fatal);
            }
            first
        });
        self.report(|r| match fatal {
            Fatal::StoreFailed => r.store_failed.set(1),
            Fatal::ProducerGivenUp => r.producer_given_up.set(1),
        });
    }

    /// The fatal failure, if one happened.
    pub fn fatal(&self) -> Option<Fatal> {
        *self.0.fatal.borrow()
    }

    /// Resolves with the first fatal failure.
    pub async fn failed(&self) -> Fatal {
        let mut rx = self.0.fatal.subscribe();
        loop {
            if let Some(f) = *rx.borrow_and_update() {
                return f;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn partitions(&self) -> std::sync::MutexGuard<'_, Partitions> {
        self.0.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node holds (or no longer holds) `topic[partition]` as active
    /// (`faust_partition_active`).
    pub fn set_held(&self, topic: &Arc<str>, partition: i32, held: bool) {
        let key = (topic.clone(), partition);
        match held {
            true => self.partitions().held.insert(key),
            false => self.partitions().held.remove(&key),
        };
        let label = partition.to_string();
        self.report(|r| {
            r.partition_active
                .with_label_values(&[&**topic, &label])
                .set(i64::from(held));
        });
    }

    /// Whether this node holds `topic[partition]` as active (the leader holds partition 0 of
    /// the first source topic).
    pub fn holds(&self, topic: &str, partition: i32) -> bool {
        self.partitions()
            .held
            .contains(&(Arc::from(topic), partition))
    }

    /// The source partitions this node holds as active, in order.
    pub fn held(&self) -> Vec<(Arc<str>, i32)> {
        let mut held: Vec<_> = self.partitions().held.iter().cloned().collect();
        held.sort();
        held
    }

    /// How many source partitions this node holds as active.
    pub fn active(&self) -> usize {
        self.partitions().held.len()
    }

    /// `topic[partition]` is halted by the `stop` policy, or no longer
    /// (`faust_partition_halted`).
    pub fn set_halted(&self, topic: &Arc<str>, partition: i32, halted: bool) {
        let key = (topic.clone(), partition);
        match halted {
            true => self.partitions().halted.insert(key),
            false => self.partitions().halted.remove(&key),
        };
        let label = partition.to_string();
        self.report(|r| {
            r.partition_halted
                .with_label_values(&[&**topic, &label])
                .set(i64::from(halted));
        });
    }

    /// The halted partitions, as `topic[partition]`.
    pub fn halted(&self) -> Vec<String> {
        let p = self.partitions();
        p.halted.iter().map(|(t, n)| format!("{t}[{n}]")).collect()
    }

    /// `topic[partition]` is stalled (records waiting, offset not moving), or not; `None`: the
    /// partition is no longer held (its series goes away) (`faust_partition_stalled`).
    pub fn set_stalled(&self, topic: &Arc<str>, partition: i32, stalled: Option<bool>) {
        let key = (topic.clone(), partition);
        match stalled {
            Some(true) => self.partitions().stalled.insert(key),
            _ => self.partitions().stalled.remove(&key),
        };
        let label = partition.to_string();
        self.report(|r| match stalled {
            Some(s) => r
                .partition_stalled
                .with_label_values(&[&**topic, &label])
                .set(i64::from(s)),
            None => {
                let _ = r.partition_stalled.remove_label_values(&[&**topic, &label]);
            }
        });
    }

    /// The stalled partitions, as `topic[partition]`.
    pub fn stalled(&self) -> Vec<String> {
        let p = self.partitions();
        p.stalled.iter().map(|(t, n)| format!("{t}[{n}]")).collect()
    }

    /// How many held partitions are not consuming yet (restoring or joining)
    /// (`faust_partitions_not_ready`).
    pub fn set_not_ready(&self, n: i64) {
        self.partitions().not_ready = n;
        self.report(|r| r.partitions_not_ready.set(n));
    }

    /// How many held partitions are not consuming yet.
    pub fn not_ready(&self) -> i64 {
        self.partitions().not_ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_fatal_failure_is_kept_and_awaited() {
        let status = Status::default();
        assert_eq!(status.fatal(), None);
        let waiting = tokio::spawn({
            let s = status.clone();
            async move { s.failed().await }
        });
        status.fail(Fatal::ProducerGivenUp);
        status.fail(Fatal::StoreFailed);
        assert_eq!(waiting.await.unwrap(), Fatal::ProducerGivenUp);
        assert_eq!(status.fatal(), Some(Fatal::ProducerGivenUp));
    }

    #[test]
    fn held_partitions_make_the_leader() {
        let status = Status::default();
        let t: Arc<str> = Arc::from("t");
        assert!(!status.holds("t", 0));
        status.set_held(&t, 0, true);
        assert!(status.holds("t", 0) && !status.holds("t", 1));
        status.set_halted(&t, 1, true);
        status.set_stalled(&t, 2, Some(true));
        assert_eq!(
            (status.halted(), status.stalled()),
            (vec!["t[1]".into()], vec!["t[2]".into()])
        );
        status.set_held(&t, 0, false);
        status.set_stalled(&t, 2, None);
        assert!(!status.holds("t", 0) && status.stalled().is_empty() && status.active() == 0);
    }
}
