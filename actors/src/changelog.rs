//! Changelog topics: every table write, written ahead to a compacted Kafka topic, so that any
//! node can rebuild a partition's tables.
//!
//! Table `t` of app `a` has the topic `a-t-changelog`, compacted, with the source topic's
//! partition count: partition `p` of the changelog holds the writes of source partition `p`.
//! Keys and values are the table's encoded bytes (readable with any Kafka tool); a delete is a
//! tombstone. The store keeps, per table and partition, the next changelog offset it applied
//! (`m/changelog/<table>`), written atomically with the data.
//!
//! Restoring a partition reads its changelog partitions from the stored offset to the end and
//! applies them to the store; a node that kept a warm copy (a standby) therefore replays only
//! the tail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::shard::{count_key, data_prefix};

/// The changelog topic of `table` in app `app_id`.
pub fn changelog_topic(app_id: &str, table: &str) -> String {
    format!("{app_id}-{table}-changelog")
}

/// Key, in a partition tree, of the next changelog offset applied for `table`.
pub(crate) fn applied_key(table: &str) -> Vec<u8> {
    [b"m/changelog/".as_slice(), table.as_bytes()].concat()
}

/// The next changelog offset the tree has applied for `table` (0 when none).
pub(crate) fn applied(tree: &sled::Tree, table: &str, path: &Path) -> Result<i64> {
    let raw = tree
        .get(applied_key(table))
        .map_err(|e| Error::store(path, e))?;
    Ok(raw
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map_or(0, i64::from_be_bytes))
}

/// How a restore went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Changelog records applied.
    pub records: u64,
    /// Time it took.
    pub elapsed: Duration,
}

/// Records applied per sled batch while restoring.
const BATCH: usize = 20_000;

/// The changelog partitions of one source partition, and where to read them.
pub(crate) struct Restore {
    /// Consumer settings (bootstrap, security); a group id is added.
    pub(crate) client: ClientConfig,
    /// Group id for the restore consumer (it never commits).
    pub(crate) group: String,
    /// (table name, changelog topic) of each table.
    pub(crate) tables: Vec<(Arc<str>, String)>,
    pub(crate) partition: i32,
    /// Bound on waiting for the broker.
    pub(crate) timeout: Duration,
}

impl Restore {
    /// Applies every changelog record after the stored offsets to `tree` (blocking: run it on
    /// a blocking thread). Progress goes to `faust_recovery_remaining_records`.
    ///
    /// # Errors
    /// The broker or the store failed, or the changelog stopped advancing for `timeout`.
    pub(crate) fn run(
        &self,
        tree: &sled::Tree,
        path: &Path,
        metrics: &Metrics,
    ) -> Result<Restored> {
        let started = Instant::now();
        let consumer: BaseConsumer = self
            .client
            .clone()
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "16777216")
            .create()
            .map_err(|e| Error::kafka("creating the changelog restore consumer", e))?;
        let mut records = 0;
        for (table, topic) in &self.tables {
            records += self.restore_table(&consumer, table, topic, tree, path, metrics)?;
        }
        tree.flush().map_err(|e| Error::store(path, e))?;
        Ok(Restored {
            records,
            elapsed: started.elapsed(),
        })
    }

    fn restore_table(
        &self,
        consumer: &BaseConsumer,
        table: &str,
        topic: &str,
        tree: &sled::Tree,
        path: &Path,
        metrics: &Metrics,
    ) -> Result<u64> {
        let p = self.partition;
        let ctx = |what: &str| format!("{what} changelog {topic}[{p}]");
        let (low, high) = consumer
            .fetch_watermarks(topic, p, self.timeout)
            .map_err(|e| Error::kafka(ctx("reading the end of"), e))?;
        let stored = applied(tree, table, path)?;
        let from = stored.max(low);
        let label = p.to_string();
        let remaining = metrics
            .recovery_remaining_records
            .with_label_values(&[table, &label]);
        if from >= high {
            remaining.set(0);
            return Ok(0);
        }
        remaining.set(high - from);
        tracing::info!(
            table,
            partition = p,
            from,
            to = high,
            records = high - from,
            "restoring table partition from its changelog"
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(from))
            .map_err(|e| Error::kafka(ctx("assigning"), e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| Error::kafka(ctx("assigning"), e))?;
        drop(tpl);
        let prefix = data_prefix(table);
        let mut batch = sled::Batch::default();
        let (mut pending, mut applied_records, mut next) = (0usize, 0u64, from);
        let mut last_progress = Instant::now();
        while next < high {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(msg)) => {
                    let key = [prefix.as_slice(), msg.key().unwrap_or_default()].concat();
                    match msg.payload() {
                        Some(value) => batch.insert(key, value),
                        None => batch.remove(key),
                    }
                    next = msg.offset() + 1;
                    pending += 1;
                    applied_records += 1;
                    last_progress = Instant::now();
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    let position = consumer
                        .position()
                        .map_err(|e| Error::kafka(ctx("reading"), e))?;
                    let at = position.elements().first().map(|e| e.offset());
                    drop(position);
                    if let Some(Offset::Offset(o)) = at {
                        next = next.max(o);
                    }
                    if next < high {
                        // Compaction left a gap at the end (or only markers remain).
                        next = high;
                    }
                }
                Some(Err(e))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) =>
                {
                    return Err(Error::kafka(ctx("reading"), e));
                }
                Some(Err(e)) => {
                    tracing::warn!(table, partition = p, error = %e, "changelog read error")
                }
                None if last_progress.elapsed() > self.timeout => {
                    return Err(Error::Timeout {
                        context: ctx("restoring from"),
                        after: self.timeout,
                    })
                }
                None => {}
            }
            if pending >= BATCH || (next >= high && pending > 0) {
                batch.insert(applied_key(table), &next.to_be_bytes());
                tree.apply_batch(std::mem::take(&mut batch))
                    .map_err(|e| Error::store(path, e))?;
                pending = 0;
                remaining.set((high - next).max(0));
            }
        }
        let mut end = sled::Batch::default();
        end.insert(applied_key(table), &high.to_be_bytes());
        let keys = tree.scan_prefix(&prefix).count() as u64;
        end.insert(count_key(table), &keys.to_be_bytes());
        tree.apply_batch(end).map_err(|e| Error::store(path, e))?;
        remaining.set(0);
        consumer
            .unassign()
            .map_err(|e| Error::kafka(ctx("releasing"), e))?;
        Ok(applied_records)
    }
}
