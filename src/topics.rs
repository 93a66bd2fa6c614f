//! Topics a node needs: every topic under `[topics]` must exist with its configured partition
//! count. Missing ones are created with the admin API; an existing topic with another count is
//! a start-up error naming both, found before any record is read (not at the first rebalance).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Config;
use crate::error::Error;

/// Partition counts of the broker's topics, by name.
pub(crate) type TopicCounts = HashMap<String, usize>;

/// Errors on the first configured topic whose partition count differs from `existing`.
pub(crate) fn check_counts(config: &Config, existing: &TopicCounts) -> Result<(), Error> {
    for (name, topic) in &config.topics {
        if let Some(&actual) = existing.get(name) {
            if actual != topic.partitions as usize {
                return Err(Error::PartitionMismatch {
                    topic: name.clone(),
                    actual,
                    expected: topic.partitions,
                });
            }
        }
    }
    Ok(())
}

/// Creates every configured topic missing from `existing`; returns the names created.
///
/// # Errors
/// [`Error::TopicCreation`] naming the topic and the broker's reason (a topic created at the same
/// moment by another node is not an error).
pub(crate) async fn create_missing(
    config: &Config,
    client: &ClientConfig,
    existing: &TopicCounts,
    timeout: Duration,
) -> Result<Vec<String>, Error> {
    let missing: Vec<(&String, i32, i32)> = config
        .topics
        .iter()
        .filter(|(name, _)| !existing.contains_key(*name))
        .map(|(name, t)| (name, t.partitions, t.replication.unwrap_or(-1)))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> =
        client.create().map_err(|e| Error::TopicCreation {
            topic: missing[0].0.clone(),
            reason: format!("cannot create an admin client: {e}"),
        })?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(name, partitions, replication)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(*replication))
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| Error::TopicCreation {
            topic: missing[0].0.clone(),
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
    for (name, partitions, _) in &missing {
        if created.contains(name) {
            tracing::info!(topic = %name, partitions, "created topic");
        }
    }
    Ok(created)
}
