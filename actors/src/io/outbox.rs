//! The outbox: the records a partition's agents send, from the agent's call to the broker's
//! acknowledgement.
//!
//! An event's records are *staged* while the agent runs and handed to the producer only when
//! the event has finished ([`Outbox::release`]). A failed attempt (an error, a panic, a record
//! that goes to the error policy) drops what it staged, so a retried event never leaves a
//! first attempt's output behind: not in a committed transaction under exactly once, and not
//! as a duplicate under at least once.
//!
//! Each record handed to the producer keeps the offset of the source record that produced it.
//! The commit cycle awaits every acknowledgement ([`confirm`]); a record the broker refuses for
//! good (see [`crate::model::fault`]) comes back as a [`RefusedOutput`] naming that source offset, so
//! the partition can rewind and hand that one source record to the agent's policy instead of
//! sending its output again and again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::Serialize;

use crate::io::lease::Lease;
use crate::model::codec::TopicCodecs;
use crate::model::error::{Error, Result};
use crate::model::fault::{classify, reason_of, Fault};
use crate::model::record::Header;
use crate::state::spec::CloseRecord;

/// Where a record goes within its topic and the timestamp it carries; `None` leaves the choice
/// to the producer (the key's partition, the current time).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Target {
    pub(crate) partition: Option<i32>,
    pub(crate) timestamp: Option<i64>,
}

impl Target {
    /// The key's partition, stamped with `timestamp` (an input record's, so event time flows
    /// through to what it causes).
    pub(crate) fn at(timestamp: Option<i64>) -> Self {
        Target {
            partition: None,
            timestamp,
        }
    }
}

/// A record staged by the current event (or, in a capturing outbox, one sent).
pub(crate) struct Output {
    pub(crate) topic: String,
    pub(crate) to: Target,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<Header>,
}

impl Output {
    fn copied(
        topic: &str,
        to: Target,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Self {
        Output {
            topic: topic.to_owned(),
            to,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: headers.to_vec(),
        }
    }
}

/// A record handed to the producer, not yet acknowledged.
pub(crate) struct Pending {
    /// The topic and offset of the source record whose event sent it (`None`: sent between
    /// events, by a window closing on processing time).
    source: Option<(Arc<str>, i64)>,
    topic: String,
    delivery: DeliveryFuture,
}

/// An output the broker refused for good, and the source record that produced it.
#[derive(Debug, Clone)]
pub(crate) struct RefusedOutput {
    /// Offset of the source record.
    pub(crate) source: i64,
    /// Topic of the source record.
    pub(crate) source_topic: Arc<str>,
    /// The reason label (`output_too_large`, `output_timestamp`, ...).
    pub(crate) reason: &'static str,
    /// What the broker said, and about which topic.
    pub(crate) error: String,
}

/// Why [`confirm`] did not confirm every record.
#[derive(Debug)]
pub(crate) struct Undelivered {
    /// Outputs refused for good, by source record.
    pub(crate) refused: Vec<RefusedOutput>,
    /// The first other failure (transient, or refused without a source), if any.
    pub(crate) other: Option<String>,
}

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(other) = &self.other {
            return f.write_str(other);
        }
        match self.refused.first() {
            Some(r) => write!(
                f,
                "the output of offset {} was refused ({}): {}",
                r.source, r.reason, r.error
            ),
            None => f.write_str("nothing"),
        }
    }
}

/// Records an agent sends, and the deliveries the next commit must wait for.
pub struct Outbox {
    producer: Option<FutureProducer>,
    codecs: Arc<TopicCodecs>,
    staged: Vec<Output>,
    pending: Vec<Pending>,
    /// Outputs stamped further ahead of the clock than this are refused at once.
    max_ahead: Duration,
    /// The first output of the current event refused before reaching the producer: the event
    /// goes to its policy even if the agent swallowed the error.
    refusal: Option<Error>,
    /// Nothing is sent while the node may have lost its partitions.
    lease: Option<Lease>,
    /// Exactly once: raised when a send fails inside the open transaction (see
    /// `transaction`): the transaction can only abort.
    doom: Option<Arc<AtomicBool>>,
    /// A capturing outbox (the test driver's): records are kept here instead of produced.
    captured: Option<Vec<Output>>,
}

/// How long a send waits for room in a full producer queue before failing.
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(30);

impl Outbox {
    /// An outbox sending through `producer` (`None`: sending is an error; for tests).
    pub fn new(producer: Option<FutureProducer>, codecs: Arc<TopicCodecs>) -> Self {
        Outbox {
            producer,
            codecs,
            staged: Vec::new(),
            pending: Vec::new(),
            max_ahead: Duration::from_secs(3600),
            refusal: None,
            lease: None,
            doom: None,
            captured: None,
        }
    }

    /// An outbox without a producer that keeps every record it would send, in order (see
    /// [`Outbox::take_captured`]): what the test driver runs agents with.
    pub(crate) fn capturing(codecs: Arc<TopicCodecs>) -> Self {
        Outbox {
            captured: Some(Vec::new()),
            ..Self::new(None, codecs)
        }
    }

