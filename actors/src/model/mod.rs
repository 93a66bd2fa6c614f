//! # model: what the runtime carries and names
//!
//! The lowest layer; it uses no other layer of the crate.
//! - [`record`]: the owned record that crosses actors.
//! - [`codec`]: JSON, MessagePack, string and raw codecs for keys and values, codecs an app
//!   registers, and which codecs each topic uses.
//! - [`shape`]: what a key or value type asks its deserializer for, found without data, and
//!   the codecs that can never decode it (checked at start-up).
//! - [`names`]: every name the runtime writes: internal topics (changelog, dead-letter,
//!   repartition, members) and the sled key layout.
//! - [`partitioner`]: which partition a key goes to (Java's murmur2 by default), for the
//!   producer and for routing queries alike.
//! - [`positions`]: a task's offsets, one per topic of its co-partitioned group.
//! - [`fault`]: the one place that classifies a failure: transient, this record, or fatal.
//! - [`secrets`]: masking secret client settings in logs, errors and `Debug` output.
//! - [`error`]: this crate's one error type.

pub mod codec;
pub mod error;
pub mod fault;
pub mod names;
pub mod partitioner;
pub mod positions;
pub mod record;
pub mod secrets;
pub mod shape;
