//! What a started node gives back: [`NodeInfo`] once it is ready, [`NodeReport`] when it stops,
//! and [`NodeHandle`], a node running on a thread of its own (for tests and embedding programs).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use faust_actors::Metrics;

use crate::error::Error;

/// What a started node tells whoever started it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Where `/metrics` and `/healthz` are served, if the web server is enabled.
    pub web_addr: Option<SocketAddr>,
    /// The node's metrics (the same registry `/metrics` shows).
    pub metrics: Metrics,
    /// The Kafka cluster id the node is connected to.
    pub cluster_id: String,
    /// The bootstrap list in use (the embedded broker's address when embedded).
    pub bootstrap: String,
}

/// What a node did, reported when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeReport {
    /// Events finished by agents.
    pub events: u64,
    /// Offset commits that reached Kafka.
    pub commits: u64,
}

/// A node running on its own thread. Dropping the handle stops the node too.
#[derive(Debug)]
pub struct NodeHandle {
    pub(crate) stop: Option<futures::channel::oneshot::Sender<()>>,
    pub(crate) thread: Option<JoinHandle<Result<NodeReport, Error>>>,
    pub(crate) ready: mpsc::Receiver<NodeInfo>,
}

impl NodeHandle {
    /// Waits until the node is consuming, at most `timeout`.
    ///
    /// # Errors
    /// The node failed to start (its error), or did not start in time.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<NodeInfo, Error> {
        match self.ready.recv_timeout(timeout) {
            Ok(info) => Ok(info),
            // The node ended before it was ready: its own error says why.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.join()?;
                Err(Error::NodeDied {
                    reason: "the node stopped before it was ready".into(),
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout {
                what: "node start-up",
                after: timeout,
            }),
        }
    }

    /// Stops the node (as SIGTERM would) and waits for its report.
    ///
    /// # Errors
    /// A shutdown step failed or timed out, or the node thread died.
    pub fn stop(mut self) -> Result<NodeReport, Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    fn join(&mut self) -> Result<NodeReport, Error> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(panic)) => Err(Error::NodeDied {
                reason: panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default(),
            }),
            None => Err(Error::NodeDied {
                reason: "already joined".into(),
            }),
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
