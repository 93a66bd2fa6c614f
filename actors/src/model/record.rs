//! An owned copy of one Kafka record, as the runtime carries it between actors.

use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedMessage, Message};

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
    /// Why part of the record could not be read (a header name that is not UTF-8), if so:
    /// such a record never reaches an agent; it goes to the agent's error policy with reason
    /// `header`. A header name that is not UTF-8 is kept with its bad bytes replaced by U+FFFD.
    pub unreadable: Option<String>,
}

impl Record {
    /// Copies a message borrowed from the consumer. Nothing in the record's bytes can make
    /// this panic: headers are read through librdkafka directly, not through rdkafka's
    /// `Headers::iter`, which unwraps a header name that is not UTF-8.
    pub(crate) fn from_message(topic: &Arc<str>, msg: &BorrowedMessage<'_>) -> Self {
        let (headers, unreadable) = read_headers(msg);
        Record {
            topic: topic.clone(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: msg.timestamp().to_millis(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().map(<[u8]>::to_vec),
            headers,
            unreadable,
        }
    }

    /// Copies a message like [`Record::from_message`], and turns a panic while doing so into a
    /// record that goes to the agent's policy (with what could be read: where it is).
    pub(crate) fn read(topic: &Arc<str>, msg: &BorrowedMessage<'_>) -> Self {
        let copy = std::panic::AssertUnwindSafe(|| Record::from_message(topic, msg));
        std::panic::catch_unwind(copy).unwrap_or_else(|_| Record {
            topic: topic.clone(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: None,
            key: None,
            value: None,
            headers: Vec::new(),
            unreadable: Some("reading the record from librdkafka panicked".into()),
        })
    }
}

/// The message's headers, and what was wrong with them, if anything.
fn read_headers(msg: &BorrowedMessage<'_>) -> (Vec<Header>, Option<String>) {
    let mut native: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `msg.ptr()` is a live message for the borrow's lifetime; librdkafka returns its
    // headers (owned by the message) or an error when it has none.
    let err = unsafe { rd::rd_kafka_message_headers(msg.ptr(), &mut native) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || native.is_null() {
        return (Vec::new(), None);
    }
    let mut out = Vec::new();
    let mut bad = None;
    for idx in 0.. {
        let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
        // SAFETY: `native` belongs to the message; the pointers returned stay valid while it
        // lives, and are copied out below.
        let err =
            unsafe { rd::rd_kafka_header_get_all(native, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            break;
        }
        // SAFETY: librdkafka keeps header names NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes();
        let value = (!value.is_null())
            // SAFETY: `size` bytes at `value`, owned by the message.
            .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec());
        let key = match std::str::from_utf8(name) {
            Ok(key) => key.to_owned(),
            Err(_) => {
                bad.get_or_insert_with(|| {
                    format!("header {idx}'s name is not UTF-8 (bytes {})", hex(name))
                });
                String::from_utf8_lossy(name).into_owned()
            }
        };
        out.push(Header { key, value });
    }
    (out, bad)
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    shown.join(" ")
}
