//! The node: an [`App`] (its agents) run with a [`Config`] on an actix system.
//!
//! Start-up, in order: check the config; start the embedded broker if asked; reach the broker
//! (bounded) and learn its cluster id and topics; open the store; bind the web server; start
//! the worker arbiters, the coordinator and the consumer thread; start the generator. Shutdown
//! is the reverse, each step bounded: stop the generator; commit and stop every partition;
//! close the consumer (leaving the group); flush the producer; stop the web server and workers.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix::prelude::*;
use faust_actors::policy::dead_letter_topic;
use faust_actors::repartition::{repartition_topic, Stage};
use faust_actors::{
    Agent, AgentRef, ConsumerThread, Coordinator, CoordinatorInit, ErrorPolicy, Metrics,
    OnClusterMismatch, PartitionSettings, StopAll, Store, TopicCodecs,
};
use prometheus::IntCounter;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::watch;

use crate::clients::reader_config;
use crate::clients::{client_config, connect, consumer_config, masked, open_transactions};
use crate::config::{AgentConfig, Config, ConfigErrors, Guarantee, Issue};
use crate::embedded::EmbeddedBroker;
use crate::error::Error;
use crate::timer::{self, Timer, TimerContext};
use crate::{generator, topics, web};

pub use crate::handle::NodeHandle;

/// A faust-rs application: its agents. Like Faust's `faust.App`, run it as a node with
/// [`App::main`] (the `worker`/`validate` CLI), [`App::run`], or [`App::spawn`].
#[derive(Debug, Default)]
pub struct App {
    agents: Vec<AgentRef>,
    timers: Vec<Timer>,
}

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

impl App {
    /// An app with no agents yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an agent.
    pub fn agent<A: Agent>(mut self, agent: A) -> Self {
        self.agents.push(AgentRef::new(agent));
        self
    }

    /// Registers `agent` to run over its events re-keyed by `key` (Faust's `group_by`): the
    /// events go through the internal topic `<app-id>-<agent>-repartition`, so the agent and
    /// its tables see every event of a key on one partition. The repartition topic gets the
    /// source topic's partition count and codecs unless it is listed under `[topics]`.
    pub fn group_by<A, F>(mut self, agent: A, key: F) -> Self
    where
        A: Agent,
        A::Key: serde::Serialize,
        F: Fn(&A::Value) -> A::Key + Send + Sync + 'static,
    {
        self.agents
            .extend(faust_actors::repartition::group_by(agent, key));
        self
    }

    /// Registers an agent that handles events in batches (see [`faust_actors::BatchAgent`]).
    pub fn batch_agent<A: faust_actors::BatchAgent>(mut self, agent: A) -> Self {
        self.agents.push(AgentRef::batched(agent));
        self
    }

    /// Registers a periodic task (see [`Timer`]).
    pub fn timer(mut self, timer: Timer) -> Self {
        self.timers.push(timer);
        self
    }

    /// The registered agents.
    pub fn agents(&self) -> &[AgentRef] {
        &self.agents
    }

    /// The agents with their `[agents.<name>]` settings applied (input topics, sinks, error
    /// policy).
    pub(crate) fn configured(&self, config: &Config) -> Vec<AgentRef> {
        let default = AgentConfig::default();
        let app = &config.app.id;
        self.agents
            .iter()
            .map(|a| {
                let c = config.agents.get(a.name()).unwrap_or(&default);
                let policy = ErrorPolicy {
                    on_error: c.on_error,
                    retries: c.retries,
                    dead_letter_topic: dead_letter_topic(app, a.name()),
                };
                let a = a.clone().with_sinks(c.sinks.clone()).with_policy(policy);
                let a = match &c.topics {
                    Some(t) => a.with_topics(t.clone()),
                    None => a,
                };
                match a.stage().clone() {
                    Stage::Plain => a,
                    Stage::Rekey { agent } => {
                        let topic = repartition_topic(app, &agent);
                        let a = a.with_sinks(vec![topic]);
                        match config.agents.get(&agent).and_then(|c| c.topics.clone()) {
                            Some(t) => a.with_topics(t),
                            None => a,
                        }
                    }
                    Stage::Regrouped => {
                        let topic = repartition_topic(app, a.name());
                        a.with_topics(vec![topic])
                    }
                }
            })
            .collect()
    }

