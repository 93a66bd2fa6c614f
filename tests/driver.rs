//! The demo agents' behaviour, through the test driver (`faust::testing`): counts and emitted
//! records, exact window closes and late events, dead letters, retries and `stop`, change
//! streams, `group_by` and a concurrent agent. No broker: each test runs in milliseconds (printed, not asserted).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faust::demo::{page_counts, PageCount, PageView, PageViews, WindowedClicks};
use faust::testing::{Record, TestDriver};
use faust::{
    agent, Agent, AgentError, App, ConcurrentAgent, DeadLetter, Event, Table, TableSpec,
    WindowResult,
};

fn view(url: &str) -> PageView {
    PageView {
        url: url.into(),
        user: "someone".into(),
        ts: 0,
    }
}

fn timed<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    eprintln!("{name}: {:?}", started.elapsed());
    out
}

const PAGE_VIEWS: &str = r#"
    [app]
    id = "views"
    [topics.page_views]
    partitions = 4
    key_codec = "string"
    [topics.counts]
    partitions = 4
    key_codec = "string"
    [agents.page_views]
    sinks = ["counts"]
"#;

#[test]
fn page_views_are_counted_per_url_and_each_new_count_is_emitted() {
    let app = App::new().agent(PageViews::new());
    let mut driver = TestDriver::from_toml(&app, PAGE_VIEWS).unwrap();
    timed("count and emit", || {
        for url in ["/a", "/b", "/a", "/c", "/a"] {
            driver.pipe("page_views", Some(url), &view(url)).unwrap();
        }
    });
    let counts = driver.table(&page_counts()).unwrap();
    assert_eq!(counts.len(), 3);
    assert_eq!(counts["/a"], 3);
    assert_eq!(counts["/b"], 1);
    assert_eq!(counts["/c"], 1);
    let sent: Vec<(Option<String>, PageCount)> = driver.read("counts").unwrap();
    let a: Vec<u64> = sent
        .iter()
        .filter(|(k, _)| k.as_deref() == Some("/a"))
        .map(|(_, c)| c.count)
        .collect();
    assert_eq!(a, [1, 2, 3], "each new count of /a, in order");
    assert_eq!(sent.len(), 5);
    // Every output lands on its key's partition, where its URL's views are counted.
    for out in driver.sent("counts") {
        let key = out.key.as_deref().unwrap();
        assert_eq!(out.partition, faust::Partitioner::Murmur2.partition(key, 4));
    }
    // The changelog got each write, as a node would send it at the commit.
    assert_eq!(driver.sent("views-page_counts-changelog").len(), 5);
}

#[test]
fn a_record_that_does_not_decode_is_dead_lettered_and_nothing_else_changes() {
    let app = App::new().agent(PageViews::new());
    let driver = timed("dead letter, driver built and three records", || {
        let mut driver = TestDriver::from_toml(&app, PAGE_VIEWS).unwrap();
        driver.pipe("page_views", Some("/a"), &view("/a")).unwrap();
        driver
            .pipe_record(Record {
                topic: Arc::from("page_views"),
                partition: -1,
                offset: 0,
                timestamp: Some(1_000),
                key: Some(b"/a".to_vec()),
                value: Some(b"{not json".to_vec()),
                headers: Vec::new(),
                unreadable: None,
            })
            .unwrap();
        driver.pipe("page_views", Some("/a"), &view("/a")).unwrap();
        driver
    });
    let letters = driver.dead_letters("page_views");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].value.as_deref(), Some(&b"{not json"[..]));
    let letter = DeadLetter::parse(&letters[0].headers).unwrap();
    assert_eq!(letter.reason, "value");
    assert_eq!(letter.agent, "page_views");
    assert_eq!(letter.topic, "page_views");
    assert_eq!(letter.offset, 1, "the second record of its partition");
    assert_eq!(driver.get(&page_counts(), &"/a".into()).unwrap(), Some(2));
    assert_eq!(driver.sent("counts").len(), 2);
    let invalid = driver
        .metrics()
        .invalid_records_total
        .with_label_values(&["page_views", "value"])
        .get();
    assert_eq!(invalid, 1);
}

