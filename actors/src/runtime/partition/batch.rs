//! Handing a batch to the agents: in order, per agent, with the retry and error policy of
//! each failed event (`decide`, then the agent's policy), and what the batch left behind
//! ([`BatchOutcome`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;

use super::decide::{decide, Backoff, Decision, Facts};
use super::{AgentSlot, PartitionActor};
use crate::model::positions::Positions;
use crate::model::record::Record;
use crate::runtime::messages::{Process, Processed, Stopped};
use crate::runtime::policy::{apply, Applied, Failed};
use crate::runtime::work::Work;

/// What a batch left behind.
pub(super) enum BatchOutcome {
    /// Each topic's next offset after the batch.
    Done(Work, Positions),
    /// The partition was revoked before the batch started: not processed, left to the next owner.
    Skipped(Work),
    /// Exactly once: a send failed inside the open transaction, which can now only abort; the
    /// partition waits for the round instead of retrying (see `coordinator::rounds`).
    Doomed(Work),
    /// An event kept failing while the partition was being revoked.
    Interrupted(Work),
    /// The agent actor stopped with the work: the batch's state is gone.
    Lost,
    /// The error policy is `stop`: halt at the failed record (the next offsets, its own
    /// included, when the partition's state holds exactly the events before it; `None`: drop
    /// uncommitted work instead).
    Halted(Work, Option<Positions>, String),
}

/// `batch` cut into runs of consecutive records of one topic.
fn runs(batch: Vec<Record>) -> Vec<Vec<Record>> {
    let Some(first) = batch.first() else {
        return Vec::new();
    };
    if batch
        .iter()
        .all(|r| Arc::ptr_eq(&r.topic, &first.topic) || r.topic == first.topic)
    {
        // The usual batch, read from one queue: no copy.
        return vec![batch];
    }
    let mut out: Vec<Vec<Record>> = Vec::new();
    for record in batch {
        match out.last_mut() {
            Some(run) if run[0].topic == record.topic => run.push(record),
            _ => out.push(vec![record]),
        }
    }
    out
}

impl PartitionActor {
    /// Notes the offset of `records`' topics not seen before: where a rewind goes before any
    /// commit.
    pub(super) fn mark_first_seen(&mut self, records: &[Record]) {
        for r in records {
            self.first_seen.set_if_absent(&r.topic, r.offset);
        }
    }

    /// Notes the first offset seen of each topic (where a rewind goes before any commit) and
    /// the time of the last record of each.
    pub(super) fn saw(&mut self, batch: &[Record]) {
        self.mark_first_seen(batch);
        for (topic, progress) in &self.progress {
            if let Some(t) = batch
                .iter()
                .rev()
                .find(|r| r.topic == *topic)
                .and_then(|r| r.timestamp)
            {
                progress.processed(t);
            }
        }
    }

