//! Windowed tables on a real sled store, time given by hand: which windows an event updates,
//! reads relative to it, closes (once, with the final value, surviving a reopen), late events,
//! expiry, and processing time on a manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::model::names::STREAM_TIME_KEY;
use crate::state::set::TableSet;
use crate::state::window::{Clock, ManualClock};

type Closes = Arc<Mutex<Vec<(String, Window, u64)>>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The table with a close callback recording into the returned list.
fn recorded(t: WindowedTable<String, u64>) -> (WindowedTable<String, u64>, Closes) {
    let closes: Closes = Arc::default();
    let sink = closes.clone();
    let t = t.on_close(move |k, w, v| sink.lock().unwrap().push((k.clone(), w, *v)));
    (t, closes)
}

struct Harness {
    db: sled::Db,
    table: WindowedTable<String, u64>,
    set: TableSet,
    metrics: Metrics,
}

impl Harness {
    fn new(table: &WindowedTable<String, u64>) -> Self {
        let db = sled::Config::new().temporary(true).open().unwrap();
        Self::reopen(db, table)
    }

    fn reopen(db: sled::Db, table: &WindowedTable<String, u64>) -> Self {
        let path: Arc<Path> = Arc::from(Path::new("/mem"));
        let mut set = TableSet::open(
            &db,
            path,
            "app".into(),
            "t".into(),
            0,
            vec![table.spec()],
            1000,
        )
        .unwrap();
        let metrics = Metrics::new().unwrap();
        set.attach_metrics(&metrics);
        Harness {
            db,
            table: table.clone(),
            set,
            metrics,
        }
    }

    /// One event: `key` counted at time `t`, then the closes it causes; returns the current
    /// window's count.
    fn count(&mut self, key: &str, t: i64) -> Option<u64> {
        let now = self
            .set
            .window_view(&self.table, t)
            .unwrap()
            .update(key.into(), |n| n.unwrap_or(0) + 1)
            .unwrap();
        self.close();
        now
    }

    fn close(&mut self) {
        self.set.close_windows(&TopicCodecs::default()).unwrap();
        self.set.end_event();
    }

    fn view(&mut self, t: i64) -> WindowView<'_, String, u64> {
        self.set.window_view(&self.table, t).unwrap()
    }

    fn commit(&mut self) {
        let staged = self.set.stage_lead(1).unwrap();
        self.set.tree().apply_batch(staged.batch).unwrap();
        self.set.committed(&staged.counts);
    }

    fn counter(&self, name: &str) -> u64 {
        let text = self.metrics.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{table=\"w\"}}")));
        line.map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
    }
}

fn w(start: i64, end: i64) -> Window {
    Window { start, end }
}

fn closed(closes: &Closes) -> Vec<(String, Window, u64)> {
    let mut all = closes.lock().unwrap().clone();
    all.sort();
    all
}

#[test]
fn tumbling_windows_count_close_once_and_reject_late_events() {
    let (t, closes) = recorded(WindowedTable::tumbling("w", ms(10_000)));
    let mut h = Harness::new(&t);
    assert_eq!(h.count("a", 1_000), Some(1));
    assert_eq!(h.count("a", 5_000), Some(2));
    assert_eq!(h.count("b", 9_999), Some(1));
    assert!(closes.lock().unwrap().is_empty(), "nothing closes early");
    assert_eq!(h.count("a", 10_000), Some(1), "a new window");
    assert_eq!(
        closed(&closes),
        vec![("a".into(), w(0, 10_000), 2), ("b".into(), w(0, 10_000), 1)]
    );
    assert_eq!(h.count("a", 3_000), None, "late: its window closed");
    assert_eq!(h.counter("faust_late_events_total"), 1);
    assert_eq!(h.counter("faust_windows_closed_total"), 2);
    let mut view = h.view(12_000);
    assert_eq!(view.current(&"a".into()).unwrap(), Some(1));
    assert_eq!(
        view.delta(&"a".into(), ms(10_000)).unwrap(),
        Some(2),
        "late event not merged"
    );
    assert_eq!(view.at(&"b".into(), 0).unwrap(), Some(1));
    let all = view.windows(&"a".into(), 0, 19_999).unwrap();
    assert_eq!(all, vec![(w(0, 10_000), 2), (w(10_000, 20_000), 1)]);
    h.close();
    assert_eq!(closes.lock().unwrap().len(), 2, "each window closes once");
}