const WINDOWS: &str = r#"
    [app]
    id = "clicks"
    [topics.clicks]
    partitions = 1
    key_codec = "string"
    [topics.closed]
    partitions = 1
    key_codec = "string"
"#;

#[test]
fn a_window_closes_exactly_once_with_its_final_count_and_late_events_are_counted_apart() {
    let agent = WindowedClicks::new("clicks", Duration::from_secs(10), Duration::ZERO, "closed");
    let agent_table = agent.clone();
    let app = App::new().agent(agent);
    let driver = timed("window close, driver built and five records", || {
        let mut driver = TestDriver::from_toml(&app, WINDOWS).unwrap();
        for (url, at) in [("/a", 1_000), ("/b", 5_000), ("/a", 9_999)] {
            driver.pipe_at("clicks", Some(url), &view(url), at).unwrap();
        }
        assert!(
            driver.sent("closed").is_empty(),
            "nothing closed before 10 s"
        );
        // Stream time reaches 10 s: [0, 10 s) closes, for both URLs, once.
        driver
            .pipe_at("clicks", Some("/a"), &view("/a"), 10_000)
            .unwrap();
        // Late: its window is closed; counted, not applied, nothing sent again.
        driver
            .pipe_at("clicks", Some("/b"), &view("/b"), 2_000)
            .unwrap();
        driver
    });
    let mut closed: Vec<(Option<String>, WindowResult<u64>)> = driver.read("closed").unwrap();
    closed.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(String, i64, i64, u64)> = closed
        .into_iter()
        .map(|(k, w)| (k.unwrap(), w.start, w.end, w.value))
        .collect();
    assert_eq!(
        got,
        [
            ("/a".to_string(), 0, 10_000, 2),
            ("/b".to_string(), 0, 10_000, 1)
        ]
    );
    let late = driver
        .metrics()
        .late_events_total
        .with_label_values(&["clicks_per_window"])
        .get();
    assert_eq!(late, 1);
    // The windows still kept: [0, 10 s) closed with 2 views, [10 s, 20 s) open with 1.
    let mut driver = driver;
    let kept = driver
        .windows(agent_table.table(), &"/a".to_string())
        .unwrap();
    let kept: Vec<(i64, u64)> = kept.into_iter().map(|(w, n)| (w.start, n)).collect();
    assert_eq!(kept, [(0, 2), (10_000, 1)]);
}

/// Fails its first `fail` attempts per event, then counts like the demo.
struct Flaky {
    counts: Table<String, u64>,
    fail: u32,
    attempts: Arc<AtomicU32>,
}

impl Agent for Flaky {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "flaky"
    }

    fn topics(&self) -> Vec<String> {
        vec!["page_views".into()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let url = event.value().url.clone();
        // Written before failing: the write must be undone with the failed attempt.
        event
            .table(&self.counts)?
            .update(url, |n| n.unwrap_or(0) + 1)?;
        if self.attempts.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err(AgentError::msg("the database is down"));
        }
        Ok(())
    }
}

fn flaky(fail: u32, on_error: &str) -> (TestDriver, Arc<AtomicU32>) {
    let attempts = Arc::new(AtomicU32::new(0));
    let agent = Flaky {
        counts: page_counts(),
        fail,
        attempts: attempts.clone(),
    };
    let config = format!(
        "[app]\nid = \"flaky\"\n[topics.page_views]\nkey_codec = \"string\"\n\
         [agents.flaky]\nretries = 2\non_error = \"{on_error}\"\n"
    );
    let driver = TestDriver::from_toml(&App::new().agent(agent), &config).unwrap();
    (driver, attempts)
}

