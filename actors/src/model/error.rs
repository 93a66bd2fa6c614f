//! The one error type of `faust-actors`.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in the runtime, with the context a user needs to act on it.
///
/// Variants carry named fields saying *what* failed and *where* (topic, partition, path, key).
/// [`Error::is_retriable`] tells a supervisor whether trying again can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value could not be encoded with its codec (for example a map key that is not a string
    /// under the `string` codec).
    #[error("cannot encode {what} with the {codec} codec: {reason}")]
    Encode {
        /// What was being encoded: "key", "value", "table key"...
        what: &'static str,
        /// The name of the codec in use.
        codec: &'static str,
        /// The codec's own message.
        reason: String,
    },
    /// Bytes could not be decoded into the expected type.
    #[error("cannot decode {what} with the {codec} codec: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The name of the codec in use.
        codec: &'static str,
        /// The codec's own message.
        reason: String,
    },
    /// A codec could not be registered.
    #[error("codec `{name}` {reason}")]
    Codec {
        /// The name asked for.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// Dead-letter or source headers that do not say what they should.
    #[error("bad `{header}` header: {reason}")]
    BadHeader {
        /// The header's name.
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A record arrived without the value the agent needs.
    #[error("record at {topic}[{partition}]@{offset} has no value (null payload)")]
    MissingValue {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Offset of the record.
        offset: i64,
    },
    /// An agent touched a table that no agent of its topic declared in `Agent::tables`.
    #[error("table `{table}` is not declared by any agent of topic `{topic}`: list it in Agent::tables()")]
    UndeclaredTable {
        /// The table's name.
        table: String,
        /// The source topic of the partition.
        topic: String,
    },
    /// An agent wrote a global table that agents of another topic declare and write.
    #[error("global table `{table}` is written by the agents that declare it; an agent of topic `{topic}` can only read it")]
    GlobalTableReadOnly {
        /// The table's name.
        table: String,
        /// The source topic of the agent that tried to write.
        topic: String,
    },
    /// A windowed table could not tell an event's time.
    #[error("windowed table `{table}` has no event time for the record at {topic}[{partition}]@{offset}: {why}")]
    NoEventTime {
        /// The table's name.
        table: String,
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// What was missing.
        why: String,
    },
    /// The same table was used with two different key/value types.
    #[error("table `{table}` is used with different key/value types in different places")]
    TableTypeMismatch {
        /// The table's name.
        table: String,
    },
    /// The local store (sled) failed.
    #[error("store at {path}: {source}")]
    Store {
        /// The store's directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// Another process holds the store (a second node with the same `store.path`?).
    #[error(
        "the store at {path} is in use by another process (two nodes with the same store.path?)"
    )]
    StoreLocked {
        /// The store's directory.
        path: PathBuf,
    },
    /// A file-system operation on the store directory failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot create store directory", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store was written against another Kafka cluster than the one we are connected to.
    #[error(
        "the store at {path} was written against Kafka cluster `{stored}`, but the broker is cluster \
         `{actual}`; its offsets and tables do not belong to this cluster. Move or delete the \
         directory (or point store.path elsewhere) to start afresh"
    )]
    ClusterMismatch {
        /// The store's directory.
        path: PathBuf,
        /// Cluster id recorded in the store.
        stored: String,
        /// Cluster id of the connected broker.
        actual: String,
    },
    /// A Kafka client call failed.
    #[error("Kafka: {context}: {source}")]
    Kafka {
        /// What we were doing.
        context: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker (or the producer) refuses a record for good: too large, a timestamp out of
    /// the topic's bounds, a topic that does not exist, not authorized. Retrying cannot help;
    /// the source record goes to its agent's error policy.
    #[error("`{topic}` refuses the record ({reason}): {source}")]
    OutputRefused {
        /// The topic the record was for.
        topic: String,
        /// A short name of the refusal (`output_too_large`, `output_timestamp`, ...).
        reason: &'static str,
        /// librdkafka's error.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// An output's timestamp is further ahead of the clock than `processing.max_timestamp_ahead`
    /// (the broker would refuse it).
    #[error("`{topic}` would refuse a record stamped {timestamp} ms, more than {limit:?} ahead of the clock")]
    TimestampAhead {
        /// The topic the record was for.
        topic: String,
        /// The record's timestamp (ms since the epoch).
        timestamp: i64,
        /// `processing.max_timestamp_ahead`.
        limit: Duration,
    },
    /// The node may have lost its partitions (it was frozen for longer than the group's
    /// session timeout, see `lease`): nothing is written until the group answers.
    #[error("not writing: this node may have lost its partitions (frozen past the group's session timeout); waiting for the group")]
    MembershipUncertain,
    /// An earlier attempt at this record produced an output the broker refused for good.
    #[error("the output of offset {offset} was refused for good: {error}")]
    OutputRejected {
        /// Offset of the source record.
        offset: i64,
        /// What the broker said, and about which topic.
        error: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {after:?} while {context}")]
    Timeout {
        /// What we were waiting for.
        context: String,
        /// How long we waited.
        after: Duration,
    },
    /// An actor we needed had already stopped.
    #[error("processing stopped: {message}")]
    Halted {
        /// Which agent, which record, and why (an error policy of `stop`, or a dead letter
        /// that could not be written).
        message: String,
    },
    #[error("actor stopped while {context}")]
    ActorGone {
        /// What we were doing.
        context: String,
    },
    /// The metrics registry rejected a metric (a name clash: a bug, not a user error).
    #[error("metrics registry: {source}")]
    Metrics {
        /// prometheus' error.
        #[source]
        source: prometheus::Error,
    },
}

impl Error {
    /// Whether the same operation may succeed if tried again (a broker hiccup, a timeout), as
    /// opposed to a fault in data or configuration that will fail the same way every time.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::Kafka { .. } | Error::Timeout { .. } | Error::Store { .. } | Error::Io { .. }
        )
    }

    /// The reason label of an output refused for good (the broker's or the timestamp rule's),
    /// or `None` for any other error.
    pub(crate) fn refused_output(&self) -> Option<&'static str> {
        match self {
            Error::OutputRefused { reason, .. } => Some(reason),
            Error::TimestampAhead { .. } => Some("output_timestamp"),
            _ => None,
        }
    }

    pub(crate) fn store(path: &std::path::Path, source: sled::Error) -> Self {
        Error::Store {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
