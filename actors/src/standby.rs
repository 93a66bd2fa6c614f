//! A standby replica: a warm copy of a partition this node does not own, kept by tailing the
//! partition's changelogs into this node's own store (the same tree the partition actor would
//! use). When the partition is assigned here, the standby is stopped first and the partition
//! actor's restore replays only what the standby had not applied yet: promotion in place.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::changelog::{applied, applied_key, Restore};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::shard::{count_key, data_prefix};

/// How often a standby writes what it read to the store.
const APPLY_EVERY: Duration = Duration::from_millis(200);

/// A running standby; stop it with [`Standby::stop`].
pub(crate) struct Standby {
    stop: Arc<AtomicBool>,
    done: oneshot::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Standby {
    /// Starts tailing `restore`'s changelog partitions into `tree`.
    pub(crate) fn start(
        restore: Restore,
        tree: sled::Tree,
        path: Arc<Path>,
        metrics: Metrics,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = oneshot::channel();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("faust-standby-{}", restore.partition))
            .spawn(move || {
                if let Err(e) = tail(&restore, &tree, &path, &flag, &metrics) {
                    tracing::error!(partition = restore.partition, error = %e, "standby stopped");
                }
                let _ = tx.send(());
            })
            .map_err(|source| Error::Io {
                action: "cannot start a standby thread",
                path: "faust-standby".into(),
                source,
            })?;
        Ok(Standby {
            stop,
            done,
            thread: Some(thread),
        })
    }

    /// Asks it to stop; the receiver resolves once everything it read is in the store.
    pub(crate) fn stop(mut self) -> oneshot::Receiver<()> {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.thread.take());
        self.done
    }
}

fn tail(
    restore: &Restore,
    tree: &sled::Tree,
    path: &Path,
    stop: &AtomicBool,
    metrics: &Metrics,
) -> Result<()> {
    let p = restore.partition;
    let consumer: BaseConsumer = restore
        .client
        .clone()
        .set("group.id", &restore.group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| Error::kafka("creating a standby consumer", e))?;
    let mut tpl = TopicPartitionList::new();
    let mut tables: HashMap<&str, (&str, Vec<u8>)> = HashMap::new();
    for (table, topic) in &restore.tables {
        let from = applied(tree, table, path)?;
        tpl.add_partition_offset(topic, p, Offset::Offset(from))
            .map_err(|e| Error::kafka(format!("assigning {topic}[{p}]"), e))?;
        tables.insert(topic.as_str(), (table, data_prefix(table)));
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka("assigning the standby's changelogs", e))?;
    drop(tpl);
    let mut batch = sled::Batch::default();
    let mut next: HashMap<&str, i64> = HashMap::new();
    let mut last_apply = Instant::now();
    let flush = |batch: &mut sled::Batch, next: &mut HashMap<&str, i64>| -> Result<()> {
        for (table, offset) in next.drain() {
            batch.insert(applied_key(table), &offset.to_be_bytes());
        }
        tree.apply_batch(std::mem::take(batch))
            .map_err(|e| Error::store(path, e))
    };
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(msg)) => {
                if let Some((table, prefix)) = tables.get(msg.topic()) {
                    let key = [prefix.as_slice(), msg.key().unwrap_or_default()].concat();
                    match msg.payload() {
                        Some(v) => batch.insert(key, v),
                        None => batch.remove(key),
                    }
                    next.insert(table, msg.offset() + 1);
                    metrics.standby_records_total.inc();
                }
            }
            Some(Err(e)) => tracing::warn!(partition = p, error = %e, "standby read error"),
            None => {}
        }
        if !next.is_empty() && last_apply.elapsed() >= APPLY_EVERY {
            flush(&mut batch, &mut next)?;
            last_apply = Instant::now();
        }
    }
    flush(&mut batch, &mut next)?;
    let mut counts = sled::Batch::default();
    for (table, _) in &restore.tables {
        let keys = tree.scan_prefix(data_prefix(table)).count() as u64;
        counts.insert(count_key(table), &keys.to_be_bytes());
    }
    tree.apply_batch(counts)
        .map_err(|e| Error::store(path, e))?;
    tree.flush().map_err(|e| Error::store(path, e))?;
    Ok(())
}
