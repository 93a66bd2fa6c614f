//! The app compiled once: from an app's agents and its [`Config`], with every problem reported at
//! once, everything the node and its runtime need to know about the app's shape: the agents as
//! configured (topics, sinks, error policy, `group_by` stages), every topic to find or create
//! with its partition count and why, the tables of each source topic with their changelogs, the
//! global tables, the standby plan, the codecs and the leader's partition. Nothing downstream
//! works any of this out again: the node starts its subsystems from it and the runtime (the
//! coordinator, the consumer, the partitions) shares [`Runtime`], its compiled part.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use faust_actors::api::repartition::Stage;
use faust_actors::io::members::Part;
use faust_actors::names::{changelog_topic, dead_letter_topic, members_topic, repartition_topic};
use faust_actors::runtime::topology::Topology as Runtime;
use faust_actors::{AgentRef, ErrorPolicy, OnError, TableSpec, TopicCodecs};

use crate::config::{AgentConfig, Config, ConfigErrors, Issue};
use crate::topics::Needed;

/// The compiled app; see the module doc.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    /// The config, with each `group_by` agent's repartition topic under `[topics]`.
    pub(crate) config: Config,
    /// What the runtime runs: agents by source topic, tables, changelogs, global tables.
    pub(crate) runtime: Arc<Runtime>,
    /// Every topic the node must find (with its partition count) or create.
    pub(crate) topics: Vec<Needed>,
    /// Standby replicas per partition and the partitions they cover (`None`: no standbys).
    pub(crate) standbys: Option<(usize, Vec<Part>)>,
    /// The topic whose partition 0 makes its holder the leader (for timers).
    pub(crate) leader: Option<String>,
}

impl Topology {
    /// Compiles the app of `agents` with `config`.
    ///
    /// # Errors
    /// Every problem found: [`Config::check`]'s and [`Topology::issues`]'.
    pub(crate) fn compile(agents: &[AgentRef], config: &Config) -> Result<Self, ConfigErrors> {
        let config = Self::with_internal_topics(agents, config);
        let mut issues = config.check();
        issues.extend(Self::issues(agents, &config));
        if !issues.is_empty() {
            return Err(ConfigErrors {
                file: "the configuration".into(),
                issues,
            });
        }
        let agents = Self::configured(agents, &config);
        let topics = needed(&config.app.id, &config, &agents);
        let mut codecs = TopicCodecs::default();
        for (name, t) in &config.topics {
            codecs.insert(name, t.key_codec, t.value_codec);
        }
        let partitions = |topic: &str| config.topics.get(topic).map_or(1, |t| t.partitions);
        let mut runtime = Runtime::new(&config.app.id, agents, partitions, codecs);
        runtime.table_sinks = config
            .tables
            .iter()
            .filter(|(_, t)| !t.sinks.is_empty())
            .map(|(name, t)| (Arc::from(name.as_str()), t.sinks.clone()))
            .collect();
        let standbys = standby_plan(&config, &runtime);
        let leader = runtime.sources.keys().next().cloned();
        Ok(Topology {
            config,
            runtime: Arc::new(runtime),
            topics,
            standbys,
            leader,
        })
    }

    /// The agents of the app, as configured.
    pub(crate) fn agents(&self) -> &[AgentRef] {
        &self.runtime.agents
    }

