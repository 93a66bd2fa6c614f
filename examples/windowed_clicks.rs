//! Page views per URL per 10-second tumbling window, with a 2-second grace period: Faust's
//! `app.Table("clicks", default=int).tumbling(10)`, with closing made exact.
//!
//! ```text
//! cargo run --release --example windowed_clicks -- worker --config config/windowed_clicks.toml
//! curl -s 127.0.0.1:6067/metrics | grep -E 'faust_windows|faust_late'
//! ```
//!
//! Event time is the record timestamp. When a partition's stream time passes a window's end
//! plus the grace, the window closes: its final count is logged by the callback below and sent
//! to `clicks_per_window` as `{"start", "end", "value"}`, once (the close is committed with the
//! window); a later event for it is counted in `faust_late_events_total` and not applied.
//! Closed windows stay readable for one more window, then are deleted from store and changelog.
//!
//! Guarantee: at-least-once. After a crash a close may be sent again, never lost, and its
//! value is never below the true count.

use std::process::ExitCode;
use std::time::Duration;

use faust::demo::WindowedClicks;
use faust::App;

fn main() -> ExitCode {
    let size = Duration::from_secs(10);
    let grace = Duration::from_secs(2);
    let agent = WindowedClicks::new("page_views", size, grace, "clicks_per_window");
    let agent = agent.on_close(|url, window, count| {
        tracing::info!(%url, start = window.start, end = window.end, count = *count,
            "window closed");
    });
    App::new().agent(agent).main()
}
