//! The changelog step of the commit cycle, and how the cycle reports a failed step.

use std::sync::Arc;

use crate::io::outbox::enqueue;
use crate::metrics::status::Fatal;

/// Writes each table's changes to partition `partition` of its changelog and waits for the
/// broker's acknowledgements; returns, per table, the next changelog offset after them.
pub(crate) async fn write_changelogs(
    producer: Option<rdkafka::producer::FutureProducer>,
    partition: i32,
    changes: &[(Arc<str>, String, Vec<crate::state::shard::Change>)],
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
    /// An agent's output was not acknowledged (refused outputs name their source records).
    Undelivered(crate::io::outbox::Undelivered),
    /// A changelog record was not acknowledged.
    Delivery(String),
    Store(String),
    Kafka(String),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Undelivered(e) => write!(f, "an output record was not delivered: {e}"),
            Step::Delivery(e) => write!(f, "a changelog record was not delivered: {e}"),
            Step::Store(e) => write!(f, "the store write failed: {e}"),
            Step::Kafka(e) => write!(
                f,
                "the Kafka offset commit failed (retried next interval): {e}"
            ),
        }
    }
}

/// Resolves when the previous commit's durable half (flush, then Kafka commit) has finished;
/// the next one waits for it, so offsets reach Kafka in order and never ahead of the store.
/// It yields whether that commit succeeded.
pub(crate) type Tail = futures::future::Shared<futures::channel::oneshot::Receiver<bool>>;

/// What the durable half of a commit needs.
pub(crate) struct Durable {
    pub(crate) previous: Option<Tail>,
    pub(crate) db: sled::Db,
    pub(crate) consumer: Arc<crate::runtime::consumer::NodeConsumer>,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// The source offset to commit, if any event was finished.
    pub(crate) next: Option<i64>,
    pub(crate) revoked: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) backoff_max: std::time::Duration,
}

/// The commit cycle's first half, which needs the partition's state (processing waits for
/// it): every output acknowledged, the changelogs written and acknowledged, then the staged
/// table entries, counts and next offset applied to the store tree in one atomic batch.
pub(crate) async fn apply_staged(
    deliveries: Vec<crate::io::outbox::Pending>,
    producer: Option<rdkafka::producer::FutureProducer>,
    changes: &[(Arc<str>, String, Vec<crate::state::shard::Change>)],
    mut batch: sled::Batch,
    tree: sled::Tree,
    durable: &Durable,
) -> Result<(), Step> {
    if let Err(undelivered) = crate::io::outbox::confirm(deliveries).await {
        return Err(Step::Undelivered(undelivered));
    }
    for (table, next) in write_changelogs(producer, durable.partition, changes).await? {
        batch.insert(
            crate::model::names::applied_key(&table),
            &next.to_be_bytes(),
        );
    }
    retry_store(durable, "write the table shard to the store", move || {
        tree.apply_batch(batch.clone())
    })
    .await
}

/// The commit cycle's second half, which runs while the partition goes on processing: after
/// the previous commit's, flush the store to disk, then commit the source offset to Kafka.
pub(crate) async fn flush_and_commit(d: Durable) -> Result<(), Step> {
    if let Some(previous) = d.previous.clone() {
        let _ = previous.await;
    }
    let db = d.db.clone();
    retry_store(&d, "flush the store", move || db.flush().map(|_| ())).await?;
    let Some(next) = d.next else { return Ok(()) };
    let (consumer, topic, partition) = (d.consumer.clone(), d.topic.clone(), d.partition);
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{CommitMode, Consumer};
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, rdkafka::Offset::Offset(next))?;
        consumer.commit(&tpl, CommitMode::Sync)
    })
    .await
    .map_err(|e| Step::Kafka(e.to_string()))?
    .map_err(|e| Step::Kafka(e.to_string()))
}

/// Counts and logs a failed commit (the actor's half or the arbiter's).
pub(crate) fn commit_failed(
    metrics: &crate::metrics::Metrics,
    topic: &str,
    partition: i32,
    step: &Step,
) {
    metrics.commit_failures_total.inc();
    if let Step::Store(_) = step {
        metrics.status().fail(Fatal::StoreFailed);
        tracing::error!(%topic, partition, error = %step, "the store cannot write (disk full or \
            I/O error): this partition takes no more records and the node stops; nothing past \
            what is stored was committed. Free space or fix the disk, then restart the node");
        return;
    }
    tracing::error!(%topic, partition, error = %step, "commit failed");
}

/// Attempts at a store write before it fails for good: sled keeps an I/O error (a full disk)
/// for the rest of the process, so a longer wait only grows memory.
const STORE_ATTEMPTS: u32 = 5;

/// Runs a blocking store operation, retrying with back-off a few times (bounded:
/// [`STORE_ATTEMPTS`]) unless the partition is revoked.
async fn retry_store(
    d: &Durable,
    what: &str,
    op: impl Fn() -> sled::Result<()> + Send + Sync + Clone + 'static,
) -> Result<(), Step> {
    let mut wait = std::time::Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let op = op.clone();
        match tokio::task::spawn_blocking(op).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e))
                if attempt < STORE_ATTEMPTS
                    && !d.revoked.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                tracing::error!(topic = %d.topic, partition = d.partition, error = %e, attempt,
                    retry_in = ?wait, "cannot {what}; processing of this partition waits")
            }
            other => return Err(Step::Store(format!("{what}: {other:?}"))),
        }
        actix::clock::sleep(wait).await;
        wait = (wait * 2).min(d.backoff_max);
    }
}
