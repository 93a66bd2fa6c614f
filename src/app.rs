//! [`App`]: an app's agents and timers, registered in code. What they consume, the tables they
//! keep and the topics they need are worked out once, with the config, by [`crate::topology`].

use faust_actors::{Agent, AgentRef};

use crate::config::{Config, ConfigErrors, Issue};
use crate::timer::Timer;
use crate::topology::Topology;

/// A faust-rs application: its agents. Like Faust's `faust.App`, run it as a node with
/// [`App::main`] (the `worker`/`validate` CLI), [`App::run`], or [`App::spawn`].
#[derive(Debug, Default)]
pub struct App {
    pub(crate) agents: Vec<AgentRef>,
    pub(crate) timers: Vec<Timer>,
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
            .extend(faust_actors::api::repartition::group_by(agent, key));
        self
    }

    /// Registers an agent that handles events in batches (see [`faust_actors::BatchAgent`]).
    pub fn batch_agent<A: faust_actors::BatchAgent>(mut self, agent: A) -> Self {
        self.agents.push(AgentRef::batched(agent));
        self
    }

    /// Registers an agent with up to N events of a partition waiting on I/O at once (Faust's
    /// `concurrency=N`; see [`faust_actors::ConcurrentAgent`]).
    pub fn concurrent_agent<A: faust_actors::ConcurrentAgent>(mut self, agent: A) -> Self {
        self.agents.push(AgentRef::concurrent(agent));
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

    /// Checks `config` against the agents: their topics are configured, names are unique, a
    /// table belongs to one agent consuming one topic.
    ///
    /// # Errors
    /// Every problem found, together with [`Config::check`]'s.
    pub fn check(&self, config: &Config) -> Result<(), ConfigErrors> {
        Topology::compile(&self.agents, config).map(drop)
    }

    /// The problems between `config` and the agents (beyond [`Config::check`]'s).
    pub fn issues(&self, config: &Config) -> Vec<Issue> {
        Topology::issues(&self.agents, config)
    }
}
