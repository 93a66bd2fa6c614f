//! Changelog topics: every table write, written ahead to a compacted Kafka topic, so that any
//! node can rebuild a partition's tables. Both sides are here: [`write`] (a commit's changes,
//! acknowledged before the offset moves) and [`Restore`] (a partition's tables rebuilt).
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

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::io::outbox::enqueue;
use crate::metrics::Metrics;
use crate::model::error::{Error, Result};
use crate::model::names::{applied_key, count_key, data_prefix};
use crate::state::spec::Change;

/// A table's writes of one commit: (table, changelog topic, writes).
pub(crate) type TableWrites = (Arc<str>, String, Vec<Change>);

/// A table's change-stream sink: (table, sink topic).
pub(crate) type StreamSink = (Arc<str>, String);

/// Writes each table's changes to partition `partition` of its changelog, and to each sink
/// `streams` names for the table (its coalesced change stream, placed by the producer's
/// partitioner), and waits for the broker's acknowledgements; returns, per table, the next
/// changelog offset after them.
pub(crate) async fn write(
    producer: Option<rdkafka::producer::FutureProducer>,
    partition: i32,
    changes: &[TableWrites],
    streams: &[StreamSink],
) -> Result<Vec<(Arc<str>, i64)>, String> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(producer) = producer else {
        return Err("no producer to write the changelog".into());
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
                .map_err(|e| format!("changelog {topic}: {e}"))?;
            acks.push((table.clone(), ack));
        }
    }
    let mut sent = Vec::new();
    for (table, sink) in streams {
        let writes = changes.iter().filter(|(t, _, _)| t == table);
        for w in writes.flat_map(|(_, _, w)| w) {
            let mut record = rdkafka::producer::FutureRecord::<[u8], [u8]>::to(sink).key(&w.key);
            if let Some(v) = &w.value {
                record = record.payload(v);
            }
            let ack = enqueue(&producer, record)
                .await
                .map_err(|e| format!("change stream of `{table}` to {sink}: {e}"))?;
            sent.push((table, sink, ack));
        }
    }
    for (table, sink, ack) in sent {
        match ack.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(format!("change stream of `{table}` to {sink}: {e}")),
            Err(_) => {
                return Err(format!(
                    "change stream of `{table}` to {sink}: record dropped"
                ))
            }
        }
    }
    let mut next: Vec<(Arc<str>, i64)> = Vec::new();
    for (table, ack) in acks {
        let offset = match ack.await {
            Ok(Ok(delivery)) => delivery.offset,
            Ok(Err((e, _))) => return Err(format!("changelog of `{table}`: {e}")),
            Err(_) => return Err(format!("changelog of `{table}`: record dropped")),
        };
        match next.iter_mut().find(|(t, _)| *t == table) {
            Some((_, n)) => *n = (*n).max(offset + 1),
            None => next.push((table, offset + 1)),
        }
    }
    Ok(next)
}

/// How a restore went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Changelog records applied.
    pub records: u64,
    /// Time it took.
    pub elapsed: Duration,
}

/// Distinct keys held before a chunk goes to the store while restoring. A restore needs only
/// the last value of each key, and a changelog holds many versions of a key until compaction, so
/// the reader keeps the latest value per key and the store sees each key once per chunk: sled
/// takes about 300,000 writes/s here, the broker delivers about three times as many records.
/// The bound caps the reader's memory (about 40 MB of small keys and values).
const CHUNK_KEYS: usize = 500_000;
/// Writes per sled batch (sled slows down sharply with very large batches).
const SUB_BATCH: usize = 20_000;

/// The changelog partitions of one source partition, and where to read them.
#[derive(Clone)]
pub struct Restore {
    /// Consumer settings (bootstrap, security); a group id is added.
    pub client: ClientConfig,
    /// Group id for the restore consumer (it never commits).
    pub group: String,
    /// (table name, changelog topic) of each table.
    pub tables: Vec<(Arc<str>, String)>,
    /// The source partition (= the changelog partition).
    pub partition: i32,
    /// Bound on waiting for the broker.
    pub timeout: Duration,
}

