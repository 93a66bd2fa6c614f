//! The short form of an agent: a name, its tables once, and an async closure ([`agent`]), beside
//! the [`Agent`] trait (the full-power form: `on_assign`, `on_revoke`, state in the struct).
//!
//! ```
//! use faust_actors::{agent, Codec, Event, Table};
//! # #[derive(serde::Deserialize)] struct PageView { url: String }
//!
//! let counts = Table::<String, u64>::new("page_counts").key_codec(Codec::String);
//! let views = agent("page_views").tables(counts).handle(
//!     async |event: &mut Event<'_, String, PageView>, counts| {
//!         let url = event.value().url.clone();
//!         let n = event.table(counts)?.update(url.clone(), |n| n.unwrap_or(0) + 1)?;
//!         event.emit(Some(&url), &n).await?;
//!         Ok(())
//!     },
//! );
//! ```
//!
//! The tables given to [`AgentBuilder::tables`] are declared for the agent (no `tables()` to
//! keep in step) and handed to the closure with each event: one table, or a tuple of up to four.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::api::agent::{Agent, AgentError, Event};
use crate::state::spec::{TableKey, TableSpec, TableValue};
use crate::state::table::{GlobalTable, Table};
use crate::state::windowed::WindowedTable;

/// What an agent's tables can be given as: one table, or a tuple of them (`()` for none).
pub trait Tables: Send + Sync + 'static {
    /// Their specs, in order.
    fn specs(&self) -> Vec<TableSpec>;
}

impl Tables for () {
    fn specs(&self) -> Vec<TableSpec> {
        Vec::new()
    }
}

impl<K: TableKey, V: TableValue> Tables for Table<K, V> {
    fn specs(&self) -> Vec<TableSpec> {
        vec![self.spec()]
    }
}

impl<K: TableKey, V: TableValue> Tables for WindowedTable<K, V> {
    fn specs(&self) -> Vec<TableSpec> {
        vec![self.spec()]
    }
}

impl<K: TableKey, V: TableValue> Tables for GlobalTable<K, V> {
    fn specs(&self) -> Vec<TableSpec> {
        vec![self.spec()]
    }
}

macro_rules! tuple_tables {
    ($($t:ident),+) => {
        impl<$($t: Tables),+> Tables for ($($t,)+) {
            fn specs(&self) -> Vec<TableSpec> {
                #[allow(non_snake_case)]
                let ($($t,)+) = self;
                let mut out = Vec::new();
                $(out.extend($t.specs());)+
                out
            }
        }
    };
}
tuple_tables!(A);
tuple_tables!(A, B);
tuple_tables!(A, B, C);
tuple_tables!(A, B, C, D);

/// Starts an agent named `name` (metric label, log field, `[agents.<name>]` in the config)
/// that consumes the topic of the same name unless [`topic`](AgentBuilder::topic) says others.
pub fn agent(name: &str) -> AgentBuilder<()> {
    AgentBuilder {
        name: name.to_owned(),
        topics: Vec::new(),
        tables: (),
    }
}

/// An agent being described; [`handle`](AgentBuilder::handle) finishes it.
#[derive(Debug, Clone)]
pub struct AgentBuilder<T> {
    name: String,
    topics: Vec<String>,
    tables: T,
}

impl<T: Tables> AgentBuilder<T> {
    /// Consumes `topic` (call again for more); without it, the topic named like the agent.
    pub fn topic(mut self, topic: &str) -> Self {
        self.topics.push(topic.to_owned());
        self
    }

    /// Declares the agent's tables, handed to the closure with each event.
    pub fn tables<U: Tables>(self, tables: U) -> AgentBuilder<U> {
        AgentBuilder {
            name: self.name,
            topics: self.topics,
            tables,
        }
    }

    /// Its name, topics (the one named like the agent when none was given) and tables.
    pub(crate) fn into_parts(self) -> (String, Vec<String>, T) {
        let topics = match self.topics.is_empty() {
            true => vec![self.name.clone()],
            false => self.topics,
        };
        (self.name, topics, self.tables)
    }

    /// The agent: `f` handles each event, with the tables. An error retries the event (its
    /// table writes undone), as [`Agent::handle`] does.
    pub fn handle<K, V, F>(self, f: F) -> FnAgent<K, V, T, F>
    where
        K: DeserializeOwned + 'static,
        V: DeserializeOwned + 'static,
        F: AsyncFn(&mut Event<'_, K, V>, &T) -> Result<(), AgentError> + Send + Sync + 'static,
    {
        let (name, topics, tables) = self.into_parts();
        FnAgent {
            name,
            topics,
            tables,
            f,
            types: PhantomData,
        }
    }
}

/// An agent made of a closure (see [`agent`]).
pub struct FnAgent<K, V, T, F> {
    name: String,
    topics: Vec<String>,
    tables: T,
    f: F,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V, T, F> std::fmt::Debug for FnAgent<K, V, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnAgent")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl<K, V, T, F> Agent for FnAgent<K, V, T, F>
where
    K: DeserializeOwned + 'static,
    V: DeserializeOwned + 'static,
    T: Tables,
    F: AsyncFn(&mut Event<'_, K, V>, &T) -> Result<(), AgentError> + Send + Sync + 'static,
{
    type Key = K;
    type Value = V;

    fn name(&self) -> &str {
        &self.name
    }

    fn topics(&self) -> Vec<String> {
        self.topics.clone()
    }

    fn tables(&self) -> Vec<TableSpec> {
        self.tables.specs()
    }

    async fn handle(&self, event: &mut Event<'_, K, V>) -> Result<(), AgentError> {
        (self.f)(event, &self.tables).await
    }
}