#[test]
fn expired_windows_are_deleted_from_store_and_changelog() {
    let (t, _closes) = recorded(
        WindowedTable::tumbling("w", ms(10))
            .grace(ms(5))
            .expires(ms(20)),
    );
    let mut h = Harness::new(&t);
    h.count("a", 1);
    h.count("a", 12);
    h.commit();
    assert_eq!(
        h.set.key_counts().next().map(|(_, n)| n),
        Some(2),
        "stream time not counted"
    );
    // Window [0,10) closes at 15 and is deleted at 15 + 20.
    h.count("b", 34);
    assert_eq!(
        h.view(34).at(&"a".into(), 5).unwrap(),
        Some(1),
        "closed, still readable"
    );
    h.count("b", 35);
    assert_eq!(h.counter("faust_windows_expired_total"), 1);
    let staged = h.set.stage_lead(2).unwrap();
    let tombstones: usize = staged
        .changes
        .iter()
        .flat_map(|(_, _, c)| c.iter())
        .filter(|c| c.value.is_none())
        .count();
    assert_eq!(tombstones, 1, "the expired window is a changelog tombstone");
    let last = staged.changes[0].2.last().unwrap();
    assert_eq!(last.key, STREAM_TIME_KEY, "stream time is written last");
    h.set.tree().apply_batch(staged.batch).unwrap();
    h.set.committed(&staged.counts);
    assert_eq!(h.view(35).at(&"a".into(), 5).unwrap(), None);
    assert_eq!(
        h.set.key_counts().next().map(|(_, n)| n),
        Some(2),
        "a@10, b@30"
    );
}

#[test]
fn hopping_windows_get_every_overlapping_window() {
    let (t, closes) = recorded(WindowedTable::hopping("w", ms(10), ms(5)));
    let mut h = Harness::new(&t);
    assert_eq!(h.count("a", 7), Some(1), "current = [5,15)");
    assert_eq!(h.count("a", 12), Some(1), "current = [10,20)");
    let mut view = h.view(12);
    let all = view.windows(&"a".into(), 0, 14).unwrap();
    assert_eq!(all, vec![(w(0, 10), 1), (w(5, 15), 2), (w(10, 20), 1)]);
    assert_eq!(
        view.delta(&"a".into(), ms(5)).unwrap(),
        Some(2),
        "[5,15) at 7"
    );
    h.count("b", 14);
    assert_eq!(closed(&closes), vec![("a".into(), w(0, 10), 1)]);
    h.count("b", 15);
    assert_eq!(
        closed(&closes),
        vec![
            ("a".into(), w(0, 10), 1),
            ("a".into(), w(5, 15), 2),
            ("b".into(), w(5, 15), 1),
        ],
        "b@14 is in [5,15) and [10,20)"
    );
}

#[test]
fn sliding_windows_merge_every_event_time_in_range() {
    let t = WindowedTable::sliding("w", ms(3), ms(2), |a: &u64, b: &u64| a + b);
    let (t, closes) = recorded(t);
    let mut h = Harness::new(&t);
    assert_eq!(h.count("a", 10), Some(1));
    assert_eq!(h.count("a", 12), Some(2), "[9,14] holds 10 and 12");
    assert_eq!(h.view(12).current(&"a".into()).unwrap(), Some(2));
    // 14 closes the window around 10, [7,12]: events 10 and 12.
    assert_eq!(h.count("a", 14), Some(2), "[11,16] holds 12 and 14");
    assert_eq!(closed(&closes), vec![("a".into(), w(7, 13), 2)]);
    h.count("b", 30);
    assert_eq!(
        closed(&closes),
        vec![
            ("a".into(), w(7, 13), 2),
            ("a".into(), w(9, 15), 3),
            ("a".into(), w(11, 17), 2),
        ]
    );
    assert_eq!(h.count("a", 11), None, "late for its own window");
    assert_eq!(h.counter("faust_late_events_total"), 1);
}

