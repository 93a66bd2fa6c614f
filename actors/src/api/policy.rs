//! What happens to an event that cannot be processed: the per-agent [`ErrorPolicy`], and the
//! headers of a dead-lettered record.
//!
//! Three kinds of failure go through the policy: a record that does not decode (no retry: it
//! would fail the same way), an agent error and a panic (both retried `retries` times with
//! back-off first, the panicking actor restarted by its supervisor). Then:
//! - `skip`: logged and counted in `faust_invalid_records_total{agent,reason}`, and the offset
//!   moves on;
//! - `dead-letter` (the default): the raw record is sent unchanged to `<app-id>-<agent>-dlq`
//!   with headers saying what went wrong and where it came from; its offset is committed only
//!   after the dead letter is acknowledged;
//! - `stop`: the partition halts at that record with an error; nothing past it is committed.
//!
//! Unlike Faust, which acknowledges a failing event and loses it, an offset is never committed
//! for an event that was neither processed nor dead-lettered.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::error::{Error, Result};
use crate::model::names::{dead_letter_topic, SOURCE_HEADER};
use crate::model::record::{Header, Record};

/// What to do with an event that failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Log and count it, then go on.
    Skip,
    /// Send the raw record to the agent's dead-letter topic, then go on.
    #[default]
    DeadLetter,
    /// Halt the partition at this record; commit nothing past it.
    Stop,
}

/// An agent's policy for events that cannot be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    /// What happens once retries are spent (at once for records that do not decode).
    pub on_error: OnError,
    /// How often an agent error or panic is retried (with back-off) before `on_error` applies.
    pub retries: u32,
    /// Where dead letters go (`<app-id>-<agent>-dlq`).
    pub dead_letter_topic: String,
}

impl ErrorPolicy {
    /// The default policy of `agent` in app `app_id`: dead-letter after 3 retries.
    pub fn default_for(app_id: &str, agent: &str) -> Self {
        ErrorPolicy {
            on_error: OnError::DeadLetter,
            retries: 3,
            dead_letter_topic: dead_letter_topic(app_id, agent),
        }
    }
}

/// Header: the error's text.
pub const ERROR_HEADER: &str = "faust-error";
/// Header: the kind of failure (`key`, `value`, `null_value`, `agent_error`, `panic`).
pub const REASON_HEADER: &str = "faust-error-reason";
/// Header: the agent that failed.
pub const AGENT_HEADER: &str = "faust-agent";
/// Header: the source topic.
pub const TOPIC_HEADER: &str = "faust-source-topic";
/// Header: the source partition (decimal).
pub const PARTITION_HEADER: &str = "faust-source-partition";
/// Header: the source offset (decimal).
pub const OFFSET_HEADER: &str = "faust-source-offset";

/// Why a record was dead-lettered and where it came from: written as headers on the dead
/// letter, after the record's own headers, and parsed back by [`DeadLetter::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The agent that could not process it.
    pub agent: String,
    /// The kind of failure (the `reason` label of `faust_invalid_records_total`).
    pub reason: String,
    /// The error's text.
    pub error: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

impl DeadLetter {
    /// The dead letter of `record`.
    pub fn of(record: &Record, agent: &str, reason: &str, error: &str) -> Self {
        DeadLetter {
            agent: agent.into(),
            reason: reason.into(),
            error: error.into(),
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
        }
    }

    /// The record's own headers followed by this dead letter's.
    pub fn headers(&self, record: &Record) -> Vec<Header> {
        let mut out = record.headers.clone();
        let mut add = |key: &str, value: String| {
            out.push(Header {
                key: key.into(),
                value: Some(value.into_bytes()),
            })
        };
        add(ERROR_HEADER, self.error.clone());
        add(REASON_HEADER, self.reason.clone());
        add(AGENT_HEADER, self.agent.clone());
        add(TOPIC_HEADER, self.topic.clone());
        add(PARTITION_HEADER, self.partition.to_string());
        add(OFFSET_HEADER, self.offset.to_string());
        out
    }

