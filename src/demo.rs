//! The demo agent: page views counted per URL, Faust's introductory example in Rust.
//! `faust-node` and `examples/page_views.rs` both run this one definition.

use faust_actors::{Agent, AgentError, Codec, Event, Table, TableSpec};

pub use crate::generator::PageView;

/// The page-view counts table: URL (string key) -> views (JSON integer).
pub fn page_counts() -> Table<String, u64> {
    Table::new("page_counts").key_codec(Codec::String)
}

/// Counts page views per URL in the `page_counts` table.
#[derive(Debug, Clone)]
pub struct PageViews {
    counts: Table<String, u64>,
}

impl PageViews {
    /// The agent, consuming topic `page_views`.
    pub fn new() -> Self {
        PageViews {
            counts: page_counts(),
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
        vec!["page_views".into()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let url = event.value().url.clone();
        event
            .table(&self.counts)?
            .update(url, |n| n.unwrap_or(0) + 1)?;
        Ok(())
    }
}
