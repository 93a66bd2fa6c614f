//! The type erasure between the user's agents and the runtime: [`AgentRef`] holds any
//! [`Agent`] (or batching or concurrent agent) behind one object-safe trait, decodes each
//! record with its topic's codecs, and carries the agent's topics, sinks, error policy and
//! concurrency as configured.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::api::agent::{Agent, AgentError, Event};
use crate::api::concurrent::Prepared;
use crate::api::policy::ErrorPolicy;
use crate::io::outbox::Outbox;
use crate::model::codec::TopicCodecs;
use crate::model::error::{Error, Result};
use crate::model::record::Record;
use crate::model::shape::{shape_of, Shape};
use crate::state::set::TableSet;
use crate::state::spec::TableSpec;

/// Decodes `record`'s key, if it has one, with its topic's key codec.
pub(crate) fn decode_key<K: DeserializeOwned>(
    codecs: &TopicCodecs,
    record: &Record,
) -> Result<Option<K>, Failure> {
    let Some(bytes) = record.key.as_deref() else {
        return Ok(None);
    };
    let (kc, _) = codecs.get(&record.topic);
    kc.decode("key", bytes)
        .map(Some)
        .map_err(|error| Failure::Invalid {
            reason: "key",
            error,
        })
}

/// Decodes `record`'s value with its topic's value codec; a null value is a failure too.
pub(crate) fn decode_value<V: DeserializeOwned>(
    codecs: &TopicCodecs,
    record: &Record,
) -> Result<V, Failure> {
    let Some(raw) = record.value.as_deref() else {
        return Err(Failure::Invalid {
            reason: "null_value",
            error: Error::MissingValue {
                topic: record.topic.to_string(),
                partition: record.partition,
                offset: record.offset,
            },
        });
    };
    let (_, vc) = codecs.get(&record.topic);
    vc.decode("value", raw).map_err(|error| Failure::Invalid {
        reason: "value",
        error,
    })
}

/// Why an event did not finish.
pub(crate) enum Failure {
    /// The record cannot become an event (bad bytes, null value): it goes straight to the
    /// agent's error policy; retrying would fail the same way.
    Invalid { reason: &'static str, error: Error },
    /// The agent returned an error: retried.
    Agent(AgentError),
}

/// An agent with its types erased, so that one runtime drives agents of any key/value types.
pub(crate) trait ErasedAgent: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn tables(&self) -> Vec<TableSpec>;
    fn handle<'a>(
        &'a self,
        record: &'a Record,
        tables: &'a mut TableSet,
        outbox: &'a mut Outbox,
        sinks: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), Failure>>;
    /// Batch size and wait of a batching agent; `None` for one event at a time.
    fn take(&self) -> Option<(usize, Duration)> {
        None
    }
    /// Handles `records` as one batch (batching agents only); the error says at which index of
    /// `records` it failed (0 for the whole batch).
    fn handle_chunk<'a>(
        &'a self,
        records: &'a [Record],
        tables: &'a mut TableSet,
        outbox: &'a mut Outbox,
        sinks: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), (usize, Failure)>> {
        Box::pin(async move {
            for (i, record) in records.iter().enumerate() {
                self.handle(record, tables, outbox, sinks)
                    .await
                    .map_err(|f| (i, f))?;
            }
            Ok(())
        })
    }
    /// Most events of a partition in flight at once, for a concurrent agent (see
    /// `api::concurrent`); `None` for others.
    fn concurrency_of(&self) -> Option<usize> {
        None
    }
    /// The waiting step of one event of a concurrent agent, decoded with `codecs` at once.
    fn prepare<'a>(
        &'a self,
        _record: &'a Record,
        _codecs: &TopicCodecs,
    ) -> LocalBoxFuture<'a, Result<Prepared, Failure>> {
        Box::pin(std::future::ready(Err(Failure::Agent(AgentError::msg(
            "not a concurrent agent",
        )))))
    }
    /// Handles an event `prepare` made ready (concurrent agents; others handle it anew).
    fn handle_prepared<'a>(
        &'a self,
        record: &'a Record,
        _prepared: Prepared,
        tables: &'a mut TableSet,
        outbox: &'a mut Outbox,
        sinks: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), Failure>> {
        self.handle(record, tables, outbox, sinks)
    }
    fn on_assign(&self, topic: &str, partition: i32);
    fn on_revoke(&self, topic: &str, partition: i32);
    /// What its key and value types ask their deserializers for (see `model::shape`).
    fn shapes(&self) -> (Shape, Shape) {
        (Shape::Unknown, Shape::Unknown)
    }
}

struct Typed<A>(A);

