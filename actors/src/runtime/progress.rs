//! How far each active partition got, for lag, stall and readiness: each partition actor writes
//! its [`Progress`] (atomics, no locks on the event path), and the coordinator's tick
//! [`Watch::observe`]s them against the consumer's cached high watermarks and exports
//! per-partition lag in records and seconds, the age of the last commit that moved the offset,
//! and whether the partition is stalled. [`assess`] is the rule, a pure function of its inputs.
//!
//! A partition is **stalled** when it has records waiting (lag > 0) and its committed offset
//! has not moved for `stall_after` (`processing.stall_intervals` commit intervals): whatever
//! the cause (a broker that refuses commits, a store that cannot write, an agent stuck on one
//! record, a lost wake-up), `/healthz` names it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::Metrics;

/// One active partition's progress, shared by its actor (writer) and the coordinator (reader).
#[derive(Debug)]
pub(crate) struct Progress {
    /// The committed next offset (-1: none yet).
    committed: AtomicI64,
    /// Wall clock (Unix ms) when `committed` last moved, or when the partition started.
    moved_at: AtomicI64,
    /// Timestamp (Unix ms) of the last record processed (-1: none yet).
    last_record: AtomicI64,
    /// Restored, joined (exactly once) and reading its queue.
    consuming: AtomicBool,
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Progress {
    /// A partition starting at `start` (its committed offset, if known), now.
    pub(crate) fn new(start: Option<i64>) -> Arc<Self> {
        Arc::new(Progress {
            committed: AtomicI64::new(start.unwrap_or(-1)),
            moved_at: AtomicI64::new(now_ms()),
            last_record: AtomicI64::new(-1),
            consuming: AtomicBool::new(false),
        })
    }

    /// Everything before `next` is committed.
    pub(crate) fn committed(&self, next: i64) {
        self.committed_at(next, now_ms());
    }

    /// Everything before `next` is committed, at `now` (Unix ms).
    fn committed_at(&self, next: i64, now: i64) {
        if self.committed.fetch_max(next, Ordering::Relaxed) < next {
            self.moved_at.store(now, Ordering::Relaxed);
        }
    }

    /// A record stamped `timestamp` (Unix ms) was processed.
    pub(crate) fn processed(&self, timestamp: i64) {
        self.last_record.store(timestamp, Ordering::Relaxed);
    }

    /// The partition reads its queue from now on.
    pub(crate) fn consuming(&self) {
        self.consuming.store(true, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        let known = |v: i64| (v >= 0).then_some(v);
        Snapshot {
            committed: known(self.committed.load(Ordering::Relaxed)),
            moved_at: self.moved_at.load(Ordering::Relaxed),
            last_record: known(self.last_record.load(Ordering::Relaxed)),
        }
    }
}

/// A partition's progress at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) committed: Option<i64>,
    pub(crate) moved_at: i64,
    pub(crate) last_record: Option<i64>,
}

/// What the coordinator reports about one partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Assessment {
    /// Records waiting: the high watermark minus the committed offset (`None`: unknown).
    pub(crate) lag_records: Option<i64>,
    /// How far behind in time: 0 without lag; else the age of the last record processed
    /// (or, before any, the time since the partition started).
    pub(crate) lag_seconds: f64,
    /// Seconds since the committed offset last moved (or since the start).
    pub(crate) commit_age_seconds: f64,
    /// Records waiting and no commit moved the offset for `stall_after`.
    pub(crate) stalled: bool,
}

/// The rule (see the module doc). `high` is the partition's high watermark (`None`: not
/// fetched yet); `now` in Unix ms. A partition that never committed counts its lag from the
/// low watermark `low`.
pub(crate) fn assess(
    p: Snapshot,
    low: Option<i64>,
    high: Option<i64>,
    now: i64,
    stall_after: Duration,
) -> Assessment {
    let from = p.committed.or(low);
    let lag_records = match (high, from) {
        (Some(h), Some(c)) => Some((h - c).max(0)),
        _ => None,
    };
    let waiting = lag_records.is_some_and(|l| l > 0);
    let secs = |since: i64| ((now - since).max(0) as f64) / 1000.0;
    let commit_age_seconds = secs(p.moved_at);
    Assessment {
        lag_records,
        lag_seconds: match (waiting, p.last_record) {
            (false, _) => 0.0,
            (true, Some(t)) => secs(t),
            (true, None) => commit_age_seconds,
        },
        commit_age_seconds,
        stalled: waiting && now - p.moved_at >= stall_after.as_millis() as i64,
    }
}

