//! How a partition actor handles what the coordinator tells it outside transaction rounds:
//! stop (on revoke and at shutdown), and a record that reached the consumer's main queue.

use actix::prelude::*;

use super::PartitionActor;
use crate::runtime::messages::{Forward, Stop};

impl Handler<Forward> for PartitionActor {
    type Result = ();

    fn handle(&mut self, msg: Forward, ctx: &mut Self::Context) {
        if self.in_round {
            self.mark_first_seen(std::slice::from_ref(&msg.0));
            self.deferred.push(msg.0);
            return;
        }
        if !self.stopping
            && !self.halted
            && self
                .next
                .get(&msg.0.topic)
                .is_none_or(|n| msg.0.offset >= n)
        {
            ctx.wait(self.process(vec![msg.0]));
        }
    }
}

impl Handler<Stop> for PartitionActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _msg: Stop, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        AtomicResponse::new(Box::pin(self.commit(true).map(|ok, act, ctx| {
            if !ok {
                tracing::warn!(topic = %act.topic, partition = act.partition,
                    "final commit failed; the next owner resumes from the last commit");
            }
            for slot in &act.slots {
                for topic in &slot.topics {
                    slot.agent.agent.on_revoke(topic, act.partition);
                }
            }
            act.slots.clear();
            ctx.stop();
        })))
    }
}
