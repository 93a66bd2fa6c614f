//! The app as the runtime runs it: which agents consume each source topic, the tables that
//! source's partitions hold and their changelogs, the global tables, the codecs. The node
//! compiles it once, from the app and its config with every error reported at once (see
//! `faust::topology`), and the coordinator, the consumer and the partitions share it read-only:
//! nothing in the runtime works these out again.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::erased::AgentRef;
use crate::model::codec::TopicCodecs;
use crate::model::names::changelog_topic;
use crate::state::spec::TableSpec;

/// A source topic: its partition count, the agents that consume it, their tables.
#[derive(Debug, Clone, Default)]
pub struct SourceTopic {
    /// The topic's partition count (as configured and checked against the broker).
    pub partitions: i32,
    /// The agents consuming the topic, in registration order.
    pub agents: Vec<AgentRef>,
    /// The tables of those agents, each once however many declare it: a partition of the topic
    /// holds one shard of each, which every agent of the topic sees.
    pub tables: Vec<TableSpec>,
    /// Each table with its changelog topic (same order as `tables`).
    pub changelogs: Vec<(Arc<str>, String)>,
}

/// The compiled app; see the module doc.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// The app id: prefix of internal topics and group ids.
    pub app_id: Arc<str>,
    /// Every agent, configured (topics, sinks, policy), in registration order.
    pub agents: Vec<AgentRef>,
    /// Every source topic, by name.
    pub sources: BTreeMap<String, SourceTopic>,
    /// Global tables and the partition counts of their changelogs: each node keeps a full
    /// copy of each.
    pub global_tables: Vec<(Arc<str>, i32)>,
    /// Codecs per topic.
    pub codecs: Arc<TopicCodecs>,
}

impl Topology {
    /// The topology of `agents` (already configured) in app `app_id`; `partitions` gives each
    /// topic's partition count (1 when it has none).
    pub fn new(
        app_id: &str,
        agents: Vec<AgentRef>,
        partitions: impl Fn(&str) -> i32,
        codecs: TopicCodecs,
    ) -> Self {
        let mut sources: BTreeMap<String, SourceTopic> = BTreeMap::new();
        let mut global_tables = Vec::new();
        for agent in &agents {
            let tables = agent.tables();
            for topic in agent.topics() {
                let source = sources.entry(topic.clone()).or_default();
                source.partitions = partitions(&topic);
                source.agents.push(agent.clone());
                // A table several agents of the topic declare is one table.
                for t in &tables {
                    if source.tables.contains(t) {
                        continue;
                    }
                    let changelog = changelog_topic(app_id, &t.name);
                    source.changelogs.push((t.name.clone(), changelog));
                    source.tables.push(t.clone());
                }
            }
            let first = agent.topics().into_iter().next();
            let n = first.as_deref().map_or(1, &partitions);
            for t in tables.iter().filter(|t| t.global) {
                if !global_tables.iter().any(|(name, _)| *name == t.name) {
                    global_tables.push((t.name.clone(), n));
                }
            }
        }
        Topology {
            app_id: app_id.into(),
            agents,
            sources,
            global_tables,
            codecs: Arc::new(codecs),
        }
    }

    /// The source topics, in name order.
    pub fn source_topics(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    /// The global tables as their agents declare them (each once).
    pub fn global_specs(&self) -> Vec<TableSpec> {
        let mut out: Vec<TableSpec> = Vec::new();
        for t in self.sources.values().flat_map(|s| &s.tables) {
            if t.global && !out.iter().any(|o| o.name == t.name) {
                out.push(t.clone());
            }
        }
        out
    }

    /// The source `topic`, if the app consumes it.
    pub fn source(&self, topic: &str) -> Option<&SourceTopic> {
        self.sources.get(topic)
    }
}
