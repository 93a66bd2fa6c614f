//! Fault injection for the crash tests, compiled only with the `fault-injection` feature
//! (which the test builds turn on through a dev-dependency): a shipped binary reads no
//! environment variable here and does nothing. With the feature, variables the tests set on a
//! node process choose the fault:
//! - `FAUST_FAULT_COMMIT_PAUSE_MS`: every transaction commit waits that long between sending
//!   the offsets and committing, so that a test can kill the node inside a commit;
//! - `FAUST_FAULT_ABORT_ROUNDS=n`: the node's first n transactions that hold anything abort.

#[cfg(feature = "fault-injection")]
use std::time::Duration;

/// Fault injection for the crash tests: `FAUST_FAULT_COMMIT_PAUSE_MS` makes every commit wait
/// that long between sending the offsets and committing, announced on the log, so that a test
/// can kill the node inside a commit. Unset, it costs one read of a cached value.
#[cfg(feature = "fault-injection")]
pub(crate) fn commit_pause() {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        std::env::var("FAUST_FAULT_COMMIT_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    });
    if let Some(pause) = pause {
        tracing::warn!(
            ?pause,
            "fault injection: pausing inside a transaction commit"
        );
        std::thread::sleep(*pause);
    }
}

/// Fault injection for the abort test: `FAUST_FAULT_ABORT_ROUNDS=n` aborts the node's first n
/// transactions that hold anything, as a vote that is not ready would.
#[cfg(feature = "fault-injection")]
pub(crate) fn abort_round() -> bool {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LEFT: std::sync::OnceLock<AtomicI64> = std::sync::OnceLock::new();
    let left = LEFT.get_or_init(|| {
        let n = std::env::var("FAUST_FAULT_ABORT_ROUNDS").ok();
        AtomicI64::new(n.and_then(|v| v.parse().ok()).unwrap_or(0))
    });
    left.fetch_sub(1, Ordering::SeqCst) > 0
}

/// Without the feature: no pause.
#[cfg(not(feature = "fault-injection"))]
pub(crate) fn commit_pause() {}

/// Without the feature: no round is aborted on purpose.
#[cfg(not(feature = "fault-injection"))]
pub(crate) fn abort_round() -> bool {
    false
}
