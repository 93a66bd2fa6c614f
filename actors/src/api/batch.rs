//! Batching, like Faust's `stream.take(n, within=t)`: a [`BatchAgent`] handles up to `n`
//! events at once, waiting at most `within` after the first for the batch to fill.
//!
//! A batch is one unit of work: its table writes are kept or undone together, and an error or
//! panic retries the whole batch. When retries are spent, the error policy applies to every
//! record of the batch (each is dead-lettered, skipped, or the partition stops at the first). A
//! record that does not decode goes to the policy alone: the events before it are handled as a
//! batch first. Nothing is held between deliveries, so commits and rebalances need no special
//! care: a batch never spans a commit.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::model::shape::{shape_of, Shape};
use serde::Serialize;

use crate::api::agent::AgentError;
use crate::api::erased::Stage;
use crate::api::erased::{decode_key, decode_value, AgentRef, ErasedAgent, Failure};
use crate::io::outbox::Outbox;
use crate::io::outbox::Target;
use crate::model::error::Result;
use crate::model::record::Record;
use crate::state::set::TableSet;
use crate::state::spec::{TableKey, TableSpec, TableValue};
use crate::state::table::{Table, TableView};

/// An agent that handles events in batches (see the module doc).
pub trait BatchAgent: Send + Sync + 'static {
    /// Type of record keys.
    type Key: DeserializeOwned + 'static;
    /// Type of record values.
    type Value: DeserializeOwned + 'static;

    /// The agent's name.
    fn name(&self) -> &str;

    /// The topics it consumes.
    fn topics(&self) -> Vec<String>;

    /// The tables it reads or writes.
    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }

    /// Most events per batch, and the longest wait for a batch to fill after its first event.
    fn take(&self) -> (usize, Duration);

    /// Handles one batch.
    ///
    /// # Errors
    /// Any error: the batch's table writes are undone and the batch is retried.
    fn handle_batch(
        &self,
        batch: &mut Batch<'_, Self::Key, Self::Value>,
    ) -> impl Future<Output = Result<(), AgentError>>;
}

/// One event of a batch: decoded key and value, and the raw record.
pub struct BatchEvent<'a, K, V> {
    /// The decoded key, if the record had one.
    pub key: Option<K>,
    /// The decoded value.
    pub value: V,
    /// The record as it was on the topic.
    pub record: &'a Record,
}

/// A batch of events of one partition, in offset order, with the partition's tables and
/// sending.
pub struct Batch<'a, K, V> {
    events: Vec<BatchEvent<'a, K, V>>,
    tables: &'a mut TableSet,
    outbox: &'a mut Outbox,
}

impl<K, V> Batch<'_, K, V> {
    /// The events, oldest first.
    pub fn events(&self) -> &[BatchEvent<'_, K, V>] {
        &self.events
    }

    /// This partition's shard of `table`.
    ///
    /// # Errors
    /// The table is not declared by an agent of this topic, or is used with other types.
    pub fn table<TK: TableKey, TV: TableValue>(
        &mut self,
        table: &Table<TK, TV>,
    ) -> Result<TableView<'_, TK, TV>> {
        self.tables.view(table)
    }

    /// Sends `key`/`value` to `topic` with its codecs; acknowledged before commit.
    ///
    /// # Errors
    /// The key or value does not encode, or the producer refused the record.
    pub async fn send<SK: Serialize + ?Sized, SV: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&SK>,
        value: &SV,
    ) -> Result<()> {
        self.outbox
            .send_encoded(topic, Target::default(), key, value, Vec::new())
            .await
    }
}

impl AgentRef {
    /// Wraps a [`BatchAgent`] for the runtime.
    pub fn batched<A: BatchAgent>(agent: A) -> Self {
        let topics = agent.topics();
        let erased = std::sync::Arc::new(Batched(agent, PhantomData));
        AgentRef::from_erased(erased, topics, Stage::Plain)
    }
}

struct Batched<A>(A, PhantomData<fn()>);

