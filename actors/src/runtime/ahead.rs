//! Events of a batch prepared ahead for a concurrent agent (see `api::concurrent`): up to
//! `limit` of them preparing at once, the events of one key one after another in offset
//! order, and none more than `LOOKAHEAD_PER_SLOT` x `limit` events past the oldest event not
//! yet handled (the head), so that what waits to be handled stays bounded. The agent actor
//! takes each head's result in offset order and handles it; dropping an `Ahead` (a failure
//! ends the batch) cancels what was still preparing.

use std::collections::HashSet;

use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::api::concurrent::Prepared;
use crate::api::erased::{ErasedAgent, Failure};
use crate::model::record::Record;
use crate::runtime::work::Work;

/// Events past the head that may be prepared, per unit of concurrency.
const LOOKAHEAD_PER_SLOT: usize = 4;

enum Slot {
    Waiting,
    Preparing,
    Ready(Result<Prepared, Failure>),
    Taken,
}

type Preparing<'a> = LocalBoxFuture<'a, (usize, Result<Prepared, Failure>)>;

/// The events of one batch prepared ahead (see the module doc).
pub(crate) struct Ahead<'a> {
    agent: &'a dyn ErasedAgent,
    records: &'a [Record],
    limit: usize,
    slots: Vec<Slot>,
    preparing: FuturesUnordered<Preparing<'a>>,
    /// `fill`'s keys with an unfinished event so far (kept to reuse its allocation).
    unfinished: HashSet<&'a [u8]>,
}

impl<'a> Ahead<'a> {
    /// `agent`'s events of `records`, up to `limit` (at least 1) preparing at once.
    pub(crate) fn new(agent: &'a dyn ErasedAgent, records: &'a [Record], limit: usize) -> Self {
        Ahead {
            agent,
            records,
            limit,
            slots: records.iter().map(|_| Slot::Waiting).collect(),
            preparing: FuturesUnordered::new(),
            unfinished: HashSet::new(),
        }
    }

    /// Starts what may start with `head` the oldest event not handled: in offset order, each
    /// event whose key has no older unfinished event, while fewer than `limit` prepare. An
    /// event `work` will handle alone (unreadable, a suspect) is never started here, and holds
    /// back the later events of its key until it is handled.
    fn fill(&mut self, head: usize, work: &Work) {
        let end = self
            .records
            .len()
            .min(head + self.limit * LOOKAHEAD_PER_SLOT);
        self.unfinished.clear();
        for j in head..end {
            if self.preparing.len() >= self.limit {
                return;
            }
            let record: &'a Record = &self.records[j];
            let key = record.key.as_deref();
            match self.slots[j] {
                Slot::Ready(_) | Slot::Taken => continue,
                Slot::Preparing => {
                    self.unfinished.extend(key);
                    continue;
                }
                Slot::Waiting => {}
            }
            let held = key.is_some_and(|k| !self.unfinished.insert(k));
            if held || work.alone(record) {
                continue;
            }
            let future = self.agent.prepare(record, work.outbox.codecs());
            self.preparing
                .push(Box::pin(async move { (j, future.await) }));
            self.slots[j] = Slot::Preparing;
        }
    }

