//! The node's Prometheus metrics: one registry, created by the node and shared (cheaply, all
//! counters are atomics) with every actor. Names follow `faust_<thing>_<unit>`; label sets are
//! bounded by agents, topics, partitions and tables.

pub mod status;
pub mod throughput;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::error::{Error, Result};
use status::{Reports, Status};

/// Every metric the runtime exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The name of every metric registered by [`Metrics::new`].
    names: std::sync::Arc<Vec<String>>,
    /// The node's status as typed state; it sets the status gauges below.
    status: Status,
    /// Events handed to an agent and finished (processed, or skipped as invalid).
    pub events_total: IntCounterVec,
    /// Events per second per agent over the last interval, computed by the coordinator.
    pub events_per_second: GaugeVec,
    /// Offset commits that reached Kafka.
    pub commits_total: IntCounter,
    /// Commits that failed (store write or Kafka commit); retried at the next interval.
    pub commit_failures_total: IntCounter,
    /// Partitions this node holds, by role (`active`; `standby` comes with changelogs).
    pub assigned_partitions: IntGaugeVec,
    /// 1 for each source partition this node holds as active.
    pub partition_active: IntGaugeVec,
    /// Runs of each timer by result (`ok`, `error`, `panic`, `not_leader`).
    pub timer_runs_total: IntCounterVec,
    /// 1 for each held partition halted by the `stop` error policy.
    pub partition_halted: IntGaugeVec,
    /// 1 while the node's clients reach at least one broker, 0 after librdkafka reported all
    /// brokers down (until a broker answers again).
    pub broker_up: IntGauge,
    /// Keys per table over the partitions this node holds, as of the last commit.
    pub table_keys: IntGaugeVec,
    /// Agent actors restarted after a panic.
    pub agent_restarts_total: IntCounterVec,
    /// Agent calls that returned an error (the event is retried).
    pub agent_errors_total: IntCounterVec,
    /// Events handed to an agent's actors and not yet finished.
    pub mailbox_depth: IntGaugeVec,
    /// Records an agent could not decode, by reason; logged with their offset and skipped.
    pub invalid_records_total: IntCounterVec,
    /// Rebalance events by kind (`assign`, `revoke`).
    pub rebalances_total: IntCounterVec,
    /// 1 while the consumer is connected and serving its group, else 0.
    pub consumer_up: Gauge,
    /// Changelog records still to apply before a partition's tables are ready.
    pub recovery_remaining_records: IntGaugeVec,
    /// How long restoring a partition's tables took.
    pub recovery_seconds: Histogram,
    /// Exactly-once transactions by result (`committed`, `aborted`, `fatal`).
    pub transactions_total: IntCounterVec,
    /// How long a transaction's commit round took (partitions paused, offsets sent, committed).
    pub transaction_seconds: Histogram,
    /// End-to-end latency: from a record's timestamp to the end of its processing (the last
    /// record of each batch, per source topic).
    pub latency_seconds: HistogramVec,
    /// At least once: a commit cycle's first half (outputs acknowledged, changelog written,
    /// store batch applied).
    pub commit_stage_seconds: Histogram,
    /// At least once: a whole commit cycle, to the offset committed in Kafka.
    pub commit_seconds: Histogram,
    /// Attempts to build a new transactional producer after one failed for good, by result
    /// (`ok`, `failed`).
    pub producer_rebuilds_total: IntCounterVec,
    /// 1 while the transactional producer is broken and its partitions are stopped.
    pub producer_broken: IntGauge,
    /// 1 once the producer failed too often to build another (a duplicate node): the node
    /// stops with an error.
    pub producer_given_up: IntGauge,
    /// Records waiting per active partition: high watermark minus committed offset.
    pub partition_lag_records: IntGaugeVec,
    /// How far behind an active partition is in time: 0 without lag, else the age of the last
    /// record it processed.
    pub partition_lag_seconds: GaugeVec,
    /// Seconds since an active partition's committed offset last moved.
    pub partition_commit_age_seconds: GaugeVec,
    /// 1 for each active partition with records waiting and no progress for
    /// `processing.stall_intervals` commit intervals.
    pub partition_stalled: IntGaugeVec,
    /// Active partitions not consuming yet (restoring their tables, or joining).
    pub partitions_not_ready: IntGauge,
    /// 1 while the node writes nothing because it may have lost its partitions (see `lease`).
    pub membership_suspended: IntGauge,
    /// 1 once a store write failed for good (disk full, I/O error): partitions stop taking
    /// records and the node exits with an error.
    pub store_failed: IntGauge,
    /// Changelog records applied while restoring.
    pub recovery_records_total: IntCounter,
    /// Partitions that became active here while this node held a standby of them.
    pub standby_promotions_total: IntCounter,
    /// Changelog records applied by standbys.
    pub standby_records_total: IntCounter,
    /// Events that arrived for a window that had already closed: counted, not applied.
    pub late_events_total: IntCounterVec,
    /// Windows closed (final value sent to the close callback and topic).
    pub windows_closed_total: IntCounterVec,
    /// Windows deleted after their expiry.
    pub windows_expired_total: IntCounterVec,
}