/// The coordinator's view of its partitions' progress, exported as metrics.
pub(crate) struct Watch {
    stall_after: Duration,
    /// Label pairs exported at the last observation (removed when their partition leaves).
    shown: HashSet<(Arc<str>, i32)>,
}

impl Watch {
    /// Partitions are stalled after `stall_after` without progress while records wait.
    pub(crate) fn new(stall_after: Duration) -> Self {
        Watch {
            stall_after,
            shown: HashSet::new(),
        }
    }

    /// Exports every partition's lag, commit age and stall, and how many are not consuming
    /// yet. `watermarks` gives a partition's cached (low, high) watermarks.
    pub(crate) fn observe<'a>(
        &mut self,
        partitions: impl Iterator<Item = (&'a Arc<str>, i32, &'a Progress)>,
        watermarks: impl Fn(&str, i32) -> Option<(i64, i64)>,
        metrics: &Metrics,
    ) {
        let now = now_ms();
        let mut shown = HashSet::new();
        let mut not_ready = 0;
        for (topic, partition, progress) in partitions {
            let label = partition.to_string();
            let labels = [&**topic, label.as_str()];
            let (low, high) = match watermarks(topic, partition) {
                Some((l, h)) if h >= 0 => (Some(l.max(0)), Some(h)),
                _ => (None, None),
            };
            let a = assess(progress.snapshot(), low, high, now, self.stall_after);
            let m = metrics;
            m.partition_lag_records
                .with_label_values(&labels)
                .set(a.lag_records.unwrap_or(0));
            m.partition_lag_seconds
                .with_label_values(&labels)
                .set(a.lag_seconds);
            m.partition_commit_age_seconds
                .with_label_values(&labels)
                .set(a.commit_age_seconds);
            m.status().set_stalled(topic, partition, Some(a.stalled));
            not_ready += i64::from(!progress.consuming.load(Ordering::Relaxed));
            shown.insert((topic.clone(), partition));
        }
        for (topic, partition) in self.shown.difference(&shown) {
            let label = partition.to_string();
            let labels = [&**topic, label.as_str()];
            let _ = metrics.partition_lag_records.remove_label_values(&labels);
            let _ = metrics.partition_lag_seconds.remove_label_values(&labels);
            let _ = metrics
                .partition_commit_age_seconds
                .remove_label_values(&labels);
            metrics.status().set_stalled(topic, *partition, None);
        }
        metrics.status().set_not_ready(not_ready);
        self.shown = shown;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(10);

    fn at(committed: Option<i64>, moved_at: i64, last_record: Option<i64>) -> Snapshot {
        Snapshot {
            committed,
            moved_at,
            last_record,
        }
    }

    #[test]
    fn caught_up_is_never_stalled_however_old_its_last_commit() {
        let a = assess(
            at(Some(100), 0, Some(0)),
            Some(0),
            Some(100),
            3_600_000,
            STALL,
        );
        assert_eq!(a.lag_records, Some(0));
        assert_eq!(a.lag_seconds, 0.0);
        assert_eq!(a.commit_age_seconds, 3600.0);
        assert!(!a.stalled);
    }

    #[test]
    fn waiting_records_and_no_progress_for_the_bound_is_a_stall() {
        let p = at(Some(100), 1_000, Some(500));
        let before = assess(p, Some(0), Some(150), 10_999, STALL);
        assert_eq!(before.lag_records, Some(50));
        assert!(!before.stalled);
        let after = assess(p, Some(0), Some(150), 11_000, STALL);
        assert!(after.stalled);
        assert_eq!(after.lag_seconds, 10.5);
    }

    #[test]
    fn a_partition_that_never_committed_counts_from_the_low_watermark() {
        let a = assess(at(None, 0, None), Some(40), Some(100), 20_000, STALL);
        assert_eq!(a.lag_records, Some(60));
        assert_eq!(a.lag_seconds, 20.0);
        assert!(a.stalled);
    }

    #[test]
    fn unknown_watermarks_say_nothing_and_stall_nothing() {
        let a = assess(at(Some(5), 0, None), None, None, 99_000, STALL);
        assert_eq!(a.lag_records, None);
        assert!(!a.stalled);
    }

    #[test]
    fn commits_that_move_the_offset_reset_the_age_and_others_do_not() {
        let p = Progress::new(Some(10));
        let first = p.snapshot().moved_at;
        p.committed_at(10, first + 5_000);
        assert_eq!(p.snapshot().moved_at, first);
        p.committed_at(9, first + 6_000);
        assert_eq!(p.snapshot().committed, Some(10));
        p.committed_at(11, first + 7_000);
        assert_eq!(p.snapshot().moved_at, first + 7_000);
        assert_eq!(p.snapshot().committed, Some(11));
    }
}