#[test]
fn closes_survive_a_reopen_and_due_ones_are_caught_up() {
    let (t, closes) = recorded(WindowedTable::tumbling("w", ms(10)));
    let mut h = Harness::new(&t);
    h.count("a", 1);
    h.count("a", 11); // closes [0,10)
                      // Stream time moves to 21 but the event's closes never ran (a crash between the two).
    h.view(21)
        .update("b".into(), |n| n.unwrap_or(0) + 1)
        .unwrap();
    h.set.end_event();
    h.commit();
    assert_eq!(closed(&closes), vec![("a".into(), w(0, 10), 1)]);

    let mut again = Harness::reopen(h.db.clone(), &t);
    again.close();
    assert_eq!(
        closed(&closes),
        vec![("a".into(), w(0, 10), 1), ("a".into(), w(10, 20), 1)],
        "the due window closes at the first check after the reopen; the closed one does not"
    );
    assert_eq!(again.view(21).stream_time().unwrap(), Some(21));
    assert_eq!(again.count("b", 29), Some(2), "open windows restored");
}

#[test]
fn a_failed_event_rolls_back_its_stream_time_and_closes() {
    let (t, closes) = recorded(WindowedTable::tumbling("w", ms(10)));
    let mut h = Harness::new(&t);
    h.count("a", 1);
    h.view(15)
        .update("a".into(), |n| n.unwrap_or(0) + 1)
        .unwrap();
    h.set.close_windows(&TopicCodecs::default()).unwrap();
    assert_eq!(closes.lock().unwrap().len(), 1);
    h.set.rollback_event();
    assert_eq!(h.counter("faust_windows_closed_total"), 0);
    assert_eq!(h.view(1).stream_time().unwrap(), Some(1));
    h.set.end_event();
    assert_eq!(h.count("a", 2), Some(2), "window [0,10) open again");
    h.count("a", 15);
    assert_eq!(
        closes.lock().unwrap().last(),
        Some(&("a".into(), w(0, 10), 2))
    );
    assert_eq!(h.counter("faust_windows_closed_total"), 1);
}

#[test]
fn processing_time_windows_close_on_the_clock_without_events() {
    let clock = ManualClock::new(1_000);
    let t = WindowedTable::tumbling("w", ms(1_000))
        .event_time(EventTime::Processing)
        .clock(clock.clone());
    let (t, closes) = recorded(t);
    let mut h = Harness::new(&t);
    let now = clock.now_ms();
    h.count("a", now);
    clock.advance(ms(500));
    assert_eq!(h.view(clock.now_ms()).now(&"a".into()).unwrap(), Some(1));
    h.set.end_event();
    clock.advance(ms(500));
    assert_eq!(
        h.view(0).now(&"a".into()).unwrap(),
        None,
        "a new window by the clock"
    );
    h.set.end_event();
    h.close();
    assert_eq!(closed(&closes), vec![("a".into(), w(1_000, 2_000), 1)]);
}

#[test]
fn event_time_comes_from_the_record_a_field_or_the_clock() {
    let record = crate::Record {
        topic: "t".into(),
        partition: 0,
        offset: 7,
        timestamp: Some(42),
        key: None,
        value: None,
        headers: Vec::new(),
        unreadable: None,
    };
    let t = WindowedTable::<String, u64>::tumbling("w", ms(10));
    assert_eq!(t.time_of(&record, &()).unwrap(), 42);
    let field = t.clone().event_time(EventTime::field(|v: &(i64, u8)| v.0));
    assert_eq!(field.time_of(&record, &(99i64, 0u8)).unwrap(), 99);
    let err = field.time_of(&record, &"other").unwrap_err();
    assert!(err.to_string().contains("t[0]@7"), "{err}");
    let clock = ManualClock::new(5);
    let processing = t.event_time(EventTime::Processing).clock(clock);
    assert_eq!(processing.time_of(&record, &()).unwrap(), 5);
    let none = crate::Record {
        timestamp: None,
        ..record
    };
    let err = WindowedTable::<String, u64>::tumbling("w", ms(10))
        .time_of(&none, &())
        .unwrap_err();
    assert!(err.to_string().contains("no timestamp"), "{err}");
}
