//! The node's lease on its partitions: whether it can still believe the group counts it as a
//! member. A node frozen (GC pause, SIGSTOP, VM stall) for longer than the group's session
//! timeout has been evicted by the broker and its partitions handed to another node, but when
//! it wakes its threads race on as if nothing happened, until the consumer hears of it. Those
//! threads must write nothing: no output, no changelog, no offset (a stale changelog value
//! written after the new owner's rolls the table back at the next failover).
//!
//! A watchdog thread ticks a monotonic clock (which runs on while the process is frozen). The
//! lease is **valid** while the last tick is recent (within the session timeout) and no tick
//! found a gap longer than that; a gap makes it **suspended** until the group answers again
//! (the next assignment or revocation). Whoever checks first after a freeze (a partition about
//! to send, or the watchdog) sees the gap: the partition because the last tick is old, the
//! watchdog because it measures it. Writers check [`Lease::valid`] before sending.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

#[derive(Debug)]
struct Inner {
    origin: Instant,
    /// Milliseconds from `origin` at the watchdog's last tick.
    last_tick: AtomicU64,
    /// A gap longer than `bound` was seen and the group has not answered since.
    suspended: AtomicBool,
    bound: Duration,
    metrics: Option<Metrics>,
}

/// See the module doc. Cheap to clone and to check.
#[derive(Debug, Clone)]
pub struct Lease(Arc<Inner>);

impl Lease {
    /// A lease bounded by the group's session timeout, with its watchdog thread (which ends
    /// with the last clone). `metrics` gets `faust_membership_suspended`.
    pub fn start(session_timeout: Duration, metrics: Option<Metrics>) -> Self {
        let lease = Self::new(session_timeout, metrics);
        let weak: Weak<Inner> = Arc::downgrade(&lease.0);
        let every = (session_timeout / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let spawned = std::thread::Builder::new()
            .name("faust-lease".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(inner) = weak.upgrade() else { return };
                Lease(inner).tick();
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the lease watchdog; freezes go unnoticed");
        }
        lease
    }

    /// A lease without a watchdog: always valid unless told otherwise (tests, embedded use).
    fn new(bound: Duration, metrics: Option<Metrics>) -> Self {
        Lease(Arc::new(Inner {
            origin: Instant::now(),
            last_tick: AtomicU64::new(0),
            suspended: AtomicBool::new(false),
            bound,
            metrics,
        }))
    }

    fn now_ms(&self) -> u64 {
        self.0.origin.elapsed().as_millis() as u64
    }

    fn gap(&self) -> Duration {
        let last = self.0.last_tick.load(Ordering::SeqCst);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }

    /// The watchdog's tick: a gap longer than the bound suspends the lease.
    fn tick(&self) {
        let gap = self.gap();
        if gap > self.0.bound && !self.0.suspended.swap(true, Ordering::SeqCst) {
            tracing::error!(?gap, session_timeout = ?self.0.bound,
                "this node was frozen for longer than the group's session timeout: its \
                 partitions may belong to another node now; writing nothing until the group \
                 answers");
            if let Some(m) = &self.0.metrics {
                m.status().set_suspended(true);
            }
        }
        self.0.last_tick.store(self.now_ms(), Ordering::SeqCst);
    }

    /// Whether this node may still write for its partitions.
    pub fn valid(&self) -> bool {
        !self.0.suspended.load(Ordering::SeqCst) && self.gap() <= self.0.bound
    }

    /// The group answered (an assignment or a revocation): the partitions held from now on
    /// are this node's.
    pub fn rejoined(&self) {
        if self.0.suspended.swap(false, Ordering::SeqCst) {
            tracing::warn!("the group answered: writing again for the partitions held now");
        }
        if let Some(m) = &self.0.metrics {
            m.status().set_suspended(false);
        }
        self.0.last_tick.store(self.now_ms(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease whose last tick was `ago` before now.
    fn ticked_ago(bound: Duration, ago: Duration) -> Lease {
        let lease = Lease::new(bound, None);
        // The origin moves back instead of the clock forward: no sleeping.
        Lease(Arc::new(Inner {
            origin: lease.0.origin - ago,
            last_tick: AtomicU64::new(lease.now_ms()),
            suspended: AtomicBool::new(false),
            bound,
            metrics: None,
        }))
    }

    #[test]
    fn a_recent_tick_is_valid() {
        let lease = ticked_ago(Duration::from_secs(6), Duration::from_secs(1));
        assert!(lease.valid());
        lease.tick();
        assert!(lease.valid());
    }

    #[test]
    fn a_gap_longer_than_the_session_suspends_until_the_group_answers() {
        let lease = ticked_ago(Duration::from_secs(6), Duration::from_secs(20));
        // Before the watchdog runs: the old tick says so.
        assert!(!lease.valid());
        // The watchdog measures the gap: suspended, and a fresh tick does not end it.
        lease.tick();
        assert!(!lease.valid());
        lease.tick();
        assert!(!lease.valid());
        lease.rejoined();
        assert!(lease.valid());
    }
}