#[test]
fn an_agent_error_is_retried_with_its_writes_undone_then_goes_to_the_policy() {
    // Two failures, two retries: the third attempt counts once.
    let (mut driver, attempts) = flaky(2, "dead-letter");
    driver.pipe("page_views", Some("/a"), &view("/a")).unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(driver.get(&page_counts(), &"/a".into()).unwrap(), Some(1));
    assert!(driver.dead_letters("flaky").is_empty());

    // Three failures: the retries are spent and the record is dead-lettered, uncounted.
    let (mut driver, attempts) = flaky(3, "dead-letter");
    driver.pipe("page_views", Some("/a"), &view("/a")).unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(driver.get(&page_counts(), &"/a".into()).unwrap(), None);
    let letter = DeadLetter::parse(&driver.dead_letters("flaky")[0].headers).unwrap();
    assert_eq!(letter.reason, "agent_error");
    assert!(
        letter.error.contains("the database is down"),
        "{}",
        letter.error
    );

    // `stop`: the driver says where and why processing stopped.
    let (mut driver, _) = flaky(3, "stop");
    let err = driver
        .pipe("page_views", Some("/a"), &view("/a"))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("agent `flaky` cannot process page_views[0]@0"),
        "{text}"
    );
    assert!(driver.dead_letters("flaky").is_empty());
}

#[test]
fn a_tables_change_stream_gets_each_committed_value() {
    let app = App::new().agent(PageViews::new());
    let config = format!(
        "{PAGE_VIEWS}\n[topics.count_changes]\npartitions = 4\nkey_codec = \"string\"\n\
         [tables.page_counts]\nsinks = [\"count_changes\"]\n"
    );
    let mut driver = TestDriver::from_toml(&app, &config).unwrap();
    for url in ["/a", "/a", "/b"] {
        driver.pipe("page_views", Some(url), &view(url)).unwrap();
    }
    // The driver commits after each record, so each write is its own change.
    let changes: Vec<(Option<String>, u64)> = driver.read("count_changes").unwrap();
    let a: Vec<u64> = changes
        .iter()
        .filter(|(k, _)| k.as_deref() == Some("/a"))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(a, [1, 2]);
    assert_eq!(changes.len(), 3);
}

/// Counts page views per user: the events are re-keyed by user through the repartition topic.
struct PerUser {
    counts: Table<String, u64>,
}

impl Agent for PerUser {
    type Key = String;
    type Value = PageView;

    fn name(&self) -> &str {
        "per_user"
    }

    fn topics(&self) -> Vec<String> {
        vec!["page_views".into()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, PageView>) -> Result<(), AgentError> {
        let user = event.key().cloned().unwrap_or_default();
        event
            .table(&self.counts)?
            .update(user, |n| n.unwrap_or(0) + 1)?;
        Ok(())
    }
}

#[test]
fn group_by_goes_through_the_repartition_topic_to_the_new_keys_partition() {
    let counts: Table<String, u64> = Table::new("user_counts").key_codec(faust::Codec::String);
    let agent = PerUser {
        counts: counts.clone(),
    };
    let app = App::new().group_by(agent, |v: &PageView| v.user.clone());
    let config =
        "[app]\nid = \"users\"\n[topics.page_views]\npartitions = 4\nkey_codec = \"string\"\n";
    let mut driver = TestDriver::from_toml(&app, config).unwrap();
    for (url, user) in [("/a", "ann"), ("/b", "ann"), ("/c", "bob"), ("/a", "ann")] {
        let v = PageView {
            url: url.into(),
            user: user.into(),
            ts: 0,
        };
        driver.pipe("page_views", Some(url), &v).unwrap();
    }
    let got = driver.table(&counts).unwrap();
    assert_eq!(got["ann"], 3);
    assert_eq!(got["bob"], 1);
    let repartitioned = driver.sent("users-per_user-repartition");
    assert_eq!(repartitioned.len(), 4);
    for r in repartitioned {
        let key = r.key.as_deref().unwrap();
        assert_eq!(r.partition, faust::Partitioner::Murmur2.partition(key, 4));
    }
}

#[test]
fn the_short_form_counts_and_emits_like_the_trait() {
    let counts = page_counts();
    let views = faust::agent("page_views").tables(counts.clone()).handle(
        async |event: &mut Event<'_, String, PageView>, counts| {
            let url = event.value().url.clone();
            let n = event
                .table(counts)?
                .update(url.clone(), |n| n.unwrap_or(0) + 1)?;
            let out = PageCount { url, count: n };
            event.emit(Some(&out.url), &out).await?;
            Ok(())
        },
    );
    let mut driver = TestDriver::from_toml(&App::new().agent(views), PAGE_VIEWS).unwrap();
    for url in ["/a", "/b", "/a"] {
        driver.pipe("page_views", Some(url), &view(url)).unwrap();
    }
    assert_eq!(driver.get(&counts, &"/a".into()).unwrap(), Some(2));
    let sent: Vec<(Option<String>, PageCount)> = driver.read("counts").unwrap();
    let counted: Vec<u64> = sent.iter().map(|(_, c)| c.count).collect();
    assert_eq!(counted, [1, 1, 2]);
}

