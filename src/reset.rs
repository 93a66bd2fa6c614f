//! `faust-node reset`: an app back to its start, as Faust's `reset` and Kafka Streams'
//! application reset tool do: the group's offsets on every source topic moved to the start (or
//! the end), the app's internal topics deleted (changelogs, repartition topics, the members
//! topic; dead-letter and output topics are data and stay), and this node's local store wiped.
//!
//! It refuses while members of the group are alive: the offsets are committed first, from
//! outside the group, and the broker refuses such a commit while the group has members. Only
//! then are topics deleted and the store removed. `--dry-run` prints the plan and does nothing.

use std::path::PathBuf;
use std::time::Duration;

use faust_actors::api::repartition::Stage;
use faust_actors::names::{members_topic, repartition_topic};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::clients::client_config;
use crate::topology::Topology;

/// Where `reset` moves the group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ResetTo {
    /// Each partition's first record: everything is processed again.
    Earliest,
    /// Each partition's end: only records written from now on.
    Latest,
}

/// What a reset does.
pub(crate) struct Plan {
    group: String,
    offsets: Vec<(String, i32, i64)>,
    delete: Vec<String>,
    store: PathBuf,
}

impl Plan {
    /// The plan as lines.
    pub(crate) fn text(&self) -> String {
        let mut out = format!("group {}: offsets to\n", self.group);
        for (t, p, o) in &self.offsets {
            out.push_str(&format!("  {t}[{p}] -> {o}\n"));
        }
        out.push_str("delete topics:\n");
        for t in &self.delete {
            out.push_str(&format!("  {t}\n"));
        }
        if self.delete.is_empty() {
            out.push_str("  (none exist)\n");
        }
        out.push_str(&format!("wipe the local store: {}\n", self.store.display()));
        out
    }
}

/// Works out the reset of `topology`'s app: the offsets from the broker's watermarks, the
/// internal topics that exist.
pub(crate) fn plan(topology: &Topology, to: ResetTo) -> Result<Plan, String> {
    let config = &topology.config;
    if config.broker.is_embedded() {
        return Err(format!(
            "the embedded broker keeps nothing between runs: there are no offsets or topics to \
             reset; delete the store ({}) to start afresh",
            config.store_path().display()
        ));
    }
    let timeout = config.broker.connect_timeout;
    let client = client_config(config, &config.broker.bootstrap);
    let consumer: BaseConsumer = client.create().map_err(|e| {
        format!(
            "cannot create a client for {}: {e}",
            config.broker.bootstrap
        )
    })?;
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| {
        format!(
            "the broker at {} did not answer: {e}",
            config.broker.bootstrap
        )
    })?;
    let existing: Vec<String> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_owned())
        .collect();
    let mut offsets = Vec::new();
    // Every topic of every task group (the consumer subscribes to the leads only, and commits
    // each topic's offsets).
    for topic in topology.runtime.all_topics() {
        if !existing.contains(&topic) {
            continue;
        }
        let source = topology
            .runtime
            .lead_of(&topic)
            .and_then(|l| topology.runtime.source(l));
        for p in 0..source.map_or(1, |s| s.partitions) {
            let topic = &topic;
            let (low, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .map_err(|e| format!("cannot read the offsets of {topic}[{p}]: {e}"))?;
            offsets.push((
                topic.clone(),
                p,
                if to == ResetTo::Earliest { low } else { high },
            ));
        }
    }
    let app = &config.app.id;
    let mut internal: Vec<String> = topology
        .runtime
        .sources
        .values()
        .flat_map(|s| s.changelogs.iter().map(|(_, c)| c.clone()))
        .collect();
    for agent in topology.agents() {
        if let Stage::Rekey { agent } = agent.stage() {
            internal.push(repartition_topic(app, agent));
        }
    }
    internal.push(members_topic(app));
    internal.sort();
    internal.dedup();
    internal.retain(|t| existing.contains(t));
    Ok(Plan {
        group: app.clone(),
        offsets,
        delete: internal,
        store: config.store_path(),
    })
}

/// Carries `plan` out: offsets (refused by the broker while the group has members), then
/// topics, then the store.
pub(crate) fn apply(topology: &Topology, plan: &Plan) -> Result<(), String> {
    let config = &topology.config;
    let timeout = config.broker.connect_timeout;
    let mut client = client_config(config, &config.broker.bootstrap);
    client
        .set("group.id", &plan.group)
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = client
        .create()
        .map_err(|e| format!("cannot create a client: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in &plan.offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))
            .map_err(|e| format!("{t}[{p}]: {e}"))?;
    }
    if tpl.count() > 0 {
        consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
            format!(
                "the broker refused to move the offsets of group {} ({e}): stop every node of \
                 the app first (a group with live members cannot be reset)",
                plan.group
            )
        })?;
    }
    if !plan.delete.is_empty() {
        let admin: AdminClient<DefaultClientContext> =
            client_config(config, &config.broker.bootstrap)
                .create()
                .map_err(|e| format!("cannot create an admin client: {e}"))?;
        let names: Vec<&str> = plan.delete.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        let deleted = futures::executor::block_on(admin.delete_topics(&names, &options))
            .map_err(|e| format!("deleting the internal topics failed: {e}"))?;
        for result in deleted {
            if let Err((topic, code)) = result {
                return Err(format!("cannot delete topic {topic}: {code}"));
            }
        }
    }
    match std::fs::remove_dir_all(&plan.store) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "cannot remove the store {}: {e}",
            plan.store.display()
        )),
    }?;
    // Deleted topics disappear asynchronously on the broker.
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}
