//! An owned copy of one Kafka record, as the runtime carries it between actors.

use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Headers, Message};

/// One record header: a name and optional bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value; `None` for a null header.
    pub value: Option<Vec<u8>>,
}

/// One record of a source partition, copied out of librdkafka's buffers so that it can cross
/// actors and outlive the consumer's poll.
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic the record came from (shared between the records of one partition).
    pub topic: Arc<str>,
    /// Partition the record came from.
    pub partition: i32,
    /// Offset of the record in its partition.
    pub offset: i64,
    /// Record timestamp in milliseconds since the epoch, when the broker gave one.
    pub timestamp: Option<i64>,
    /// Raw key bytes.
    pub key: Option<Vec<u8>>,
    /// Raw value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers in the order they were sent.
    pub headers: Vec<Header>,
}

impl Record {
    /// Copies a message borrowed from the consumer.
    pub(crate) fn from_message(topic: &Arc<str>, msg: &BorrowedMessage<'_>) -> Self {
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| Header {
                        key: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            topic: topic.clone(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: msg.timestamp().to_millis(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().map(<[u8]>::to_vec),
            headers,
        }
    }
}
