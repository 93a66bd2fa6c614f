//! The node's Kafka client settings, and reaching the broker at start-up.

use std::collections::HashMap;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, Producer};

use std::time::Duration;

use faust_actors::io::transactional::Transactions;
use faust_actors::Metrics;

use crate::config::{Config, Guarantee};
use crate::error::Error;

pub(crate) fn client_config(config: &Config, bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in &config.broker.librdkafka {
        c.set(k, v);
    }
    c.set("bootstrap.servers", bootstrap);
    set_default(&mut c, "client.id", &config.app.id);
    c
}

/// Sets `key` to faust-rs's default unless the user's settings, already in `c`, give it: a
/// setting a user gives is never replaced.
pub(crate) fn set_default(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

/// Settings of the node's producers: [`client_config`] and, unless `[broker.librdkafka]` names
/// one, Java's key partitioner ([`crate::config::BrokerConfig::partitioner`]).
pub(crate) fn producer_config(config: &Config, bootstrap: &str) -> ClientConfig {
    let mut c = client_config(config, bootstrap);
    set_default(
        &mut c,
        "partitioner",
        config.broker.partitioner().librdkafka_name(),
    );
    c
}

/// Settings of the node's own readers (changelog restore, standbys, global tables): exactly
/// once, they see only committed transactions.
pub(crate) fn reader_config(config: &Config, bootstrap: &str) -> ClientConfig {
    let mut c = client_config(config, bootstrap);
    if config.processing.guarantee == Guarantee::ExactlyOnce {
        c.set("isolation.level", "read_committed");
    }
    c
}

/// The `transactional.id` of node `node_id` of the app: one per node, kept across restarts
/// (the store holds the node id), so a restarted node fences its earlier self.
pub(crate) fn transactional_id(config: &Config, node_id: &str) -> String {
    format!("{}-{node_id}", config.app.id)
}

/// Settings of the node's transactional producer (exactly once): `<app id>-<node id>`, the node
/// id kept in the store, so a restarted node fences its crashed self at once. A transaction left
/// open by a crash blocks `read_committed` readers of its partitions until the broker aborts
/// it, so the timeout is short, as in Kafka Streams (10 s), unless set under
/// `[broker.librdkafka]`.
pub(crate) fn transactional_config(
    config: &Config,
    bootstrap: &str,
    node_id: &str,
) -> ClientConfig {
    let mut c = producer_config(config, bootstrap);
    c.set("transactional.id", transactional_id(config, node_id));
    set_default(&mut c, "transaction.timeout.ms", "10000");
    c
}

pub(crate) fn consumer_config(config: &Config, bootstrap: &str) -> ClientConfig {
    let session = config.broker.session_timeout.as_millis().max(3);
    let mut c = reader_config(config, bootstrap);
    c.set("group.id", &config.app.id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            config.processing.auto_offset_reset.as_str(),
        )
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", session.to_string());
    // A third of the session, as Kafka recommends (and the frozen-node bound assumes).
    set_default(&mut c, "heartbeat.interval.ms", &(session / 3).to_string());
    // Prefetch: librdkafka's default (64 MiB) cost about 150 MiB of RSS on a node with four
    // partitions and bought no throughput (scripts/bench). Lowering `queued.min.messages`
    // instead cost two thirds of the throughput. [broker.librdkafka] can still set it.
    set_default(&mut c, "queued.max.messages.kbytes", "2048");
    // A partition whose prefetch queue is at that bound waits `fetch.queue.backoff.ms` before
    // its next fetch: librdkafka's 1 s left each queue empty for most of a second at steady
    // state (125,000 events/s; 20 ms: 217,000 on the same 3,000,000 records, see
    // benches/peers/analysis.md).
    set_default(&mut c, "fetch.queue.backoff.ms", "20");
    c
}

/// The partition count of every topic on the broker (blocking, bounded by `timeout`).
pub(crate) fn topic_counts(
    producer: &FutureProducer,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<HashMap<String, usize>> {
    producer.client().fetch_metadata(None, timeout).map(|md| {
        md.topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect()
    })
}

/// Reaches the broker (bounded): its cluster id and the partition count of every topic.
pub(crate) async fn connect(
    producer: &FutureProducer,
    config: &Config,
    bootstrap: &str,
) -> Result<(String, HashMap<String, usize>), Error> {
    let p = producer.clone();
    let timeout = config.broker.connect_timeout;
    let unreachable = |reason: String| Error::BrokerUnreachable {
        bootstrap: bootstrap.into(),
        reason,
    };
    let (metadata, cluster): (_, Option<String>) = tokio::task::spawn_blocking(move || {
        (
            topic_counts(&p, timeout),
            p.client().fetch_cluster_id(timeout),
        )
    })
    .await
    .map_err(|e| unreachable(e.to_string()))?;
    let topics = metadata.map_err(|e| unreachable(format!("{e} (waited {timeout:?})")))?;
    let cluster =
        cluster.ok_or_else(|| unreachable("the broker did not say its cluster id".into()))?;
    Ok((cluster, topics))
}

/// Creates the node's transactional producer and opens its first transaction (bounded by
/// `broker.connect_timeout`).
pub(crate) async fn open_transactions(
    config: &Config,
    bootstrap: &str,
    node_id: &str,
) -> Result<Transactions, Error> {
    let failed = |reason: String| Error::BrokerUnreachable {
        bootstrap: bootstrap.into(),
        reason,
    };
    let settings = transactional_config(config, bootstrap, node_id);
    let timeout = config.broker.connect_timeout;
    let opened = tokio::task::spawn_blocking(move || Transactions::create(settings, timeout))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let transactions = opened.map_err(|e| {
        failed(format!(
            "exactly_once: {e} (transactions need a broker with a transaction state log: \
             transaction.state.log.replication.factor <= the number of brokers)"
        ))
    })?;
    tracing::info!(transactional_id = %transactional_id(config, node_id),
        "exactly once: transactional producer ready");
    Ok(transactions)
}

/// While librdkafka reports every broker down, asks for metadata every 2 s and marks the broker
/// up again (`faust_broker_up`) when one answers.
pub(crate) async fn watch_broker(producer: FutureProducer, metrics: Metrics) {
    const EVERY: Duration = Duration::from_secs(2);
    loop {
        actix::clock::sleep(EVERY).await;
        if metrics.status().broker_up() {
            continue;
        }
        let p = producer.clone();
        let answered =
            tokio::task::spawn_blocking(move || p.client().fetch_metadata(None, EVERY).is_ok())
                .await;
        if matches!(answered, Ok(true)) {
            tracing::info!("a broker answers again; resuming");
            metrics.status().set_broker_up(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every librdkafka key a user gives reaches every client it applies to, unchanged:
    /// faust-rs's own defaults only fill keys the user left out (the keys it must own are
    /// refused by `Config::check` instead).
    #[test]
    fn every_setting_a_user_gives_is_passed_through() {
        let mut config = Config::default();
        let given = [
            ("client.id", "mine"),
            ("heartbeat.interval.ms", "1234"),
            ("queued.max.messages.kbytes", "4096"),
            ("fetch.queue.backoff.ms", "250"),
            ("partitioner", "consistent_random"),
            ("transaction.timeout.ms", "20000"),
            ("security.protocol", "SASL_SSL"),
        ];
        for (k, v) in given {
            config.broker.librdkafka.insert(k.into(), v.into());
        }
        let clients = [
            client_config(&config, "b:9092"),
            reader_config(&config, "b:9092"),
            producer_config(&config, "b:9092"),
            consumer_config(&config, "b:9092"),
            transactional_config(&config, "b:9092", "n1"),
        ];
        for (i, c) in clients.iter().enumerate() {
            for (k, v) in given {
                assert_eq!(c.get(k), Some(v), "client {i}: {k}");
            }
        }
        // Left out, the defaults apply.
        let plain = Config::default();
        let consumer = consumer_config(&plain, "b:9092");
        assert_eq!(consumer.get("client.id"), Some(plain.app.id.as_str()));
        assert_eq!(consumer.get("heartbeat.interval.ms"), Some("3333"));
        assert_eq!(consumer.get("fetch.queue.backoff.ms"), Some("20"));
        assert_eq!(consumer.get("auto.offset.reset"), Some("earliest"));
        let producer = producer_config(&plain, "b:9092");
        assert_eq!(producer.get("partitioner"), Some("murmur2_random"));
    }
}
