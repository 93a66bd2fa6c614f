//! Testing agents without Kafka: [`TestDriver`], Kafka Streams' `TopologyTestDriver` and
//! Faust's `agent.test_context()` in spirit.
//!
//! Build it from an [`App`] and its config, pipe records in, then read tables, what the agents
//! sent, dead letters and window closes. It runs the node's own code for each record (codecs,
//! the agent, tables with their per-event undo, windows, retries and the error policy), with
//! an in-memory store, no broker and no threads: a test takes milliseconds. What differs from a
//! node is listed on [`Driver`].
//!
//! ```
//! use faust::testing::TestDriver;
//! use faust::demo::{page_counts, PageView, PageViews};
//! use faust::App;
//!
//! let app = App::new().agent(PageViews::new());
//! let mut driver = TestDriver::from_toml(&app, r#"
//!     [app]
//!     id = "views"
//!     [topics.page_views]
//!     partitions = 4
//!     key_codec = "string"
//! "#).unwrap();
//! for url in ["/a", "/b", "/a"] {
//!     let view = PageView { url: url.into(), user: "u".into(), ts: 0 };
//!     driver.pipe("page_views", Some(url), &view).unwrap();
//! }
//! assert_eq!(driver.get(&page_counts(), &"/a".to_string()).unwrap(), Some(2));
//! ```

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

pub use faust_actors::{Driver, ManualClock, Record};

use crate::config::Config;
use crate::error::Error;
use crate::topology::Topology;
use crate::App;

/// The test driver of an app: a [`Driver`] (every method is there) built from an [`App`] and
/// its config, checked as a node checks them.
#[derive(Debug)]
pub struct TestDriver(Driver);

impl TestDriver {
    /// The driver of `app` with `config` (its topics' codecs and partition counts, agents'
    /// policies and sinks, tables' change streams). The broker and store settings are not used.
    ///
    /// # Errors
    /// The config does not fit the app ([`Error::Config`], every problem at once).
    pub fn new(app: &App, config: &Config) -> Result<Self, Error> {
        let topology = Topology::compile(&app.agents, config)?;
        let partitions: BTreeMap<String, i32> = topology
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions))
            .collect();
        Ok(TestDriver(Driver::new(
            topology.runtime.clone(),
            partitions,
        )?))
    }

    /// [`new`](Self::new) with the config given as TOML text (defaults for the rest).
    ///
    /// # Errors
    /// As [`new`](Self::new), or the text is not a valid config.
    pub fn from_toml(app: &App, toml: &str) -> Result<Self, Error> {
        Self::new(app, &Config::from_toml(toml)?)
    }
}

impl TestDriver {
    /// Advances `clock` (the one the app's processing-time windows use) with
    /// [`Driver::advance`], and stamps piped records with its time.
    pub fn with_clock(self, clock: std::sync::Arc<ManualClock>) -> Self {
        TestDriver(self.0.with_clock(clock))
    }
}

impl Deref for TestDriver {
    type Target = Driver;

    fn deref(&self) -> &Driver {
        &self.0
    }
}

impl DerefMut for TestDriver {
    fn deref_mut(&mut self) -> &mut Driver {
        &mut self.0
    }
}
