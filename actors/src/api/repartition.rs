//! Re-keying a stream (`group_by`), like Faust's `stream.group_by(...)` and Kafka Streams'
//! `groupBy`: a table keyed by something other than the record key must see every event of a
//! key on the same partition, so the events go through an internal topic first.
//!
//! [`group_by`] turns one agent into two stages:
//! 1. `<agent>-group_by` consumes the agent's topics, computes each event's new key, and sends
//!    the record's value (bytes unchanged, headers kept, plus a [`SOURCE_HEADER`]) keyed
//!    by it to `<app-id>-<agent>-repartition`. Kafka's partitioner puts every record of a key
//!    on one partition of that topic.
//! 2. the agent itself consumes the repartition topic, so its tables are sharded by the new
//!    key: co-partitioned data, with the usual commit cycle on both stages (a stage-1 offset is
//!    committed only after its repartitioned record is acknowledged).

use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use serde::Serialize;

use crate::model::shape::{shape_of, Shape};

use crate::api::agent::Agent;
use crate::api::erased::{decode_value, AgentRef, ErasedAgent, Failure};
use crate::io::outbox::Outbox;
use crate::io::outbox::Target;
use crate::model::names::SOURCE_HEADER;
use crate::model::record::{Header, Record};
use crate::state::set::TableSet;
use crate::state::spec::TableSpec;

pub use crate::api::erased::Stage;

/// The two agents that run `agent` over its events re-keyed by `key`: give both to the app
/// (`App::group_by` does).
pub fn group_by<A, F>(agent: A, key: F) -> [AgentRef; 2]
where
    A: Agent,
    A::Key: Serialize,
    F: Fn(&A::Value) -> A::Key + Send + Sync + 'static,
{
    let name = agent.name().to_owned();
    let rekey = Rekey::<A, F> {
        name: format!("{name}-group_by"),
        key,
        _agent: PhantomData,
    };
    let topics = agent.topics();
    let first = AgentRef::from_erased(
        Arc::new(rekey),
        topics.clone(),
        Stage::Rekey { agent: name },
    );
    let second = AgentRef::new(agent).with_stage(Stage::Regrouped);
    [first, second]
}

struct Rekey<A, F> {
    name: String,
    key: F,
    _agent: PhantomData<fn() -> A>,
}

impl<A, F> ErasedAgent for Rekey<A, F>
where
    A: Agent,
    A::Key: Serialize,
    F: Fn(&A::Value) -> A::Key + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }

    fn handle<'a>(
        &'a self,
        record: &'a Record,
        _tables: &'a mut TableSet,
        outbox: &'a mut Outbox,
        sinks: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let value = decode_value::<A::Value>(outbox.codecs(), record)?;
            let raw = record.value.as_deref();
            let key = (self.key)(&value);
            let mut headers = record.headers.clone();
            headers.push(Header {
                key: SOURCE_HEADER.into(),
                value: Some(
                    format!("{}/{}/{}", record.topic, record.partition, record.offset).into_bytes(),
                ),
            });
            // The re-keyed record keeps its event time, so windows downstream stay exact.
            let to = Target::at(record.timestamp);
            for sink in sinks {
                let (kc, _) = outbox.codecs().get(sink);
                let key = kc
                    .encode("key", &key)
                    .map_err(|e| Failure::Agent(e.into()))?;
                outbox
                    .send_raw(sink, to, Some(&key), raw, &headers)
                    .await
                    .map_err(|e| Failure::Agent(e.into()))?;
            }
            Ok(())
        })
    }

    fn on_assign(&self, _topic: &str, _partition: i32) {}

    fn on_revoke(&self, _topic: &str, _partition: i32) {}

    fn shapes(&self) -> (Shape, Shape) {
        // The source key is not decoded, only passed on.
        (Shape::Unknown, shape_of::<A::Value>())
    }
}
