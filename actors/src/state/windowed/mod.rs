//! The storage of windowed tables: one shard per partition holding every window of the table,
//! the table's stream time, and what closes and deletes windows.
//!
//! Layout, after the table's prefix in the partition tree (and as is in the changelog):
//! - `0x01 | start (8 bytes, big-endian, sign bit flipped) | key` -> `state | value`, where
//!   `state` is 1 for an open window and 2 for a closed one: windows sort by start time, and a
//!   window's close travels to the changelog with its value;
//! - `0x00 "stream-time"` -> `0x00 | stream time (8 bytes)`, written after every other change of
//!   its commit (see `ShardKey::written_last`).
//!
//! Every write goes through the ordinary shard (cache, per-event undo, atomic batch, changelog),
//! so closes and stream time roll back with a failed event and restore with the table. An
//! in-memory index (windows by start, and by key) finds the windows to close, to delete and to
//! read; it is rebuilt from the store after a rollback.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;

use crate::metrics::Metrics;
use crate::model::codec::TopicCodecs;
use crate::model::error::{Error, Result};
use crate::state::shard::Shard;
use crate::state::spec::{Change, CloseRecord, ShardOps};
use crate::state::spec::{ShardOpener, TableKey, TableValue};
use crate::state::window::{EventTime, Window, WindowKind, WindowResult};

mod handle;
mod session;
mod slot;
pub use handle::WindowedTable;

pub(crate) use slot::{window_key, CLOSED, CLOSED_SESSION, OPEN_SESSION};
use slot::{Slot, WKey};

/// Where the windows are: by start (to close and delete in time order) and by key (to read).
struct Index<K> {
    by_time: BTreeMap<i64, HashSet<K>>,
    by_key: HashMap<K, BTreeSet<i64>>,
    /// Windows starting at or before this were checked for closing since the index was built.
    closed_upto: Option<i64>,
}

impl<K: TableKey> Index<K> {
    /// Whether a window of `key` starting at `start` exists (in the cache or the store).
    fn contains(&self, start: i64, key: &K) -> bool {
        self.by_time
            .get(&start)
            .is_some_and(|keys| keys.contains(key))
    }

    fn insert(&mut self, start: i64, key: &K) {
        self.by_time.entry(start).or_default().insert(key.clone());
        self.by_key.entry(key.clone()).or_default().insert(start);
    }

    fn remove(&mut self, start: i64, key: &K) {
        if let Some(keys) = self.by_time.get_mut(&start) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_time.remove(&start);
            }
        }
        if let Some(starts) = self.by_key.get_mut(key) {
            starts.remove(&start);
            if starts.is_empty() {
                self.by_key.remove(key);
            }
        }
    }
}

/// The table's counters, and what the current event adds to them (counted when it ends).
struct Counts {
    late: IntCounter,
    closed: IntCounter,
    expired: IntCounter,
}

/// One partition's shard of a windowed table.
pub(crate) struct WindowShard<K, V> {
    inner: Shard<WKey<K>, Slot<V>>,
    table: WindowedTable<K, V>,
    /// `None`: to be rebuilt from the store before its next use.
    index: Option<Index<K>>,
    /// (late, closed, expired) in the current event.
    pending: [u64; 3],
    counts: Option<Counts>,
}

impl<K: TableKey, V: TableValue> WindowShard<K, V> {
    fn new(table: WindowedTable<K, V>, tree: sled::Tree, path: Arc<Path>) -> Self {
        WindowShard {
            inner: Shard::new(table.spec.clone(), tree, path),
            table,
            index: None,
            pending: [0; 3],
            counts: None,
        }
    }

    fn kind(&self) -> WindowKind {
        self.table.def.kind
    }

    /// The largest event time this partition's table has seen (the clock's time for
    /// processing-time tables, as of the last close check).
    pub(crate) fn stream_time(&mut self) -> Result<Option<i64>> {
        Ok(match self.inner.get(&WKey::StreamTime)? {
            Some(Slot::StreamTime(t)) => Some(t),
            _ => None,
        })
    }

    /// Moves stream time forward to `t` (never back); returns the stream time.
    pub(crate) fn advance(&mut self, t: i64) -> Result<i64> {
        match self.stream_time()? {
            Some(now) if now >= t => Ok(now),
            _ => {
                self.inner
                    .put(WKey::StreamTime, Some(Slot::StreamTime(t)))?;
                Ok(t)
            }
        }
    }

