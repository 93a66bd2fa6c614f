//! One place that decides what a failure on the processing path is.
//!
//! - [`Fault::Transient`]: the same call may succeed later (broker unreachable, leader moved,
//!   a timeout, a full queue, a coordinator loading). Retried with back-off; visible in logs,
//!   metrics and `/healthz`.
//! - [`Fault::Record`]: the broker refuses this record and will refuse it again (too large, a
//!   timestamp out of the topic's bounds, a topic that does not exist, not authorized, an
//!   invalid record). Tied to the source record that produced it and handed to the agent's
//!   error policy with the reason; retrying cannot help.
//! - [`Fault::Fatal`]: the client cannot go on (fenced by a newer producer, a fatal librdkafka
//!   error): the owner of the client decides (exactly once rebuilds its producer).

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What a failure means for the record and the node (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Retry with back-off.
    Transient,
    /// This record cannot be written, ever: the agent's policy decides.
    Record,
    /// The client is done for.
    Fatal,
}

/// Classifies a librdkafka error code.
pub fn classify_code(code: RDKafkaErrorCode) -> Fault {
    use RDKafkaErrorCode as C;
    match code {
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::MessageBatchTooLarge
        | C::InvalidTimestamp
        | C::UnknownTopic
        | C::UnknownTopicOrPartition
        | C::UnknownPartition
        | C::TopicAuthorizationFailed
        | C::InvalidRecord
        | C::InvalidMessage
        | C::PolicyViolation
        | C::InvalidTopic => Fault::Record,
        C::Fatal
        | C::ProducerFenced
        | C::InvalidProducerEpoch
        | C::TransactionalIdAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::UnsupportedForMessageFormat => Fault::Fatal,
        _ => Fault::Transient,
    }
}

/// Classifies a client error (a delivery report, a refused enqueue, a failed call).
pub fn classify(error: &KafkaError) -> Fault {
    match error.rdkafka_error_code() {
        Some(code) => classify_code(code),
        None => Fault::Transient,
    }
}

/// A short, stable name for a refused record's error, for the `reason` of a dead letter.
pub(crate) fn reason_of(error: &KafkaError) -> &'static str {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge) => {
            "output_too_large"
        }
        Some(C::InvalidTimestamp) => "output_timestamp",
        Some(C::UnknownTopic | C::UnknownTopicOrPartition | C::UnknownPartition) => {
            "output_unknown_topic"
        }
        Some(C::TopicAuthorizationFailed) => "output_not_authorized",
        _ => "output_refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_faults_transient_faults_and_fatal_ones() {
        use RDKafkaErrorCode as C;
        for code in [
            C::MessageSizeTooLarge,
            C::InvalidTimestamp,
            C::UnknownTopic,
            C::UnknownTopicOrPartition,
            C::TopicAuthorizationFailed,
            C::InvalidRecord,
        ] {
            assert_eq!(classify_code(code), Fault::Record, "{code:?}");
        }
        for code in [
            C::MessageTimedOut,
            C::QueueFull,
            C::NotLeaderForPartition,
            C::AllBrokersDown,
            C::RequestTimedOut,
            C::CoordinatorLoadInProgress,
            C::NotEnoughReplicas,
        ] {
            assert_eq!(classify_code(code), Fault::Transient, "{code:?}");
        }
        for code in [C::ProducerFenced, C::Fatal, C::InvalidProducerEpoch] {
            assert_eq!(classify_code(code), Fault::Fatal, "{code:?}");
        }
        let refused = KafkaError::MessageProduction(C::InvalidTimestamp);
        assert_eq!(classify(&refused), Fault::Record);
        assert_eq!(reason_of(&refused), "output_timestamp");
        assert_eq!(classify(&KafkaError::Canceled), Fault::Transient);
    }
}
