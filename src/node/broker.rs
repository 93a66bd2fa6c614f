//! The node's link to the broker: its producer (what agents, timers and the generator send),
//! the cluster id, and every topic the topology needs found or created with the right
//! partition count.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};

use super::Node;
use crate::clients::{client_config, connect, reader_config};
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
        let mut producer_config = client_config(config, bootstrap);
        if !config.broker.librdkafka.contains_key("enable.idempotence") {
            // In order and without gaps per partition, even across retries: a changelog then
            // holds a prefix of each commit's records, which windowed tables rely on (stream
            // time last).
            producer_config.set("enable.idempotence", "true");
        }
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