    /// What `faust-node agents` prints: each agent as configured (topics, sinks, tables with
    /// their changelogs, error policy, `group_by` stage), the task groups of several topics,
    /// then the topics the node needs.
    pub(crate) fn describe(&self) -> String {
        let app = &self.config.app.id;
        let mut out = format!("app {app}\n");
        for a in self.agents() {
            let p = a.policy();
            out.push_str(&format!("agent {}\n", a.name()));
            out.push_str(&format!("  topics: {}\n", a.topics().join(", ")));
            if !a.sinks().is_empty() {
                out.push_str(&format!("  sinks: {}\n", a.sinks().join(", ")));
            }
            match a.stage() {
                Stage::Plain => {}
                Stage::Rekey { agent } => {
                    out.push_str(&format!("  group_by: re-keys for `{agent}`\n"))
                }
                Stage::Regrouped => out.push_str("  group_by: reads its repartition topic\n"),
            }
            for t in a.tables() {
                let kind = match (t.global, &t.window) {
                    (true, _) => "global table".to_owned(),
                    (false, Some(w)) => format!("windowed table {w:?}"),
                    (false, None) => "table".to_owned(),
                };
                out.push_str(&format!(
                    "  {kind} {}: key {}, value {}, changelog {}\n",
                    t.name,
                    t.key_codec.name(),
                    t.value_codec.name(),
                    changelog_topic(app, &t.name)
                ));
            }
            let on_error = match p.on_error {
                OnError::Skip => "skip".to_owned(),
                OnError::DeadLetter => format!("dead-letter to {}", p.dead_letter_topic),
                OnError::Stop => "stop the partition".to_owned(),
            };
            out.push_str(&format!(
                "  on error: {} retries, then {on_error}\n",
                p.retries
            ));
        }
        let groups = self.runtime.sources.values().filter(|g| g.topics.len() > 1);
        for g in groups {
            let topics: Vec<&str> = g.topics.iter().map(|t| &**t).collect();
            out.push_str(&format!(
                "task group {}: partition p of each is one task ({} tasks; subscribed: {})\n",
                topics.join(" + "),
                g.partitions,
                topics[0]
            ));
        }
        out.push_str("topics\n");
        for t in &self.topics {
            let compact = if t.compact { ", compacted" } else { "" };
            out.push_str(&format!(
                "  {} ({} partitions{compact}) {}\n",
                t.name, t.partitions, t.why
            ));
        }
        out
    }

    /// The agents with their `[agents.<name>]` settings applied (input topics, sinks, error
    /// policy, concurrency).
    fn configured(agents: &[AgentRef], config: &Config) -> Vec<AgentRef> {
        let default = AgentConfig::default();
        let app_id = &config.app.id;
        agents
            .iter()
            .map(|a| {
                let c = config.agents.get(a.name()).unwrap_or(&default);
                let policy = ErrorPolicy {
                    on_error: c.on_error,
                    retries: c.retries,
                    dead_letter_topic: dead_letter_topic(app_id, a.name()),
                };
                let a = a.clone().with_sinks(c.sinks.clone()).with_policy(policy);
                let a = match c.concurrency {
                    Some(n) if a.concurrency().is_some() => a.with_concurrency(n),
                    _ => a,
                };
                let a = match &c.topics {
                    Some(t) => a.with_topics(t.clone()),
                    None => a,
                };
                match a.stage().clone() {
                    Stage::Plain => a,
                    Stage::Rekey { agent } => {
                        let topic = repartition_topic(app_id, &agent);
                        let a = a.with_sinks(vec![topic]);
                        match config.agents.get(&agent).and_then(|c| c.topics.clone()) {
                            Some(t) => a.with_topics(t),
                            None => a,
                        }
                    }
                    Stage::Regrouped => {
                        let topic = repartition_topic(app_id, a.name());
                        a.with_topics(vec![topic])
                    }
                }
            })
            .collect()
    }

