//! Windows: what a window is, which windows an event falls in, where event time comes from,
//! and the clocks (the handle agents keep is `windowed::WindowedTable`).
//!
//! Three kinds, each with a **grace** period (how long after a window's end late events are
//! still accepted) and an **expiry** (how long a closed window stays readable):
//! - [`WindowedTable::tumbling`](crate::WindowedTable::tumbling)`(size)`: back-to-back windows `[k*size, (k+1)*size)`;
//! - [`WindowedTable::hopping`](crate::WindowedTable::hopping)`(size, step)`: windows of `size` starting every `step`, so an
//!   event falls in `size/step` of them;
//! - [`WindowedTable::sliding`](crate::WindowedTable::sliding)`(before, after, merge)`: one window around each event,
//!   `[t - before, t + after]` (both ends included). Values are kept per key and event time and
//!   combined with `merge` when read or closed, so every sliding window is exact.
//!
//! Times are milliseconds since the epoch. A window *closes* when the table's stream time (the
//! largest event time it has seen; the clock for processing-time tables) reaches its end plus
//! the grace: its final value goes to the close callback and the close topic once, and the
//! close is written to the changelog with the window. An event for a closed window is *late*:
//! it is counted in `faust_late_events_total{table}` and not applied. A window is deleted
//! (store and changelog tombstone) when stream time reaches its close plus the expiry.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::error::Result;

/// One window: `[start, end)` in milliseconds since the epoch (`end` is exclusive; a sliding
/// window around `t` is `[t - before, t + after + 1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

/// The shape of a windowed table's windows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowKind {
    /// Windows of `size` starting every `size`.
    Tumbling {
        /// Window length.
        size: i64,
    },
    /// Windows of `size` starting every `step`.
    Hopping {
        /// Window length.
        size: i64,
        /// Distance between window starts.
        step: i64,
    },
    /// One window `[t - before, t + after]` around each event time `t`.
    Sliding {
        /// How far the window reaches back from the event.
        before: i64,
        /// How far the window reaches forward from the event.
        after: i64,
    },
    /// Per-key activity sessions (Kafka Streams' `SessionWindows`): an event within `gap` of
    /// a session joins it, one that bridges two merges them; a session closes once stream time
    /// passes its last event by more than `gap` (plus the grace). A session's window is
    /// `[first event, last event + 1)`.
    Session {
        /// The inactivity gap.
        gap: i64,
    },
}

impl WindowKind {
    /// The stored times an event at `t` updates: window starts (tumbling, hopping), or `t`
    /// itself (sliding: values are kept per event time). Any `i64` is an event time: near its
    /// ends the arithmetic saturates, so the windows there are cut, never looped over.
    pub(crate) fn slots_of(self, t: i64) -> Vec<i64> {
        match self {
            WindowKind::Tumbling { size } => vec![floor(t, size)],
            WindowKind::Hopping { size, step } => {
                let low = t.saturating_sub(size);
                let mut start = Some(floor(t, step));
                let mut out = Vec::new();
                while let Some(s) = start.filter(|s| *s > low || out.is_empty()) {
                    out.push(s);
                    start = s.checked_sub(step);
                }
                out
            }
            WindowKind::Sliding { .. } | WindowKind::Session { .. } => vec![t],
        }
    }

    /// The window whose final value the slot stored at `s` stands for.
    pub fn window_of(self, s: i64) -> Window {
        match self {
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => Window {
                start: s,
                end: s.saturating_add(size),
            },
            WindowKind::Sliding { before, after } => Window {
                start: s.saturating_sub(before),
                end: s.saturating_add(after).saturating_add(1),
            },
            // A session is stored under its last event; its start is stored with it.
            WindowKind::Session { .. } => Window {
                start: s,
                end: s.saturating_add(1),
            },
        }
    }

    /// From a slot's stored time to the stream time that closes its window (a session's: its
    /// last event, plus the gap).
    pub(crate) fn close_offset(self, grace: i64) -> i64 {
        let end = match self {
            WindowKind::Session { gap } => gap.saturating_add(1),
            kind => kind.window_of(0).end,
        };
        end.saturating_add(grace)
    }

    /// From a slot's stored time to the stream time that deletes it: its window's expiry, or
    /// for sliding tables the expiry of the last window that reads it.
    pub(crate) fn expire_offset(self, grace: i64, expires: i64) -> i64 {
        let reach = match self {
            WindowKind::Sliding { before, .. } => before,
            _ => 0,
        };
        reach
            .saturating_add(self.close_offset(grace))
            .saturating_add(expires)
    }

