//! Which partitions this node keeps standby copies of: the plan the coordinator follows.

use std::time::Duration;

use faust_actors::{AgentRef, Membership, StandbyPlan};
use rdkafka::config::ClientConfig;

use crate::config::Config;
use crate::error::Error;

/// The standby plan: every partition of a source topic with tables, the most replicas any of
/// its tables asks for, and this node's membership (`None` when no table wants standbys).
pub(crate) fn standby_plan(
    config: &Config,
    agents: &[AgentRef],
    client: &ClientConfig,
) -> Result<Option<StandbyPlan>, Error> {
    let mut parts = Vec::new();
    let mut replicas = 0;
    for agent in agents {
        for table in agent.tables() {
            let wanted = config
                .tables
                .get(&*table.name)
                .map_or(1, |t| t.standby_replicas) as usize;
            replicas = replicas.max(wanted);
            for topic in agent.topics() {
                let n = config.topics.get(&topic).map_or(0, |t| t.partitions);
                parts.extend((0..n).map(|p| (topic.clone(), p)));
            }
        }
    }
    parts.sort();
    parts.dedup();
    if replicas == 0 || parts.is_empty() {
        return Ok(None);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let node = format!("{}-{}-{nanos:08x}", config.app.id, std::process::id());
    let live_for = config.broker.session_timeout.max(Duration::from_secs(3));
    let membership = Membership::start(client, &config.app.id, &node, live_for)?;
    tracing::info!(%node, replicas, partitions = parts.len(), "standby replicas enabled");
    Ok(Some(StandbyPlan {
        membership,
        replicas,
        parts,
    }))
}
