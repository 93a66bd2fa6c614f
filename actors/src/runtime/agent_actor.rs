//! The agent actor: runs the user's agent over a batch of one partition's records.
//!
//! The partition actor lends it the partition's `Work` (table shards and outbox) with each
//! batch; the agent actor hands it back with how far it got. Panics in user code are caught:
//! the event's table writes are undone, the outcome goes back to the partition actor, and the
//! actor stops so that its `Supervisor` restarts it (actix itself catches no panic: an uncaught
//! one would kill the actor and lose the batch).

use std::any::Any;
use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures::FutureExt;

use crate::api::erased::{AgentRef, Failure};
use crate::io::outbox::Outbox;
use crate::metrics::Metrics;
use crate::model::error::Error;
use crate::runtime::ahead::Ahead;
use crate::runtime::messages::{Process, Processed, Stopped};
use crate::runtime::work::Work;

/// The agent actor's mailbox capacity: the partition actor has one batch in flight per agent,
/// and awaits it, so the bound is never the limit; back-pressure comes from that await.
pub(crate) const MAILBOX_CAPACITY: usize = 4;

/// An event's failure to send: for good when the output was refused (the policy decides at
/// once), otherwise an error retried like the agent's own.
fn output_failed(error: Error) -> Failure {
    match error.refused_output() {
        Some(reason) => Failure::Invalid { reason, error },
        None => Failure::Agent(error.into()),
    }
}

/// Awaits the deliveries of an isolated suspect's outputs (see `Work::refused`).
async fn confirm_alone(outbox: &mut Outbox, from: usize) -> Result<(), (usize, Failure)> {
    let mine = outbox.take_pending_from(from);
    let confirmed = crate::io::outbox::confirm(mine).await;
    if confirmed.is_err() {
        // Exactly once, a refused record leaves the transaction able only to abort.
        outbox.doom();
    }
    match confirmed {
        Ok(()) => Ok(()),
        Err(undelivered) => match undelivered.refused.first().cloned() {
            Some(r) => Err((
                0,
                Failure::Invalid {
                    reason: r.reason,
                    error: Error::OutputRejected {
                        offset: r.source,
                        error: r.error,
                    },
                },
            )),
            None => Err((
                0,
                Failure::Agent(crate::api::agent::AgentError::msg(format!(
                    "an output was not delivered: {undelivered}"
                ))),
            )),
        },
    }
}

/// Runs one agent for one partition.
pub(crate) struct AgentActor {
    agent: AgentRef,
    metrics: Metrics,
}

impl AgentActor {
    pub(crate) fn new(agent: AgentRef, metrics: Metrics) -> Self {
        AgentActor { agent, metrics }
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Supervised for AgentActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics
            .agent_restarts_total
            .with_label_values(&[self.agent.name()])
            .inc();
        tracing::warn!(
            agent = self.agent.name(),
            "agent actor restarted after a panic"
        );
    }
}

impl Handler<Process> for AgentActor {
    type Result = AtomicResponse<Self, Processed>;

    fn handle(&mut self, msg: Process, _ctx: &mut Self::Context) -> Self::Result {
        let agent = self.agent.clone();
        AtomicResponse::new(Box::pin(run_batch(agent, msg).into_actor(self).map(
            |out, _act, ctx| {
                if matches!(out.stopped, Some(Stopped::Panicked(..))) {
                    ctx.stop();
                }
                out
            },
        )))
    }
}