    /// The prepared event `head` (the oldest not handled, not one `work` handles alone),
    /// waiting for it while the events after it keep preparing.
    pub(crate) async fn take(&mut self, head: usize, work: &Work) -> Result<Prepared, Failure> {
        loop {
            self.fill(head, work);
            if let Slot::Ready(_) = self.slots[head] {
                let Slot::Ready(result) = std::mem::replace(&mut self.slots[head], Slot::Taken)
                else {
                    unreachable!("matched above")
                };
                return result;
            }
            let (j, result) = self
                .preparing
                .next()
                .await
                .expect("the head is preparing: it is the oldest unfinished event of its key");
            self.slots[j] = Slot::Ready(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Ahead;
    use crate::api::agent::{AgentError, Event};
    use crate::api::concurrent::ConcurrentAgent;
    use crate::api::erased::AgentRef;
    use crate::io::outbox::Outbox;
    use crate::model::record::Record;
    use crate::runtime::work::Work;
    use crate::state::set::TableSet;

    /// (offset, started, ended) of every preparation, in virtual milliseconds.
    type Log = Arc<Mutex<Vec<(i64, u64, u64)>>>;

    /// Waits as many milliseconds as the event's value says.
    struct Waits(Log, Instant);

    impl ConcurrentAgent for Waits {
        type Key = String;
        type Value = u64;
        type Prepared = i64;
        fn name(&self) -> &str {
            "waits"
        }
        fn topics(&self) -> Vec<String> {
            vec!["t".into()]
        }
        fn concurrency(&self) -> usize {
            3
        }
        async fn prepare(
            &self,
            _key: Option<&String>,
            ms: &u64,
            record: &Record,
        ) -> Result<i64, AgentError> {
            let started = self.1.elapsed().as_millis() as u64;
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            let ended = self.1.elapsed().as_millis() as u64;
            self.0.lock().unwrap().push((record.offset, started, ended));
            Ok(record.offset)
        }
        async fn handle(
            &self,
            _event: &mut Event<'_, String, u64>,
            _prepared: i64,
        ) -> Result<(), AgentError> {
            Ok(())
        }
    }

    fn record(offset: i64, key: &str, ms: u64) -> Record {
        Record {
            topic: Arc::from("t"),
            partition: 0,
            offset,
            timestamp: None,
            key: Some(format!("\"{key}\"").into_bytes()), // json, the default codec
            value: Some(ms.to_string().into_bytes()),
            headers: Vec::new(),
            unreadable: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_n_prepare_at_once_in_offset_order_per_key() {
        let log = Log::default();
        let agent = AgentRef::concurrent(Waits(log.clone(), Instant::now()));
        let db = sled::Config::new().temporary(true).open().unwrap();
        let path: Arc<Path> = Arc::from(Path::new("/mem"));
        let tables = TableSet::open(&db, path, "app".into(), "t".into(), 0, Vec::new(), 2).unwrap();
        let work = Work::new(tables, Outbox::capturing(Default::default()));
        // `a` waits long first; `b` at 5 cannot be read (handled alone, never prepared here),
        // so the `b` at 10 waits until the head has passed it.
        let keys = ["a", "b", "c", "a", "d", "b", "a", "e", "f", "g", "b", "h"];
        let mut records: Vec<Record> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| record(i as i64, k, if i == 0 { 50 } else { 10 }))
            .collect();
        records[5].unreadable = Some("bad header".into());
        let mut ahead = Ahead::new(&*agent.agent, &records, 3);
        let start = Instant::now();
        let mut passed_alone = 0;
        for head in 0..records.len() {
            if head == 5 {
                passed_alone = start.elapsed().as_millis() as u64;
                continue;
            }
            let prepared = ahead.take(head, &work).await.map_err(|_| head).unwrap();
            let (_, _, offset) = *prepared.downcast::<(Option<String>, u64, i64)>().unwrap();
            assert_eq!(offset, head as i64, "taken in offset order");
        }
        let log = log.lock().unwrap().clone();
        assert_eq!(
            log.len(),
            records.len() - 1,
            "every event but the alone one"
        );
        let at = |o: i64| log.iter().find(|(x, _, _)| *x == o).copied().unwrap();
        // The events of a key one after another, in offset order.
        for key in ["a", "b"] {
            let mut offsets: Vec<i64> = (0..keys.len() as i64)
                .filter(|&o| keys[o as usize] == key && o != 5)
                .collect();
            offsets.sort();
            for pair in offsets.windows(2) {
                assert!(at(pair[1]).1 >= at(pair[0]).2, "{key}: {pair:?} overlap");
            }
        }
        assert!(
            at(10).1 >= passed_alone,
            "b@10 started before b@5 was handled"
        );
        // Never more than 3 at once, and 3 at some point.
        let most = log
            .iter()
            .map(|(_, s, _)| log.iter().filter(|(_, s2, e2)| s2 <= s && s < e2).count())
            .max();
        assert_eq!(most, Some(3));
        // 50 ms for `a` while the others go three at a time: well under the 150 ms in turn.
        let took = start.elapsed().as_millis();
        assert!(took < 120, "took {took} ms");
    }
}