/// Buckets of the latency histograms, in seconds: 1 ms to 1 min.
const LATENCY: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    ///
    /// # Errors
    /// [`Error::Metrics`] on a name clash (a bug).
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let names = std::cell::RefCell::new(Vec::new());
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            names
                .borrow_mut()
                .extend(c.desc().iter().map(|d| d.fq_name.clone()));
            registry
                .register(c)
                .map_err(|source| Error::Metrics { source })
        };
        // The process's CPU seconds, resident and virtual memory, open and maximum file
        // descriptors, threads and start time (`process_*`), read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        macro_rules! vec_metric {
            ($kind:ty, $name:expr, $help:expr, $labels:expr) => {{
                let m = <$kind>::new(Opts::new($name, $help), $labels)
                    .map_err(|source| Error::Metrics { source })?;
                reg(Box::new(m.clone()))?;
                m
            }};
        }
        macro_rules! metric {
            ($kind:ty, $name:expr, $help:expr) => {{
                let m = <$kind>::new($name, $help).map_err(|source| Error::Metrics { source })?;
                reg(Box::new(m.clone()))?;
                m
            }};
        }
        let commits_total = metric!(
            IntCounter,
            "faust_commits_total",
            "Offset commits sent to Kafka"
        );
        let commit_failures_total = metric!(
            IntCounter,
            "faust_commit_failures_total",
            "Commit cycles that failed and will be retried"
        );
        let broker_up = metric!(
            IntGauge,
            "faust_broker_up",
            "1 while the node reaches a broker, 0 after all brokers went down"
        );
        broker_up.set(1);
        let consumer_up = metric!(
            Gauge,
            "faust_consumer_up",
            "1 while the consumer serves its group"
        );
        let recovery_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "faust_recovery_seconds",
                "Time to restore a partition's tables",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )
        .map_err(|source| Error::Metrics { source })?;
        reg(Box::new(recovery_seconds.clone()))?;
        let transaction_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "faust_transaction_seconds",
                "Time of an exactly-once commit round, partitions paused to commit or abort",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .map_err(|source| Error::Metrics { source })?;
        reg(Box::new(transaction_seconds.clone()))?;
        let seconds = |name: &str, help: &str| -> Result<Histogram> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY.to_vec()))
                .map_err(|source| Error::Metrics { source })?;
            reg(Box::new(h.clone()))?;
            Ok(h)
        };
        let commit_stage_seconds = seconds(
            "faust_commit_stage_seconds",
            "First half of an at-least-once commit: outputs acknowledged, changelogs written, store batch applied",
        )?;
        let commit_seconds = seconds(
            "faust_commit_seconds",
            "A whole at-least-once commit cycle, to the offset committed in Kafka",
        )?;
        let latency_seconds = HistogramVec::new(
            HistogramOpts::new(
                "faust_latency_seconds",
                "From a record's timestamp to the end of its processing (last record of each batch)",
            )
            .buckets(LATENCY.to_vec()),
            &["topic"],
        )
        .map_err(|source| Error::Metrics { source })?;
        reg(Box::new(latency_seconds.clone()))?;
        let recovery_records_total = metric!(
            IntCounter,
            "faust_recovery_records_total",
            "Changelog records applied while restoring"
        );
        let standby_promotions_total = metric!(
            IntCounter,
            "faust_standby_promotions_total",
            "Partitions promoted from a standby on this node"
        );
        let standby_records_total = metric!(
            IntCounter,
            "faust_standby_records_total",
            "Changelog records applied by standbys"
        );
        let mut metrics = Metrics {
            status: Status::default(),
            events_total: vec_metric!(
                IntCounterVec,
                "faust_events_total",
                "Events finished by an agent",
                &["agent", "topic", "partition"]
            ),
            events_per_second: vec_metric!(
                GaugeVec,
                "faust_events_per_second",
                "Events per second per agent over the last interval",
                &["agent"]
            ),
            commits_total,
            commit_failures_total,
            assigned_partitions: vec_metric!(
                IntGaugeVec,
                "faust_assigned_partitions",
                "Partitions held by this node, by role",
                &["role"]
            ),
            partition_active: vec_metric!(
                IntGaugeVec,
                "faust_partition_active",
                "1 for each source partition held as active",
                &["topic", "partition"]
            ),
            timer_runs_total: vec_metric!(
                IntCounterVec,
                "faust_timer_runs_total",
                "Runs of each timer by result (ok, error, panic, not_leader)",
                &["timer", "result"]
            ),
            partition_halted: vec_metric!(
                IntGaugeVec,
                "faust_partition_halted",
                "1 for each held partition halted by the stop error policy",
                &["topic", "partition"]
            ),
            broker_up,
            table_keys: vec_metric!(
                IntGaugeVec,
                "faust_table_keys",
                "Keys per table in the partitions this node holds",
                &["table"]
            ),
            agent_restarts_total: vec_metric!(
                IntCounterVec,
                "faust_agent_restarts_total",
                "Agent actors restarted after a panic",
                &["agent"]
            ),
            agent_errors_total: vec_metric!(
                IntCounterVec,
                "faust_agent_errors_total",
                "Agent calls that returned an error",
                &["agent"]
            ),
            mailbox_depth: vec_metric!(
                IntGaugeVec,
                "faust_mailbox_depth",
                "Events handed to an agent and not yet finished",
                &["agent"]
            ),
            invalid_records_total: vec_metric!(
                IntCounterVec,
                "faust_invalid_records_total",
                "Events that failed for good and went to the error policy, by reason \
                 (key, value, null_value, agent_error, panic)",
                &["agent", "reason"]
            ),
            rebalances_total: vec_metric!(
                IntCounterVec,
                "faust_rebalances_total",
                "Rebalance events by kind",
                &["kind"]
            ),
            consumer_up,
            recovery_remaining_records: vec_metric!(
                IntGaugeVec,
                "faust_recovery_remaining_records",
                "Changelog records still to apply before a partition is ready",
                &["table", "partition"]
            ),
            recovery_seconds,
            transactions_total: vec_metric!(
                IntCounterVec,
                "faust_transactions_total",
                "Exactly-once transactions, by result (committed, aborted, fatal)",
                &["result"]
            ),
            transaction_seconds,
            latency_seconds,
            commit_stage_seconds,
            commit_seconds,
            producer_rebuilds_total: vec_metric!(
                IntCounterVec,
                "faust_producer_rebuilds_total",
                "Attempts to build a new transactional producer after one failed, by result",
                &["result"]
            ),
            producer_given_up: metric!(
                IntGauge,
                "faust_producer_given_up",
                "1 once the transactional producer failed too often to build another: the node stops"
            ),
            producer_broken: metric!(
                IntGauge,
                "faust_producer_broken",
                "1 while the transactional producer is broken and its partitions are stopped"
            ),
            partition_lag_records: vec_metric!(
                IntGaugeVec,
                "faust_partition_lag_records",
                "Records waiting per active partition (high watermark minus committed offset)",
                &["topic", "partition"]
            ),
            partition_lag_seconds: vec_metric!(
                GaugeVec,
                "faust_partition_lag_seconds",
                "Time lag of an active partition: 0 when caught up, else the age of its last record",
                &["topic", "partition"]
            ),
            partition_commit_age_seconds: vec_metric!(
                GaugeVec,
                "faust_partition_commit_age_seconds",
                "Seconds since an active partition's committed offset last moved",
                &["topic", "partition"]
            ),
            partition_stalled: vec_metric!(
                IntGaugeVec,
                "faust_partition_stalled",
                "1 for an active partition with records waiting and no commit progress",
                &["topic", "partition"]
            ),
            partitions_not_ready: metric!(
                IntGauge,
                "faust_partitions_not_ready",
                "Active partitions not consuming yet (restoring or joining)"
            ),
            membership_suspended: metric!(
                IntGauge,
                "faust_membership_suspended",
                "1 while the node writes nothing: frozen past its session timeout, group not answered"
            ),
            store_failed: metric!(
                IntGauge,
                "faust_store_failed",
                "1 once a store write failed for good (disk full, I/O error): the node stops"
            ),
            recovery_records_total,
            standby_promotions_total,
            standby_records_total,
            late_events_total: vec_metric!(
                IntCounterVec,
                "faust_late_events_total",
                "Events for windows already closed: counted, not applied",
                &["table"]
            ),
            windows_closed_total: vec_metric!(
                IntCounterVec,
                "faust_windows_closed_total",
                "Windows closed with their final value",
                &["table"]
            ),
            windows_expired_total: vec_metric!(
                IntCounterVec,
                "faust_windows_expired_total",
                "Windows deleted after their expiry",
                &["table"]
            ),
            registry,
            names: std::sync::Arc::new(names.take()),
        };
        metrics.status = Status::new(Some(Reports {
            consumer_up: metrics.consumer_up.clone(),
            broker_up: metrics.broker_up.clone(),
            producer_broken: metrics.producer_broken.clone(),
            producer_given_up: metrics.producer_given_up.clone(),
            membership_suspended: metrics.membership_suspended.clone(),
            store_failed: metrics.store_failed.clone(),
            partition_active: metrics.partition_active.clone(),
            partition_halted: metrics.partition_halted.clone(),
            partition_stalled: metrics.partition_stalled.clone(),
            partitions_not_ready: metrics.partitions_not_ready.clone(),
        }));
        Ok(metrics)
    }

    /// The node's status, which the status gauges report (see [`Status`]).
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The name of every metric this node exports from the start (a dashboard or an alert
    /// rule may only use these), whether or not it has a sample yet.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The registry, for callers that add metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding to a Vec cannot fail for well-formed metrics; an error leaves a partial page.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Total events finished by `agent` over all its partitions.
    pub fn agent_events(&self, agent: &str) -> u64 {
        self.sum_counter("faust_events_total", |labels| {
            labels
                .iter()
                .any(|l| l.name() == "agent" && l.value() == agent)
        })
    }

    /// Total events finished by every agent.
    pub fn all_events(&self) -> u64 {
        self.sum_counter("faust_events_total", |_| true)
    }

    fn sum_counter(
        &self,
        name: &str,
        keep: impl Fn(&[prometheus::proto::LabelPair]) -> bool,
    ) -> u64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| keep(m.get_label()))
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_per_agent_and_render_as_prometheus_text() {
        let m = Metrics::new().unwrap();
        m.events_total.with_label_values(&["a", "t", "0"]).inc_by(3);
        m.events_total.with_label_values(&["a", "t", "1"]).inc_by(4);
        m.events_total.with_label_values(&["b", "t", "0"]).inc_by(5);
        assert_eq!(m.agent_events("a"), 7);
        assert_eq!(m.all_events(), 12);
        let text = m.encode();
        assert!(
            text.contains("faust_events_total{agent=\"a\",partition=\"1\",topic=\"t\"} 4"),
            "{text}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_metrics_are_exported_with_real_values() {
        let text = Metrics::new().unwrap().encode();
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(&format!("{name} ")));
            line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(value("process_start_time_seconds") > 1.7e9);
    }
}