    /// `config` with the repartition topic of each `group_by` agent under `[topics]`, when not
    /// listed there: the partition count, replication and codecs of the agent's first source.
    pub(crate) fn with_internal_topics(&self, config: &Config) -> Config {
        let mut config = config.clone();
        for a in self.configured(&config) {
            let Stage::Rekey { agent } = a.stage() else {
                continue;
            };
            let topic = repartition_topic(&config.app.id, agent);
            let source = a
                .topics()
                .first()
                .and_then(|t| config.topics.get(t))
                .cloned();
            if let (Some(source), false) = (source, config.topics.contains_key(&topic)) {
                config.topics.insert(topic, source);
            }
        }
        config
    }

    /// Checks `config` against the agents: their topics are configured, names are unique, a
    /// table belongs to one agent consuming one topic.
    ///
    /// # Errors
    /// Every problem found, together with [`Config::check`]'s.
    pub fn check(&self, config: &Config) -> Result<(), ConfigErrors> {
        let mut issues = config.check();
        issues.extend(self.issues(config));
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors {
                file: "the configuration".into(),
                issues,
            })
        }
    }

    /// The problems between `config` and the agents (beyond [`Config::check`]'s).
    pub fn issues(&self, config: &Config) -> Vec<Issue> {
        let config = &self.with_internal_topics(config);
        let mut issues = Vec::new();
        let mut bad = |key: String, message: String| {
            issues.push(Issue {
                key,
                origin: String::new(),
                message,
            })
        };
        if self.agents.is_empty() {
            bad(String::new(), "the app has no agents".into());
        }
        let mut names = BTreeSet::new();
        let mut tables = BTreeSet::new();
        for name in config.agents.keys() {
            if !self.agents.iter().any(|a| a.name() == name) {
                bad(
                    format!("agents.{name}"),
                    "no agent of that name is registered in this app".into(),
                );
            }
        }
        for agent in &self.configured(config) {
            if !names.insert(agent.name().to_owned()) {
                bad(
                    String::new(),
                    format!("two agents are named `{}`", agent.name()),
                );
            }
            let topics = agent.topics();
            for topic in &topics {
                if !config.topics.contains_key(topic) {
                    bad(format!("topics.{topic}"), format!("agent `{}` consumes topic `{topic}`, which is not listed under [topics]", agent.name()));
                }
            }
            for spec in agent.tables() {
                if !tables.insert(spec.name.to_string()) {
                    bad(
                        String::new(),
                        format!("table `{}` is declared twice", spec.name),
                    );
                }
                if topics.len() != 1 {
                    bad(String::new(), format!("agent `{}` has table `{}` but consumes {} topics: a table is sharded like exactly one source topic", agent.name(), spec.name, topics.len()));
                }
            }
        }
        issues
    }

    /// Parses the command line (`worker --config FILE`, `validate --config FILE`) and runs it.
    pub fn main(self) -> std::process::ExitCode {
        crate::cli::main(self, std::env::args_os())
    }

    /// As [`App::main`] with the given arguments (the first is the program name): for a node
    /// started from inside another program, such as a test harness.
    pub fn main_from<I, T>(self, args: I) -> std::process::ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        crate::cli::main(self, args)
    }

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
        let config = self.with_internal_topics(&config);
        self.check(&config)?;
        let agents = self.configured(&config);
        let needed = topics::needed(&config.app.id, &config, &agents);
        let embedded = match config.broker.is_embedded() {
            true => Some(EmbeddedBroker::start(
                needed.iter().map(|n| (n.name.as_str(), n.partitions)),
            )?),
            false => None,
        };
        let bootstrap = embedded.as_ref().map_or_else(
            || config.broker.bootstrap.clone(),
            EmbeddedBroker::bootstrap,
        );
        let system = actix::System::new();
        let result = system.block_on(node_main(
            agents,
            self.timers,
            needed,
            config,
            bootstrap,
            embedded.is_some(),
            shutdown,
            on_ready,
        ));
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

