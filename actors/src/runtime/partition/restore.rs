//! Restoring a partition's tables from their changelogs before it processes anything.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::PartitionActor;
use crate::io::changelog::Restore;

impl PartitionActor {
    /// Replays the changelogs into the store before anything is processed; retried with
    /// back-off until it succeeds or the partition is revoked.
    pub(super) fn restore_tables(&mut self, restore: Arc<Restore>) -> ResponseActFuture<Self, ()> {
        let tree = self
            .db
            .open_tree(crate::model::names::tree_name(&self.topic, self.partition));
        let path = self.path.clone();
        let metrics = self.metrics.clone();
        let revoked = self.revoked.clone();
        let max = self.settings.retry_backoff_max;
        let (topic, partition) = (self.topic.clone(), self.partition);
        let run = async move {
            let tree = tree.map_err(|e| crate::model::error::Error::store(&path, e))?;
            let mut wait = Duration::from_millis(100);
            loop {
                let (r, t, p, m) = (restore.clone(), tree.clone(), path.clone(), metrics.clone());
                let result = tokio::task::spawn_blocking(move || r.run(&t, &p, &m)).await;
                match result {
                    Ok(Ok(done)) => return Ok(done),
                    Ok(Err(e)) if !revoked.load(Ordering::SeqCst) => tracing::error!(
                        %topic, partition, error = %e, retry_in = ?wait,
                        "restoring the partition's tables failed; retrying"),
                    Ok(Err(e)) => return Err(e),
                    Err(e) => {
                        return Err(crate::model::error::Error::ActorGone {
                            context: e.to_string(),
                        })
                    }
                }
                actix::clock::sleep(wait).await;
                wait = (wait * 2).min(max);
            }
        };
        Box::pin(run.into_actor(self).map(|result, act, ctx| match result {
            Ok(done) => {
                act.metrics
                    .recovery_seconds
                    .observe(done.elapsed.as_secs_f64());
                act.metrics.recovery_records_total.inc_by(done.records);
                tracing::info!(topic = %act.topic, partition = act.partition,
                    records = done.records, took = ?done.elapsed, "tables restored");
                act.begin(ctx);
            }
            Err(e) => {
                tracing::warn!(topic = %act.topic, partition = act.partition, error = %e,
                    "restore abandoned: the partition was revoked");
                ctx.stop();
            }
        }))
    }
}
