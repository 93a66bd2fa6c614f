//! The output step of the hot path, reachable from outside the crate for the criterion
//! micro-benchmarks (`benches/hot_path.rs`), the way an agent's `emit` and the agent actor use
//! the outbox: encode and stage the event's record with its `faust-source` header, hand it to
//! the producer at the end of the event, and await every acknowledgement at the commit. Not a
//! stable API.

use std::sync::Arc;

use rdkafka::producer::FutureProducer;
use serde::Serialize;

use crate::io::outbox::{confirm, Outbox, Target};
use crate::model::codec::{Codec, TopicCodecs};
use crate::model::names::SOURCE_HEADER;
use crate::model::record::Header;

/// One partition's outbox sending to `topic` (string keys, JSON values).
pub struct Emitter {
    outbox: Outbox,
    topic: String,
    source: Arc<str>,
    offset: i64,
}

impl Emitter {
    /// An outbox sending through `producer` to `topic`.
    pub fn new(producer: FutureProducer, topic: &str) -> Self {
        let mut codecs = TopicCodecs::default();
        codecs.insert(topic, Codec::String, Codec::Json);
        Emitter {
            outbox: Outbox::new(Some(producer), Arc::new(codecs)),
            topic: topic.to_owned(),
            source: Arc::from("views"),
            offset: 0,
        }
    }

    /// One event's output, as `Event::emit` stages it and the agent actor releases it.
    ///
    /// # Errors
    /// The value does not encode, or the producer refused the record.
    pub async fn emit<V: Serialize>(&mut self, key: &str, value: &V) -> crate::Result<()> {
        self.offset += 1;
        let header = Header {
            key: SOURCE_HEADER.into(),
            value: Some(format!("{}/0/{}", self.source, self.offset).into_bytes()),
        };
        let to = Target::at(None);
        self.outbox
            .send_encoded(&self.topic, to, Some(key), value, vec![header])
            .await?;
        self.outbox
            .release(Some((self.source.clone(), self.offset)))
            .await
    }

    /// The commit's wait: every output handed over so far acknowledged. Returns how many.
    ///
    /// # Errors
    /// An output was not delivered (its reason).
    pub async fn confirm(&mut self) -> Result<usize, String> {
        let pending = self.outbox.take_pending();
        let n = pending.len();
        confirm(pending).await.map_err(|e| e.to_string())?;
        Ok(n)
    }
}
