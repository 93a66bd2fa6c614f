//! The partition actor's commit cycle, in two halves (see the parent module's doc): the actor
//! side here, the steps themselves in [`steps`].

pub(crate) mod steps;

use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::PartitionActor;
use steps::{apply_staged, commit_failed, flush_and_commit, Durable, Step, StoreRetry};

impl PartitionActor {
    /// The commit cycle (see the module doc). The first half holds the partition's state; the
    /// second (flush, Kafka commit) runs on while processing goes on, unless `durable` asks to
    /// wait for it too (revoke, stop, halt). At most one second half is in flight: a cycle that
    /// finds the last one unfinished is skipped. Resolves to whether everything was committed
    /// (for a non-durable cycle: whether the first half succeeded).
    pub(super) fn commit(&mut self, durable: bool) -> ResponseActFuture<Self, bool> {
        if self.settings.exactly_once {
            // Exactly once, commits are the coordinator's transaction rounds.
            return Box::pin(fut::ready(true));
        }
        if self.lost.load(Ordering::SeqCst) {
            // The assignment was lost: the new owner's state wins; nothing is written.
            return Box::pin(fut::ready(false));
        }
        if !self.lease.valid() {
            if !std::mem::replace(&mut self.lease_lapsed, true) {
                tracing::warn!(topic = %self.topic, partition = self.partition,
                    "not committing: this node may have lost the partition \
                     (faust_membership_suspended)");
            }
            return Box::pin(fut::ready(false));
        }
        self.lease_lapsed = false;
        let flushing = self.flushing.load(Ordering::SeqCst);
        if !self.needs_commit() || (flushing && !durable) {
            return match (durable, self.tail.clone()) {
                (true, Some(tail)) => {
                    Box::pin(fut::wrap_future(async move { tail.await.unwrap_or(false) }))
                }
                _ => Box::pin(fut::ready(true)),
            };
        }
        let Some(mut work) = self.work.take() else {
            return Box::pin(fut::ready(false));
        };
        let deliveries = work.outbox.take_pending();
        let staged = match work.tables.stage(&self.next) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.partition, error = %e,
                    "cannot encode table entries for the store; not committing");
                self.work = Some(work);
                return Box::pin(fut::ready(false));
            }
        };
        let (batch, counts, changes) = (staged.batch, staged.counts, staged.changes);
        let streams = staged.streams;
        let producer = work.outbox.producer();
        let tree = work.tables.tree().clone();
        let next = self.next.clone();
        let d = Durable {
            previous: self.tail.clone(),
            db: self.db.clone(),
            consumer: self.consumer.clone(),
            next: next.clone(),
            retry: StoreRetry {
                topic: self.topic.clone(),
                partition: self.partition,
                revoked: self.revoked.clone(),
                backoff_max: self.settings.retry_backoff_max,
                op_timeout: steps::STORE_OP_TIMEOUT,
            },
        };
        let started = std::time::Instant::now();
        let stage_seconds = self.metrics.commit_stage_seconds.clone();
        let first = async move {
            let res = apply_staged(
                deliveries,
                producer,
                (&changes, &streams),
                batch,
                tree,
                &d.retry,
            )
            .await;
            stage_seconds.observe(started.elapsed().as_secs_f64());
            (res, d)
        };
        Box::pin(first.into_actor(self).then(move |(res, d), act, ctx| {
            if !matches!(
                res,
                Err(Step::Delivery(_) | Step::Undelivered(_) | Step::Store(_))
            ) {
                work.forget_refused_before(&next);
                work.tables.committed(&counts);
                for (table, _, delta) in &counts {
                    act.metrics
                        .table_keys
                        .with_label_values(&[table])
                        .add(*delta);
                }
            }
            act.work = Some(work);
            if let Err(step) = res {
                act.commit_failed(ctx, step);
                return Box::pin(fut::ready(false)) as ResponseActFuture<Self, bool>;
            }
            act.stored = next.clone();
            let (done, tail) = futures::channel::oneshot::channel();
            let tail = futures::FutureExt::shared(tail);
            act.tail = Some(tail.clone());
            act.flushing.store(true, Ordering::SeqCst);
            // On the arbiter, not in the actor's context: the actor runs each batch under
            // `ctx.wait`, which would hold this and its bookkeeping back until processing
            // paused.
            let (flushing, metrics) = (act.flushing.clone(), act.metrics.clone());
            let (progress, committed) = (act.progress.clone(), next.clone());
            let (topic, partition) = (act.topic.clone(), act.partition);
            actix::spawn(async move {
                let res = flush_and_commit(d).await;
                match &res {
                    Ok(()) => {
                        metrics.commits_total.inc();
                        metrics
                            .commit_seconds
                            .observe(started.elapsed().as_secs_f64());
                        for (topic, p) in &progress {
                            if let Some(n) = committed.get(topic) {
                                p.committed(n);
                            }
                        }
                    }
                    Err(step) => commit_failed(&metrics, &topic, partition, step),
                }
                flushing.store(false, Ordering::SeqCst);
                let _ = done.send(res.is_ok());
            });
            // The tail also tells the actor how its own second half ended.
            let second = tail.into_actor(act).map(move |ok, act, _| {
                let ok = ok.unwrap_or(false);
                if ok {
                    act.committed = next;
                }
                ok
            });
            if durable {
                Box::pin(second)
            } else {
                ctx.spawn(second.map(|_, _, _| ()));
                Box::pin(fut::ready(true))
            }
        }))
    }

    fn commit_failed(&mut self, ctx: &mut Context<Self>, step: Step) {
        commit_failed(&self.metrics, &self.topic, self.partition, &step);
        match step {
            Step::Undelivered(undelivered) => {
                if let Some(work) = self.work.as_mut() {
                    work.refuse(undelivered.refused);
                }
                self.rewind(ctx);
            }
            Step::Delivery(_) => self.rewind(ctx),
            Step::Store(_) | Step::Kafka(_) => {}
        }
    }
}