    /// Reads a dead letter back from a record's headers (the last of each name wins, so a
    /// dead letter dead-lettered again tells its latest failure).
    ///
    /// # Errors
    /// [`Error::BadHeader`] when a header is missing, not UTF-8, or not a number where one is
    /// due.
    pub fn parse(headers: &[Header]) -> Result<Self> {
        let text = |name: &str| -> Result<String> {
            let h = headers.iter().rev().find(|h| h.key == name);
            let bad = |reason: &str| Error::BadHeader {
                header: name.into(),
                reason: reason.into(),
            };
            let bytes = h.ok_or_else(|| bad("missing"))?.value.as_deref();
            let bytes = bytes.ok_or_else(|| bad("null"))?;
            String::from_utf8(bytes.to_vec()).map_err(|_| bad("not UTF-8"))
        };
        Ok(DeadLetter {
            agent: text(AGENT_HEADER)?,
            reason: text(REASON_HEADER)?,
            error: text(ERROR_HEADER)?,
            topic: text(TOPIC_HEADER)?,
            partition: number(PARTITION_HEADER, &text(PARTITION_HEADER)?)?,
            offset: number(OFFSET_HEADER, &text(OFFSET_HEADER)?)?,
        })
    }
}

fn number<T: FromStr>(header: &str, text: &str) -> Result<T> {
    text.parse().map_err(|_| Error::BadHeader {
        header: header.into(),
        reason: format!("`{text}` is not a number"),
    })
}

/// Parses a [`SOURCE_HEADER`] value, `<topic>/<partition>/<offset>` (the topic may hold
/// `/`), into its parts.
///
/// # Errors
/// [`Error::BadHeader`] when the value is not of that form.
pub fn parse_source(value: &[u8]) -> Result<(String, i32, i64)> {
    let bad = |reason: &str| Error::BadHeader {
        header: SOURCE_HEADER.into(),
        reason: reason.into(),
    };
    let text = std::str::from_utf8(value).map_err(|_| bad("not UTF-8"))?;
    let mut parts = text.rsplitn(3, '/');
    let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected <topic>/<partition>/<offset>"));
    };
    if topic.is_empty() {
        return Err(bad("empty topic"));
    }
    let partition = number(SOURCE_HEADER, partition)?;
    let offset = number(SOURCE_HEADER, offset)?;
    Ok((topic.to_owned(), partition, offset))
}

pub use crate::model::names::{ORIGINAL_SIZE_HEADER, SOURCE_TIMESTAMP_HEADER};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn dead_letter_headers_round_trip_after_the_records_own() {
        let record = Record {
            topic: Arc::from("in/put"),
            partition: 3,
            offset: 42,
            timestamp: Some(5),
            key: None,
            value: Some(b"{oops".to_vec()),
            headers: vec![Header {
                key: "trace".into(),
                value: Some(b"t1".to_vec()),
            }],
            unreadable: None,
        };
        let letter = DeadLetter::of(&record, "count", "value", "expected value at line 1");
        let headers = letter.headers(&record);
        assert_eq!(headers[0].key, "trace");
        assert_eq!(DeadLetter::parse(&headers).unwrap(), letter);
        assert!(matches!(
            DeadLetter::parse(&headers[..3]),
            Err(Error::BadHeader { .. })
        ));
    }

    #[test]
    fn source_headers_parse_with_slashes_in_the_topic() {
        assert_eq!(parse_source(b"a/b/7/9").unwrap(), ("a/b".into(), 7, 9));
        for bad in [
            &b"7/9"[..],
            b"/1/2",
            b"t/x/2",
            b"t/1/",
            &[0xff, b'/', b'1', b'/', b'2'],
        ] {
            assert!(parse_source(bad).is_err(), "{bad:?}");
        }
    }
}
