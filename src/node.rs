//! Running an [`App`] as a node: its subsystems started in order and stopped in reverse.
//!
//! Start-up, each step bounded and each error naming what failed:
//! 1. compile the app's [`Topology`] from its agents and config (every problem at once);
//! 2. start the embedded broker, when `broker.bootstrap = "embedded"`;
//! 3. [`Broker`]: reach the broker with the node's producer, learn the cluster id, find or
//!    create every topic the topology needs, checking partition counts;
//! 4. open the store, stamped with the cluster id;
//! 5. [`Web`]: bind `/metrics`, `/healthz` and `/readyz`;
//! 6. [`Runtime`]: the transactional producer (exactly once), the worker arbiters, the
//!    coordinator and the consumer thread;
//! 7. [`Services`]: the broker watch, timers and the generator.
//!
//! Then the node runs until `shutdown` resolves, a fatal failure is reported in the node's
//! [`Status`] (the store cannot write, the producer was fenced for good), or a topic's
//! partition count changes. Shutdown is the reverse, each step bounded: services; partitions
//! committed and stopped, the consumer closed (leaving the group), the producer flushed; the
//! web server; the store flushed; the workers.

mod broker;
mod runtime;
mod services;

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use faust_actors::metrics::status::{Fatal, Status};
use faust_actors::{Metrics, OnClusterMismatch, Store};

use crate::clients::transactional_id;
use faust_actors::model::secrets::masked;

use crate::app::App;
use crate::config::Config;
use crate::embedded::EmbeddedBroker;
use crate::error::Error;
use crate::handle::{NodeHandle, NodeInfo, NodeReport};
use crate::timer::Timer;
use crate::topology::Topology;
use crate::{topics, web};
use broker::Broker;
use runtime::Runtime;
use services::Services;

/// How often the node checks that its topics keep their partition counts.
const COUNTS_EVERY: Duration = Duration::from_secs(5);

/// What a node runs: the compiled app, its timers, and the broker to use.
struct Node {
    topology: Topology,
    timers: Vec<Timer>,
    /// The bootstrap list (the embedded broker's address when embedded).
    bootstrap: String,
    embedded: bool,
}

impl App {
    /// Runs the node on this thread until `shutdown` resolves, then stops it cleanly.
    ///
    /// # Errors
    /// Start-up failed (config, broker, store, web bind), or a shutdown step timed out.
    pub fn run(
        self,
        config: Config,
        shutdown: impl Future<Output = ()> + 'static,
    ) -> Result<NodeReport, Error> {
        self.run_with(config, shutdown, |_| {})
    }

    /// As [`App::run`], calling `on_ready` once the node is consuming.
    ///
    /// # Errors
    /// As [`App::run`].
    pub fn run_with(
        self,
        config: Config,
        shutdown: impl Future<Output = ()> + 'static,
        on_ready: impl FnOnce(NodeInfo) + 'static,
    ) -> Result<NodeReport, Error> {
        let topology = Topology::compile(&self.agents, &config)?;
        let embedded = match topology.config.broker.is_embedded() {
            true => Some(EmbeddedBroker::start(
                topology
                    .topics
                    .iter()
                    .map(|n| (n.name.as_str(), n.partitions)),
            )?),
            false => None,
        };
        let bootstrap = embedded.as_ref().map_or_else(
            || topology.config.broker.bootstrap.clone(),
            EmbeddedBroker::bootstrap,
        );
        let node = Node {
            topology,
            timers: self.timers,
            bootstrap,
            embedded: embedded.is_some(),
        };
        let system = actix::System::new();
        let result = system.block_on(node_main(node, shutdown, on_ready));
        // Actors still hold Kafka clients: stop them before the embedded broker goes away.
        drop(system);
        drop(embedded);
        result
    }

    /// Runs the node on a thread of its own; the handle stops it. For tests and for programs
    /// that embed a node.
    ///
    /// # Errors
    /// [`Error::Io`] when the thread cannot be created.
    pub fn spawn(self, config: Config) -> Result<NodeHandle, Error> {
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        let (ready_tx, ready) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("faust-node".into())
            .spawn(move || {
                self.run_with(
                    config,
                    async move {
                        let _ = stopped.await;
                    },
                    move |info| {
                        let _ = ready_tx.send(info);
                    },
                )
            })
            .map_err(|source| Error::Io {
                action: "cannot start the node thread",
                path: "faust-node".into(),
                source,
            })?;
        Ok(NodeHandle {
            stop: Some(stop),
            thread: Some(thread),
            ready,
        })
    }
}

