//! The short form of a concurrent agent ([`ConcurrentAgent`]): [`agent`](crate::agent)`(name)`,
//! its tables, [`concurrency`](AgentBuilder::concurrency), then a closure for each of the two
//! steps.
//!
//! ```
//! use faust_actors::{agent, AgentError, AgentRef, Codec, Event, Table};
//! # #[derive(serde::Deserialize)] struct PageView { url: String }
//! # async fn score(url: &str) -> Result<u64, AgentError> { Ok(url.len() as u64) }
//!
//! let scores = Table::<String, u64>::new("url_scores").key_codec(Codec::String);
//! let lookups = agent("lookups")
//!     .topic("page_views")
//!     .tables(scores)
//!     .concurrency(8)
//!     .prepare(async |_url: Option<&String>, view: &PageView| score(&view.url).await)
//!     .handle(async |event: &mut Event<'_, String, PageView>, score, scores| {
//!         let url = event.value().url.clone();
//!         event.table(scores)?.update(url, |t| t.unwrap_or(0) + score)?;
//!         Ok(())
//!     });
//! let registered = AgentRef::concurrent(lookups); // what `App::concurrent_agent` does
//! ```

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::api::agent::{AgentError, Event};
use crate::api::concurrent::ConcurrentAgent;
use crate::api::fn_agent::{AgentBuilder, Tables};
use crate::model::record::Record;
use crate::state::spec::TableSpec;

impl<T: Tables> AgentBuilder<T> {
    /// Makes it a concurrent agent: up to `n` events of a partition prepare at once (see
    /// [`ConcurrentAgent`]).
    pub fn concurrency(self, n: usize) -> ConcurrentBuilder<T> {
        let (name, topics, tables) = self.into_parts();
        ConcurrentBuilder {
            name,
            topics,
            tables,
            n,
        }
    }
}

/// A concurrent agent being described; [`prepare`](ConcurrentBuilder::prepare) comes next.
#[derive(Debug, Clone)]
pub struct ConcurrentBuilder<T> {
    name: String,
    topics: Vec<String>,
    tables: T,
    n: usize,
}

impl<T: Tables> ConcurrentBuilder<T> {
    /// The waiting step: `p` gets each event's key and value, no tables, up to the concurrency
    /// at once, in offset order per key ([`ConcurrentAgent::prepare`]).
    pub fn prepare<K, V, R, P>(self, p: P) -> PreparedBuilder<K, V, R, T, P>
    where
        K: DeserializeOwned + 'static,
        V: DeserializeOwned + 'static,
        R: 'static,
        P: AsyncFn(Option<&K>, &V) -> Result<R, AgentError> + Send + Sync + 'static,
    {
        PreparedBuilder {
            builder: self,
            p,
            types: PhantomData,
        }
    }
}

/// The key, value and prepared types a builder or agent carries without holding them.
type Types<K, V, R> = PhantomData<fn() -> (K, V, R)>;

/// A concurrent agent with its waiting step; [`handle`](PreparedBuilder::handle) finishes it.
pub struct PreparedBuilder<K, V, R, T, P> {
    builder: ConcurrentBuilder<T>,
    p: P,
    types: Types<K, V, R>,
}

impl<K, V, R, T, P> std::fmt::Debug for PreparedBuilder<K, V, R, T, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedBuilder")
            .field("name", &self.builder.name)
            .finish_non_exhaustive()
    }
}

impl<K, V, R, T, P> PreparedBuilder<K, V, R, T, P>
where
    K: DeserializeOwned + 'static,
    V: DeserializeOwned + 'static,
    R: 'static,
    T: Tables,
    P: AsyncFn(Option<&K>, &V) -> Result<R, AgentError> + Send + Sync + 'static,
{
    /// The agent: `f` handles each event with what `prepare` returned for it and the tables,
    /// one event at a time in offset order ([`ConcurrentAgent::handle`]).
    pub fn handle<F>(self, f: F) -> FnConcurrentAgent<K, V, R, T, P, F>
    where
        F: AsyncFn(&mut Event<'_, K, V>, R, &T) -> Result<(), AgentError> + Send + Sync + 'static,
    {
        let ConcurrentBuilder {
            name,
            topics,
            tables,
            n,
        } = self.builder;
        FnConcurrentAgent {
            name,
            topics,
            tables,
            n,
            p: self.p,
            f,
            types: PhantomData,
        }
    }
}

/// A concurrent agent made of two closures (see the module doc).
pub struct FnConcurrentAgent<K, V, R, T, P, F> {
    name: String,
    topics: Vec<String>,
    tables: T,
    n: usize,
    p: P,
    f: F,
    types: Types<K, V, R>,
}

impl<K, V, R, T, P, F> std::fmt::Debug for FnConcurrentAgent<K, V, R, T, P, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnConcurrentAgent")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .field("concurrency", &self.n)
            .finish_non_exhaustive()
    }
}

impl<K, V, R, T, P, F> ConcurrentAgent for FnConcurrentAgent<K, V, R, T, P, F>
where
    K: DeserializeOwned + 'static,
    V: DeserializeOwned + 'static,
    R: 'static,
    T: Tables,
    P: AsyncFn(Option<&K>, &V) -> Result<R, AgentError> + Send + Sync + 'static,
    F: AsyncFn(&mut Event<'_, K, V>, R, &T) -> Result<(), AgentError> + Send + Sync + 'static,
{
    type Key = K;
    type Value = V;
    type Prepared = R;

    fn name(&self) -> &str {
        &self.name
    }

    fn topics(&self) -> Vec<String> {
        self.topics.clone()
    }

    fn tables(&self) -> Vec<TableSpec> {
        self.tables.specs()
    }

    fn concurrency(&self) -> usize {
        self.n
    }

    async fn prepare(&self, key: Option<&K>, value: &V, _record: &Record) -> Result<R, AgentError> {
        (self.p)(key, value).await
    }

    async fn handle(&self, event: &mut Event<'_, K, V>, prepared: R) -> Result<(), AgentError> {
        (self.f)(event, prepared, &self.tables).await
    }
}
