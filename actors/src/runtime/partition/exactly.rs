//! The partition's side of exactly-once rounds (see `coordinator::rounds`): join between rounds,
//! prepare and vote, then apply the decision.

use std::sync::Arc;

use actix::prelude::*;

use super::PartitionActor;
use crate::io::changelog;
use crate::io::outbox::{confirm, RefusedOutput};
use crate::model::names::applied_key;
use crate::runtime::messages::{Abandon, Join, Outcome, Prepare, Vote, PRODUCER_FAILED};

/// What a partition wrote to the transaction and keeps for the store until the decision.
struct Prepared {
    batch: sled::Batch,
    counts: Vec<(Arc<str>, u64, i64)>,
    wrote: bool,
}

impl PartitionActor {
    /// Exactly once: uncommitted work was dropped outside a round (see the field's doc).
    pub(super) fn poison(&mut self) {
        if self.settings.exactly_once && !self.poisoned {
            tracing::warn!(topic = %self.topic, partition = self.partition,
                "uncommitted work dropped: the open transaction will abort");
            self.poisoned = true;
        }
    }

    /// Joins the coordinator's rounds, then starts reading (a round is never under way when
    /// the coordinator answers, so nothing read here falls into a round that leaves it out).
    /// The wait does not block the mailbox: a `Stop` sent by a coordinator that is itself
    /// waiting for this partition to stop (a revoke or shutdown right after the assignment)
    /// is handled, and the answer then ignored. Forwarded records wait meanwhile.
    pub(super) fn join_rounds(
        &mut self,
        ctx: &mut Context<Self>,
        coordinator: Recipient<Join>,
        started: usize,
    ) {
        let join = Join {
            topic: self.topic.clone(),
            partition: self.partition,
            started,
        };
        self.in_round = true;
        ctx.spawn(
            fut::wrap_future(coordinator.send(join)).map(|joined, act: &mut Self, ctx| {
                act.in_round = false;
                if act.stopping {
                    return;
                }
                if matches!(joined, Ok(true)) {
                    act.start_reading(ctx);
                    let held = std::mem::take(&mut act.deferred);
                    if !held.is_empty() {
                        ctx.wait(act.process(held));
                    }
                } else {
                    tracing::info!(topic = %act.topic, partition = act.partition,
                        "not joining transaction rounds: the partition was revoked meanwhile");
                }
            }),
        );
    }

    /// Writes this partition's part of the round (outputs acknowledged, changelogs written
    /// inside the transaction), votes, and waits for the decision while holding the partition.
    /// The acknowledgements are awaited here, not left to the commit: rdkafka's
    /// `commit_transaction` flushes by polling with the call's whole timeout while records are
    /// in flight, which measured at 0.4 of the at-least-once rate instead of 0.9.
    fn prepare(&mut self, msg: Prepare) -> ResponseActFuture<Self, ()> {
        let Prepare { vote, decision } = msg;
        self.in_round = true;
        let (topic, partition, next) = (self.topic.clone(), self.partition, self.next.clone());
        let moved = self.next != self.stored;
        let plan = match (self.poisoned, self.work.as_mut()) {
            (true, _) => Err("uncommitted work was dropped outside a commit".to_string()),
            (false, None) => Err("the partition's state is away".to_string()),
            (false, Some(work)) => match work.tables.stage(&next) {
                Ok(staged) => Ok((work.outbox.take_pending(), work.outbox.producer(), staged)),
                Err(e) => Err(format!("cannot encode table entries: {e}")),
            },
        }
        .map_err(|why| (why, Vec::new()));
        let first = async move {
            let (deliveries, producer, staged) = plan?;
            let wrote = moved || !deliveries.is_empty() || !staged.changes.is_empty();
            if let Err(undelivered) = confirm(deliveries).await {
                let why = format!("an output was not delivered: {undelivered}");
                return Err((why, undelivered.refused));
            }
            let logs = changelog::write(producer, partition, &staged.changes, &staged.streams)
                .await
                .map_err(|e| {
                    (
                        super::cycle::steps::Step::Delivery(e).to_string(),
                        Vec::new(),
                    )
                })?;
            let mut batch = staged.batch;
            for (table, n) in logs {
                batch.insert(applied_key(&table), &n.to_be_bytes());
            }
            Ok(Prepared {
                batch,
                counts: staged.counts,
                wrote,
            })
        };
        Box::pin(first.into_actor(self).then(move |prepared, _act, _| {
            let ballot = match &prepared {
                Ok(p) => Vote::Ready {
                    partition,
                    next: next.clone(),
                    wrote: p.wrote,
                },
                Err((why, _)) => Vote::Abort(format!("{topic}[{partition}]: {why}")),
            };
            // A round that ended without this vote (it timed out) has aborted.
            let late = vote.send(ballot).is_err();
            tracing::debug!(%topic, partition, ?next, late, "voted");
            fut::wrap_future(decision).map(move |outcome, act: &mut Self, ctx| {
                let outcome = outcome.unwrap_or(Outcome::Aborted);
                act.decided(ctx, outcome, prepared, late);
            })
        }))
    }