    fn index(&mut self) -> Result<&mut Index<K>> {
        if self.index.is_none() {
            let mut index = Index {
                by_time: BTreeMap::new(),
                by_key: HashMap::new(),
                closed_upto: None,
            };
            for (key, _) in self.inner.items()? {
                if let WKey::Window(start, key) = key {
                    index.insert(start, &key);
                }
            }
            self.index = Some(index);
        }
        self.index.as_mut().ok_or_else(|| Error::ActorGone {
            context: "building a window index".into(),
        })
    }

    fn window(&mut self, start: i64, key: &K) -> Result<Option<(V, bool)>> {
        let slot = self.inner.get(&WKey::Window(start, key.clone()))?;
        Ok(slot.and_then(Slot::into_window))
    }

    /// Applies `f` to every window of `key` that event time `t` falls in and is still open;
    /// returns the value of the current window afterwards, or `None` when the event was late
    /// for it. Late windows are counted, not changed.
    pub(crate) fn update(
        &mut self,
        t: i64,
        key: K,
        mut f: impl FnMut(Option<V>) -> V,
    ) -> Result<Option<V>> {
        let kind = self.kind();
        if let WindowKind::Session { gap } = kind {
            return self.update_session(t, key, gap, f);
        }
        let now = self.advance(t)?;
        let close = kind.close_offset(self.table.def.grace);
        let mut late = false;
        let current = kind.current_slot(t);
        let mut current_value = None;
        for start in kind.slots_of(t) {
            if now >= start + close {
                late = true;
                continue;
            }
            // The index knows every window: a new one needs no store read.
            let old = match self.index()?.contains(start, &key) {
                true => self.window(start, &key)?,
                false => None,
            };
            if old.as_ref().is_some_and(|(_, closed)| *closed) {
                late = true;
                continue;
            }
            let existed = old.is_some();
            let value = f(old.map(|(v, _)| v));
            let slot = Slot::Window {
                value: value.clone(),
                closed: false,
            };
            let wkey = WKey::Window(start, key.clone());
            if existed {
                self.inner.put(wkey, Some(slot))?;
            } else {
                self.index()?.insert(start, &key);
                self.inner.put_absent(wkey, slot);
            }
            if start == current {
                current_value = Some(value);
            }
        }
        self.pending[0] += u64::from(late);
        match kind {
            WindowKind::Sliding { .. } if current_value.is_some() => self.read_at(&key, t),
            _ => Ok(current_value),
        }
    }

    /// The value of the window of `key` that "current" means at `t` (sliding: the values of
    /// every event time in `[t - before, t + after]`, merged).
    pub(crate) fn read_at(&mut self, key: &K, t: i64) -> Result<Option<V>> {
        match self.kind() {
            WindowKind::Sliding { before, after } => self.merged(key, t - before, t + after, false),
            WindowKind::Session { .. } => self.session_at(key, t),
            kind => {
                let start = kind.current_slot(t);
                if self.expired(start)? {
                    return Ok(None);
                }
                Ok(self.window(start, key)?.map(|(v, _)| v))
            }
        }
    }

    fn expired(&mut self, start: i64) -> Result<bool> {
        let def = &self.table.def;
        let offset = def.kind.expire_offset(def.grace, def.expires);
        Ok(self
            .stream_time()?
            .is_some_and(|now| now >= start.saturating_add(offset)))
    }

    /// The values stored for `key` at times in `[from, to]`, merged (sliding tables); expired
    /// ones too when `closing` (a close that runs late, after a jump of stream time, still sees
    /// every value its window had).
    fn merged(&mut self, key: &K, from: i64, to: i64, closing: bool) -> Result<Option<V>> {
        let times: Vec<i64> = match self.index()?.by_key.get(key) {
            Some(set) => set.range(from..=to).copied().collect(),
            None => return Ok(None),
        };
        let mut acc: Option<V> = None;
        for start in times {
            if !closing && self.expired(start)? {
                continue;
            }
            if let Some((v, _)) = self.window(start, key)? {
                acc = Some(match (acc, &self.table.def.merge) {
                    (Some(a), Some(merge)) => merge(&a, &v),
                    _ => v,
                });
            }
        }
        Ok(acc)
    }

