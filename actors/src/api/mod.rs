//! # api: what a user implements
//!
//! Uses the layers below; the runtime uses it. **What a user implements** is here:
//! - [`agent`]: the [`Agent`](agent::Agent) trait and the [`Event`](agent::Event) it handles.
//! - [`fn_agent`]: the short form, [`agent`](fn_agent::agent)`(name).tables(..).handle(async |event, tables| ..)`.
//! - [`fn_concurrent`]: the short form of a concurrent agent, `agent(name).concurrency(n)
//!   .prepare(..).handle(..)`.
//! - [`batch`]: [`BatchAgent`](batch::BatchAgent), events in batches of up to n or within a time.
//! - [`concurrent`]: [`ConcurrentAgent`](concurrent::ConcurrentAgent), up to N events of a
//!   partition waiting on I/O at once, tables still changed one event at a time.
//! - [`repartition`]: `group_by`, re-keying a stream through an internal topic.
//! - [`policy`]: what happens to events that cannot be processed (skip, dead-letter, stop).
//! - `erased`: the type erasure that lets the runtime hold any agent ([`AgentRef`](erased::AgentRef)).

pub mod agent;
pub mod batch;
pub mod concurrent;
pub mod erased;
pub mod fn_agent;
pub mod fn_concurrent;
pub mod policy;
pub mod repartition;