    /// Processes `batch` (see the module doc); held under `ctx.wait`, so batches and commits
    /// never interleave.
    pub(super) fn process(&mut self, batch: Vec<Record>) -> ResponseActFuture<Self, ()> {
        let Some(work) = self.work.take() else {
            tracing::error!(topic = %self.topic, partition = self.partition,
                "batch arrived while the partition state was away; rewinding");
            return Box::pin(fut::ready(()).map(|_, act: &mut Self, ctx| act.rewind(ctx)));
        };
        self.saw(&batch);
        // The batch in runs of one topic each (a batch held during a round mixes them), each
        // with the agents that consume it.
        let runs: Vec<(Arc<[Record]>, Vec<AgentSlot>)> = runs(batch)
            .into_iter()
            .map(|run| {
                let topic = run[0].topic.clone();
                let slots = self.slots.iter();
                let slots = slots.filter(|s| s.topics.iter().any(|t| **t == *topic));
                (run.into(), slots.cloned().collect())
            })
            .collect();
        let times: Vec<(Arc<str>, i64)> = runs
            .iter()
            .filter_map(|(r, _)| Some((r[0].topic.clone(), r.last()?.timestamp?)))
            .collect();
        let revoked = self.revoked.clone();
        let lease = self.lease.clone();
        let settings = self.settings.clone();
        let backoff = Backoff {
            first: settings.retry_backoff,
            max: settings.retry_backoff_max,
        };
        let metrics = self.metrics.clone();
        let partition = self.partition;
        let run = async move {
            let mut work = work;
            if revoked.load(Ordering::SeqCst) {
                return BatchOutcome::Skipped(work);
            }
            let mut done = Positions::new();
            for (records, slots) in runs {
                let topic = records[0].topic.clone();
                let only = slots.len() == 1;
                for slot in slots {
                    let mut start = 0;
                    let mut attempt = 0u32;
                    let mut failed_at: Option<usize> = None;
                    loop {
                        let pending = (records.len() - start) as i64;
                        slot.depth.add(pending);
                        let reply = slot
                            .addr
                            .send(Process {
                                records: records.clone(),
                                start,
                                work,
                            })
                            .await;
                        slot.depth.sub(pending);
                        let Ok(Processed {
                            work: back,
                            next,
                            stopped,
                        }) = reply
                        else {
                            return BatchOutcome::Lost;
                        };
                        work = back;
                        slot.count(&topic, (next - start) as u64);
                        let Some(stopped) = stopped else { break };
                        let name = slot.agent.name();
                        let offset = records[next].offset;
                        let (reason, error, retriable, count) = match stopped {
                            Stopped::Invalid { reason, error } => {
                                (reason, error.to_string(), false, 1)
                            }
                            Stopped::Panicked(msg, count) => ("panic", msg, true, count),
                            Stopped::Failed(msg, count) => {
                                metrics.agent_errors_total.with_label_values(&[name]).inc();
                                ("agent_error", msg, true, count)
                            }
                        };
                        let policy = &slot.agent.policy;
                        if failed_at != Some(next) {
                            // A new failure: earlier events in this batch got past theirs.
                            (failed_at, attempt) = (Some(next), 0);
                        }
                        let facts = Facts {
                            retriable,
                            attempt,
                            retries: policy.retries,
                            doomed: work.outbox.doomed(),
                            lease_valid: lease.valid(),
                            revoked: revoked.load(Ordering::SeqCst),
                        };
                        match decide(facts, backoff) {
                            Decision::AwaitAbort { condemn } => {
                                // Nothing can be written until the round aborts; a suspect
                                // refused again goes to the policy when it comes back.
                                if condemn {
                                    work.condemn(&topic, offset);
                                }
                                return BatchOutcome::Doomed(work);
                            }
                            Decision::GiveUp => return BatchOutcome::Interrupted(work),
                            Decision::AwaitGroup { wait } => {
                                start = next;
                                actix::clock::sleep(wait).await;
                                continue;
                            }
                            Decision::Retry {
                                attempt: n,
                                backoff,
                            } => {
                                attempt = n;
                                tracing::error!(agent = name, %topic, partition, offset, count,
                                reason, %error, attempt, retries = policy.retries, ?backoff,
                                "event failed; retrying it (a panicked agent actor is restarted)");
                                start = next;
                                actix::clock::sleep(backoff).await;
                                continue;
                            }
                            Decision::Policy => {}
                        }
                        let failed = &records[next..next + count];
                        let failure = Failed {
                            agent: name,
                            reason,
                            error: &error,
                        };
                        match apply(&mut work, policy, failed, &failure, &metrics).await {
                            Ok(()) => {}
                            Err(Applied::Retry) if work.outbox.doomed() => {
                                return BatchOutcome::Doomed(work)
                            }
                            Err(Applied::Retry) if !revoked.load(Ordering::SeqCst) => {
                                start = next;
                                actix::clock::sleep(settings.retry_backoff_max).await;
                                continue;
                            }
                            Err(Applied::Retry) => return BatchOutcome::Interrupted(work),
                            Err(Applied::Halt(message)) => {
                                let at = only.then(|| {
                                    done.set(topic.clone(), offset);
                                    done
                                });
                                return BatchOutcome::Halted(work, at, message);
                            }
                        }
                        start = next + count;
                    }
                }
                if let Some(last) = records.last() {
                    done.set(topic, last.offset + 1);
                }
            }
            BatchOutcome::Done(work, done)
        };
        Box::pin(
            run.into_actor(self)
                .map(move |outcome, act, ctx| match outcome {
                    BatchOutcome::Done(work, done) => {
                        act.work = Some(work);
                        act.next = done.or(&act.next);
                        let now = crate::runtime::progress::now_ms();
                        for (topic, t) in &times {
                            let ms = now.saturating_sub(*t).max(0);
                            if let Some((_, h)) = act.latency.iter().find(|(l, _)| l == topic) {
                                h.observe(ms as f64 / 1000.0);
                            }
                        }
                    }
                    BatchOutcome::Skipped(work) => act.work = Some(work),
                    BatchOutcome::Doomed(mut work) => {
                        work.tables.discard();
                        let _ = work.outbox.take_pending();
                        act.work = Some(work);
                        act.poison();
                        act.next = act.stored.clone();
                        // Paused like a partition in a round: what arrives waits for the decision,
                        // whose abort seeks back.
                        act.in_round = true;
                    }
                    BatchOutcome::Interrupted(mut work) => {
                        tracing::warn!(topic = %act.topic, partition = act.partition,
                    "revoked while an event kept failing: dropping uncommitted work; the next \
                     owner resumes from the last commit");
                        work.tables.discard();
                        act.poison();
                        act.work = Some(work);
                        act.next = act.stored.clone();
                    }
                    BatchOutcome::Lost => act.rewind(ctx),
                    BatchOutcome::Halted(mut work, at, message) => {
                        match at {
                            Some(at) => act.next = at.or(&act.next),
                            None => {
                                work.tables.discard();
                                act.poison();
                                act.next = act.stored.clone();
                            }
                        }
                        act.work = Some(work);
                        act.halt(ctx, message);
                    }
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_cut_into_runs_of_one_topic() {
        let r = |topic: &str, offset: i64| Record {
            topic: Arc::from(topic),
            partition: 0,
            offset,
            timestamp: None,
            key: None,
            value: None,
            headers: Vec::new(),
            unreadable: None,
        };
        let cut = runs(vec![r("a", 1), r("a", 2), r("b", 7), r("a", 3)]);
        let shape: Vec<(String, Vec<i64>)> = cut
            .iter()
            .map(|run| {
                (
                    run[0].topic.to_string(),
                    run.iter().map(|r| r.offset).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("a".into(), vec![1, 2]),
                ("b".into(), vec![7]),
                ("a".into(), vec![3])
            ]
        );
    }
}