#[test]
fn sessions_merge_when_an_event_bridges_them_and_close_once() {
    let gap = Duration::from_secs(2);
    let table = faust::WindowedTable::<String, u64>::session("sessions", gap, |a, b| a + b)
        .grace(Duration::from_secs(10))
        .key_codec(faust::Codec::String)
        .close_topic("closed");
    let sessions = faust::agent("clicks").tables(table).handle(
        async |event: &mut Event<'_, String, PageView>, sessions| {
            let url = event.value().url.clone();
            event
                .window(sessions)?
                .update(url, |n| n.unwrap_or(0) + 1)?;
            Ok(())
        },
    );
    let mut driver = TestDriver::from_toml(&App::new().agent(sessions), WINDOWS).unwrap();
    let at = |driver: &mut TestDriver, t: i64| {
        driver
            .pipe_at("clicks", Some("/a"), &view("/a"), t)
            .unwrap();
    };
    // Two sessions, [0, 1 s] and [4 s, 5 s], then 2.5 s bridges them (within 2 s of both);
    // 9 s starts another (more than 2 s after 5 s).
    for t in [0, 1_000, 4_000, 5_000, 2_500, 9_000] {
        at(&mut driver, t);
    }
    assert!(
        driver.sent("closed").is_empty(),
        "10 s of grace: nothing closed"
    );
    // Stream time 20 s is past 5 s + 2 s gap + 10 s grace: the merged session closes, once,
    // with its 5 views. Then 3 s is late: counted, not applied, nothing closed again.
    at(&mut driver, 20_000);
    at(&mut driver, 3_000);
    at(&mut driver, 40_000);
    let closed: Vec<(Option<String>, WindowResult<u64>)> = driver.read("closed").unwrap();
    let got: Vec<(i64, i64, u64)> = closed
        .iter()
        .map(|(_, w)| (w.start, w.end, w.value))
        .collect();
    assert_eq!(got, [(0, 5_001, 5), (9_000, 9_001, 1), (20_000, 20_001, 1)]);
    let late = driver
        .metrics()
        .late_events_total
        .with_label_values(&["sessions"])
        .get();
    assert_eq!(late, 1);
    // The merge deleted the two sessions it replaced: the changelog says so.
    let tombstones = driver
        .sent("clicks-sessions-changelog")
        .iter()
        .filter(|r| r.value.is_none())
        .count();
    assert!(tombstones >= 1, "the merged-away session is deleted");
}

/// Looks up a weight for each view (failing the first `fail` lookups) and adds it to the URL's
/// count.
struct Weighted {
    counts: Table<String, u64>,
    fail: u32,
    lookups: Arc<AtomicU32>,
}

