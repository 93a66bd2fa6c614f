//! Topics a node needs: every topic under `[topics]` must exist with its configured partition
//! count. Missing ones are created with the admin API; an existing topic with another count is
//! a start-up error naming both, found before any record is read (not at the first rebalance).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use faust_actors::changelog::changelog_topic;
use faust_actors::members::members_topic;
use faust_actors::{AgentRef, OnError};

use crate::config::Config;
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

/// Every topic the node needs: those under `[topics]`, a changelog per table (with the
/// partition count of the table's source topic), a close topic per windowed table that names
/// one, a dead-letter topic per agent whose policy is `dead-letter`, and each agent's sinks
/// not listed under `[topics]` (with the agent's largest source's partition count): a sink that
/// does not exist would otherwise hold every emitted record until librdkafka gives up on it.
pub(crate) fn needed(app_id: &str, config: &Config, agents: &[AgentRef]) -> Vec<Needed> {
    let mut out: Vec<Needed> = config
        .topics
        .iter()
        .map(|(name, t)| Needed {
            name: name.clone(),
            partitions: t.partitions,
            replication: t.replication,
            compact: false,
            why: format!("in [topics.{name}]"),
        })
        .collect();
    if agents.iter().any(|a| !a.tables().is_empty()) {
        out.push(Needed {
            name: members_topic(app_id),
            partitions: 1,
            replication: None,
            compact: true,
            why: "(the members topic has one partition)".into(),
        });
    }
    for agent in agents {
        let sources = agent.topics();
        let most = sources
            .iter()
            .filter_map(|t| config.topics.get(t))
            .max_by_key(|t| t.partitions);
        let dlq = &agent.policy().dead_letter_topic;
        if let Some(t) = most.filter(|_| agent.policy().on_error == OnError::DeadLetter) {
            if !config.topics.contains_key(dlq) {
                out.push(Needed {
                    name: dlq.clone(),
                    partitions: t.partitions,
                    replication: t.replication,
                    compact: false,
                    why: format!(
                        "like the largest source topic of agent `{}`, whose dead letters it holds",
                        agent.name()
                    ),
                });
            }
        }
        if let Some(t) = most {
            for sink in agent.sinks() {
                if config.topics.contains_key(sink) || out.iter().any(|n| &n.name == sink) {
                    continue;
                }
                out.push(Needed {
                    name: sink.clone(),
                    partitions: t.partitions,
                    replication: t.replication,
                    compact: false,
                    why: format!(
                        "like the largest source topic of agent `{}`, which emits to it",
                        agent.name()
                    ),
                });
            }
        }
        let Some(source) = agent.topics().into_iter().next() else {
            continue;
        };
        let Some(t) = config.topics.get(&source) else {
            continue;
        };
        for table in agent.tables() {
            let closes = table.close_topic.as_deref();
            if let Some(close) = closes.filter(|c| !config.topics.contains_key(*c)) {
                out.push(Needed {
                    name: close.to_owned(),
                    partitions: t.partitions,
                    replication: t.replication,
                    compact: false,
                    why: format!(
                        "like `{source}`, whose windowed table `{}` closes windows to it",
                        table.name
                    ),
                });
            }
            out.push(Needed {
                name: changelog_topic(app_id, &table.name),
                partitions: t.partitions,
                replication: t.replication,
                compact: true,
                why: format!(
                    "like its source topic `{source}` (a changelog is co-partitioned with it)"
                ),
            });
        }
    }
    out
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
