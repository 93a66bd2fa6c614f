//! The state of one partition that events change ([`Work`]): its table shards and outbox, and
//! the source records whose outputs the broker refused. The partition actor owns it and lends
//! it to an agent actor with each batch: ownership moves with the message, so it has exactly
//! one writer at any time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::erased::Failure;
use crate::io::outbox::{Outbox, RefusedOutput};
use crate::model::error::Error;
use crate::model::positions::Positions;
use crate::model::record::Record;
use crate::state::set::TableSet;

/// The state of one partition that events change, moved between actors with each batch.
pub(crate) struct Work {
    pub(crate) tables: TableSet,
    pub(crate) outbox: Outbox,
    /// Source records whose output the broker refused for good (see `outbox`), by offset.
    /// They are *suspects*: Kafka refuses a whole produce batch for one bad record, so a
    /// refusal may be a neighbour's. When they come again after the rewind, each is handled
    /// alone and its outputs are awaited at once; refused again, it goes to the agent's policy.
    pub(crate) refused: BTreeMap<(Arc<str>, i64), RefusedOutput>,
    /// Exactly once: suspects refused again in a transaction that could then only abort.
    /// When they come again, in the next transaction, they go to the policy without being
    /// handled (their outputs would doom that one too).
    pub(crate) condemned: BTreeSet<(Arc<str>, i64)>,
}

impl Work {
    /// The partition's state: its tables and outbox, nothing refused yet.
    pub(crate) fn new(tables: TableSet, outbox: Outbox) -> Self {
        Work {
            tables,
            outbox,
            refused: BTreeMap::new(),
            condemned: BTreeSet::new(),
        }
    }

    /// Exactly once: `offset`, a suspect refused again, goes to the policy when it comes
    /// again (see the field).
    pub(crate) fn condemn(&mut self, topic: &Arc<str>, offset: i64) {
        let key = (topic.clone(), offset);
        if self.refused.contains_key(&key) {
            self.condemned.insert(key);
        }
    }

    /// Why a condemned `record` goes to the policy, if it is one.
    pub(crate) fn condemned(&self, record: &Record) -> Option<Failure> {
        let key = (record.topic.clone(), record.offset);
        if !self.condemned.contains(&key) {
            return None;
        }
        let r = self.refused.get(&key)?;
        Some(Failure::Invalid {
            reason: r.reason,
            error: Error::OutputRejected {
                offset: r.source,
                error: r.error.clone(),
            },
        })
    }

    /// Records outputs refused for good: their sources are handled alone next time.
    pub(crate) fn refuse(&mut self, refused: Vec<RefusedOutput>) {
        for r in refused {
            tracing::error!(partition = self.tables.partition(), offset = r.source,
                reason = r.reason, error = %r.error,
                "an output was refused for good: after the rewind its source record is handled \
                 alone, and goes to the error policy if refused again");
            self.refused.insert((r.source_topic.clone(), r.source), r);
        }
    }

    /// Forgets refusals of records before `next` (committed: they never come again).
    pub(crate) fn forget_refused_before(&mut self, next: &Positions) {
        let kept = |(topic, offset): &(Arc<str>, i64)| next.get(topic).is_none_or(|n| *offset >= n);
        self.refused.retain(|k, _| kept(k));
        self.condemned.retain(kept);
    }

    /// Why `record` cannot be handed to the agent (its bytes cannot be read), if so.
    pub(crate) fn unfit(record: &Record) -> Option<Failure> {
        let why = record.unreadable.as_ref()?;
        Some(Failure::Invalid {
            reason: "header",
            error: Error::BadHeader {
                header: "(name)".into(),
                reason: why.clone(),
            },
        })
    }

    /// Whether `record` is handled alone, not with the events around it: it cannot be read,
    /// or it is a suspect.
    pub(crate) fn alone(&self, record: &Record) -> bool {
        record.unreadable.is_some() || self.suspect(record)
    }

    /// Whether `record`'s output was refused before (see the field).
    pub(crate) fn suspect(&self, record: &Record) -> bool {
        self.refused
            .contains_key(&(record.topic.clone(), record.offset))
    }
}
