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

use rdkafka::error::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::agent_actor::Work;
use crate::error::{Error, Result};
use crate::fault::{classify, reason_of, Fault};
use crate::metrics::Metrics;
use crate::outbox::Target;
use crate::record::{Header, Record};

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

/// The dead-letter topic of `agent` in app `app_id`.
pub fn dead_letter_topic(app_id: &str, agent: &str) -> String {
    format!("{app_id}-{agent}-dlq")
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

/// Parses a [`crate::SOURCE_HEADER`] value, `<topic>/<partition>/<offset>` (the topic may hold
/// `/`), into its parts.
///
/// # Errors
/// [`Error::BadHeader`] when the value is not of that form.
pub fn parse_source(value: &[u8]) -> Result<(String, i32, i64)> {
    let bad = |reason: &str| Error::BadHeader {
        header: crate::SOURCE_HEADER.into(),
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
    let partition = number(crate::SOURCE_HEADER, partition)?;
    let offset = number(crate::SOURCE_HEADER, offset)?;
    Ok((topic.to_owned(), partition, offset))
}

/// Header on a dead letter whose payload was cut to fit the dead-letter topic: the original
/// payload's size in bytes.
pub const ORIGINAL_SIZE_HEADER: &str = "faust-original-size";
/// Header on a dead letter stamped with the time of sending because the topic refused the
/// source record's own timestamp: that timestamp (ms, decimal).
pub const SOURCE_TIMESTAMP_HEADER: &str = "faust-source-timestamp";

/// The payload prefix a truncated dead letter keeps, before trying none at all.
const TRUNCATED_PAYLOAD: usize = 16 * 1024;

/// Why a dead letter was not written.
enum LetterFailed {
    /// Try again later (broker unreachable, ...).
    Transient(String),
    /// Refused for good, even truncated, or the producer failed for good.
    Refused(String),
}

/// Writes the dead letter of `record` to `dlq` and waits for its acknowledgement. A letter the
/// topic refuses for its timestamp is stamped with the time of sending (the original timestamp
/// in [`SOURCE_TIMESTAMP_HEADER`]); one refused for its size is sent again with the payload cut
/// to 16 KiB, then without payload ([`ORIGINAL_SIZE_HEADER`] holds the original size; the key
/// and every header are kept). Returns how it was written.
async fn dead_letter(
    work: &mut Work,
    dlq: &str,
    record: &Record,
    letter: &DeadLetter,
) -> std::result::Result<&'static str, LetterFailed> {
    let mut headers = letter.headers(record);
    let mut to = Target {
        partition: Some(record.partition),
        timestamp: record.timestamp,
    };
    let original = record.value.as_deref();
    let mut payload = original;
    let mut how = "unchanged";
    // Sent with the time of sending instead of the record's, which is kept in a header.
    let restamp = |to: &mut Target, headers: &mut Vec<Header>| {
        let ts = to.timestamp.take().unwrap_or_default();
        headers.push(header(SOURCE_TIMESTAMP_HEADER, ts.to_string()));
        "stamped with the time of sending"
    };
    if work.outbox.too_far_ahead(to.timestamp) {
        // The topic would refuse it (see `processing.max_timestamp_ahead`).
        how = restamp(&mut to, &mut headers);
    }
    loop {
        let sent = match work
            .outbox
            .send_now(dlq, to, record.key.as_deref(), payload, &headers)
            .await
        {
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => return Ok(how),
                Ok(Err((e, _))) => e,
                Err(_) => return Err(LetterFailed::Transient("the producer dropped it".into())),
            },
            // Refused at once: classified below like a failed delivery (a fatal producer
            // must halt, not be retried for ever).
            Err(Error::OutputRefused { source, .. }) => *source,
            Err(Error::Kafka { source, .. }) => source,
            Err(e) => return Err(LetterFailed::Transient(e.to_string())),
        };
        let code = sent.rdkafka_error_code();
        match classify(&sent) {
            Fault::Record
                if code == Some(RDKafkaErrorCode::InvalidTimestamp) && to.timestamp.is_some() =>
            {
                how = restamp(&mut to, &mut headers);
            }
            Fault::Record if reason_of(&sent) == "output_too_large" && payload.is_some() => {
                if !headers.iter().any(|h| h.key == ORIGINAL_SIZE_HEADER) {
                    let size = original.map_or(0, <[u8]>::len);
                    headers.push(header(ORIGINAL_SIZE_HEADER, size.to_string()));
                }
                payload = match payload {
                    Some(p) if p.len() > TRUNCATED_PAYLOAD => Some(&p[..TRUNCATED_PAYLOAD]),
                    _ => None,
                };
                how = "truncated";
            }
            Fault::Record | Fault::Fatal => return Err(LetterFailed::Refused(sent.to_string())),
            Fault::Transient => return Err(LetterFailed::Transient(sent.to_string())),
        }
    }
}

fn header(key: &str, value: String) -> Header {
    Header {
        key: key.into(),
        value: Some(value.into_bytes()),
    }
}

/// What failed, for [`apply`].
pub(crate) struct Failed<'a> {
    pub(crate) agent: &'a str,
    pub(crate) reason: &'static str,
    pub(crate) error: &'a str,
}

/// Why [`apply`] did not let processing go on.
pub(crate) enum Applied {
    /// A dead letter could not be sent: try the records again later.
    Retry,
    /// The policy is `stop`: halt, with this message.
    Halt(String),
}

/// Applies `policy` to `records` (one failed event, or every record of a failed batch): skips,
/// dead-letters or halts, and counts each record it settled in `faust_invalid_records_total`
/// (a dead letter retried is counted once, when written).
pub(crate) async fn apply(
    work: &mut Work,
    policy: &ErrorPolicy,
    records: &[Record],
    failed: &Failed<'_>,
    metrics: &Metrics,
) -> std::result::Result<(), Applied> {
    let Failed {
        agent,
        reason,
        error,
    } = *failed;
    for record in records {
        let (topic, partition, offset) = (&record.topic, record.partition, record.offset);
        let counted = metrics
            .invalid_records_total
            .with_label_values(&[agent, reason]);
        if policy.on_error != OnError::DeadLetter {
            counted.inc();
        }
        if policy.on_error == OnError::Stop {
            return Err(Applied::Halt(format!(
                "agent `{agent}` cannot process {topic}[{partition}]@{offset} ({reason}): {error}"
            )));
        }
        if policy.on_error == OnError::Skip {
            tracing::error!(agent, %topic, partition, offset, reason, error,
                "event skipped (on_error = skip)");
            continue;
        }
        let letter = DeadLetter::of(record, agent, reason, error);
        let dlq = &policy.dead_letter_topic;
        match dead_letter(work, dlq, record, &letter).await {
            Ok(how) => {
                counted.inc();
                tracing::error!(agent, %topic, partition, offset, reason, error,
                    dead_letter_topic = %dlq, how, "event dead-lettered")
            }
            Err(LetterFailed::Transient(e)) => {
                tracing::error!(agent, %topic, partition, offset, error = %e,
                    "cannot dead-letter the event; retrying it");
                return Err(Applied::Retry);
            }
            Err(LetterFailed::Refused(e)) => {
                counted.inc();
                return Err(Applied::Halt(format!(
                    "agent `{agent}` cannot process {topic}[{partition}]@{offset} ({reason}: \
                     {error}), and its dead letter cannot be written to `{dlq}`, even \
                     truncated: {e}"
                )));
            }
        }
    }
    Ok(())
}

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