    /// The records sent since the last call (a capturing outbox; empty otherwise).
    pub(crate) fn take_captured(&mut self) -> Vec<Output> {
        self.captured
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Whether this outbox keeps records instead of producing them.
    pub(crate) fn captures(&self) -> bool {
        self.captured.is_some()
    }

    /// Keeps `out` as sent (a capturing outbox; otherwise it is dropped).
    pub(crate) fn capture(&mut self, out: Output) {
        if let Some(captured) = &mut self.captured {
            captured.push(out);
        }
    }

    /// Exactly once: raises `flag` when a send fails inside the open transaction.
    pub(crate) fn doom_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.doom = Some(flag);
        self
    }

    /// A send failed inside the open transaction (exactly once).
    pub(crate) fn doom(&self) {
        if let Some(flag) = &self.doom {
            if !flag.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    "a send failed inside the open transaction: it can only abort; \
                    partitions wait for the round instead of retrying"
                );
            }
        }
    }

    /// Whether the open transaction can only abort (exactly once).
    pub(crate) fn doomed(&self) -> bool {
        self.doom
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }

    /// Sends nothing while `lease` is not valid ([`Error::MembershipUncertain`]).
    pub(crate) fn lease(mut self, lease: Lease) -> Self {
        self.lease = Some(lease);
        self
    }

    fn check_lease(&self) -> Result<()> {
        match &self.lease {
            Some(lease) if !lease.valid() => Err(Error::MembershipUncertain),
            _ => Ok(()),
        }
    }

    /// Refuses outputs stamped more than `limit` ahead of the clock (default 1 h, Kafka 4's
    /// default `message.timestamp.after.max.ms`).
    pub fn max_timestamp_ahead(mut self, limit: Duration) -> Self {
        self.max_ahead = limit;
        self
    }

    /// Whether `timestamp` is further ahead of the clock than the limit.
    pub(crate) fn too_far_ahead(&self, timestamp: Option<i64>) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        timestamp.is_some_and(|ts| ts.saturating_sub(now) > self.max_ahead.as_millis() as i64)
    }

    /// The refusal of one of the current event's outputs, if any (see the field).
    pub(crate) fn take_refusal(&mut self) -> Option<Error> {
        self.refusal.take()
    }

    pub(crate) fn codecs(&self) -> &TopicCodecs {
        &self.codecs
    }

    /// Deliveries not yet confirmed; the commit cycle awaits them before committing offsets.
    pub(crate) fn take_pending(&mut self) -> Vec<Pending> {
        std::mem::take(&mut self.pending)
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The producer, for the changelog writes of the commit cycle.
    pub(crate) fn producer(&self) -> Option<FutureProducer> {
        self.producer.clone()
    }

    /// Stages a record of the current event (sent by [`Outbox::release`] when it finishes).
    ///
    /// # Errors
    /// This runtime has no producer (tests).
    pub(crate) async fn send_raw(
        &mut self,
        topic: &str,
        to: Target,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<()> {
        self.stage(Output::copied(topic, to, key, value, headers))
    }

    /// Stages the records of windows that closed (see [`TableSet::close_windows`]) for their
    /// close topics, as part of the current event.
    ///
    /// [`TableSet::close_windows`]: crate::state::set::TableSet::close_windows
    pub(crate) fn stage_closes(&mut self, closes: Vec<CloseRecord>) -> Result<()> {
        for r in closes {
            self.stage(Output::copied(
                &r.topic,
                Target::default(),
                Some(&r.key),
                Some(&r.value),
                &[],
            ))?;
        }
        Ok(())
    }

    /// Encodes `key`/`value` with `topic`'s codecs and stages them.
    pub(crate) async fn send_encoded<SK: Serialize + ?Sized, SV: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        to: Target,
        key: Option<&SK>,
        value: &SV,
        headers: Vec<Header>,
    ) -> Result<()> {
        let (kc, vc) = self.codecs.get(topic);
        let key = key.map(|k| kc.encode("key", k)).transpose()?;
        let value = vc.encode("value", value)?;
        self.stage(Output {
            topic: topic.to_owned(),
            to,
            key,
            value: Some(value),
            headers,
        })
    }

    fn stage(&mut self, output: Output) -> Result<()> {
        if self.producer.is_none() && self.captured.is_none() {
            return Err(no_producer(&output.topic));
        }
        if self.too_far_ahead(output.to.timestamp) {
            let refused = || Error::TimestampAhead {
                topic: output.topic.clone(),
                timestamp: output.to.timestamp.unwrap_or_default(),
                limit: self.max_ahead,
            };
            self.refusal.get_or_insert_with(refused);
            return Err(refused());
        }
        self.staged.push(output);
        Ok(())
    }

    /// Drops what the current event staged (its attempt failed).
    pub(crate) fn drop_staged(&mut self) {
        self.staged.clear();
        self.refusal = None;
    }

    /// Takes the deliveries handed over since there were `from` (an isolated event's).
    pub(crate) fn take_pending_from(&mut self, from: usize) -> Vec<Pending> {
        self.pending.split_off(from.min(self.pending.len()))
    }

    /// How many deliveries are pending.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Hands the current event's records to the producer, each tagged with `source`, the
    /// topic and offset of the event's record (`None` between events).
    ///
    /// # Errors
    /// The producer refused a record at once (for good: [`Error::OutputRefused`]), or its
    /// queue stayed full. Records handed over before it stay in flight.
    pub(crate) async fn release(&mut self, source: Option<(Arc<str>, i64)>) -> Result<()> {
        // Without a producer nothing was staged (`stage` refuses), unless it captures.
        let Some(producer) = self.producer.clone() else {
            let staged = std::mem::take(&mut self.staged);
            if let Some(captured) = &mut self.captured {
                captured.extend(staged);
            }
            return Ok(());
        };
        self.check_lease()?;
        // Drained from a vector kept across events (no allocation per event).
        let mut staged = std::mem::take(&mut self.staged);
        let mut result = Ok(());
        for out in staged.drain(..) {
            match self.enqueue(&producer, &out).await {
                Ok(delivery) => self.pending.push(Pending {
                    source: source.clone(),
                    topic: out.topic,
                    delivery,
                }),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        staged.clear();
        self.staged = staged;
        result
    }

    /// Hands `out` to the producer; a failure dooms the open transaction (exactly once).
    async fn enqueue(&self, producer: &FutureProducer, out: &Output) -> Result<DeliveryFuture> {
        let sent = enqueue(producer, record(out)).await;
        if sent.is_err() {
            self.doom();
        }
        sent
    }

    /// Sends one record at once, outside any event (a dead letter), and returns its delivery.
    ///
    /// # Errors
    /// As [`Outbox::release`].
    pub(crate) async fn send_now(
        &mut self,
        topic: &str,
        to: Target,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<DeliveryFuture> {
        let producer = self.producer.clone().ok_or_else(|| no_producer(topic))?;
        self.check_lease()?;
        let out = Output::copied(topic, to, key, value, headers);
        self.enqueue(&producer, &out).await
    }
}

fn no_producer(topic: &str) -> Error {
    Error::ActorGone {
        context: format!("sending to `{topic}`: this runtime has no producer"),
    }
}

fn record(out: &Output) -> FutureRecord<'_, [u8], [u8]> {
    let mut owned = OwnedHeaders::new_with_capacity(out.headers.len());
    for h in &out.headers {
        owned = owned.insert(KafkaHeader {
            key: &h.key,
            value: h.value.as_deref(),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&out.topic).headers(owned);
    if let Some(k) = &out.key {
        record = record.key(k);
    }
    if let Some(v) = &out.value {
        record = record.payload(v);
    }
    if let Some(p) = out.to.partition {
        record = record.partition(p);
    }
    if let Some(ts) = out.to.timestamp {
        record = record.timestamp(ts);
    }
    record
}

/// Hands `record` to the producer, waiting (up to 30 s) while its queue is full.
///
/// # Errors
/// [`Error::OutputRefused`] when the producer refuses the record for good (larger than
/// `message.max.bytes`, say); [`Error::Kafka`] when it stayed full or failed otherwise.
pub(crate) async fn enqueue(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, [u8], [u8]>,
) -> Result<DeliveryFuture> {
    let started = tokio::time::Instant::now();
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if started.elapsed() < QUEUE_FULL_WAIT =>
            {
                record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, back)) if classify(&e) == Fault::Record => {
                return Err(Error::OutputRefused {
                    topic: back.topic.to_owned(),
                    reason: reason_of(&e),
                    source: Box::new(e),
                })
            }
            Err((e, back)) => return Err(Error::kafka(format!("sending to `{}`", back.topic), e)),
        }
    }
}

/// Awaits every delivery of `pending`.
///
/// # Errors
/// Every record refused for good, by source; the first other failure.
pub(crate) async fn confirm(pending: Vec<Pending>) -> std::result::Result<(), Undelivered> {
    let mut failed = Undelivered {
        refused: Vec::new(),
        other: None,
    };
    for p in pending {
        let error = match p.delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((e, _))) => e,
            Err(_) => {
                failed.other.get_or_insert_with(|| {
                    format!("the producer dropped a record for `{}`", p.topic)
                });
                continue;
            }
        };
        match (classify(&error), p.source) {
            (Fault::Record, Some((source_topic, source))) => failed.refused.push(RefusedOutput {
                source,
                source_topic,
                reason: reason_of(&error),
                error: format!("`{}` refused the record: {error}", p.topic),
            }),
            (Fault::Record, None) => {
                // Only closes of processing-time windows are sent between events; a close the
                // broker refuses for good cannot be tied to a record to dead-letter.
                tracing::error!(topic = %p.topic, %error,
                    "a window close record was refused for good and is dropped");
            }
            _ => {
                failed
                    .other
                    .get_or_insert_with(|| format!("`{}`: {error}", p.topic));
            }
        }
    }
    match failed.refused.is_empty() && failed.other.is_none() {
        true => Ok(()),
        false => Err(failed),
    }
}
