//! The demo agents: page views counted per URL, Faust's introductory example in Rust
//! (`faust-node` and `examples/page_views.rs` both run this one definition), and the same count
//! per tumbling window (`examples/windowed_clicks.rs`).

use std::time::Duration;

use faust_actors::{Agent, AgentError, Codec, Event, Table, TableSpec, Window, WindowedTable};
use serde::{Deserialize, Serialize};

pub use crate::generator::PageView;

/// The page-view counts table: URL (string key) -> views (JSON integer).
pub fn page_counts() -> Table<String, u64> {
    Table::new("page_counts").key_codec(Codec::String)
}

/// What the agent emits to its sinks after each event: the URL's new count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCount {
    /// The page.
    pub url: String,
    /// Views counted so far.
    pub count: u64,
}

/// Counts page views per URL in the `page_counts` table and emits each new count to the
/// agent's sinks (`[agents.page_views] sinks = [...]`), keyed by URL.
#[derive(Debug, Clone)]
pub struct PageViews {
    counts: Table<String, u64>,
    topic: String,
}

impl PageViews {
    /// The agent, consuming topic `page_views`.
    pub fn new() -> Self {
        Self::on_topic("page_views")
    }

    /// The agent, consuming `topic`.
    pub fn on_topic(topic: &str) -> Self {
        PageViews {
            counts: page_counts(),
            topic: topic.into(),
        }
    }
}

impl Default for PageViews {
    fn default() -> Self {
        Self::new()
    }
}

impl Agent for PageViews {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "page_views"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let url = event.value().url.clone();
        let count = event
            .table(&self.counts)?
            .update(url.clone(), |n| n.unwrap_or(0) + 1)?;
        let out = PageCount { url, count };
        event.emit(Some(&out.url), &out).await?;
        Ok(())
    }
}

/// Page views per URL per tumbling event-time window (the record timestamp), like Faust's
/// `app.Table("clicks", default=int).tumbling(10)`. Each closed window's final count goes to the
/// close topic as `{"start", "end", "value"}` keyed by URL.
#[derive(Debug, Clone)]
pub struct WindowedClicks {
    counts: WindowedTable<String, u64>,
    topic: String,
}

impl WindowedClicks {
    /// Counts `topic`'s page views in windows of `size`, accepting events up to `grace` late,
    /// and sends every closed window to `close_topic`.
    pub fn new(topic: &str, size: Duration, grace: Duration, close_topic: &str) -> Self {
        let counts = WindowedTable::tumbling("clicks_per_window", size)
            .grace(grace)
            .key_codec(Codec::String)
            .close_topic(close_topic);
        WindowedClicks {
            counts,
            topic: topic.into(),
        }
    }

    /// Also calls `f(url, window, count)` for each closed window.
    pub fn on_close(mut self, f: impl Fn(&String, Window, &u64) + Send + Sync + 'static) -> Self {
        self.counts = self.counts.on_close(f);
        self
    }

    /// The windowed table.
    pub fn table(&self) -> &WindowedTable<String, u64> {
        &self.counts
    }
}

impl Agent for WindowedClicks {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "windowed_clicks"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let url = event.value().url.clone();
        event
            .window(&self.counts)?
            .update(url, |n| n.unwrap_or(0) + 1)?;
        Ok(())
    }
}
