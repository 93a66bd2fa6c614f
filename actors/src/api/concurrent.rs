//! Agent concurrency, like Faust's `@app.agent(topic, concurrency=N)`: a
//! [`ConcurrentAgent`] has up to N events of a partition in flight while it waits on I/O (an
//! HTTP call, a database), and still changes its tables one event at a time, in offset order.
//!
//! An event is handled in two steps:
//! - [`prepare`](ConcurrentAgent::prepare) does the waiting. It sees the event's key, value and
//!   record, but no table and no sending. Up to [`concurrency`](ConcurrentAgent::concurrency)
//!   events of a partition prepare at once; the events of one key prepare one after another in
//!   offset order (events without a key are not ordered among themselves).
//! - [`handle`](ConcurrentAgent::handle) gets the prepared result with the full [`Event`]
//!   (tables, sending), for one event at a time in offset order, exactly like
//!   [`Agent::handle`](crate::Agent::handle): its table writes and outputs are isolated per
//!   event and rolled back on error.
//!
//! So tables and outputs are as exact as with an ordinary agent, whatever the concurrency: the
//! concurrency only overlaps the waiting. Offsets are committed only below the oldest event
//! not yet handled. A prepared result is kept at most until its event is handled: an event
//! retried (an error, a panic, a rebalance) prepares again, so the I/O of `prepare` is done at
//! least once per event, as with any at-least-once side effect. An error from `prepare` is the
//! event's error (retried, then the agent's error policy), like one from `handle`.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;

use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::api::agent::{AgentError, Event};
use crate::api::erased::{decode_key, decode_value, AgentRef, ErasedAgent, Failure, Stage};
use crate::io::outbox::Outbox;
use crate::model::codec::TopicCodecs;
use crate::model::record::Record;
use crate::model::shape::{shape_of, Shape};
use crate::state::set::TableSet;
use crate::state::spec::TableSpec;

/// An agent with up to N events of a partition in flight (see the module doc).
pub trait ConcurrentAgent: Send + Sync + 'static {
    /// Type of record keys (decoded with the topic's key codec).
    type Key: DeserializeOwned + 'static;
    /// Type of record values (decoded with the topic's value codec).
    type Value: DeserializeOwned + 'static;
    /// What [`prepare`](Self::prepare) hands to [`handle`](Self::handle).
    type Prepared: 'static;

    /// The agent's name.
    fn name(&self) -> &str;

    /// The topics it consumes.
    fn topics(&self) -> Vec<String>;

    /// The tables it reads or writes (in [`handle`](Self::handle)).
    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }

    /// Most events of one partition preparing at once (Faust's `concurrency`; 0 counts as 1).
    fn concurrency(&self) -> usize;

    /// The waiting part of an event: no tables, no sending; up to
    /// [`concurrency`](Self::concurrency) at once, in offset order per key.
    ///
    /// # Errors
    /// Any error: the event is retried (prepared again) after a back-off, as with
    /// [`Agent::handle`](crate::Agent::handle).
    fn prepare(
        &self,
        key: Option<&Self::Key>,
        value: &Self::Value,
        record: &Record,
    ) -> impl Future<Output = Result<Self::Prepared, AgentError>>;

    /// The event itself, with what [`prepare`](Self::prepare) returned for it: one event at a
    /// time in offset order, its table writes and outputs isolated.
    ///
    /// # Errors
    /// Any error: the event's writes are undone and it is retried, prepared again.
    fn handle(
        &self,
        event: &mut Event<'_, Self::Key, Self::Value>,
        prepared: Self::Prepared,
    ) -> impl Future<Output = Result<(), AgentError>>;

    /// Called when this node starts processing `partition` of `topic`.
    fn on_assign(&self, _topic: &str, _partition: i32) {}

    /// Called after `partition` of `topic` was committed and before it is released.
    fn on_revoke(&self, _topic: &str, _partition: i32) {}
}

impl AgentRef {
    /// Wraps a [`ConcurrentAgent`] for the runtime.
    pub fn concurrent<A: ConcurrentAgent>(agent: A) -> Self {
        let topics = agent.topics();
        let erased = std::sync::Arc::new(Concurrent(agent, PhantomData));
        AgentRef::from_erased(erased, topics, Stage::Plain)
    }
}

/// A prepared event as the runtime holds it: key, value and the agent's result, types erased.
pub(crate) type Prepared = Box<dyn Any>;

struct Concurrent<A>(A, PhantomData<fn()>);

impl<A: ConcurrentAgent> ErasedAgent for Concurrent<A> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn tables(&self) -> Vec<TableSpec> {
        self.0.tables()
    }

    fn shapes(&self) -> (Shape, Shape) {
        (shape_of::<A::Key>(), shape_of::<A::Value>())
    }

    fn concurrency_of(&self) -> Option<usize> {
        Some(self.0.concurrency())
    }

    /// One event alone (a suspect, or the test driver): prepared, then handled.
    fn handle<'a>(
        &'a self,
        record: &'a Record,
        tables: &'a mut TableSet,
        outbox: &'a mut Outbox,
        sinks: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let prepared = self.prepare(record, outbox.codecs()).await?;
            self.handle_prepared(record, prepared, tables, outbox, sinks)
                .await
        })
    }

    fn prepare<'a>(
        &'a self,
        record: &'a Record,
        codecs: &TopicCodecs,
    ) -> LocalBoxFuture<'a, Result<Prepared, Failure>> {
        let decoded = decode_key::<A::Key>(codecs, record)
            .and_then(|key| Ok((key, decode_value::<A::Value>(codecs, record)?)));
        Box::pin(async move {
            let (key, value) = decoded?;
            let result = self
                .0
                .prepare(key.as_ref(), &value, record)
                .await
                .map_err(Failure::Agent)?;
            Ok(Box::new((key, value, result)) as Prepared)
        })
    }

    fn handle_prepared<'a>(
        &'a self,
        record: &'a Record,
        prepared: Prepared,
        tables: &'a mut TableSet,
        outbox: &'a mut Outbox,
        sinks: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let (key, value, result) = *prepared
                .downcast::<(Option<A::Key>, A::Value, A::Prepared)>()
                .map_err(|_| {
                    Failure::Agent(AgentError::msg("a prepared event of another agent"))
                })?;
            let mut event = Event {
                record,
                key,
                value,
                tables,
                outbox,
                sinks,
            };
            self.0
                .handle(&mut event, result)
                .await
                .map_err(Failure::Agent)
        })
    }

    fn on_assign(&self, topic: &str, partition: i32) {
        self.0.on_assign(topic, partition);
    }

    fn on_revoke(&self, topic: &str, partition: i32) {
        self.0.on_revoke(topic, partition);
    }
}
