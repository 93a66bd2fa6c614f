//! Page views counted per URL: the program `faust-node` is, written as a user writes theirs.
//!
//! The agent itself is `faust::demo::PageViews` (src/demo.rs), shared with `faust-node`:
//!
//! ```ignore
//! impl Agent for PageViews {
//!     type Key = String;
//!     type Value = PageView;
//!     fn name(&self) -> &str { "page_views" }
//!     fn topics(&self) -> Vec<String> { vec!["page_views".into()] }
//!     fn tables(&self) -> Vec<TableSpec> { vec![self.counts.spec()] }
//!     async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
//!         let url = event.value().url.clone();
//!         event.table(&self.counts)?.update(url, |n| n.unwrap_or(0) + 1)?;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Run it on the embedded broker, with the built-in page-view generator:
//!
//! ```text
//! cargo run --release --example page_views -- worker --config config/demo.toml
//! curl 127.0.0.1:6066/metrics
//! ```
//!
//! Guarantee: at-least-once. An offset is committed only after the events before it were
//! handled and their table writes stored; a clean stop (SIGTERM, SIGINT) commits everything, so
//! a restart continues exactly where it stopped.

use std::process::ExitCode;

use faust::demo::PageViews;
use faust::App;

fn main() -> ExitCode {
    App::new().agent(PageViews::new()).main()
}