    /// The time a read at `t` means by "the current window": for hopping tables the latest
    /// window containing `t` (the one that started last).
    pub(crate) fn current_slot(self, t: i64) -> i64 {
        match self {
            WindowKind::Tumbling { size } => floor(t, size),
            WindowKind::Hopping { step, .. } => floor(t, step),
            WindowKind::Sliding { .. } | WindowKind::Session { .. } => t,
        }
    }
}

/// `t` rounded down to a multiple of `unit`; `i64::MIN` when that is below it.
fn floor(t: i64, unit: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(unit))
}

/// Where a windowed table's clock comes from; shared so tests can move time by hand.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told to: for tests of processing-time windows and `now()`.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(ms)))
    }

    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

type Extractor = Arc<dyn Fn(&dyn Any) -> Option<Result<i64>> + Send + Sync>;

/// Where an event's time comes from.
#[derive(Clone, Default)]
pub enum EventTime {
    /// The record's timestamp (producer's create time or the broker's append time).
    #[default]
    Record,
    /// The table's clock when the event is handled.
    Processing,
    /// A field of the decoded value, through a user-supplied extractor.
    Field(Extractor),
}

impl fmt::Debug for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventTime::Record => "Record",
            EventTime::Processing => "Processing",
            EventTime::Field(_) => "Field(..)",
        })
    }
}

impl EventTime {
    /// Event time read from the agent's value of type `E` with `f` (milliseconds). Using the
    /// table from an agent whose value is not an `E` is an error naming the table.
    pub fn field<E: 'static>(f: impl Fn(&E) -> i64 + Send + Sync + 'static) -> Self {
        EventTime::Field(Arc::new(move |value: &dyn Any| {
            value.downcast_ref::<E>().map(|v| Ok(f(v)))
        }))
    }
}

/// A window's final value, as a windowed table's close topic carries it (the record key is
/// the table key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowResult<V> {
    /// First millisecond of the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
    /// The window's final value.
    pub value: V,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fall_in_the_right_windows() {
        let t = WindowKind::Tumbling { size: 10 };
        assert_eq!(t.slots_of(0), vec![0]);
        assert_eq!(t.slots_of(9), vec![0]);
        assert_eq!(t.slots_of(10), vec![10]);
        assert_eq!(t.slots_of(-1), vec![-10], "negative times floor");
        let h = WindowKind::Hopping { size: 10, step: 5 };
        assert_eq!(h.slots_of(12), vec![10, 5]);
        assert_eq!(h.slots_of(10), vec![10, 5]);
        assert_eq!(h.slots_of(4), vec![0, -5]);
        assert_eq!(h.current_slot(12), 10, "the latest window containing t");
        let s = WindowKind::Sliding {
            before: 3,
            after: 2,
        };
        assert_eq!(s.slots_of(7), vec![7]);
        assert_eq!(s.window_of(7), Window { start: 4, end: 10 });
    }

    #[test]
    fn event_times_at_the_ends_of_i64_neither_overflow_nor_loop() {
        let h = WindowKind::Hopping { size: 10, step: 5 };
        // The windows that would start before i64::MIN are cut: bounded, no wrap-around.
        assert_eq!(h.slots_of(i64::MIN), vec![i64::MIN]);
        assert!(h.slots_of(i64::MIN + 3).len() <= 2);
        assert_eq!(h.slots_of(i64::MAX).len(), 2);
        assert_eq!(h.window_of(i64::MAX).end, i64::MAX);
        let t = WindowKind::Tumbling { size: 10 };
        assert_eq!(t.slots_of(i64::MIN), vec![i64::MIN]);
        assert_eq!(
            t.slots_of(i64::MAX),
            vec![i64::MAX - i64::MAX.rem_euclid(10)]
        );
        let s = WindowKind::Sliding {
            before: 3,
            after: 2,
        };
        assert_eq!(s.window_of(i64::MIN).start, i64::MIN);
        assert_eq!(s.window_of(i64::MAX).end, i64::MAX);
        assert_eq!(s.expire_offset(i64::MAX, 1), i64::MAX);
    }

    #[test]
    fn close_and_expiry_offsets() {
        let t = WindowKind::Tumbling { size: 10 };
        assert_eq!(
            t.close_offset(2),
            12,
            "window [0,10) closes at stream time 12"
        );
        assert_eq!(t.expire_offset(2, 5), 17);
        let s = WindowKind::Sliding {
            before: 3,
            after: 2,
        };
        assert_eq!(s.close_offset(0), 3, "the window around 0 ends after 2");
        assert_eq!(
            s.expire_offset(0, 4),
            10,
            "slot 0 is read by the window around 3, which expires at 3 + 3 + 4"
        );
    }
}
