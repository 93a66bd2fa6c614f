//! Writing one dead letter: the raw record, with headers saying what went wrong and where it
//! came from, sent and awaited; cut or re-stamped until the topic takes it.

use rdkafka::error::RDKafkaErrorCode;

use crate::io::outbox::{Outbox, Output, Target};
use crate::model::error::Error;
use crate::model::fault::{classify, reason_of, Fault};
use crate::model::names::{ORIGINAL_SIZE_HEADER, SOURCE_TIMESTAMP_HEADER};
use crate::model::record::{Header, Record};

/// The payload prefix a truncated dead letter keeps, before trying none at all.
const TRUNCATED_PAYLOAD: usize = 16 * 1024;

/// Why a dead letter was not written.
pub(crate) enum LetterFailed {
    /// Try again later (broker unreachable, ...).
    Transient(String),
    /// Refused for good, even truncated, or the producer failed for good.
    Refused(String),
}

/// Writes the dead letter of `record` (with `headers`, see `DeadLetter::headers`) to `dlq` and waits for its acknowledgement. A letter the
/// topic refuses for its timestamp is stamped with the time of sending (the original timestamp
/// in [`SOURCE_TIMESTAMP_HEADER`]); one refused for its size is sent again with the payload cut
/// to 16 KiB, then without payload ([`ORIGINAL_SIZE_HEADER`] holds the original size; the key
/// and every header are kept). Returns how it was written.
pub(crate) async fn dead_letter(
    outbox: &mut Outbox,
    dlq: &str,
    record: &Record,
    mut headers: Vec<Header>,
) -> std::result::Result<&'static str, LetterFailed> {
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
    if outbox.captures() {
        // The test driver's outbox keeps the letter as it would be written.
        outbox.capture(Output {
            topic: dlq.to_owned(),
            to,
            key: record.key.clone(),
            value: record.value.clone(),
            headers,
        });
        return Ok(how);
    }
    if outbox.too_far_ahead(to.timestamp) {
        // The topic would refuse it (see `processing.max_timestamp_ahead`).
        how = restamp(&mut to, &mut headers);
    }
    loop {
        let sent = match outbox
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
