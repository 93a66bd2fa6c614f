//! The coordinator's standbys: where this node keeps warm copies of partitions owned
//! elsewhere, brought in line with the placement at every tick and assignment.

use std::sync::Arc;

use super::Coordinator;
use crate::io::changelog::Restore;
use crate::io::members::{place_standbys, Part};
use crate::model::names::tree_name;
use crate::runtime::standby::{Source, Standby, Tailer};
use crate::runtime::topology::SourceTopic;

impl Coordinator {
    /// How to read the changelogs of `source`'s tables for `partition` (`None`: no tables).
    pub(super) fn restore_for(&self, source: &SourceTopic, partition: i32) -> Option<Restore> {
        (!source.changelogs.is_empty()).then(|| Restore {
            client: self.init.client.clone(),
            group: format!("{}-restore", self.init.topology.app_id),
            tables: source.changelogs.clone(),
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
            let Some(source) = self.init.topology.source(&topic) else {
                continue;
            };
            let Some(restore) = self.restore_for(source, partition) else {
                continue;
            };
            let store = &self.init.store;
            let started = store
                .db()
                .open_tree(tree_name(&topic, partition))
                .map_err(|e| crate::model::error::Error::store(store.path(), e))
                .and_then(|tree| {
                    Standby::start(Tailer {
                        sources: Source::of(&restore),
                        client: restore.client,
                        group: restore.group,
                        tree,
                        path: store.path().clone(),
                        metrics: self.init.metrics.clone(),
                    })
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
