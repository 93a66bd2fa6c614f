//! Topics a node needs (listed by [`crate::topology`]): each must exist with its partition
//! count. Missing ones are created with the admin API; an existing topic with another count is
//! a start-up error naming both, found before any record is read (not at the first rebalance).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::Error;

/// Partition counts of the broker's topics, by name.
pub(crate) type TopicCounts = HashMap<String, usize>;

/// A topic the node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Needed {
    pub(crate) name: String,
    pub(crate) partitions: i32,
    pub(crate) replication: Option<i32>,
    /// Compacted (changelogs).
    pub(crate) compact: bool,
    /// Where the partition count comes from, for errors.
    pub(crate) why: String,
}

/// Errors on the first needed topic whose partition count differs from `existing`.
pub(crate) fn check_counts(needed: &[Needed], existing: &TopicCounts) -> Result<(), Error> {
    for n in needed {
        if let Some(&actual) = existing.get(&n.name) {
            if actual != n.partitions as usize {
                return Err(Error::PartitionMismatch {
                    topic: n.name.clone(),
                    actual,
                    expected: n.partitions,
                    why: n.why.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Resolves with the error when a needed topic's partition count changes on the broker
/// (checked every `every`; an unanswered check is skipped). Tables are sharded by partition:
/// partitions added to a source topic while nodes run would move keys to table partitions that
/// never saw them, and their changelogs lack the partitions. Kafka Streams stops on it too.
pub(crate) async fn watch_counts(
    producer: rdkafka::producer::FutureProducer,
    needed: Vec<Needed>,
    every: std::time::Duration,
) -> Error {
    loop {
        actix::clock::sleep(every).await;
        let p = producer.clone();
        let counts =
            tokio::task::spawn_blocking(move || crate::clients::topic_counts(&p, every)).await;
        if let Ok(Ok(counts)) = counts {
            if let Err(e) = check_counts(&needed, &counts) {
                tracing::error!(error = %e, "a topic's partition count changed while the app \
                    runs: tables are sharded by partition, so keys would move to table \
                    partitions that never saw them; the node stops. Stop every node, then run \
                    the app under a new app.id with [topics] updated (fresh tables), or put \
                    the topic back");
                return e;
            }
        }
    }
}

/// Creates every configured topic missing from `existing`; returns the names created.
///
/// # Errors
/// [`Error::TopicCreation`] naming the topic and the broker's reason (a topic created at the same
/// moment by another node is not an error).
pub(crate) async fn create_missing(
    needed: &[Needed],
    client: &ClientConfig,
    existing: &TopicCounts,
    timeout: Duration,
) -> Result<Vec<String>, Error> {
    let missing: Vec<&Needed> = needed
        .iter()
        .filter(|n| !existing.contains_key(&n.name))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> =
        client.create().map_err(|e| Error::TopicCreation {
            topic: missing[0].name.clone(),
            reason: format!("cannot create an admin client: {e}"),
        })?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|n| {
            let replication = TopicReplication::Fixed(n.replication.unwrap_or(-1));
            let topic = NewTopic::new(&n.name, n.partitions, replication);
            match n.compact {
                true => topic.set("cleanup.policy", "compact"),
                false => topic,
            }
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| Error::TopicCreation {
            topic: missing[0].name.clone(),
            reason: e.to_string(),
        })?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::TopicCreation {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    for n in &missing {
        if created.contains(&n.name) {
            tracing::info!(topic = %n.name, partitions = n.partitions, compacted = n.compact, "created topic");
        }
    }
    Ok(created)
}
