//! The node's link to the broker: its producer (what agents, timers and the generator send),
//! the cluster id, and every topic the topology needs found or created with the right
//! partition count.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};

use super::Node;
use crate::clients::{connect, producer_config, reader_config, set_default};
use crate::error::Error;
use crate::topics;

/// The broker as the node reached it at start-up.
pub(super) struct Broker {
    /// The node's producer (idempotent unless the config says otherwise).
    pub(super) producer: FutureProducer,
    /// The Kafka cluster id (the store is stamped with it).
    pub(super) cluster_id: String,
}

impl Broker {
    /// Creates the producer, reaches the broker (bounded), checks the partition counts of the
    /// topics that exist and creates the missing ones.
    ///
    /// # Errors
    /// The broker is unreachable, a topic has another partition count, or cannot be created.
    pub(super) async fn connect(node: &Node) -> Result<Self, Error> {
        let (config, bootstrap) = (&node.topology.config, &node.bootstrap);
        let needed = &node.topology.topics;
        let mut producer_config = producer_config(config, bootstrap);
        // In order and without gaps per partition, even across retries: a changelog then
        // holds a prefix of each commit's records, which windowed tables rely on (stream time
        // last).
        set_default(&mut producer_config, "enable.idempotence", "true");
        bound_delivery_time(&mut producer_config, config);
        let producer: FutureProducer =
            producer_config
                .create()
                .map_err(|e| Error::BrokerUnreachable {
                    bootstrap: bootstrap.clone(),
                    reason: format!("cannot create a producer: {e}"),
                })?;
        let (cluster_id, broker_topics) = connect(&producer, config, bootstrap).await?;
        topics::check_counts(needed, &broker_topics)?;
        let client = reader_config(config, bootstrap);
        let timeout = config.broker.connect_timeout;
        let created = topics::create_missing(needed, &client, &broker_topics, timeout).await?;
        if !created.is_empty() {
            // Another node may have created one at the same moment with another count.
            let (_, now) = connect(&producer, config, bootstrap).await?;
            topics::check_counts(needed, &now)?;
        }
        Ok(Broker {
            producer,
            cluster_id,
        })
    }

    /// Flushes the producer (bounded); says what failed, if it did.
    pub(super) async fn flush(&self) -> Option<&'static str> {
        let producer = self.producer.clone();
        let flushed =
            tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
        (!matches!(flushed, Ok(Ok(())))).then_some("flushing the producer")
    }
}

/// A record the producer still holds when the node freezes must never reach the broker after
/// the group has handed its partition to another node: a plain producer is not fenced, so an
/// old changelog value sent on waking would land after the new owner's and roll the table back
/// at the next failover. The group hands a partition over at the earliest one session timeout
/// after the last heartbeat, and heartbeats go every third of it; so a record that has waited
/// half the session timeout is expired by librdkafka before it sends anything after a freeze
/// (it scans for timed-out records first when its threads wake), and the failed delivery
/// rewinds the partition like any other. A `message.timeout.ms` (or `delivery.timeout.ms`)
/// under `[broker.librdkafka]` is honoured; longer than that bound it keeps the window open,
/// which the log says.
fn bound_delivery_time(producer: &mut rdkafka::ClientConfig, config: &crate::config::Config) {
    let bound = (config.broker.session_timeout / 2).max(Duration::from_millis(500));
    let given = ["message.timeout.ms", "delivery.timeout.ms"]
        .iter()
        .find_map(|k| config.broker.librdkafka.get(*k).map(|v| (*k, v)));
    match given {
        None => {
            producer.set("message.timeout.ms", bound.as_millis().to_string());
        }
        Some((key, value)) => {
            if value
                .parse::<u128>()
                .map_or(true, |ms| ms > bound.as_millis())
            {
                tracing::warn!(key, value = %value, bound_ms = bound.as_millis() as u64,
                    "a producer delivery timeout longer than half the session timeout: records \
                     queued when the node freezes may still be sent after another node took \
                     over their partitions");
            }
        }
    }
}
