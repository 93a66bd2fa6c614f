//! Agents several test files use.

use faust::demo::PageView;
use faust::{Agent, AgentError, Event, GlobalTable, TableSpec};

/// Counts views per URL in a global table: every node ends up with every URL's count.
pub struct GlobalCounter {
    pub topic: String,
    pub views: GlobalTable<String, u64>,
}

impl Agent for GlobalCounter {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "global_counter"
    }

    fn topics(&self) -> Vec<String> {
        vec![self.topic.clone()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.views.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let url = event.value().url.clone();
        let mut views = event.global(&self.views)?;
        let n = views.get(&url)?.unwrap_or(0);
        views.insert(url, n + 1)?;
        Ok(())
    }
}
