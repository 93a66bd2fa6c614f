//! The embedded broker: librdkafka's in-process mock cluster, so that a node runs with no Kafka
//! installed. It is a broker for demos and tests, not for data: everything lives in this
//! process's memory, and each partition keeps only about the last 5 MiB.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::error::Error;

/// A running mock cluster with the configured topics. Not `Send`: it lives on the thread that
/// runs the node, and stops when dropped.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster and creates `topics` (name, partitions) on it.
    ///
    /// # Errors
    /// [`Error::Embedded`] when librdkafka cannot create the cluster or a topic.
    pub fn start<'a>(topics: impl IntoIterator<Item = (&'a str, i32)>) -> Result<Self, Error> {
        // The mock cluster's thread stops serving when a signal interrupts its poll(), and it
        // inherits the creating thread's signal mask: block SIGTERM/SIGINT while creating it,
        // so the node's own handler (on another thread) gets them and the broker lives on.
        let mut signals = SigSet::empty();
        signals.add(Signal::SIGTERM);
        signals.add(Signal::SIGINT);
        let previous = signals.thread_swap_mask(SigmaskHow::SIG_BLOCK).ok();
        let cluster = MockCluster::new(1);
        if let Some(previous) = previous {
            let _ = previous.thread_set_mask();
        }
        let cluster = cluster.map_err(|e| Error::Embedded {
            reason: e.to_string(),
        })?;
        let broker = EmbeddedBroker { cluster };
        for (name, partitions) in topics {
            broker.create_topic(name, partitions)?;
        }
        tracing::warn!(
            bootstrap = %broker.bootstrap(),
            "using the embedded broker: its data lives in this process's memory only and is \
             lost when the node stops; set broker.bootstrap to use a real Kafka cluster"
        );
        Ok(broker)
    }

    /// Creates `name` with `partitions` partitions.
    ///
    /// # Errors
    /// [`Error::Embedded`] when the mock cluster refuses.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), Error> {
        self.cluster
            .create_topic(name, partitions, 1)
            .map_err(|e| Error::Embedded {
                reason: format!("creating topic `{name}`: {e}"),
            })
    }

    /// The bootstrap list clients use to reach it.
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
