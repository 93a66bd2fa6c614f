//! The coordinator's standbys: where this node keeps warm copies of partitions owned
//! elsewhere, brought in line with the placement at every tick and assignment.

use std::sync::Arc;

use super::Coordinator;
use crate::agent::AgentRef;
use crate::changelog::{changelog_topic, Restore};
use crate::members::{place_standbys, Part};
use crate::shard::tree_name;
use crate::standby::{Source, Standby};

impl Coordinator {
    /// How to read the changelogs of `agents`' tables for `partition` (`None`: no tables).
    pub(super) fn restore_for(&self, agents: &[AgentRef], partition: i32) -> Option<Restore> {
        let tables: Vec<_> = agents
            .iter()
            .flat_map(AgentRef::tables)
            .map(|t| {
                let changelog = changelog_topic(&self.init.app_id, &t.name);
                (t.name, changelog)
            })
            .collect();
        (!tables.is_empty()).then(|| Restore {
            client: self.init.client.clone(),
            group: format!("{}-restore", self.init.app_id),
            tables,
            partition,
            timeout: self.init.stop_timeout,
        })
    }

    /// Announces this node's partitions and brings its standbys in line with the placement.
    pub(super) fn reconcile_standbys(&mut self) {
        let Some(plan) = &self.init.standbys else {
            return;
        };
        let active: Vec<Part> = self
            .partitions
            .keys()
            .map(|(t, p)| (t.to_string(), *p))
            .collect();
        plan.membership.publish(&active);
        if self.stopping_all {
            return;
        }
        let live = plan.membership.live();
        let desired: Vec<Part> =
            place_standbys(plan.membership.node(), &live, &plan.parts, plan.replicas)
                .into_iter()
                .filter(|p| !active.contains(p))
                .collect();
        let gone: Vec<_> = self
            .standbys
            .keys()
            .filter(|(t, p)| !desired.contains(&(t.to_string(), *p)))
            .cloned()
            .collect();
        for key in gone {
            if let Some(standby) = self.standbys.remove(&key) {
                tracing::info!(topic = %key.0, partition = key.1, "standby no longer placed here; stopping it");
                self.init
                    .metrics
                    .assigned_partitions
                    .with_label_values(&["standby"])
                    .dec();
                self.stopping.insert(key, standby.stop());
            }
        }
        for (topic, partition) in desired {
            let key: (Arc<str>, i32) = (Arc::from(topic.as_str()), partition);
            if self.standbys.contains_key(&key) || self.stopping.contains_key(&key) {
                continue;
            }
            let Some(agents) = self.by_topic.get(&topic) else {
                continue;
            };
            let Some(restore) = self.restore_for(agents, partition) else {
                continue;
            };
            let store = &self.init.store;
            let started = store
                .db()
                .open_tree(tree_name(&topic, partition))
                .map_err(|e| crate::error::Error::store(store.path(), e))
                .and_then(|tree| {
                    let sources = Source::of(&restore);
                    let (client, group) = (restore.client, restore.group);
                    let (path, metrics) = (store.path().clone(), self.init.metrics.clone());
                    Standby::start(client, group, sources, tree, path, metrics)
                });
            match started {
                Ok(standby) => {
                    tracing::info!(%topic, partition, "standby started");
                    self.init
                        .metrics
                        .assigned_partitions
                        .with_label_values(&["standby"])
                        .inc();
                    self.standbys.insert(key, standby);
                }
                Err(e) => tracing::error!(%topic, partition, error = %e, "cannot start a standby"),
            }
        }
    }
}