    /// Applies a round's decision (see `coordinator::rounds`).
    fn decided(
        &mut self,
        ctx: &mut Context<Self>,
        outcome: Outcome,
        prepared: Result<Prepared, (String, Vec<RefusedOutput>)>,
        late: bool,
    ) {
        tracing::debug!(topic = %self.topic, partition = self.partition, ?outcome, "decided");
        self.in_round = false;
        match (outcome, prepared) {
            (Outcome::Committed, Ok(prepared)) if !late => {
                let Some(work) = self.work.as_mut() else {
                    return;
                };
                // Committed in Kafka: only now does the store take the writes.
                if let Err(e) = work.tables.tree().apply_batch(prepared.batch) {
                    // The transaction stands: after the restart the tables restore from the
                    // committed changelog.
                    let step = super::cycle::steps::Step::Store(e.to_string());
                    super::cycle::steps::commit_failed(
                        &self.metrics,
                        &self.topic,
                        self.partition,
                        &step,
                    );
                    return;
                }
                work.tables.committed(&prepared.counts);
                work.forget_refused_before(&self.next);
                for (table, _, delta) in &prepared.counts {
                    let keys = self.metrics.table_keys.with_label_values(&[table]);
                    keys.add(*delta);
                }
                if prepared.wrote {
                    self.metrics.commits_total.inc();
                }
                self.stored = self.next.clone();
                self.committed = self.next.clone();
                for (topic, p) in &self.progress {
                    if let Some(n) = self.next.get(topic) {
                        p.committed(n);
                    }
                }
            }
            (Outcome::Committed, Err((why, _))) if !late => {
                tracing::error!(topic = %self.topic, partition = self.partition, error = %why,
                    "committed, but the store cannot follow: restarting the partition, whose \
                     tables restore from the committed changelog");
                ctx.stop();
                return;
            }
            (Outcome::Fatal, _) => {
                self.abandon(ctx, PRODUCER_FAILED);
                return;
            }
            (_, prepared) => {
                if let (Err((_, refused)), Some(work)) = (prepared, self.work.as_mut()) {
                    work.refuse(refused);
                }
                tracing::warn!(topic = %self.topic, partition = self.partition,
                    resume_at = ?self.stored.or(&self.first_seen),
                    "transaction aborted: dropping uncommitted work and resuming from the last \
                     commit");
                // Records sent after a round that ended without this partition may sit in the
                // next transaction: abort that one too.
                self.poisoned = late;
                // The records held during the round come again after the seek.
                self.deferred.clear();
                self.seek_back(ctx);
            }
        }
        let held = std::mem::take(&mut self.deferred);
        if !held.is_empty() && !self.stopping && !self.halted {
            ctx.wait(self.process(held));
        }
    }
}

impl PartitionActor {
    /// Drops the uncommitted work (none of it is committed) and stops, writing nothing: the
    /// transactional producer failed for good (the coordinator restarts the partition from
    /// the group's offset with the next producer), or the assignment was lost.
    fn abandon(&mut self, ctx: &mut Context<Self>, why: &str) {
        if let Some(work) = self.work.as_mut() {
            work.tables.discard();
            let _ = work.outbox.take_pending();
        }
        self.next = self.stored.clone();
        self.stopping = true;
        tracing::warn!(topic = %self.topic, partition = self.partition, resume_at = ?self.stored,
            "{why}: dropping uncommitted work and stopping, writing nothing");
        ctx.stop();
    }
}

impl Handler<Abandon> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: Abandon, ctx: &mut Self::Context) {
        self.abandon(ctx, msg.0);
    }
}

impl Handler<Prepare> for PartitionActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Prepare, _ctx: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(self.prepare(msg))
    }
}