/// Resolves once `flag` (a 0/1 gauge the runtime raises on a fatal failure) is set.
async fn raised(flag: prometheus::IntGauge) {
    while flag.get() == 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How often the node checks that its topics keep their partition counts.
const COUNTS_EVERY: Duration = Duration::from_secs(5);

/// The node itself, on the actix system; `needed` is every topic it must find or create.
#[allow(clippy::too_many_arguments)]
async fn node_main(
    agents: Vec<AgentRef>,
    timers: Vec<Timer>,
    needed: Vec<topics::Needed>,
    config: Config,
    bootstrap: String,
    embedded: bool,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(NodeInfo),
) -> Result<NodeReport, Error> {
    let metrics = Metrics::new()?;
    let generated = IntCounter::new(
        "faust_generator_records_total",
        "Records sent by the generator",
    )
    .map_err(|source| faust_actors::Error::Metrics { source })?;
    metrics
        .registry()
        .register(Box::new(generated.clone()))
        .map_err(|source| faust_actors::Error::Metrics { source })?;
    let mut producer_config = client_config(&config, &bootstrap);
    if !config.broker.librdkafka.contains_key("enable.idempotence") {
        // In order and without gaps per partition, even across retries: a changelog then holds
        // a prefix of each commit's records, which windowed tables rely on (stream time last).
        producer_config.set("enable.idempotence", "true");
    }
    let producer: FutureProducer =
        producer_config
            .create()
            .map_err(|e| Error::BrokerUnreachable {
                bootstrap: bootstrap.clone(),
                reason: format!("cannot create a producer: {e}"),
            })?;
    let (cluster_id, broker_topics) = connect(&producer, &config, &bootstrap).await?;
    topics::check_counts(&needed, &broker_topics)?;
    let client = reader_config(&config, &bootstrap);
    let timeout = config.broker.connect_timeout;
    let created = topics::create_missing(&needed, &client, &broker_topics, timeout).await?;
    if !created.is_empty() {
        // Another node may have created one at the same moment with another count.
        let (_, now) = connect(&producer, &config, &bootstrap).await?;
        topics::check_counts(&needed, &now)?;
    }
    let store_path = config.store_path();
    let on_mismatch = match embedded {
        true => OnClusterMismatch::Archive,
        false => OnClusterMismatch::Fail,
    };
    let store = Store::open(
        &store_path,
        &cluster_id,
        on_mismatch,
        config.store.cache_mb << 20,
    )?;
    let transactions = match config.processing.guarantee {
        Guarantee::AtLeastOnce => None,
        Guarantee::ExactlyOnce => {
            let node_id = store.node_id()?;
            Some(open_transactions(&config, &bootstrap, &node_id).await?)
        }
    };
    let web = match config.web.enabled {
        true => Some(web::start(&config.web.bind, metrics.clone(), &store_path)?),
        false => None,
    };
    let web_addr = web.as_ref().and_then(|w| w.addrs.first().copied());
    let mut codecs = TopicCodecs::default();
    for (name, t) in &config.topics {
        codecs.insert(name, t.key_codec, t.value_codec);
    }
    let codecs = Arc::new(codecs);
    let workers: Vec<Arbiter> = (0..config.workers()).map(|_| Arbiter::new()).collect();
    let p = &config.processing;
    let coordinator = Coordinator::new(CoordinatorInit {
        app_id: config.app.id.clone(),
        client: client.clone(),
        agents: agents.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        producer: Some(match &transactions {
            Some(t) => t.producer().clone(),
            None => producer.clone(),
        }),
        codecs: codecs.clone(),
        settings: PartitionSettings {
            commit_interval: p.commit_interval,
            max_batch: p.max_batch,
            retry_backoff: p.retry_backoff,
            retry_backoff_max: p.retry_backoff_max,
            cache_keys: config.store.cache_keys,
            exactly_once: transactions.is_some(),
            max_timestamp_ahead: p.max_timestamp_ahead,
            stall_after: p.commit_interval * p.stall_intervals,
        },
        workers: workers.iter().map(Arbiter::handle).collect(),
        stop_timeout: p.shutdown_timeout,
        standbys: crate::standbys::standby_plan(
            &config,
            &agents,
            &client_config(&config, &bootstrap),
        )?,
        global_tables: agents
            .iter()
            .flat_map(|a| {
                let partitions = a
                    .topics()
                    .first()
                    .and_then(|t| config.topics.get(t))
                    .map_or(1, |t| t.partitions);
                a.tables()
                    .into_iter()
                    .filter(|t| t.global)
                    .map(move |t| (t.name, partitions))
            })
            .collect(),
        transactions,
        lease: faust_actors::lease::Lease::start(
            config.broker.session_timeout,
            Some(metrics.clone()),
        ),
    })
    .start();
    let topics: Vec<String> = agents
        .iter()
        .flat_map(AgentRef::topics)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut changelogs: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for agent in &agents {
        for topic in agent.topics() {
            for t in agent.tables() {
                let changelog = faust_actors::changelog::changelog_topic(&config.app.id, &t.name);
                changelogs
                    .entry(topic.clone())
                    .or_default()
                    .push((t.name.to_string(), changelog));
            }
        }
    }
    let consumer = ConsumerThread::start(
        &consumer_config(&config, &bootstrap),
        &topics,
        changelogs,
        store.clone(),
        metrics.clone(),
        p.shutdown_timeout,
        coordinator.clone(),
    )?;
    actix::spawn(crate::clients::watch_broker(
        producer.clone(),
        metrics.clone(),
    ));
    let leader_topic = topics.first().cloned().unwrap_or_default();
    let timer_context = TimerContext::new(Some(producer.clone()), codecs, metrics.clone());
    let timers: Vec<_> = timers
        .into_iter()
        .map(|t| {
            let (m, topic) = (metrics.clone(), leader_topic.clone());
            // The leader holds partition 0 of the first source topic (see `timer`).
            let is_leader = move || {
                let held = m.partition_active.with_label_values(&[topic.as_str(), "0"]);
                held.get() == 1
            };
            let clock: Arc<dyn faust_actors::Clock> = Arc::new(faust_actors::SystemClock);
            actix::spawn(timer::run(t, timer_context.clone(), clock, is_leader))
        })
        .collect();
    let web_handle = web.map(|w| {
        actix::spawn(w.server);
        w.handle
    });
    let (stop_generator, stop_rx) = watch::channel(false);
    let generator = config.generator.enabled.then(|| {
        actix::spawn(generator::run(
            config.generator.clone(),
            producer.clone(),
            generated,
            stop_rx,
        ))
    });
    let extra: Vec<String> = config
        .broker
        .librdkafka
        .iter()
        .map(|(k, v)| format!("{k}={}", masked(k, v)))
        .collect();
    tracing::info!(
        app = %config.app.id, broker = %bootstrap, cluster = %cluster_id, embedded,
        topics = ?topics, agents = ?agents.iter().map(AgentRef::name).collect::<Vec<_>>(),
        partitions = ?config.topics.iter().map(|(n, t)| format!("{n}:{}", t.partitions)).collect::<Vec<_>>(),
        store = %store_path.display(), web = ?web_addr, workers = workers.len(),
        librdkafka = ?extra, "node started"
    );
    on_ready(NodeInfo {
        web_addr,
        metrics: metrics.clone(),
        cluster_id,
        bootstrap: bootstrap.clone(),
    });

    let store_failed = raised(metrics.store_failed.clone());
    let counts_changed = topics::watch_counts(producer.clone(), needed, COUNTS_EVERY);
    let given_up = raised(metrics.producer_given_up.clone());
    let transactional_id = format!("{}-{}", config.app.id, store.node_id().unwrap_or_default());
    let fatal = tokio::select! {
        () = shutdown => None,
        () = store_failed => Some(Error::StoreFailed { path: store_path.clone() }),
        e = counts_changed => Some(e),
        () = given_up => Some(Error::ProducerFencedOut { transactional_id }),
    };
    match &fatal {
        None => tracing::info!("stopping: committing partitions and leaving the group"),
        Some(e) => tracing::error!(error = %e, "stopping on a fatal error"),
    }
    let bound = p.shutdown_timeout;
    let mut failures = Vec::new();
    let _ = stop_generator.send(true);
    for t in timers {
        t.abort();
    }
    if let Some(g) = generator {
        let _ = tokio::time::timeout(Duration::from_secs(5), g).await;
    }
    if tokio::time::timeout(bound, coordinator.send(StopAll))
        .await
        .is_err()
    {
        failures.push("committing partitions");
    }
    let closed = tokio::task::spawn_blocking(move || consumer.close(bound)).await;
    if !matches!(closed, Ok(Ok(()))) {
        failures.push("closing the consumer");
    }
    let flushed =
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    if !matches!(flushed, Ok(Ok(()))) {
        failures.push("flushing the producer");
    }
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
    for w in &workers {
        w.stop();
    }
    let _ =
        tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join()))).await;
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
