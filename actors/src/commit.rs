//! The changelog step of the commit cycle, and how the cycle reports a failed step.

use std::sync::Arc;

use crate::agent::enqueue;

/// Writes each table's changes to partition `partition` of its changelog and waits for the
/// broker's acknowledgements; returns, per table, the next changelog offset after them.
pub(crate) async fn write_changelogs(
    producer: Option<rdkafka::producer::FutureProducer>,
    partition: i32,
    changes: &[(Arc<str>, String, Vec<crate::shard::Change>)],
) -> Result<Vec<(Arc<str>, i64)>, Step> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(producer) = producer else {
        return Err(Step::Delivery("no producer to write the changelog".into()));
    };
    let mut acks = Vec::new();
    for (table, topic, writes) in changes {
        for w in writes {
            let mut record = rdkafka::producer::FutureRecord::<[u8], [u8]>::to(topic)
                .partition(partition)
                .key(&w.key);
            if let Some(v) = &w.value {
                record = record.payload(v);
            }
            let ack = enqueue(&producer, record)
                .await
                .map_err(|e| Step::Delivery(format!("changelog {topic}: {e}")))?;
            acks.push((table.clone(), ack));
        }
    }
    let mut next: Vec<(Arc<str>, i64)> = Vec::new();
    for (table, ack) in acks {
        let offset = match ack.await {
            Ok(Ok(delivery)) => delivery.offset,
            Ok(Err((e, _))) => return Err(Step::Delivery(format!("changelog of `{table}`: {e}"))),
            Err(_) => {
                return Err(Step::Delivery(format!(
                    "changelog of `{table}`: record dropped"
                )))
            }
        };
        match next.iter_mut().find(|(t, _)| *t == table) {
            Some((_, n)) => *n = (*n).max(offset + 1),
            None => next.push((table, offset + 1)),
        }
    }
    Ok(next)
}

/// The step of the commit cycle that failed, with its cause.
#[derive(Debug)]
pub(crate) enum Step {
    Delivery(String),
    Store(String),
    Kafka(String),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Delivery(e) => write!(f, "an output record was not delivered: {e}"),
            Step::Store(e) => write!(f, "the store write failed: {e}"),
            Step::Kafka(e) => write!(
                f,
                "the Kafka offset commit failed (retried next interval): {e}"
            ),
        }
    }
}
