//! The typed handle on a windowed table ([`WindowedTable`]): its window kind, grace, expiry,
//! time source, clock and close callback, kept in the agent and passed to
//! [`Event::window`](crate::Event::window). Its shards are `super`'s.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::model::codec::Codec;
use crate::model::error::{Error, Result};
use crate::state::spec::{TableKey, TableSpec, TableValue};
use crate::state::window::{Clock, EventTime, SystemClock, Window, WindowKind};

type OnClose<K, V> = Arc<dyn Fn(&K, Window, &V) + Send + Sync>;
type Merge<V> = Arc<dyn Fn(&V, &V) -> V + Send + Sync>;

/// Everything a windowed table is, shared by its handles and its shards.
pub(crate) struct WindowDef<K, V> {
    pub(crate) kind: WindowKind,
    pub(crate) grace: i64,
    pub(crate) expires: i64,
    pub(crate) time: EventTime,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_close: Option<OnClose<K, V>>,
    pub(crate) merge: Option<Merge<V>>,
}

impl<K, V> Clone for WindowDef<K, V> {
    fn clone(&self) -> Self {
        WindowDef {
            kind: self.kind,
            grace: self.grace,
            expires: self.expires,
            time: self.time.clone(),
            clock: self.clock.clone(),
            on_close: self.on_close.clone(),
            merge: self.merge.clone(),
        }
    }
}

/// A windowed table, like Faust's `app.Table(...).tumbling(...)` or Kafka Streams'
/// `windowedBy(...)`: cheap to clone, kept in the agent, passed to [`crate::Event::window`].
///
/// Stored like any table (sled, changelog, standbys), keyed by (window, key), with the window's
/// close state beside its value. Defaults: no grace, expiry of one window size, event time from
/// the record timestamp, JSON keys and values, the system clock.
pub struct WindowedTable<K, V> {
    pub(crate) spec: TableSpec,
    pub(crate) def: WindowDef<K, V>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for WindowedTable<K, V> {
    fn clone(&self) -> Self {
        WindowedTable {
            spec: self.spec.clone(),
            def: self.def.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for WindowedTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowedTable")
            .field("name", &self.spec.name)
            .field("kind", &self.def.kind)
            .field("grace", &self.def.grace)
            .field("expires", &self.def.expires)
            .field("time", &self.def.time)
            .finish()
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl<K: TableKey, V: TableValue> WindowedTable<K, V> {
    fn with(name: &str, kind: WindowKind, expires: i64, merge: Option<Merge<V>>) -> Self {
        WindowedTable {
            spec: TableSpec::new_windowed(name, kind),
            def: WindowDef {
                kind,
                grace: 0,
                expires,
                time: EventTime::Record,
                clock: Arc::new(SystemClock),
                on_close: None,
                merge,
            },
            _types: PhantomData,
        }
    }

    /// Back-to-back windows of `size`.
    ///
    /// # Panics
    /// `size` is zero (a programming error, found at start-up).
    pub fn tumbling(name: &str, size: Duration) -> Self {
        let size = ms(size);
        assert!(
            size > 0,
            "windowed table `{name}`: size must be at least 1 ms"
        );
        Self::with(name, WindowKind::Tumbling { size }, size, None)
    }

    /// Windows of `size` starting every `step`.
    ///
    /// # Panics
    /// `step` is zero or larger than `size`.
    pub fn hopping(name: &str, size: Duration, step: Duration) -> Self {
        let (size, step) = (ms(size), ms(step));
        assert!(
            step > 0 && step <= size,
            "windowed table `{name}`: step must be between 1 ms and the size"
        );
        Self::with(name, WindowKind::Hopping { size, step }, size, None)
    }

    /// Per-key activity sessions with an inactivity `gap` (Kafka Streams' `SessionWindows`,
    /// quix's sessions): an event within `gap` of a key's session joins it; one that bridges
    /// two sessions merges them, their values combined with `merge` (then the event's update
    /// applies). Each session closes once, with its final value, when stream time passes its
    /// last event by more than `gap` plus the grace; it is stored and changelogged like the
    /// other windows, under its last event time.
    pub fn session(
        name: &str,
        gap: Duration,
        merge: impl Fn(&V, &V) -> V + Send + Sync + 'static,
    ) -> Self {
        let gap = ms(gap);
        let kind = WindowKind::Session { gap };
        Self::with(name, kind, gap + 1, Some(Arc::new(merge)))
    }

    /// One window `[t - before, t + after]` around each event time `t`; `merge` combines the
    /// values of two event times (for a count, `|a, b| a + b`).
    pub fn sliding(
        name: &str,
        before: Duration,
        after: Duration,
        merge: impl Fn(&V, &V) -> V + Send + Sync + 'static,
    ) -> Self {
        let (before, after) = (ms(before), ms(after));
        let kind = WindowKind::Sliding { before, after };
        Self::with(name, kind, before + after + 1, Some(Arc::new(merge)))
    }

    /// How long after a window's end events for it are still accepted (default none).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.def.grace = ms(grace);
        self
    }

    /// How long a closed window stays readable before it is deleted (default: one window).
    pub fn expires(mut self, expires: Duration) -> Self {
        self.def.expires = ms(expires);
        self
    }

    /// Where event time comes from (default: the record timestamp).
    pub fn event_time(mut self, time: EventTime) -> Self {
        self.def.time = time;
        self
    }

    /// The clock for processing time and [`crate::WindowView::now`] (default: the system's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.def.clock = clock;
        self
    }

    /// Calls `f(key, window, final value)` when a window closes, on the partition's actor,
    /// once per window (again only after a crash, in at-least-once mode). A panic in `f` is
    /// handled like a panic in the agent: the event is retried.
    pub fn on_close(mut self, f: impl Fn(&K, Window, &V) + Send + Sync + 'static) -> Self {
        self.def.on_close = Some(Arc::new(f));
        self
    }

    /// Sends each closed window to `topic`: key = the table key, value = a [`WindowResult`](crate::WindowResult),
    /// encoded with the topic's codecs, acknowledged before the close is committed.
    pub fn close_topic(mut self, topic: &str) -> Self {
        self.spec.close_topic = Some(Arc::from(topic));
        self
    }

    /// Sets the codec of keys (in the store and changelog, after the window start).
    pub fn key_codec(mut self, codec: Codec) -> Self {
        self.spec.key_codec = codec;
        self
    }

    /// Sets the codec of values.
    pub fn value_codec(mut self, codec: Codec) -> Self {
        self.spec.value_codec = codec;
        self
    }

    /// The untyped description, for `Agent::tables`.
    pub fn spec(&self) -> TableSpec {
        let mut spec = self.spec.clone().typed::<K, V>();
        spec.opener = Some(super::opener(self.clone()));
        spec
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The window kind.
    pub fn kind(&self) -> WindowKind {
        self.def.kind
    }

    /// This event's time under the table's time source.
    pub(crate) fn time_of(
        &self,
        record: &crate::model::record::Record,
        value: &dyn Any,
    ) -> Result<i64> {
        let missing = |why: String| Error::NoEventTime {
            table: self.spec.name.to_string(),
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            why,
        };
        match &self.def.time {
            EventTime::Record => record
                .timestamp
                .ok_or_else(|| missing("the record has no timestamp".into())),
            EventTime::Processing => Ok(self.def.clock.now_ms()),
            EventTime::Field(f) => f(value).unwrap_or_else(|| {
                Err(missing(
                    "its event-time extractor expects another value type than this agent's".into(),
                ))
            }),
        }
    }
}