fn decode<A: BatchAgent>(
    outbox: &Outbox,
    record: &Record,
) -> Result<(Option<A::Key>, A::Value), Failure> {
    let key = decode_key(outbox.codecs(), record)?;
    Ok((key, decode_value(outbox.codecs(), record)?))
}

impl<A: BatchAgent> ErasedAgent for Batched<A> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn shapes(&self) -> (Shape, Shape) {
        (shape_of::<A::Key>(), shape_of::<A::Value>())
    }

    fn tables(&self) -> Vec<TableSpec> {
        self.0.tables()
    }

    fn take(&self) -> Option<(usize, Duration)> {
        let (n, within) = self.0.take();
        Some((n.max(1), within))
    }

    fn handle<'a>(
        &'a self,
        record: &'a Record,
        tables: &'a mut TableSet,
        outbox: &'a mut Outbox,
        sinks: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let records = std::slice::from_ref(record);
            self.handle_chunk(records, tables, outbox, sinks)
                .await
                .map_err(|(_, f)| f)
        })
    }

    fn handle_chunk<'a>(
        &'a self,
        records: &'a [Record],
        tables: &'a mut TableSet,
        outbox: &'a mut Outbox,
        _sinks: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), (usize, Failure)>> {
        Box::pin(async move {
            let mut events = Vec::with_capacity(records.len());
            let mut invalid = None;
            for (i, record) in records.iter().enumerate() {
                match decode::<A>(outbox, record) {
                    Ok((key, value)) => events.push(BatchEvent { key, value, record }),
                    Err(f) => {
                        invalid = Some((i, f));
                        break;
                    }
                }
            }
            if !events.is_empty() {
                let mut batch = Batch {
                    events,
                    tables: &mut *tables,
                    outbox: &mut *outbox,
                };
                self.0
                    .handle_batch(&mut batch)
                    .await
                    .map_err(|e| (0, Failure::Agent(e)))?;
            }
            match invalid {
                None => Ok(()),
                Some((i, f)) => {
                    // The events before the bad record are done: keep their writes.
                    tables.end_event();
                    Err((i, f))
                }
            }
        })
    }

    fn on_assign(&self, _topic: &str, _partition: i32) {}

    fn on_revoke(&self, _topic: &str, _partition: i32) {}
}

/// Adds to `out` what `more(k)` yields (it waits for at least one item and returns up to `k`)
/// until `out` holds `n` items or `within` has passed: the "wait at most T" of a batch.
pub(crate) async fn fill<T, F, Fut>(out: &mut Vec<T>, n: usize, within: Duration, mut more: F)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Vec<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, more(n - out.len())).await {
            Ok(items) => out.extend(items),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{mpsc, Mutex};

    use super::fill;
    use std::time::Duration;

    /// Items from a channel, as the partition reader hands out records: waits for one, then
    /// takes what is ready, up to `k`.
    async fn take(rx: &Arc<Mutex<mpsc::UnboundedReceiver<u32>>>, k: usize) -> Vec<u32> {
        let mut rx = rx.lock().await;
        let mut out = vec![rx.recv().await.unwrap()];
        while out.len() < k {
            match rx.try_recv() {
                Ok(v) => out.push(v),
                Err(_) => break,
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_fills_to_its_count_at_once_and_to_its_time_limit_otherwise() {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for i in 1..=7 {
            tx.send(i).unwrap();
        }
        let started = tokio::time::Instant::now();
        let mut batch = take(&rx, 3).await;
        fill(&mut batch, 3, Duration::from_secs(5), |k| take(&rx, k)).await;
        assert_eq!(batch, [1, 2, 3]);
        let mut batch = take(&rx, 3).await;
        fill(&mut batch, 3, Duration::from_secs(5), |k| take(&rx, k)).await;
        assert_eq!(batch, [4, 5, 6]);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "full batches do not wait"
        );

        // One more is ready; another comes 2 s later; the batch closes at 5 s with both.
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            tx.send(8).unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            tx.send(9).unwrap();
        });
        let mut batch = take(&rx, 3).await;
        fill(&mut batch, 3, Duration::from_secs(5), |k| take(&rx, k)).await;
        assert_eq!(batch, [7, 8]);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        sender.await.unwrap();
    }
}
