//! Global tables: each node keeps a full copy of every global table by tailing all partitions
//! of its changelog into one tree, and agents start only once the copy has caught up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Coordinator;
use crate::model::names::{applied_key, changelog_topic, data_prefix, global_tree_name};
use crate::runtime::standby::{Source, Standby, Tailer};

impl Coordinator {
    pub(crate) fn start_global_reader(
        &self,
        table: &Arc<str>,
        partitions: i32,
    ) -> crate::model::error::Result<Standby> {
        let store = &self.init.store;
        let topic = changelog_topic(&self.init.topology.app_id, table);
        let tree = store
            .db()
            .open_tree(global_tree_name(table))
            .map_err(|e| crate::model::error::Error::store(store.path(), e))?;
        let sources = (0..partitions)
            .map(|p| Source {
                topic: topic.clone(),
                partition: p,
                prefix: data_prefix(table),
                applied_key: applied_key(&format!("{table}/{p}")),
                table: table.clone(),
            })
            .collect();
        let group = format!("{}-global-reader", self.init.topology.app_id);
        Standby::start(Tailer {
            client: self.init.client.clone(),
            group,
            sources,
            tree,
            path: store.path().clone(),
            metrics: self.init.metrics.clone(),
        })
    }

    /// Waits (bounded) until every global table's copy reached the changelog ends seen now.
    pub(crate) fn globals_caught_up(&self) -> impl std::future::Future<Output = ()> + 'static {
        let tables = self.init.topology.global_tables.clone();
        let (app, client, store) = (
            self.init.topology.app_id.clone(),
            self.init.client.clone(),
            self.init.store.clone(),
        );
        let bound = self.init.stop_timeout;
        async move {
            let ends =
                tokio::task::spawn_blocking(move || -> crate::model::error::Result<Vec<_>> {
                    let consumer: rdkafka::consumer::BaseConsumer =
                        client.create().map_err(|e| {
                            crate::model::error::Error::kafka("reading global changelog ends", e)
                        })?;
                    let mut ends = Vec::new();
                    for (table, partitions) in &tables {
                        let topic = changelog_topic(&app, table);
                        for p in 0..*partitions {
                            let (_, high) = rdkafka::consumer::Consumer::fetch_watermarks(
                                &consumer, &topic, p, bound,
                            )
                            .map_err(|e| {
                                crate::model::error::Error::kafka(
                                    format!("reading {topic}[{p}]"),
                                    e,
                                )
                            })?;
                            ends.push((table.clone(), p, high));
                        }
                    }
                    Ok(ends)
                })
                .await;
            let Ok(Ok(ends)) = ends else {
                tracing::warn!("cannot read the global tables' changelog ends; not waiting");
                return;
            };
            let started = Instant::now();
            loop {
                let behind = ends.iter().filter(|(table, p, high)| {
                    let applied = store
                        .db()
                        .open_tree(global_tree_name(table))
                        .ok()
                        .and_then(|t| t.get(applied_key(&format!("{table}/{p}"))).ok().flatten())
                        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                        .map_or(0, i64::from_be_bytes);
                    applied < *high
                });
                if behind.count() == 0 {
                    tracing::info!(took = ?started.elapsed(), "global tables caught up");
                    return;
                }
                if started.elapsed() > bound {
                    tracing::warn!(
                        ?bound,
                        "global tables not caught up in time; starting anyway"
                    );
                    return;
                }
                actix::clock::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
