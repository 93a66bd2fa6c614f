//! Session windows ([`WindowKind::Session`]): per-key activity sessions, stored under their
//! last event time with their first, merged when an event bridges them.
//!
//! An event at `t` for `key` joins every open session of `key` it falls within `gap` of
//! (`start - gap <= t <= end + gap`); joining two or more merges them into one (values combined
//! with the table's merge function, the old entries deleted, so the changelog carries the
//! deletes too), then the agent's update applies to the result. An event whose session would
//! already have closed (stream time at or past `t + gap + 1 + grace`), or that touches a closed
//! session, is late: counted, not applied. Closing and expiry are the other windows' (the
//! session's slot is its last event, so `close_offset` is the gap).

use super::{Slot, WKey, WindowShard};
use crate::model::error::Result;
use crate::state::spec::{TableKey, TableValue};
use crate::state::window::Window;

impl<K: TableKey, V: TableValue> WindowShard<K, V> {
    /// The session form of [`WindowShard::update`]: returns the session's value afterwards,
    /// `None` when the event was late.
    pub(super) fn update_session(
        &mut self,
        t: i64,
        key: K,
        gap: i64,
        mut f: impl FnMut(Option<V>) -> V,
    ) -> Result<Option<V>> {
        let now = self.advance(t)?;
        let close = self.kind().close_offset(self.table.def.grace);
        if now >= t.saturating_add(close) {
            self.pending[0] += 1;
            return Ok(None);
        }
        let ends: Vec<i64> = match self.index()?.by_key.get(&key) {
            Some(ends) => ends.range(t.saturating_sub(gap)..).copied().collect(),
            None => Vec::new(),
        };
        let (mut start, mut end) = (t, t);
        let mut merged: Option<V> = None;
        let mut joined = Vec::new();
        for e in ends {
            let Some(Slot::Session {
                start: s,
                value,
                closed,
            }) = self.inner.get(&WKey::Window(e, key.clone()))?
            else {
                continue;
            };
            if s > t.saturating_add(gap) {
                continue;
            }
            if closed {
                self.pending[0] += 1;
                return Ok(None);
            }
            (start, end) = (start.min(s), end.max(e));
            merged = Some(match (merged, &self.table.def.merge) {
                (Some(acc), Some(merge)) => merge(&acc, &value),
                _ => value,
            });
            joined.push(e);
        }
        let value = f(merged);
        for e in joined.iter().filter(|e| **e != end) {
            self.inner.put(WKey::Window(*e, key.clone()), None)?;
            self.index()?.remove(*e, &key);
        }
        let slot = Slot::Session {
            start,
            value: value.clone(),
            closed: false,
        };
        if joined.contains(&end) {
            self.inner.put(WKey::Window(end, key), Some(slot))?;
        } else {
            self.index()?.insert(end, &key);
            self.inner.put_absent(WKey::Window(end, key), slot);
        }
        Ok(Some(value))
    }

    /// The value of the session of `key` that `t` falls in, if any (expired ones excluded).
    pub(super) fn session_at(&mut self, key: &K, t: i64) -> Result<Option<V>> {
        for (window, value) in self.session_windows(key, t, t)? {
            if window.start <= t && t < window.end {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Every session of `key` overlapping `[from, to]` that has not expired, in time order.
    pub(super) fn session_windows(
        &mut self,
        key: &K,
        from: i64,
        to: i64,
    ) -> Result<Vec<(Window, V)>> {
        let ends: Vec<i64> = match self.index()?.by_key.get(key) {
            Some(ends) => ends.range(from..).copied().collect(),
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for e in ends {
            if self.expired(e)? {
                continue;
            }
            if let Some(Slot::Session { start, value, .. }) =
                self.inner.get(&WKey::Window(e, key.clone()))?
            {
                if start <= to {
                    let end = e.saturating_add(1);
                    out.push((Window { start, end }, value));
                }
            }
        }
        Ok(out)
    }
}