    /// Every window of `key` overlapping `[from, to]`, in start order, with its value.
    pub(crate) fn windows(&mut self, key: &K, from: i64, to: i64) -> Result<Vec<(Window, V)>> {
        let kind = self.kind();
        if let WindowKind::Session { .. } = kind {
            return self.session_windows(key, from, to);
        }
        let starts: Vec<i64> = match self.index()?.by_key.get(key) {
            Some(set) => set.iter().copied().collect(),
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for start in starts {
            let w = kind.window_of(start);
            if w.start > to || w.end <= from || self.expired(start)? {
                continue;
            }
            let value = match kind {
                WindowKind::Sliding { before, after } => {
                    self.merged(key, start - before, start + after, false)?
                }
                _ => self.window(start, key)?.map(|(v, _)| v),
            };
            out.extend(value.map(|v| (w, v)));
        }
        Ok(out)
    }

    /// Closes every open window stream time has passed, then deletes the expired ones.
    fn close_and_expire(&mut self, codecs: &TopicCodecs, out: &mut Vec<CloseRecord>) -> Result<()> {
        if matches!(self.table.def.time, EventTime::Processing) {
            let now = self.table.def.clock.now_ms();
            self.advance(now)?;
        }
        let Some(now) = self.stream_time()? else {
            return Ok(());
        };
        let (kind, grace, expires) = (self.kind(), self.table.def.grace, self.table.def.expires);
        let cutoff = now.saturating_sub(kind.close_offset(grace));
        let expire = now.saturating_sub(kind.expire_offset(grace, expires));
        let index = self.index()?;
        let close_due = index.closed_upto.is_none_or(|c| c < cutoff);
        let expiry_due = index
            .by_time
            .first_key_value()
            .is_some_and(|(s, _)| *s <= expire);
        if !close_due && !expiry_due {
            return Ok(());
        }
        if close_due {
            let on_close = self.table.def.on_close.clone();
            let index = self.index()?;
            let from = index.closed_upto.map_or(Bound::Unbounded, Bound::Excluded);
            let due: Vec<(i64, K)> = index
                .by_time
                .range((from, Bound::Included(cutoff)))
                .flat_map(|(s, keys)| keys.iter().map(move |k| (*s, k.clone())))
                .collect();
            index.closed_upto = Some(cutoff);
            for (start, key) in due {
                let (window, value, slot) =
                    match self.inner.get(&WKey::Window(start, key.clone()))? {
                        Some(Slot::Window {
                            value,
                            closed: false,
                        }) => {
                            let closed = Slot::Window {
                                value: value.clone(),
                                closed: true,
                            };
                            (kind.window_of(start), value, closed)
                        }
                        Some(Slot::Session {
                            start: first,
                            value,
                            closed: false,
                        }) => {
                            let window = Window {
                                start: first,
                                end: start.saturating_add(1),
                            };
                            let closed = Slot::Session {
                                start: first,
                                value: value.clone(),
                                closed: true,
                            };
                            (window, value, closed)
                        }
                        _ => continue,
                    };
                let result = match kind {
                    WindowKind::Sliding { before, after } => self
                        .merged(&key, start - before, start + after, true)?
                        .unwrap_or_else(|| value.clone()),
                    _ => value,
                };
                self.inner
                    .put(WKey::Window(start, key.clone()), Some(slot))?;
                self.pending[1] += 1;
                if let Some(f) = &on_close {
                    f(&key, window, &result);
                }
                if let Some(topic) = &self.table.spec.close_topic {
                    let (kc, vc) = codecs.get(topic);
                    let value = WindowResult {
                        start: window.start,
                        end: window.end,
                        value: result,
                    };
                    out.push(CloseRecord {
                        topic: topic.clone(),
                        key: kc.encode("key", &key)?,
                        value: vc.encode("value", &value)?,
                    });
                }
            }
        }
        let index = self.index()?;
        let keep = index.by_time.split_off(&(expire + 1));
        let gone = std::mem::replace(&mut index.by_time, keep);
        let mut deleted = Vec::new();
        for (start, keys) in gone {
            for key in keys {
                if let Some(times) = index.by_key.get_mut(&key) {
                    times.remove(&start);
                    if times.is_empty() {
                        index.by_key.remove(&key);
                    }
                }
                deleted.push(WKey::Window(start, key));
            }
        }
        for key in deleted {
            if self.inner.get(&key)?.is_some() {
                self.pending[2] += 1;
                self.inner.put(key, None)?;
            }
        }
        Ok(())
    }
}

impl<K: TableKey, V: TableValue> ShardOps for WindowShard<K, V> {
    fn end_event(&mut self) {
        self.inner.end_event();
        if self.pending == [0; 3] {
            return;
        }
        let [late, closed, expired] = std::mem::take(&mut self.pending);
        if let Some(c) = &self.counts {
            c.late.inc_by(late);
            c.closed.inc_by(closed);
            c.expired.inc_by(expired);
        }
    }

    fn rollback_event(&mut self) {
        self.inner.rollback_event();
        self.pending = [0; 3];
        self.index = None;
    }

