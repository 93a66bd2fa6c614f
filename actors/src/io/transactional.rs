//! The node's transactional producer (exactly once): created with `transactional.id` (which
//! fences an earlier producer with the same id), one transaction always open, offsets sent to
//! it with the consumer's group metadata, committed or aborted by the coordinator's rounds
//! (see `runtime::coordinator::rounds`), and built again after it fails for good. The
//! doom flag tells every outbox that a send failed inside the open transaction.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};

use crate::io::fault_injection;
use crate::model::error::{Error, Result};

/// The node's transactional producer, with a transaction always open while partitions run.
#[derive(Clone)]
pub struct Transactions {
    producer: FutureProducer,
    /// Set when a send failed inside the open transaction, which librdkafka then only lets
    /// abort: partitions stop and wait for the round instead of retrying (see `outbox`).
    pub(crate) doomed: Arc<std::sync::atomic::AtomicBool>,
    /// The producer's settings, to build it again when it fails for good.
    config: ClientConfig,
    /// Bound on each transactional call to the broker.
    timeout: Duration,
}

impl Transactions {
    /// Creates a transactional producer from `config` (which must set `transactional.id`),
    /// initialises transactions (which fences an earlier producer with the same id and aborts
    /// its open transaction) and opens the first one. Blocking.
    ///
    /// # Errors
    /// The producer cannot be created, or the broker refused or did not answer within
    /// `timeout`.
    pub fn create(config: ClientConfig, timeout: Duration) -> Result<Self> {
        let producer: FutureProducer = config
            .create()
            .map_err(|e| Error::kafka("creating the transactional producer", e))?;
        producer
            .init_transactions(timeout)
            .map_err(|e| Error::kafka("initialising the transactional producer", e))?;
        producer
            .begin_transaction()
            .map_err(|e| Error::kafka("opening the first transaction", e))?;
        Ok(Transactions {
            producer,
            doomed: Arc::default(),
            config,
            timeout,
        })
    }

    /// A new producer with the same settings and `transactional.id`, fencing this one.
    pub(crate) fn rebuild(&self) -> Result<Self> {
        Self::create(self.config.clone(), self.timeout)
    }

    /// The longest a round may wait for votes: half the transaction timeout (librdkafka's
    /// default 60 s when unset), so that the broker never times out a transaction that is
    /// still waiting for a vote, and never more than `stop`.
    pub(crate) fn vote_bound(&self, stop: Duration) -> Duration {
        let txn = self
            .config
            .get("transaction.timeout.ms")
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(60), Duration::from_millis);
        stop.min(txn / 2)
    }

    /// The transactional producer: what partitions send through.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// The flag partitions' outboxes raise when a send failed in the open transaction.
    pub(crate) fn doom_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.doomed.clone()
    }

    /// Ends the open transaction, committing `offsets` with it, or aborting it when `abort`
    /// says why; then opens the next one. Blocking. Retriable errors of the commit are retried
    /// (bounded); abortable ones abort; fatal ones are [`Outcome::Fatal`].
    pub(crate) fn finish(
        &self,
        offsets: &[(Arc<str>, i32, i64)],
        group: Option<&ConsumerGroupMetadata>,
        abort: Option<String>,
    ) -> Outcome {
        let reason = match abort {
            Some(reason) => reason,
            None => match self.commit(offsets, group) {
                Ok(()) => {
                    tracing::debug!(?offsets, "transaction committed");
                    return self.reopen(Outcome::Committed);
                }
                Err(e) if is_fatal(&e) => {
                    tracing::error!(error = %e, "the transaction failed fatally (fenced by \
                        another instance of this node, or the producer broke): halting every \
                        partition, nothing of it is committed");
                    return Outcome::Fatal;
                }
                Err(e) => format!("the commit failed: {e}"),
            },
        };
        tracing::warn!(%reason, "aborting the transaction: every partition resumes from its \
            last committed offset");
        match self.producer.abort_transaction(self.timeout) {
            Ok(()) => self.reopen(Outcome::Aborted),
            Err(e) => {
                tracing::error!(error = %e, "aborting the transaction failed: halting every \
                    partition, nothing of it is committed");
                Outcome::Fatal
            }
        }
    }

    fn commit(
        &self,
        offsets: &[(Arc<str>, i32, i64)],
        group: Option<&ConsumerGroupMetadata>,
    ) -> std::result::Result<(), KafkaError> {
        if !offsets.is_empty() {
            let Some(group) = group else {
                return Err(KafkaError::Canceled);
            };
            let mut tpl = rdkafka::TopicPartitionList::new();
            for (topic, partition, next) in offsets {
                tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*next))?;
            }
            self.producer
                .send_offsets_to_transaction(&tpl, group, self.timeout)?;
        }
        fault_injection::commit_pause();
        let mut tries = 0;
        loop {
            match self.producer.commit_transaction(self.timeout) {
                Err(KafkaError::Transaction(e)) if e.is_retriable() && tries < 3 => {
                    tries += 1;
                    tracing::warn!(error = %e, tries, "committing the transaction: retrying");
                }
                other => return other,
            }
        }
    }

    fn reopen(&self, outcome: Outcome) -> Outcome {
        match self.producer.begin_transaction() {
            Ok(()) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the next transaction: halting every \
                    partition");
                Outcome::Fatal
            }
        }
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.is_fatal())
}

/// How a transaction (a round) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed: partitions apply their staged writes to the store.
    Committed,
    /// Aborted: partitions drop uncommitted work and seek back to their last commit.
    Aborted,
    /// The producer cannot go on: partitions halt.
    Fatal,
}
