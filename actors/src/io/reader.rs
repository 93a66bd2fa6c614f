//! Reading one partition's own queue asynchronously, in batches.
//!
//! librdkafka's per-partition queue (split off the consumer with `split_partition_queue`, see
//! `consumer.rs`) signals "became non-empty" through a callback; the reader turns that into a
//! `tokio::sync::Notify`, so a partition actor awaits records without a thread of its own.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use tokio::sync::Notify;

use crate::model::record::Record;

/// Longest wait for the queue's callback before polling it anyway.
const WAKE_UP_BOUND: Duration = Duration::from_millis(500);

/// The records of one partition, read in order.
pub(crate) struct PartitionReader<C: ConsumerContext + 'static> {
    queue: PartitionQueue<C>,
    notify: Arc<Notify>,
    topic: Arc<str>,
    partition: i32,
}

impl<C: ConsumerContext + 'static> PartitionReader<C> {
    /// Splits `topic`/`partition` off `consumer`'s main queue. Call before the partition is
    /// assigned: librdkafka then never forwards it back to the main queue (it marks queues the
    /// application forwarded), so every record of the partition arrives here.
    pub(crate) fn split(
        consumer: &Arc<BaseConsumer<C>>,
        topic: Arc<str>,
        partition: i32,
    ) -> Option<Self> {
        let mut queue = consumer.split_partition_queue(&topic, partition)?;
        let notify = Arc::new(Notify::new());
        let wake = notify.clone();
        queue.set_nonempty_callback(move || wake.notify_one());
        Some(PartitionReader {
            queue,
            notify,
            topic,
            partition,
        })
    }

    /// Waits for at least one record, then returns every record ready, up to `max`.
    pub(crate) async fn next_batch(&self, max: usize) -> Vec<Record> {
        let mut out = Vec::new();
        loop {
            while out.len() < max {
                match self.queue.poll(Duration::ZERO) {
                    Some(Ok(msg)) => out.push(Record::read(&self.topic, &msg)),
                    Some(Err(e)) => tracing::warn!(
                        topic = %self.topic, partition = self.partition, error = %e,
                        "error event on the partition queue"
                    ),
                    None => break,
                }
            }
            if !out.is_empty() {
                return out;
            }
            // A notification sent between the empty poll and this await is kept as a permit.
            // The wait is bounded: librdkafka keeps one queue per partition, and a reader of an
            // earlier assignment that is dropped late (a revoke that timed out) disarms the
            // callback this reader set, so the queue is polled anyway now and then.
            let _ = tokio::time::timeout(WAKE_UP_BOUND, self.notify.notified()).await;
        }
    }
}