    fn stage(&self, batch: &mut sled::Batch, changes: &mut Vec<Change>) -> Result<i64> {
        self.inner.stage(batch, changes)
    }

    fn committed(&mut self, max_cached: usize) {
        self.inner.committed(max_cached);
    }

    fn discard(&mut self) {
        self.inner.discard();
        self.pending = [0; 3];
        self.index = None;
    }

    fn has_dirty(&self) -> bool {
        self.inner.has_dirty()
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn close_due(&mut self, codecs: &TopicCodecs, out: &mut Vec<CloseRecord>) -> Result<()> {
        self.close_and_expire(codecs, out)
    }

    fn attach_metrics(&mut self, metrics: &Metrics) {
        let table = [&*self.table.spec.name];
        self.counts = Some(Counts {
            late: metrics.late_events_total.with_label_values(&table),
            closed: metrics.windows_closed_total.with_label_values(&table),
            expired: metrics.windows_expired_total.with_label_values(&table),
        });
    }
}

struct Opener<K, V>(WindowedTable<K, V>);

impl<K: TableKey, V: TableValue> ShardOpener for Opener<K, V> {
    fn open(&self, tree: sled::Tree, path: Arc<Path>) -> Result<Box<dyn ShardOps>> {
        Ok(Box::new(WindowShard::new(self.0.clone(), tree, path)))
    }
}

/// What opens `table`'s shards (kept in its [`crate::TableSpec`]).
pub(crate) fn opener<K: TableKey, V: TableValue>(
    table: WindowedTable<K, V>,
) -> Arc<dyn ShardOpener> {
    Arc::new(Opener(table))
}

/// The current partition's shard of a windowed table, as one event sees it.
///
/// Writes go to the windows the event's time falls in; reads are relative to the event's time
/// (`current`, `delta`), the table's clock (`now`) or any time (`at`, `windows`). Like every
/// table write, a failed event's window writes (and the closes it caused) are rolled back.
pub struct WindowView<'a, K: TableKey, V: TableValue> {
    pub(crate) shard: &'a mut WindowShard<K, V>,
    pub(crate) time: i64,
}

impl<K: TableKey, V: TableValue> WindowView<'_, K, V> {
    /// This event's time under the table's time source (milliseconds since the epoch).
    pub fn time(&self) -> i64 {
        self.time
    }

    /// The table's stream time in this partition: the largest event time it has seen.
    ///
    /// # Errors
    /// The store failed or holds bytes that do not decode.
    pub fn stream_time(&mut self) -> Result<Option<i64>> {
        self.shard.stream_time()
    }

    /// Replaces the value of `key` in every open window this event falls in by `f(current)`
    /// (`f` runs once per window: hopping windows overlap), and returns the current window's
    /// new value. `None`: the event is late for the current window (counted in
    /// `faust_late_events_total`, not applied).
    ///
    /// # Errors
    /// As [`WindowView::stream_time`].
    pub fn update(&mut self, key: K, f: impl FnMut(Option<V>) -> V) -> Result<Option<V>> {
        self.shard.update(self.time, key, f)
    }

    /// The value of `key` in the window of this event's time.
    ///
    /// # Errors
    /// As [`WindowView::stream_time`].
    pub fn current(&mut self, key: &K) -> Result<Option<V>> {
        self.shard.read_at(key, self.time)
    }

    /// The value of `key` in the window of the table clock's time.
    ///
    /// # Errors
    /// As [`WindowView::stream_time`].
    pub fn now(&mut self, key: &K) -> Result<Option<V>> {
        let now = self.shard.table.def.clock.now_ms();
        self.shard.read_at(key, now)
    }

    /// The value of `key` in the window `d` before this event's time.
    ///
    /// # Errors
    /// As [`WindowView::stream_time`].
    pub fn delta(&mut self, key: &K, d: Duration) -> Result<Option<V>> {
        let d = i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        self.shard.read_at(key, self.time - d)
    }

    /// The value of `key` in the window of time `t`.
    ///
    /// # Errors
    /// As [`WindowView::stream_time`].
    pub fn at(&mut self, key: &K, t: i64) -> Result<Option<V>> {
        self.shard.read_at(key, t)
    }

    /// Every window of `key` overlapping `[from, to]` that has not expired, in start order.
    ///
    /// # Errors
    /// As [`WindowView::stream_time`].
    pub fn windows(&mut self, key: &K, from: i64, to: i64) -> Result<Vec<(Window, V)>> {
        self.shard.windows(key, from, to)
    }
}

#[cfg(test)]
mod tests;
