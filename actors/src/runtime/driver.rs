//! The test driver ([`Driver`]): an app's agents run over records piped in by a test, with no
//! broker, no actors and no threads, like Kafka Streams' `TopologyTestDriver` and Faust's
//! `agent.test_context()`.
//!
//! It runs the real code of a node's event path: the agent actor's batch function (decoding
//! with the topics' codecs, the agent, window closes, panics caught), the retry decision and
//! the error policy (skip, dead letter, stop), the table shards with their per-event undo and
//! a commit after every record. What a node would produce is kept instead, per topic, in the
//! order it would be sent: agents' outputs, dead letters, window closes, changelog records and
//! change streams. A record sent to a topic one of the app's agents consumes (a `group_by`
//! repartition topic, say) is piped to it in turn, as the broker would.
//!
//! What differs from a node: retries happen at once (no back-off), each record is committed
//! alone, a batching agent sees batches of one, and there is one partition actor per task but
//! no rebalance, standby or transaction.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::erased::AgentRef;
use crate::io::outbox::{Outbox, Output};
use crate::metrics::Metrics;
use crate::model::error::{Error, Result};
use crate::model::partitioner::Partitioner;
use crate::model::positions::Positions;
use crate::model::record::{Header, Record};
use crate::runtime::agent_actor::{close_windows_between_batches, run_batch};
use crate::runtime::messages::{Process, Processed, Stopped};
use crate::runtime::partition::decide::{decide, Backoff, Decision, Facts};
use crate::runtime::policy::{apply, Applied, Failed};
use crate::runtime::topology::Topology;
use crate::runtime::work::Work;
use crate::state::set::TableSet;
use crate::state::spec::{TableKey, TableValue};
use crate::state::store::Store;
use crate::state::table::Table;
use crate::state::window::{ManualClock, Window};
use crate::state::windowed::WindowedTable;

/// Keys cached per table shard, as a node's default.
const CACHE_KEYS: usize = 100_000;