    /// `config` with the repartition topic of each `group_by` agent under `[topics]`, when not
    /// listed there: the partition count, replication and codecs of the agent's first source.
    fn with_internal_topics(agents: &[AgentRef], config: &Config) -> Config {
        let mut config = config.clone();
        for a in Self::configured(agents, &config) {
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

    /// The problems between `config` and the agents (beyond [`Config::check`]'s).
    pub(crate) fn issues(agents: &[AgentRef], config: &Config) -> Vec<Issue> {
        let config = &Self::with_internal_topics(agents, config);
        let mut issues = Vec::new();
        let mut bad = |key: String, message: String| {
            issues.push(Issue {
                key,
                origin: String::new(),
                message,
            })
        };
        if agents.is_empty() {
            bad(String::new(), "the app has no agents".into());
        }
        let mut names = BTreeSet::new();
        // Each table with the first agent that declares it and that agent's topics.
        let mut tables: BTreeMap<String, (String, TableSpec)> = BTreeMap::new();
        for (name, c) in &config.agents {
            match agents.iter().find(|a| a.name() == name) {
                None => bad(
                    format!("agents.{name}"),
                    "no agent of that name is registered in this app".into(),
                ),
                Some(a) if c.concurrency.is_some() && a.concurrency().is_none() => bad(
                    format!("agents.{name}.concurrency"),
                    format!(
                        "agent `{name}` is not a concurrent agent (`ConcurrentAgent`): it \
                         handles one event of a partition at a time"
                    ),
                ),
                Some(_) => {}
            }
        }
        for agent in &Self::configured(agents, config) {
            if !names.insert(agent.name().to_owned()) {
                bad(
                    String::new(),
                    format!("two agents are named `{}`", agent.name()),
                );
            }
            let topics = agent.topics();
            let (key_shape, value_shape) = agent.shapes();
            for topic in &topics {
                let Some(t) = config.topics.get(topic) else {
                    bad(format!("topics.{topic}"), format!("agent `{}` consumes topic `{topic}`, which is not listed under [topics]", agent.name()));
                    continue;
                };
                // A codec that can never decode the agent's types: every record would end as
                // a dead letter.
                for (what, codec, shape) in [
                    ("key", t.key_codec, &key_shape),
                    ("value", t.value_codec, &value_shape),
                ] {
                    if let Some(why) = codec.cannot_decode(shape) {
                        bad(
                            format!("topics.{topic}.{what}_codec"),
                            format!(
                                "agent `{}` reads the {what}s of `{topic}`: {why}",
                                agent.name()
                            ),
                        );
                    }
                }
            }
            for spec in agent.tables() {
                let name = agent.name();
                match tables.get(&*spec.name) {
                    None => {
                        let first = (name.to_owned(), spec.clone());
                        tables.insert(spec.name.to_string(), first);
                    }
                    Some((other, first)) if *first != spec => bad(
                        String::new(),
                        format!(
                            "table `{}` is declared by agents `{other}` and `{name}` with \
                             different codecs or kinds: one table has one definition; share \
                             one handle",
                            spec.name
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        // A table's codecs (set in code) that can never hold its types.
        for (name, (agent, spec)) in &tables {
            let (key_shape, value_shape) = spec.shapes();
            for (what, codec, shape) in [
                ("key", spec.key_codec, key_shape),
                ("value", spec.value_codec, value_shape),
            ] {
                if let Some(why) = codec.cannot_decode(shape) {
                    bad(
                        format!("tables.{name}"),
                        format!("table `{name}` of agent `{agent}` stores {what}s: {why}"),
                    );
                }
            }
        }
        for (name, table) in &config.tables {
            let key = format!("tables.{name}.sinks");
            let declared = tables.get(name).map(|(_, spec)| spec);
            match declared {
                None => bad(
                    format!("tables.{name}"),
                    format!("no agent declares a table `{name}`"),
                ),
                Some(spec) if !table.sinks.is_empty() && (spec.global || spec.window.is_some()) => {
                    bad(
                        key.clone(),
                        format!(
                            "table `{name}` is a {}: a change stream is for plain tables",
                            if spec.global {
                                "global table"
                            } else {
                                "windowed table (its closes go to its close topic)"
                            }
                        ),
                    )
                }
                Some(spec) => {
                    for sink in &table.sinks {
                        let Some(t) = config.topics.get(sink) else {
                            continue;
                        };
                        if (t.key_codec, t.value_codec) != (spec.key_codec, spec.value_codec) {
                            bad(
                                key.clone(),
                                format!(
                                    "`{sink}` is {}/{} under [topics.{sink}], but table `{name}` \
                                     streams its changes as {}/{} (its own codecs)",
                                    t.key_codec.name(),
                                    t.value_codec.name(),
                                    spec.key_codec.name(),
                                    spec.value_codec.name()
                                ),
                            );
                        }
                    }
                }
            }
        }
        // Topics that feed the same tables are one task group: partition `p` of each is one
        // task, so they must have as many partitions.
        for group in faust_actors::runtime::topology::groups(&Self::configured(agents, config)) {
            let counts: Vec<(String, i32)> = group
                .iter()
                .filter_map(|t| Some((t.clone(), config.topics.get(t)?.partitions)))
                .collect();
            if counts.windows(2).any(|w| w[0].1 != w[1].1) {
                let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t} ({n})")).collect();
                bad(
                    format!("topics.{}", group[0]),
                    format!(
                        "topics {} feed the same tables, so partition p of each is processed \
                         together (co-partitioned), but their partition counts differ: give \
                         them the same number of partitions",
                        list.join(", ")
                    ),
                );
            }
        }
        issues
    }
}

/// Every topic the node needs: those under `[topics]`, a changelog per table (with the
/// partition count of the table's source topic), a close topic per windowed table that names
/// one, a dead-letter topic per agent whose policy is `dead-letter`, and each agent's sinks
/// not listed under `[topics]` (with the agent's largest source's partition count): a sink that
/// does not exist would otherwise hold every emitted record until librdkafka gives up on it.
fn needed(app_id: &str, config: &Config, agents: &[AgentRef]) -> Vec<Needed> {
    let mut out: Vec<Needed> = config
        .topics
        .iter()
        .map(|(name, t)| Needed {
            name: name.clone(),
            partitions: t.partitions,
            replication: t.replication,
            compact: false,
            why: format!("in [topics.{name}]"),
        })
        .collect();
    if agents.iter().any(|a| !a.tables().is_empty()) {
        out.push(Needed {
            name: members_topic(app_id),
            partitions: 1,
            replication: None,
            compact: true,
            why: "(the members topic has one partition)".into(),
        });
    }
    for agent in agents {
        let sources = agent.topics();
        let most = sources
            .iter()
            .filter_map(|t| config.topics.get(t))
            .max_by_key(|t| t.partitions);
        let dlq = &agent.policy().dead_letter_topic;
        if let Some(t) = most.filter(|_| agent.policy().on_error == OnError::DeadLetter) {
            if !config.topics.contains_key(dlq) {
                out.push(Needed {
                    name: dlq.clone(),
                    partitions: t.partitions,
                    replication: t.replication,
                    compact: false,
                    why: format!(
                        "like the largest source topic of agent `{}`, whose dead letters it holds",
                        agent.name()
                    ),
                });
            }
        }
        if let Some(t) = most {
            let why = format!(
                "like the largest source topic of agent `{}`, which emits to it",
                agent.name()
            );
            sinks_needed(&mut out, config, agent.sinks(), t, &why);
        }
        let Some(source) = agent.topics().into_iter().next() else {
            continue;
        };
        let Some(t) = config.topics.get(&source) else {
            continue;
        };
        for table in agent.tables() {
            let changelog = changelog_topic(app_id, &table.name);
            if out.iter().any(|n| n.name == changelog) {
                // Shared with another agent of the topic: one changelog, one close topic.
                continue;
            }
            let closes = table.close_topic.as_deref();
            if let Some(close) = closes.filter(|c| !config.topics.contains_key(*c)) {
                out.push(Needed {
                    name: close.to_owned(),
                    partitions: t.partitions,
                    replication: t.replication,
                    compact: false,
                    why: format!(
                        "like `{source}`, whose windowed table `{}` closes windows to it",
                        table.name
                    ),
                });
            }
            if let Some(c) = config.tables.get(&*table.name) {
                let why = format!(
                    "like `{source}`, whose table `{}` streams its changes to it",
                    table.name
                );
                sinks_needed(&mut out, config, &c.sinks, t, &why);
            }
            out.push(Needed {
                name: changelog,
                partitions: t.partitions,
                replication: t.replication,
                compact: true,
                why: format!(
                    "like its source topic `{source}` (a changelog is co-partitioned with it)"
                ),
            });
        }
    }
    out
}

/// Each of `sinks` not under `[topics]` nor already needed, created like `like` (why: `why`).
fn sinks_needed(
    out: &mut Vec<Needed>,
    config: &Config,
    sinks: &[String],
    like: &crate::config::TopicConfig,
    why: &str,
) {
    for sink in sinks {
        if config.topics.contains_key(sink) || out.iter().any(|n| &n.name == sink) {
            continue;
        }
        out.push(Needed {
            name: sink.clone(),
            partitions: like.partitions,
            replication: like.replication,
            compact: false,
            why: why.to_owned(),
        });
    }
}

/// The standby plan: the most replicas any table asks for (`[tables.<name>] standby_replicas`,
/// default 1, may be 0) and every partition of each source topic with tables; `None` when the
/// app has no tables.
fn standby_plan(config: &Config, runtime: &Runtime) -> Option<(usize, Vec<Part>)> {
    let mut parts = Vec::new();
    let mut replicas = 0;
    for (topic, source) in &runtime.sources {
        for table in &source.tables {
            let wanted = config
                .tables
                .get(&*table.name)
                .map_or(1, |t| t.standby_replicas) as usize;
            replicas = replicas.max(wanted);
            parts.extend((0..source.partitions).map(|p| (topic.clone(), p)));
        }
    }
    parts.sort();
    parts.dedup();
    // With zero replicas the members topic still serves table queries (who holds what).
    (!parts.is_empty()).then_some((replicas, parts))
}

#[cfg(test)]
mod tests;