impl std::fmt::Debug for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restore")
            .field(
                "client",
                &crate::model::secrets::masked_client(&self.client),
            )
            .field("group", &self.group)
            .field("tables", &self.tables)
            .field("partition", &self.partition)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Restore {
    /// Applies every changelog record after the stored offsets to `tree` (blocking: run it on
    /// a blocking thread). Progress goes to `faust_recovery_remaining_records`.
    ///
    /// # Errors
    /// The broker or the store failed, or the changelog stopped advancing for `timeout`.
    pub fn run(&self, tree: &sled::Tree, path: &Path, metrics: &Metrics) -> Result<Restored> {
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
        let (low, mut high) = consumer
            .fetch_watermarks(topic, p, self.timeout)
            .map_err(|e| Error::kafka(ctx("reading the end of"), e))?;
        let stored = crate::state::store::applied(tree, table, path)?;
        let committed_only = reads_committed(&self.client);
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
        // The reader keeps the last value per key (see CHUNK_KEYS); a writer thread applies full
        // chunks to sled while the reader goes on.
        let (chunks, written) = std::sync::mpsc::sync_channel::<sled::Batch>(4);
        let applied_records = std::thread::scope(|scope| -> Result<u64> {
            let writer = scope.spawn(move || -> Result<()> {
                for batch in written {
                    tree.apply_batch(batch).map_err(|e| Error::store(path, e))?;
                }
                Ok(())
            });
            let mut pending: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
            let (mut in_chunk, mut applied_records, mut next) = (0usize, 0u64, from);
            let mut last_progress = Instant::now();
            // sled is slow with very large batches: a chunk goes in sub-batches, the applied
            // offset with the last one (after its data; re-applying a chunk is harmless).
            let send = |pending: &mut HashMap<Vec<u8>, Option<Vec<u8>>>, next: i64| {
                let gone = || Error::ActorGone {
                    context: "writing restored records to the store".into(),
                };
                // In key order: sled inserts sorted keys several times faster than random ones.
                let mut sorted: Vec<_> = pending.drain().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let mut batch = sled::Batch::default();
                let mut in_batch = 0;
                for (key, value) in sorted {
                    let key = [prefix.as_slice(), &key].concat();
                    match value {
                        Some(v) => batch.insert(key, v),
                        None => batch.remove(key),
                    }
                    in_batch += 1;
                    if in_batch == SUB_BATCH {
                        chunks
                            .send(std::mem::take(&mut batch))
                            .map_err(|_| gone())?;
                        in_batch = 0;
                    }
                }
                batch.insert(applied_key(table), &next.to_be_bytes());
                chunks.send(batch).map_err(|_| gone())
            };
            while next < high {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(msg)) => {
                        let key = msg.key().unwrap_or_default();
                        let value = msg.payload().map(<[u8]>::to_vec);
                        match pending.get_mut(key) {
                            Some(slot) => *slot = value,
                            None => {
                                pending.insert(key.to_vec(), value);
                            }
                        }
                        next = msg.offset() + 1;
                        in_chunk += 1;
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
                        if committed_only {
                            // The end is the last stable offset: a transaction still open (a
                            // crashed owner's, until the broker aborts it) is not applied, and
                            // the next restore or standby reads on from here.
                            high = next;
                        }
                        // Compaction or transaction markers can leave a gap at the end.
                        next = next.max(high);
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
                if pending.len() >= CHUNK_KEYS || (next >= high && in_chunk > 0) {
                    send(&mut pending, next)?;
                    in_chunk = 0;
                    remaining.set((high - next).max(0));
                }
            }
            drop(chunks);
            writer.join().map_err(|_| Error::ActorGone {
                context: "the restore writer thread panicked".into(),
            })??;
            Ok(applied_records)
        })?;
        let mut end = sled::Batch::default();
        end.insert(applied_key(table), &high.to_be_bytes());
        let keys = crate::state::shard::count_keys(tree, table);
        end.insert(count_key(table), &keys.to_be_bytes());
        tree.apply_batch(end).map_err(|e| Error::store(path, e))?;
        remaining.set(0);
        consumer
            .unassign()
            .map_err(|e| Error::kafka(ctx("releasing"), e))?;
        Ok(applied_records)
    }
}

/// Whether clients made from `config` read only committed transactions (exactly once).
pub(crate) fn reads_committed(config: &ClientConfig) -> bool {
    config.get("isolation.level") == Some("read_committed")
}
