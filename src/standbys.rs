//! Standby replicas: when the topology wants them, this node joins the members topic (its
//! heartbeat and view of who holds what), and the coordinator follows the resulting plan.

use std::time::Duration;

use faust_actors::io::members::Membership;
use faust_actors::runtime::coordinator::StandbyPlan;
use rdkafka::config::ClientConfig;

use crate::error::Error;
use crate::topology::Topology;

/// The standby plan of `topology`, with this node's membership started (`None` when no table
/// wants standbys).
pub(crate) fn standby_plan(
    topology: &Topology,
    client: &ClientConfig,
) -> Result<Option<StandbyPlan>, Error> {
    let Some((replicas, parts)) = topology.standbys.clone() else {
        return Ok(None);
    };
    let config = &topology.config;
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
