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

use rdkafka::config::ClientConfig;

use crate::io::changelog::Restore;
use crate::metrics::Metrics;
use crate::model::error::{Error, Result};
use crate::model::names::{applied_key, count_key, data_prefix};

/// How often a standby writes what it read to the store.
const APPLY_EVERY: Duration = Duration::from_millis(200);

/// One changelog partition a tailer applies: its topic and partition, the key prefix its
/// records get in the tree, and the key under which the next offset to apply is stored.
pub(crate) struct Source {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) prefix: Vec<u8>,
    pub(crate) applied_key: Vec<u8>,
    /// Tables whose key count is recounted when the tailer stops.
    pub(crate) table: Arc<str>,
}

impl Source {
    /// The sources of a standby: every table's changelog for one source partition.
    pub(crate) fn of(restore: &Restore) -> Vec<Source> {
        restore
            .tables
            .iter()
            .map(|(table, topic)| Source {
                topic: topic.clone(),
                partition: restore.partition,
                prefix: data_prefix(table),
                applied_key: applied_key(table),
                table: table.clone(),
            })
            .collect()
    }
}

/// What a tailer reads and where it writes: `sources` into `tree`, with a consumer made from
/// `client` in group `group` (it never commits: offsets live in the tree).
pub(crate) struct Tailer {
    pub(crate) client: ClientConfig,
    pub(crate) group: String,
    pub(crate) sources: Vec<Source>,
    pub(crate) tree: sled::Tree,
    pub(crate) path: Arc<Path>,
    pub(crate) metrics: Metrics,
}

/// A running tailer (a standby, or a global table's reader); stop it with [`Standby::stop`].
pub(crate) struct Standby {
    stop: Arc<AtomicBool>,
    done: oneshot::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Standby {
    /// Starts tailing on a thread of its own.
    pub(crate) fn start(tailer: Tailer) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = oneshot::channel();
        let flag = stop.clone();
        let first = tailer.sources.first().map_or(0, |s| s.partition);
        let name = format!("faust-tail-{first}");
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                if let Err(e) = tail(&tailer, &flag) {
                    tracing::error!(error = %e, "changelog tailer stopped");
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

fn tail(tailer: &Tailer, stop: &AtomicBool) -> Result<()> {
    let Tailer {
        client,
        group,
        sources,
        tree,
        path,
        metrics,
    } = tailer;
    let group = group.as_str();
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| Error::kafka("creating a changelog tailer", e))?;
    let mut tpl = TopicPartitionList::new();
    let mut by_tp: HashMap<(&str, i32), &Source> = HashMap::new();
    for s in sources {
        let raw = tree
            .get(&s.applied_key)
            .map_err(|e| Error::store(path, e))?;
        let from = raw
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, i64::from_be_bytes);
        tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(from))
            .map_err(|e| Error::kafka(format!("assigning {}[{}]", s.topic, s.partition), e))?;
        by_tp.insert((s.topic.as_str(), s.partition), s);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka("assigning the changelogs to tail", e))?;
    drop(tpl);
    let mut batch = sled::Batch::default();
    let mut next: HashMap<&[u8], i64> = HashMap::new();
    let mut last_apply = Instant::now();
    let flush = |batch: &mut sled::Batch, next: &mut HashMap<&[u8], i64>| -> Result<()> {
        for (key, offset) in next.drain() {
            batch.insert(key, &offset.to_be_bytes());
        }
        tree.apply_batch(std::mem::take(batch))
            .map_err(|e| Error::store(path, e))
    };
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(msg)) => {
                if let Some(s) = by_tp.get(&(msg.topic(), msg.partition())) {
                    let key = [s.prefix.as_slice(), msg.key().unwrap_or_default()].concat();
                    match msg.payload() {
                        Some(v) => batch.insert(key, v),
                        None => batch.remove(key),
                    }
                    next.insert(&s.applied_key, msg.offset() + 1);
                    metrics.standby_records_total.inc();
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "changelog tailer read error"),
            None => {}
        }
        if !next.is_empty() && last_apply.elapsed() >= APPLY_EVERY {
            flush(&mut batch, &mut next)?;
            last_apply = Instant::now();
        }
    }
    flush(&mut batch, &mut next)?;
    let mut counts = sled::Batch::default();
    let mut seen: Vec<&str> = Vec::new();
    for s in sources {
        if seen.contains(&&*s.table) {
            continue;
        }
        seen.push(&s.table);
        let keys = crate::state::shard::count_keys(tree, &s.table);
        counts.insert(count_key(&s.table), &keys.to_be_bytes());
    }
    tree.apply_batch(counts)
        .map_err(|e| Error::store(path, e))?;
    tree.flush().map_err(|e| Error::store(path, e))?;
    Ok(())
}