impl<A: Agent> ErasedAgent for Typed<A> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn tables(&self) -> Vec<TableSpec> {
        self.0.tables()
    }

    fn handle<'a>(
        &'a self,
        record: &'a Record,
        tables: &'a mut TableSet,
        outbox: &'a mut Outbox,
        sinks: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let key = decode_key::<A::Key>(outbox.codecs(), record)?;
            let value = decode_value::<A::Value>(outbox.codecs(), record)?;
            let mut event = Event {
                record,
                key,
                value,
                tables,
                outbox,
                sinks,
            };
            self.0.handle(&mut event).await.map_err(Failure::Agent)
        })
    }

    fn on_assign(&self, topic: &str, partition: i32) {
        self.0.on_assign(topic, partition);
    }

    fn on_revoke(&self, topic: &str, partition: i32) {
        self.0.on_revoke(topic, partition);
    }

    fn shapes(&self) -> (Shape, Shape) {
        (shape_of::<A::Key>(), shape_of::<A::Value>())
    }
}

/// The role of an agent in a `group_by` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// An ordinary agent.
    Plain,
    /// Stage 1: re-keys the events of `agent` into its repartition topic (the node sets it as
    /// this agent's one sink).
    Rekey {
        /// The agent whose events these are.
        agent: String,
    },
    /// Stage 2: the agent, consuming its repartition topic (the node sets it as its topic).
    Regrouped,
}

/// A registered agent, types erased: what an app hands to the runtime, with the topics it
/// consumes and the sinks it emits to (both settable from the config).
#[derive(Clone)]
pub struct AgentRef {
    pub(crate) agent: Arc<dyn ErasedAgent>,
    topics: Arc<[String]>,
    pub(crate) sinks: Arc<[String]>,
    pub(crate) policy: Arc<ErrorPolicy>,
    stage: Stage,
    /// The concurrency the config gives instead of the agent's own.
    concurrency: Option<usize>,
}

impl AgentRef {
    /// Wraps an agent for the runtime: its own topics, no sinks.
    pub fn new<A: Agent>(agent: A) -> Self {
        let topics = agent.topics();
        Self::from_erased(Arc::new(Typed(agent)), topics, Stage::Plain)
    }

    pub(crate) fn from_erased(
        agent: Arc<dyn ErasedAgent>,
        topics: Vec<String>,
        stage: Stage,
    ) -> Self {
        let policy = ErrorPolicy::default_for("app", agent.name()).into();
        AgentRef {
            agent,
            topics: topics.into(),
            sinks: Arc::from([]),
            policy,
            stage,
            concurrency: None,
        }
    }

    pub(crate) fn with_stage(mut self, stage: Stage) -> Self {
        self.stage = stage;
        self
    }

    /// Its role in a `group_by` pair, if any.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// Handles events that cannot be processed with `policy` (default: dead-letter to
    /// `app-<name>-dlq` after 3 retries; a node sets the topic from its app id).
    pub fn with_policy(mut self, policy: ErrorPolicy) -> Self {
        self.policy = policy.into();
        self
    }

    /// The policy for events that cannot be processed.
    pub fn policy(&self) -> &ErrorPolicy {
        &self.policy
    }

    /// Consumes `topics` instead of the agent's own.
    pub fn with_topics(mut self, topics: Vec<String>) -> Self {
        self.topics = topics.into();
        self
    }

    /// Emits to `sinks` (see [`Event::emit`]).
    pub fn with_sinks(mut self, sinks: Vec<String>) -> Self {
        self.sinks = sinks.into();
        self
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        self.agent.name()
    }

    /// The topics it consumes.
    pub fn topics(&self) -> Vec<String> {
        self.topics.to_vec()
    }

    /// Most events of a partition it prepares at once: `None` for an agent that is not a
    /// [`ConcurrentAgent`](crate::ConcurrentAgent).
    pub fn concurrency(&self) -> Option<usize> {
        let own = self.agent.concurrency_of()?;
        Some(self.concurrency.unwrap_or(own).max(1))
    }

    /// Prepares up to `n` events of a partition at once instead of the agent's own
    /// concurrency (`[agents.<name>] concurrency`); no effect on other agents.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// The topics it emits to.
    pub fn sinks(&self) -> &[String] {
        &self.sinks
    }

    /// The tables it declares.
    pub fn tables(&self) -> Vec<TableSpec> {
        self.agent.tables()
    }

    /// What its key and value types ask their deserializers for: start-up checks them
    /// against each topic's codecs ([`Codec::cannot_decode`](crate::Codec::cannot_decode)).
    pub fn shapes(&self) -> (Shape, Shape) {
        self.agent.shapes()
    }
}

impl fmt::Debug for AgentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AgentRef").field(&self.name()).finish()
    }
}