/// Runs an app's agents over records a test pipes in; see the module doc.
pub struct Driver {
    topology: Arc<Topology>,
    partitions: BTreeMap<String, i32>,
    store: Store,
    metrics: Metrics,
    runtime: tokio::runtime::Runtime,
    tasks: HashMap<(Arc<str>, i32), Work>,
    next_offset: HashMap<(String, i32), i64>,
    sent: BTreeMap<String, Vec<Record>>,
    clock: Option<Arc<ManualClock>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("app", &self.topology.app_id)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver for `topology` (the app compiled with its config); `partitions` gives each
    /// topic's partition count (a topic it does not list has one).
    ///
    /// # Errors
    /// The in-memory store or the metrics registry could not be made.
    pub fn new(topology: Arc<Topology>, partitions: BTreeMap<String, i32>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|source| Error::Io {
                action: "cannot start the test driver's executor in",
                path: ".".into(),
                source,
            })?;
        Ok(Driver {
            topology,
            partitions,
            store: Store::temporary()?,
            metrics: Metrics::new()?,
            runtime,
            tasks: HashMap::new(),
            next_offset: HashMap::new(),
            sent: BTreeMap::new(),
            clock: None,
        })
    }

    /// Advances `clock` (the one the app's processing-time windows use) with [`advance`].
    ///
    /// [`advance`]: Driver::advance
    pub fn with_clock(mut self, clock: Arc<ManualClock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The partition count of `topic`.
    pub fn partitions(&self, topic: &str) -> i32 {
        self.partitions.get(topic).copied().unwrap_or(1)
    }

    /// Pipes one record to `topic`: `key` and `value` encoded with the topic's codecs, on the
    /// key's partition (murmur2, as Kafka's producers choose), stamped with the clock's time
    /// (see [`with_clock`](Self::with_clock)) or the current time. Returns when it, and every
    /// record it caused on the app's own topics, was processed and committed.
    ///
    /// # Errors
    /// The key or value does not encode, a store write failed, or an agent's policy is `stop`
    /// and the record failed ([`Error::Halted`]).
    pub fn pipe<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&K>,
        value: &V,
    ) -> Result<()> {
        let now = match &self.clock {
            Some(clock) => crate::state::window::Clock::now_ms(clock.as_ref()),
            None => crate::runtime::progress::now_ms(),
        };
        self.pipe_at(topic, key, value, now)
    }

    /// [`pipe`](Self::pipe) with the record stamped `timestamp` (ms since the epoch): the event
    /// time of event-time windows.
    ///
    /// # Errors
    /// As [`pipe`](Self::pipe).
    pub fn pipe_at<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        key: Option<&K>,
        value: &V,
        timestamp: i64,
    ) -> Result<()> {
        let (kc, vc) = self.topology.codecs.get(topic);
        let key = key.map(|k| kc.encode("key", k)).transpose()?;
        let value = Some(vc.encode("value", value)?);
        self.pipe_record(Record {
            topic: Arc::from(topic),
            partition: -1,
            offset: 0,
            timestamp: Some(timestamp),
            key,
            value,
            headers: Vec::new(),
            unreadable: None,
        })
    }

    /// Pipes `record` as it is: its bytes need not decode (a malformed record goes to its
    /// agent's policy as on a node). A negative partition is the key's; the offset is the next
    /// of its partition, whatever the record says.
    ///
    /// # Errors
    /// As [`pipe`](Self::pipe).
    pub fn pipe_record(&mut self, record: Record) -> Result<()> {
        let mut queue = VecDeque::from([record]);
        while let Some(record) = queue.pop_front() {
            let record = self.place(record);
            let caused = self.process(record)?;
            for out in caused {
                let record = self.keep(out);
                if self.topology.leads.contains_key(&*record.topic) {
                    queue.push_back(record);
                }
            }
        }
        Ok(())
    }

    /// Advances the clock given to [`with_clock`](Self::with_clock) by `by`, then closes the
    /// windows that processing time has closed, as a node's periodic check does.
    ///
    /// # Errors
    /// A store write failed.
    pub fn advance(&mut self, by: Duration) -> Result<()> {
        if let Some(clock) = &self.clock {
            clock.advance(by);
        }
        let keys: Vec<(Arc<str>, i32)> = self.tasks.keys().cloned().collect();
        for key in keys {
            let Some(work) = self.tasks.remove(&key) else {
                continue;
            };
            let mut work = self.runtime.block_on(close_windows_between_batches(work));
            let caused = self.commit(&mut work, None);
            self.tasks.insert(key, work);
            for out in caused? {
                self.keep(out);
            }
        }
        Ok(())
    }

    /// Every record sent to `topic` so far, in order (outputs, dead letters, window closes,
    /// changelog records and change streams), each with the partition and offset it got.
    pub fn sent(&self, topic: &str) -> &[Record] {
        self.sent.get(topic).map_or(&[], Vec::as_slice)
    }

    /// The topics records were sent to, in name order.
    pub fn topics_sent(&self) -> Vec<&str> {
        self.sent.keys().map(String::as_str).collect()
    }

    /// The records sent to `topic`, decoded with its codecs: (key, value) pairs in order.
    ///
    /// # Errors
    /// A record does not decode as `K`/`V`, or has no value.
    pub fn read<K: DeserializeOwned, V: DeserializeOwned>(
        &self,
        topic: &str,
    ) -> Result<Vec<(Option<K>, V)>> {
        let (kc, vc) = self.topology.codecs.get(topic);
        self.sent(topic)
            .iter()
            .map(|r| {
                let key = r.key.as_deref().map(|k| kc.decode("key", k)).transpose()?;
                let raw = r.value.as_deref().ok_or_else(|| Error::MissingValue {
                    topic: topic.to_owned(),
                    partition: r.partition,
                    offset: r.offset,
                })?;
                Ok((key, vc.decode("value", raw)?))
            })
            .collect()
    }

    /// The dead letters of agent `agent` (its policy's topic), in order: the failed records'
    /// bytes with the headers saying why (see [`crate::DeadLetter`]).
    pub fn dead_letters(&self, agent: &str) -> &[Record] {
        self.topology
            .agents
            .iter()
            .find(|a| a.name() == agent)
            .map_or(&[], |a| self.sent(&a.policy().dead_letter_topic))
    }

    /// Every committed key and value of `table`, over all partitions.
    ///
    /// # Errors
    /// A stored value does not decode.
    pub fn table<K: TableKey, V: TableValue>(&self, table: &Table<K, V>) -> Result<HashMap<K, V>> {
        self.store.table_contents(table)
    }

    /// The committed value of `key` in `table`.
    ///
    /// # Errors
    /// As [`table`](Self::table).
    pub fn get<K: TableKey, V: TableValue>(
        &self,
        table: &Table<K, V>,
        key: &K,
    ) -> Result<Option<V>> {
        Ok(self.table(table)?.remove(key))
    }

    /// Every window of `key` in `table` that has not expired (open or closed), in start order,
    /// with its value: what `event.window(&table)?.windows(..)` sees.
    ///
    /// # Errors
    /// A stored value does not decode.
    pub fn windows<K: TableKey, V: TableValue>(
        &mut self,
        table: &WindowedTable<K, V>,
        key: &K,
    ) -> Result<Vec<(Window, V)>> {
        let mut out = Vec::new();
        for work in self.tasks.values_mut() {
            match work.tables.windows_of(table, key) {
                Ok(found) => out.extend(found),
                Err(Error::UndeclaredTable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|(w, _)| w.start);
        Ok(out)
    }

    /// The store the driver's tables live in (windowed and global tables can be read from it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The metrics a node would export (`faust_invalid_records_total`, ...).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `record` with its partition and offset as the broker would give them.
    fn place(&mut self, mut record: Record) -> Record {
        let partitions = self.partitions(&record.topic);
        if record.partition < 0 {
            record.partition = match &record.key {
                Some(key) => Partitioner::Murmur2.partition(key, partitions),
                None => 0,
            };
        }
        let next = self
            .next_offset
            .entry((record.topic.to_string(), record.partition))
            .or_insert(0);
        record.offset = *next;
        *next += 1;
        record
    }

    /// Keeps a sent record under its topic, placed, and returns it.
    fn keep(&mut self, out: Output) -> Record {
        let record = self.place(Record {
            topic: Arc::from(out.topic.as_str()),
            partition: out.to.partition.unwrap_or(-1),
            offset: 0,
            timestamp: out.to.timestamp,
            key: out.key,
            value: out.value,
            headers: out.headers,
            unreadable: None,
        });
        self.sent.entry(out.topic).or_default().push(record.clone());
        record
    }

    /// The task `record` belongs to, opened on first use.
    fn work(&mut self, lead: &Arc<str>, partition: i32) -> Result<Work> {
        if let Some(work) = self.tasks.remove(&(lead.clone(), partition)) {
            return Ok(work);
        }
        let source = self.topology.source(lead).cloned().unwrap_or_default();
        let tables = TableSet::open(
            self.store.db(),
            self.store.path().clone(),
            self.topology.app_id.clone(),
            lead.clone(),
            partition,
            source.tables,
            CACHE_KEYS,
        )?
        .reading_globals(self.store.db(), &self.topology.global_specs())?
        .with_sinks(&self.topology.table_sinks);
        let mut tables = tables;
        tables.attach_metrics(&self.metrics);
        let outbox = Outbox::capturing(self.topology.codecs.clone());
        Ok(Work::new(tables, outbox))
    }

    /// Every agent of `record`'s topic over it, then the commit; returns what was sent.
    fn process(&mut self, record: Record) -> Result<Vec<Output>> {
        let Some(lead) = self.topology.leads.get(&*record.topic).cloned() else {
            return Ok(Vec::new());
        };
        let agents: Vec<AgentRef> = self
            .topology
            .source(&lead)
            .map(|s| s.agents.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.topics().iter().any(|t| **t == *record.topic))
            .collect();
        let mut work = self.work(&lead, record.partition)?;
        let records: Arc<[Record]> = Arc::from(vec![record.clone()]);
        let mut halted = None;
        for agent in agents {
            let (back, stop) =
                self.runtime
                    .block_on(run_one(agent, records.clone(), work, &self.metrics));
            work = back;
            if let Some(message) = stop {
                halted = Some(message);
                break;
            }
        }
        if let Some(message) = halted {
            // As on a node: the partition stops before the record; nothing of it is kept.
            work.tables.discard();
            work.outbox.take_captured();
            self.tasks.insert((lead, record.partition), work);
            return Err(Error::Halted { message });
        }
        let next = Positions::of([(record.topic.clone(), record.offset + 1)]);
        let caused = self.commit(&mut work, Some(&next));
        self.tasks.insert((lead, record.partition), work);
        caused
    }

    /// Commits `work`'s table writes (with `next`, the task's next offsets) and returns what it
    /// sent since the last commit: outputs, then changelog records and change streams.
    fn commit(&mut self, work: &mut Work, next: Option<&Positions>) -> Result<Vec<Output>> {
        let mut sent = work.outbox.take_captured();
        let staged = match next {
            Some(next) => work.tables.stage(next)?,
            None if work.tables.is_dirty() => work.tables.stage(&Positions::default())?,
            None => return Ok(sent),
        };
        for (table, topic, writes) in &staged.changes {
            let sinks = staged.streams.iter().filter(|(t, _)| t == table);
            for to in std::iter::once(topic).chain(sinks.map(|(_, s)| s)) {
                sent.extend(writes.iter().map(|w| Output {
                    topic: to.clone(),
                    to: Default::default(),
                    key: Some(w.key.clone()),
                    value: w.value.clone(),
                    headers: Vec::<Header>::new(),
                }));
            }
        }
        work.tables
            .tree()
            .apply_batch(staged.batch)
            .map_err(|e| Error::store(self.store.path(), e))?;
        work.tables.committed(&staged.counts);
        Ok(sent)
    }
}

/// One agent over one record, retried at once as its policy allows, then its policy; returns
/// the work and, if the policy stopped processing, why.
async fn run_one(
    agent: AgentRef,
    records: Arc<[Record]>,
    mut work: Work,
    metrics: &Metrics,
) -> (Work, Option<String>) {
    let policy = agent.policy().clone();
    let name = agent.name().to_owned();
    let mut attempt = 0;
    loop {
        let Processed {
            work: back,
            stopped,
            ..
        } = run_batch(
            agent.clone(),
            Process {
                records: records.clone(),
                start: 0,
                work,
            },
        )
        .await;
        work = back;
        let Some(stopped) = stopped else {
            return (work, None);
        };
        let (reason, error, retriable) = match stopped {
            Stopped::Invalid { reason, error } => (reason, error.to_string(), false),
            Stopped::Panicked(msg, _) => ("panic", msg, true),
            Stopped::Failed(msg, _) => {
                metrics.agent_errors_total.with_label_values(&[&name]).inc();
                ("agent_error", msg, true)
            }
        };
        let facts = Facts {
            retriable,
            attempt,
            retries: policy.retries,
            doomed: false,
            lease_valid: true,
            revoked: false,
        };
        let now = Backoff {
            first: Duration::ZERO,
            max: Duration::ZERO,
        };
        if let Decision::Retry { attempt: n, .. } = decide(facts, now) {
            attempt = n;
            continue;
        }
        let failed = Failed {
            agent: &name,
            reason,
            error: &error,
        };
        return match apply(&mut work, &policy, &records, &failed, metrics).await {
            Ok(()) => (work, None),
            Err(Applied::Halt(message)) => (work, Some(message)),
            // A capturing outbox never fails to write a letter.
            Err(Applied::Retry) => (work, Some(format!("cannot dead-letter: {error}"))),
        };
    }
}
