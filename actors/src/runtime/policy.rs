//! Applying an agent's error policy to a failed event: skip, dead-letter (see
//! `io::dead_letter`) or halt, each record counted once in `faust_invalid_records_total`.

use crate::api::policy::{DeadLetter, ErrorPolicy, OnError};
use crate::io::dead_letter::{dead_letter, LetterFailed};
use crate::metrics::Metrics;
use crate::model::record::Record;
use crate::runtime::work::Work;

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
        match dead_letter(&mut work.outbox, dlq, record, letter.headers(record)).await {
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
