//! The app as the runtime runs it: its tasks (below), the agents of each, the tables a task's
//! partitions hold and their changelogs, the global tables, the codecs.
//!
//! **Tasks.** Topics that feed the same tables form a co-partitioned group: the topics of an
//! agent with tables, and the topics of every agent that uses a table, are one group (Kafka
//! Streams' sub-topologies). Partition `p` of every topic of a group is one task, processed
//! by one partition actor that owns shard `p` of each of the group's tables; the group is
//! named after its lead, its first topic by name. Only leads are subscribed: the consumer
//! assigns the other topics' partition `p` together with the lead's (see `consumer`), so
//! co-location holds through every rebalance. A topic without tables is a group of its own. The node
//! compiles it once, from the app and its config with every error reported at once (see
//! `faust::topology`), and the coordinator, the consumer and the partitions share it read-only:
//! nothing in the runtime works these out again.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::erased::AgentRef;
use crate::model::codec::TopicCodecs;
use crate::model::names::changelog_topic;
use crate::state::spec::TableSpec;

/// A co-partitioned group of source topics (see the module doc), by its lead.
#[derive(Debug, Clone, Default)]
pub struct SourceTopic {
    /// The group's topics, lead first, then by name.
    pub topics: Vec<Arc<str>>,
    /// The lead's partition count (as configured and checked against the broker; every topic
    /// of the group has it, checked at start-up).
    pub partitions: i32,
    /// The agents consuming any of the group's topics, in registration order.
    pub agents: Vec<AgentRef>,
    /// The tables of those agents, each once however many declare it: a task holds one shard
    /// of each, which every agent of the task sees.
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
    /// Every co-partitioned group of source topics, by its lead.
    pub sources: BTreeMap<String, SourceTopic>,
    /// The lead of each source topic's group.
    pub leads: BTreeMap<String, Arc<str>>,
    /// Each table with a coalesced change stream, and its sink topics (see `TableSet::stage`).
    pub table_sinks: BTreeMap<Arc<str>, Vec<String>>,
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
        let groups = groups(&agents);
        let mut leads: BTreeMap<String, Arc<str>> = BTreeMap::new();
        let mut sources: BTreeMap<String, SourceTopic> = BTreeMap::new();
        for group in groups {
            let lead: Arc<str> = Arc::from(group[0].as_str());
            for t in &group {
                leads.insert(t.clone(), lead.clone());
            }
            sources.insert(
                lead.to_string(),
                SourceTopic {
                    topics: group.iter().map(|t| Arc::from(t.as_str())).collect(),
                    partitions: partitions(&lead),
                    ..SourceTopic::default()
                },
            );
        }
        let mut global_tables = Vec::new();
        for agent in &agents {
            let tables = agent.tables();
            let Some(lead) = agent.topics().first().map(|t| leads[t].clone()) else {
                continue;
            };
            let source = sources.get_mut(&*lead).expect("every topic has a group");
            source.agents.push(agent.clone());
            // A table several agents of the task declare is one table.
            for t in &tables {
                if source.tables.contains(t) {
                    continue;
                }
                let changelog = changelog_topic(app_id, &t.name);
                source.changelogs.push((t.name.clone(), changelog));
                source.tables.push(t.clone());
            }
            let n = partitions(&lead);
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
            leads,
            table_sinks: BTreeMap::new(),
            global_tables,
            codecs: Arc::new(codecs),
        }
    }

    /// The leads of the groups (the topics the consumer subscribes to), in name order.
    pub fn source_topics(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    /// Every source topic, in name order.
    pub fn all_topics(&self) -> Vec<String> {
        self.leads.keys().cloned().collect()
    }

    /// The lead of `topic`'s group, if the app consumes it.
    pub fn lead_of(&self, topic: &str) -> Option<&Arc<str>> {
        self.leads.get(topic)
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

    /// The topics of the group `lead` leads, lead first (only `lead` when the app has no such
    /// group).
    pub fn topics_of(&self, lead: &Arc<str>) -> Vec<Arc<str>> {
        match self.sources.get(&**lead) {
            Some(source) if !source.topics.is_empty() => source.topics.clone(),
            _ => vec![lead.clone()],
        }
    }

    /// The group led by `topic`, if the app consumes it.
    pub fn source(&self, topic: &str) -> Option<&SourceTopic> {
        self.sources.get(topic)
    }
}

/// The co-partitioned groups of the agents' topics (see the module doc), each sorted by name
/// (its lead first), in order of their leads.
pub fn groups(agents: &[AgentRef]) -> Vec<Vec<String>> {
    let mut groups: Vec<std::collections::BTreeSet<String>> = Vec::new();
    let mut join = |topics: Vec<String>| {
        let mut merged: std::collections::BTreeSet<String> = topics.into_iter().collect();
        groups.retain(|g| {
            let overlaps = !g.is_disjoint(&merged);
            if overlaps {
                merged.extend(g.iter().cloned());
            }
            !overlaps
        });
        groups.push(merged);
    };
    let mut users: BTreeMap<Arc<str>, Vec<String>> = BTreeMap::new();
    for agent in agents {
        let topics = agent.topics();
        let tables = agent.tables();
        if tables.is_empty() {
            // Without tables, each topic may go anywhere.
            topics.into_iter().for_each(|t| join(vec![t]));
            continue;
        }
        for t in &tables {
            users
                .entry(t.name.clone())
                .or_default()
                .extend(topics.clone());
        }
        join(topics);
    }
    users.into_values().for_each(&mut join);
    let mut out: Vec<Vec<String>> = groups
        .into_iter()
        .map(|g| g.into_iter().collect())
        .collect();
    out.sort();
    out
}
