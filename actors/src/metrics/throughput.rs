//! Throughput as a rate between two readings of a counter. The clock is passed in, so the
//! arithmetic is tested without waiting.

use std::time::Instant;

/// Turns successive readings of a monotonic counter into events per second.
#[derive(Debug, Default)]
pub struct RateMeter {
    last: Option<(Instant, u64)>,
}

impl RateMeter {
    /// Records `total` read at `now`; returns the rate since the previous reading, if there was
    /// one and time has passed. A counter that went down (a restart) counts from zero.
    pub fn observe(&mut self, now: Instant, total: u64) -> Option<f64> {
        let rate = self.last.and_then(|(then, before)| {
            let secs = now.checked_duration_since(then)?.as_secs_f64();
            (secs > 0.0).then(|| total.checked_sub(before).unwrap_or(total) as f64 / secs)
        });
        self.last = Some((now, total));
        rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_is_delta_over_elapsed_time() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        assert_eq!(m.observe(t0, 100), None);
        assert_eq!(
            m.observe(t0 + Duration::from_millis(500), 600),
            Some(1000.0)
        );
        assert_eq!(m.observe(t0 + Duration::from_millis(500), 700), None);
        assert_eq!(m.observe(t0 + Duration::from_millis(1500), 50), Some(50.0));
    }
}
