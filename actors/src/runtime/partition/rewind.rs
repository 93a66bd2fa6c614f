//! Going back: halting a partition for good (error policy `stop`), and rewinding it to its
//! last commit (uncommitted state dropped, the consumer seeked back).

use std::time::Duration;

use actix::prelude::*;
use rdkafka::consumer::Consumer;
use rdkafka::Offset;

use super::PartitionActor;

impl PartitionActor {
    /// Stops processing for good (error policy `stop`): commits what came before the failed
    /// record, stops reading the partition, and reports it in `faust_partition_halted`.
    pub(super) fn halt(&mut self, ctx: &mut Context<Self>, message: String) {
        tracing::error!(topic = %self.topic, partition = self.partition, at = ?self.next,
            error = %message, "partition halted (on_error = stop): nothing past this record is \
            committed; fix or remove the record, or change the policy, then restart the node");
        self.halted = true;
        if let Some(reading) = self.reading.take() {
            ctx.cancel_future(reading);
        }
        let status = self.metrics.status();
        status.set_halted(&self.topic, self.partition, true);
        ctx.wait(self.commit(true).map(|_, _, _| ()));
    }

    /// Drops uncommitted state and seeks back to the last commit (exactly once: the open
    /// transaction must abort too).
    pub(super) fn rewind(&mut self, ctx: &mut Context<Self>) {
        self.poison();
        self.seek_back(ctx);
    }

    /// Drops uncommitted state and seeks back to the last commit.
    pub(super) fn seek_back(&mut self, ctx: &mut Context<Self>) {
        match &mut self.work {
            Some(work) => {
                work.tables.discard();
                let _ = work.outbox.take_pending();
            }
            None => match (self.make_work)() {
                Ok(work) => self.work = Some(work),
                Err(e) => {
                    tracing::error!(topic = %self.topic, partition = self.partition, error = %e,
                        "cannot reopen the partition's tables; stopping the partition");
                    ctx.stop();
                    return;
                }
            },
        }
        self.next = self.stored.clone();
        let targets = self.stored.or(&self.first_seen);
        if targets.is_empty() {
            return;
        }
        tracing::warn!(topic = %self.topic, partition = self.partition, offsets = ?targets,
            "rewinding to the last commit");
        let consumer = self.consumer.clone();
        let partition = self.partition;
        let seek = actix::spawn(async move {
            tokio::task::spawn_blocking(move || {
                for (topic, offset) in targets.iter() {
                    let to = Offset::Offset(offset);
                    consumer.seek(topic, partition, to, Duration::from_secs(10))?;
                }
                Ok::<(), rdkafka::error::KafkaError>(())
            })
            .await
        });
        ctx.wait(seek.into_actor(self).map(|res, act, ctx| {
            if !matches!(res, Ok(Ok(Ok(())))) {
                tracing::error!(topic = %act.topic, partition = act.partition, result = ?res,
                    "seek back to the last commit failed; stopping the partition");
                ctx.stop();
            }
        }));
    }
}