impl ConcurrentAgent for Weighted {
    type Key = String;
    type Value = PageView;
    type Prepared = u64;

    fn name(&self) -> &str {
        "weighted"
    }

    fn topics(&self) -> Vec<String> {
        vec!["page_views".into()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.counts.spec()]
    }

    fn concurrency(&self) -> usize {
        8
    }

    async fn prepare(
        &self,
        _key: Option<&String>,
        view: &PageView,
        _record: &Record,
    ) -> Result<u64, AgentError> {
        if self.lookups.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err(AgentError::msg("the weight service is down"));
        }
        Ok(view.url.len() as u64)
    }

    async fn handle(
        &self,
        event: &mut Event<'_, String, PageView>,
        weight: u64,
    ) -> Result<(), AgentError> {
        let url = event.value().url.clone();
        event
            .table(&self.counts)?
            .update(url, |n| n.unwrap_or(0) + weight)?;
        Ok(())
    }
}

#[test]
fn a_concurrent_agent_prepares_then_handles_and_a_failed_lookup_is_retried_then_dead_lettered() {
    let run = |fail: u32| {
        let lookups = Arc::new(AtomicU32::new(0));
        let agent = Weighted {
            counts: page_counts(),
            fail,
            lookups: lookups.clone(),
        };
        let config = "[app]\nid = \"w\"\n[topics.page_views]\nkey_codec = \"string\"\n\
                      [agents.weighted]\nretries = 2\n";
        let app = App::new().concurrent_agent(agent);
        let mut driver = TestDriver::from_toml(&app, config).unwrap();
        for url in ["/ab", "/ab", "/abcd"] {
            driver.pipe("page_views", Some(url), &view(url)).unwrap();
        }
        (driver, lookups.load(Ordering::SeqCst))
    };
    // Two lookups fail: the first view is retried twice, then every view counts once.
    let (driver, lookups) = run(2);
    assert_eq!(lookups, 5);
    assert_eq!(driver.get(&page_counts(), &"/ab".into()).unwrap(), Some(6));
    assert_eq!(
        driver.get(&page_counts(), &"/abcd".into()).unwrap(),
        Some(5)
    );
    assert!(driver.dead_letters("weighted").is_empty());
    // The short form, the same agent.
    let short = agent("weighted")
        .topic("page_views")
        .tables(page_counts())
        .concurrency(8)
        .prepare(async |_: Option<&String>, view: &PageView| Ok(view.url.len() as u64))
        .handle(
            async |event: &mut Event<'_, String, PageView>, weight, counts| {
                let url = event.value().url.clone();
                event
                    .table(counts)?
                    .update(url, |n| n.unwrap_or(0) + weight)?;
                Ok(())
            },
        );
    let config = "[app]\nid = \"w\"\n[topics.page_views]\nkey_codec = \"string\"\n";
    let mut driver = TestDriver::from_toml(&App::new().concurrent_agent(short), config).unwrap();
    for url in ["/ab", "/ab", "/abcd"] {
        driver.pipe("page_views", Some(url), &view(url)).unwrap();
    }
    assert_eq!(driver.get(&page_counts(), &"/ab".into()).unwrap(), Some(6));
    assert_eq!(
        driver.get(&page_counts(), &"/abcd".into()).unwrap(),
        Some(5)
    );
    // Three fail: the retries are spent and the first view is dead-lettered, uncounted.
    let (driver, _) = run(3);
    assert_eq!(driver.get(&page_counts(), &"/ab".into()).unwrap(), Some(3));
    let letters = driver.dead_letters("weighted");
    assert_eq!(letters.len(), 1);
    let letter = DeadLetter::parse(&letters[0].headers).unwrap();
    assert!(
        letter.error.contains("the weight service is down"),
        "{}",
        letter.error
    );
}