/// The node itself, on the actix system: its subsystems started in order, run, stopped in
/// reverse (see the module doc).
async fn node_main(
    node: Node,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(NodeInfo),
) -> Result<NodeReport, Error> {
    let metrics = Metrics::new()?;
    let config = &node.topology.config;
    let broker = Broker::connect(&node).await?;
    let store_path = config.store_path();
    let on_mismatch = match node.embedded {
        true => OnClusterMismatch::Archive,
        false => OnClusterMismatch::Fail,
    };
    let store = Store::open(
        &store_path,
        &broker.cluster_id,
        on_mismatch,
        config.store.cache_mb << 20,
    )?;
    let tables = crate::queries::Slot::default();
    let web = match config.web.enabled {
        true => Some(web::start(
            &config.web.bind,
            metrics.clone(),
            &store_path,
            tables.clone(),
        )?),
        false => None,
    };
    let web_addr = web.as_ref().and_then(|w| w.addrs.first().copied());
    let runtime = Runtime::start(&node, &broker, &store, &metrics, web_addr).await?;
    let _ = tables.set(crate::queries::Queries {
        runtime: node.topology.runtime.clone(),
        store: store.clone(),
        partitioner: config.broker.partitioner(),
        metrics: metrics.clone(),
        directory: runtime.directory(),
    });
    let services = Services::start(&node, &broker, &store, &metrics)?;
    let web_handle = web.map(|w| {
        actix::spawn(w.server);
        w.handle
    });
    node.log_started(&broker, &store_path, web_addr, runtime.workers());
    on_ready(NodeInfo {
        web_addr,
        metrics: metrics.clone(),
        cluster_id: broker.cluster_id.clone(),
        bootstrap: node.bootstrap.clone(),
    });

    let fatal = wait_for_stop(shutdown, metrics.status(), &node, &broker, &store).await;
    match &fatal {
        None => tracing::info!("stopping: committing partitions and leaving the group"),
        Some(e) => tracing::error!(error = %e, "stopping on a fatal error"),
    }
    let bound = config.processing.shutdown_timeout;
    services.stop().await;
    let (mut failures, workers) = runtime.stop(bound).await;
    failures.extend(broker.flush().await);
    if let Some(h) = web_handle {
        h.stop(true).await;
    }
    if let Some(e) = fatal {
        // A store that failed keeps its error: flushing it again would only say so.
        if !matches!(e, Error::StoreFailed { .. }) {
            let _ = store.flush();
        }
        tracing::error!(error = %e, "node stopped");
        return Err(e);
    }
    store.flush()?;
    runtime::stop_workers(workers).await;
    let report = NodeReport {
        events: metrics.all_events(),
        commits: metrics.commits_total.get(),
    };
    if let Some(what) = failures.first() {
        tracing::error!(?failures, "node stopped, but not cleanly");
        return Err(Error::Timeout { what, after: bound });
    }
    tracing::info!(
        events = report.events,
        commits = report.commits,
        "node stopped cleanly"
    );
    Ok(report)
}

/// Resolves when the node must stop: `None` on `shutdown`, or the fatal error.
async fn wait_for_stop(
    shutdown: impl Future<Output = ()>,
    status: &Status,
    node: &Node,
    broker: &Broker,
    store: &Store,
) -> Option<Error> {
    let needed = node.topology.topics.clone();
    let counts_changed = topics::watch_counts(broker.producer.clone(), needed, COUNTS_EVERY);
    let config = &node.topology.config;
    tokio::select! {
        () = shutdown => None,
        fatal = status.failed() => Some(match fatal {
            Fatal::StoreFailed => Error::StoreFailed { path: config.store_path() },
            Fatal::ProducerGivenUp => Error::ProducerFencedOut {
                transactional_id: transactional_id(config, &store.node_id().unwrap_or_default()),
            },
        }),
        e = counts_changed => Some(e),
    }
}

impl Node {
    /// Logs what the node runs with (secrets masked).
    fn log_started(
        &self,
        broker: &Broker,
        store: &std::path::Path,
        web: Option<std::net::SocketAddr>,
        workers: usize,
    ) {
        let config = &self.topology.config;
        let extra: Vec<String> = config
            .broker
            .librdkafka
            .iter()
            .map(|(k, v)| format!("{k}={}", masked(k, v)))
            .collect();
        let agents: Vec<&str> = self.topology.agents().iter().map(|a| a.name()).collect();
        let partitions: Vec<String> = config
            .topics
            .iter()
            .map(|(n, t)| format!("{n}:{}", t.partitions))
            .collect();
        tracing::info!(
            app = %config.app.id, broker = %self.bootstrap, cluster = %broker.cluster_id,
            embedded = self.embedded, topics = ?self.topology.runtime.all_topics(),
            agents = ?agents, partitions = ?partitions, store = %store.display(), web = ?web,
            workers, librdkafka = ?extra, "node started"
        );
    }
}