/// Runs `agent` over `msg`'s records from `msg.start`, until the end or the first failure.
pub(crate) async fn run_batch(agent: AgentRef, msg: Process) -> Processed {
    let Process {
        records,
        start,
        mut work,
    } = msg;
    let size = agent.agent.take().map_or(1, |(n, _)| n);
    // A concurrent agent's events after the head prepare while the head is handled.
    let concurrency = agent.concurrency().unwrap_or(1);
    let mut ahead = (concurrency > 1 && size == 1)
        .then(|| Ahead::new(&*agent.agent, &records[start..], concurrency));
    let mut i = start;
    while i < records.len() {
        let mut chunk = &records[i..(i + size).min(records.len())];
        // A record that cannot be handed over ends the chunk before it, or fails alone; a
        // suspect ends the chunk before it, or is handled alone.
        let mut alone = false;
        if let Some(at) = chunk.iter().position(|r| work.alone(r)) {
            if at > 0 {
                chunk = &chunk[..at];
            } else if let Some(Failure::Invalid { reason, error }) =
                Work::unfit(&chunk[0]).or_else(|| work.condemned(&chunk[0]))
            {
                return Processed {
                    work,
                    next: i,
                    stopped: Some(Stopped::Invalid { reason, error }),
                };
            } else {
                chunk = &chunk[..1];
                alone = true;
            }
        }
        let source = chunk.last().map(|r| (r.topic.clone(), r.offset));
        let call = async {
            let prepared = match ahead.as_mut() {
                Some(ahead) if !alone => Some(ahead.take(i - start, &work).await),
                _ => None,
            };
            let Work { tables, outbox, .. } = &mut work;
            let handled = match (size, prepared) {
                (1, Some(Ok(p))) => agent
                    .agent
                    .handle_prepared(&chunk[0], p, tables, outbox, &agent.sinks)
                    .await
                    .map_err(|f| (0, f)),
                (1, Some(Err(f))) => Err((0, f)),
                (1, None) => agent
                    .agent
                    .handle(&chunk[0], tables, outbox, &agent.sinks)
                    .await
                    .map_err(|f| (0, f)),
                (_, _) => {
                    agent
                        .agent
                        .handle_chunk(chunk, tables, outbox, &agent.sinks)
                        .await
                }
            };
            // An output refused before the producer fails the event for good, whatever the
            // agent made of the error.
            if let Some(error) = outbox.take_refusal() {
                return Err((0, output_failed(error)));
            }
            handled?;
            // Windows this event's time closed are part of the event (and roll back with it).
            let closes = tables.close_windows(outbox.codecs());
            closes
                .and_then(|c| outbox.stage_closes(c))
                .map_err(|e| (0, Failure::Agent(e.into())))?;
            // Only a finished event's records reach the producer.
            let from = outbox.pending_len();
            outbox
                .release(source)
                .await
                .map_err(|e| (0, output_failed(e)))?;
            match alone {
                true => confirm_alone(outbox, from).await,
                false => Ok(()),
            }
        };
        let (at, stopped) = match AssertUnwindSafe(call).catch_unwind().await {
            Ok(Ok(())) => {
                work.tables.end_event();
                if alone {
                    work.refused
                        .remove(&(chunk[0].topic.clone(), chunk[0].offset));
                }
                i += chunk.len();
                continue;
            }
            Ok(Err((at, Failure::Invalid { reason, error }))) => {
                (at, Stopped::Invalid { reason, error })
            }
            Ok(Err((at, Failure::Agent(e)))) => (at, Stopped::Failed(e.to_string(), chunk.len())),
            Err(panic) => (
                0,
                Stopped::Panicked(panic_message(panic.as_ref()), chunk.len()),
            ),
        };
        work.tables.rollback_event();
        work.outbox.drop_staged();
        return Processed {
            work,
            next: i + at,
            stopped: Some(stopped),
        };
    }
    Processed {
        work,
        next: records.len(),
        stopped: None,
    }
}

/// Closes the windows due without an event (processing time moved, or windows restored from
/// the changelog), between batches; a failure or panic (in a close callback) rolls the closes
/// back until the next check.
pub(crate) async fn close_windows_between_batches(mut work: Work) -> Work {
    let close = async {
        let Work { tables, outbox, .. } = &mut work;
        outbox.stage_closes(tables.close_windows(outbox.codecs())?)?;
        outbox.release(None).await
    };
    let failed = match AssertUnwindSafe(close).catch_unwind().await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => Some(format!("panic: {}", panic_message(panic.as_ref()))),
    };
    match failed {
        None => work.tables.end_event(),
        Some(error) => {
            tracing::error!(partition = work.tables.partition(), %error,
                "closing windows failed; retrying at the next check");
            work.tables.rollback_event();
            work.outbox.drop_staged();
        }
    }
    work
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}
