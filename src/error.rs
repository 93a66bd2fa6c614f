//! The one error type of the `faust` crate.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigErrors;

/// Why a node could not start or stop cleanly. Each variant says what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration has problems (all of them are listed).
    #[error("{source}")]
    Config {
        /// Every problem found.
        #[from]
        source: ConfigErrors,
    },
    /// The runtime failed (store, Kafka client, actors).
    #[error("{source}")]
    Runtime {
        /// The runtime's error.
        #[from]
        source: faust_actors::Error,
    },
    /// No broker answered at start-up.
    #[error("cannot reach Kafka at {bootstrap}: {reason}")]
    BrokerUnreachable {
        /// The bootstrap list tried.
        bootstrap: String,
        /// What happened.
        reason: String,
    },
    /// A topic the app needs is not on the broker.
    #[error("topic `{topic}` does not exist on the broker at {bootstrap}; create it with {partitions} partition(s)")]
    MissingTopic {
        /// The topic.
        topic: String,
        /// The bootstrap list.
        bootstrap: String,
        /// The configured partition count.
        partitions: i32,
    },
    /// A topic's partition count differs from the configuration.
    #[error("topic `{topic}` has {actual} partition(s) on the broker but {expected} {why}")]
    PartitionMismatch {
        /// The topic.
        topic: String,
        /// Partitions on the broker.
        actual: usize,
        /// Partitions configured.
        expected: i32,
        /// Where the expected count comes from ("in [topics.x]", "like its source topic").
        why: String,
    },
    /// A topic could not be created.
    #[error("cannot create topic `{topic}`: {reason}")]
    TopicCreation {
        /// The topic.
        topic: String,
        /// The broker's (or client's) reason.
        reason: String,
    },
    /// The embedded broker could not start.
    #[error("cannot start the embedded broker: {reason}")]
    Embedded {
        /// librdkafka's message.
        reason: String,
    },
    /// The web server could not listen.
    #[error("cannot serve HTTP on {bind}: {source}")]
    WebBind {
        /// The address from `web.bind`.
        bind: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A thread or file could not be created.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path or name involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The transactional producer was fenced again and again: the node stopped.
    #[error(
        "the exactly-once producer `{transactional_id}` was fenced again and again: another \
             live process most likely runs with this node's id (a copy of its store); stop it, \
             or give this node a store of its own, then restart"
    )]
    ProducerFencedOut {
        /// `<app.id>-<node id>`.
        transactional_id: String,
    },
    /// The store could not write (disk full, I/O error): the node stopped.
    #[error(
        "the store at {path} cannot write (disk full or I/O error; the log says which): \
             free space or fix the disk, then restart the node: it resumes from its last commit"
    )]
    StoreFailed {
        /// The store's directory.
        path: std::path::PathBuf,
    },
    /// A bounded step (start-up, a shutdown step) did not finish in time.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// The step.
        what: &'static str,
        /// The bound.
        after: Duration,
    },
    /// A timer's cron expression does not parse.
    #[error("timer `{timer}`: `{expr}` is not a cron expression (sec min hour day month weekday [year]): {reason}")]
    BadSchedule {
        /// The timer's name.
        timer: String,
        /// The expression given.
        expr: String,
        /// The parser's message.
        reason: String,
    },
    /// The node's thread ended without a result (it panicked).
    #[error("the node thread died: {reason}")]
    NodeDied {
        /// The panic message.
        reason: String,
    },
}
