//! The commit cycle's steps, apart from the actor that drives them (`cycle`): the first half
//! (outputs acknowledged, changelogs written, the staged batch applied to the store tree),
//! the second half (store flushed, source offset committed to Kafka), the bounded store
//! retry, and how a failed step is counted and logged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::io::changelog::{self, StreamSink, TableWrites};
use crate::metrics::status::Fatal;
use crate::model::positions::Positions;

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

/// How a store write of one partition is retried: the partition (for the log), whether it
/// was revoked meanwhile (no more retries), and the longest wait between attempts.
pub(crate) struct StoreRetry {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) revoked: Arc<AtomicBool>,
    pub(crate) backoff_max: Duration,
    /// Bound on one store operation ([`STORE_OP_TIMEOUT`]).
    pub(crate) op_timeout: Duration,
}

/// What the durable half of a commit needs.
pub(crate) struct Durable {
    pub(crate) previous: Option<Tail>,
    pub(crate) db: sled::Db,
    pub(crate) consumer: Arc<crate::runtime::consumer::NodeConsumer>,
    /// The source offsets to commit, one per topic of the task with a finished event.
    pub(crate) next: Positions,
    pub(crate) retry: StoreRetry,
}

/// The commit cycle's first half, which needs the partition's state (processing waits for
/// it): every output acknowledged, the changelogs written and acknowledged, then the staged
/// table entries, counts and next offset applied to the store tree in one atomic batch.
pub(crate) async fn apply_staged(
    deliveries: Vec<crate::io::outbox::Pending>,
    producer: Option<rdkafka::producer::FutureProducer>,
    (changes, streams): (&[TableWrites], &[StreamSink]),
    mut batch: sled::Batch,
    tree: sled::Tree,
    retry: &StoreRetry,
) -> Result<(), Step> {
    if let Err(undelivered) = crate::io::outbox::confirm(deliveries).await {
        return Err(Step::Undelivered(undelivered));
    }
    let written = changelog::write(producer, retry.partition, changes, streams).await;
    for (table, next) in written.map_err(Step::Delivery)? {
        batch.insert(
            crate::model::names::applied_key(&table),
            &next.to_be_bytes(),
        );
    }
    retry_store(retry, "write the table shard to the store", move || {
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
    retry_store(&d.retry, "flush the store", move || db.flush().map(|_| ())).await?;
    if d.next.is_empty() {
        return Ok(());
    }
    let (consumer, next, partition) = (d.consumer.clone(), d.next, d.retry.partition);
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{CommitMode, Consumer};
        let mut tpl = rdkafka::TopicPartitionList::new();
        for (topic, offset) in next.iter() {
            tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))?;
        }
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

/// How long one store operation (a batch applied, a flush) may take before the store counts
/// as failed: sled can hang instead of failing when its log writer hits a full disk, and a
/// store that does not answer must stop the node as one that errs does. Normal flushes take
/// milliseconds.
pub(crate) const STORE_OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a blocking store operation, retrying with back-off a few times (bounded:
/// [`STORE_ATTEMPTS`]) unless the partition is revoked; each attempt bounded by
/// `retry.op_timeout`.
async fn retry_store(
    retry: &StoreRetry,
    what: &str,
    op: impl Fn() -> sled::Result<()> + Send + Sync + Clone + 'static,
) -> Result<(), Step> {
    let mut wait = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        attempt += 1;
        // On a thread of its own, not tokio's blocking pool: a call that never returns must not
        // hold the runtime's shutdown (which waits for its blocking tasks), so the node can
        // still stop with the store's error.
        let (answer, done) = futures::channel::oneshot::channel();
        let op = op.clone();
        let spawned = std::thread::Builder::new()
            .name("faust-store-op".into())
            .spawn(move || {
                let _ = answer.send(op());
            });
        if let Err(e) = spawned {
            return Err(Step::Store(format!("{what}: cannot start a thread: {e}")));
        }
        let Ok(done) = tokio::time::timeout(retry.op_timeout, done).await else {
            return Err(Step::Store(format!(
                "{what}: the store did not answer within {:?} (disk full or failing?)",
                retry.op_timeout
            )));
        };
        match done {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if attempt < STORE_ATTEMPTS && !retry.revoked.load(Ordering::SeqCst) => {
                tracing::error!(topic = %retry.topic, partition = retry.partition, error = %e, attempt,
                    retry_in = ?wait, "cannot {what}; processing of this partition waits")
            }
            other => return Err(Step::Store(format!("{what}: {other:?}"))),
        }
        actix::clock::sleep(wait).await;
        wait = (wait * 2).min(retry.backoff_max);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn retry(revoked: bool) -> StoreRetry {
        StoreRetry {
            topic: Arc::from("t"),
            partition: 0,
            revoked: Arc::new(AtomicBool::new(revoked)),
            backoff_max: Duration::from_millis(10),
            op_timeout: STORE_OP_TIMEOUT,
        }
    }

    /// An operation failing its first `failures` calls; counts its calls.
    fn flaky(failures: usize) -> (Arc<AtomicUsize>, impl Fn() -> sled::Result<()> + Clone) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let op = move || match counted.fetch_add(1, Ordering::SeqCst) < failures {
            true => Err(sled::Error::Unsupported("disk full".into())),
            false => Ok(()),
        };
        (calls, op)
    }

    // Real time (short back-offs): store operations run on threads of their own, and a paused
    // clock would fire their bound before they ran.
    #[tokio::test]
    async fn a_store_write_is_retried_a_bounded_number_of_times() {
        let (calls, op) = flaky(usize::MAX);
        let res = retry_store(&retry(false), "write", op).await;
        assert!(matches!(res, Err(Step::Store(_))), "{res:?}");
        assert_eq!(calls.load(Ordering::SeqCst), STORE_ATTEMPTS as usize);

        let (calls, op) = flaky(2);
        assert!(retry_store(&retry(false), "write", op).await.is_ok());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "succeeds at the third attempt"
        );
    }

    /// Real time: the operation runs on a thread of its own, which the paused clock ignores.
    #[tokio::test]
    async fn a_store_that_does_not_answer_fails_instead_of_hanging() {
        let mut r = retry(false);
        r.op_timeout = Duration::from_millis(50);
        let hangs = || {
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        };
        let res = retry_store(&r, "flush the store", hangs).await;
        assert!(
            matches!(&res, Err(Step::Store(e)) if e.contains("did not answer within 50ms")),
            "{res:?}"
        );
    }

    #[tokio::test]
    async fn a_revoked_partition_does_not_retry_its_store_writes() {
        let (calls, op) = flaky(usize::MAX);
        let res = retry_store(&retry(true), "write", op).await;
        assert!(matches!(res, Err(Step::Store(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_first_half_applies_the_staged_batch_with_the_changelog_positions() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("p").unwrap();
        let mut batch = sled::Batch::default();
        batch.insert(b"d/k".as_slice(), b"v".as_slice());
        // No outputs and no table changes: nothing to wait for, no producer needed.
        let res = apply_staged(
            Vec::new(),
            None,
            (&[], &[]),
            batch,
            tree.clone(),
            &retry(false),
        )
        .await;
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(tree.get(b"d/k").unwrap().as_deref(), Some(b"v".as_slice()));
    }

    #[tokio::test]
    async fn changes_without_a_producer_fail_the_changelog_step_and_store_nothing() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("p").unwrap();
        let mut batch = sled::Batch::default();
        batch.insert(b"d/k".as_slice(), b"v".as_slice());
        let change = crate::state::spec::Change {
            key: b"k".to_vec(),
            value: Some(b"v".to_vec()),
        };
        let changes = [(
            Arc::from("counts"),
            "app-counts-changelog".into(),
            vec![change],
        )];
        let retry = retry(false);
        let res = apply_staged(
            Vec::new(),
            None,
            (&changes, &[]),
            batch,
            tree.clone(),
            &retry,
        )
        .await;
        assert!(
            matches!(&res, Err(Step::Delivery(e)) if e.contains("no producer")),
            "{res:?}"
        );
        assert!(
            tree.is_empty(),
            "nothing reaches the store before its changelog"
        );
    }

    #[test]
    fn a_failed_step_says_which_and_why() {
        let store = Step::Store("flush the store: disk full".into());
        assert_eq!(
            store.to_string(),
            "the store write failed: flush the store: disk full"
        );
        let kafka = Step::Kafka("coordinator moved".into()).to_string();
        assert!(kafka.contains("retried next interval"), "{kafka}");
    }
}
