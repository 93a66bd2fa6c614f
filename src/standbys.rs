//! Membership and standby replicas: when the app has tables, this node joins the members topic
//! (its heartbeat, its web address, and its view of who holds what: standby placement and
//! table queries both read it), and the coordinator follows the resulting standby plan.

use std::time::Duration;

use faust_actors::io::members::Membership;
use faust_actors::runtime::coordinator::StandbyPlan;
use rdkafka::config::ClientConfig;

use crate::error::Error;
use crate::topology::Topology;

/// The standby plan of `topology`, with this node's membership started and announcing `web`
/// (`None` when the app has no tables; zero replicas when none wants standbys).
pub(crate) fn standby_plan(
    topology: &Topology,
    client: &ClientConfig,
    web: Option<std::net::SocketAddr>,
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
    let membership = Membership::start(client, &config.app.id, &node, live_for)?
        .with_web(web.map(|w| w.to_string()));
    tracing::info!(%node, replicas, partitions = parts.len(), web = ?web, "joined the members topic");
    Ok(Some(StandbyPlan {
        membership,
        replicas,
        parts,
    }))
}
