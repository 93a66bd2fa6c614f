//! Periodic tasks, like Faust's `@app.timer` and `@app.crontab`: a [`Timer`] runs every
//! interval or on a cron schedule, on every node or only on the group's leader.
//!
//! The leader is the node that holds partition 0 of the app's first source topic (by name) as
//! active: Kafka's group assignment picks it, so exactly one live node is leader once the group
//! is balanced, and leadership moves with that partition on failure. A run that fails or
//! panics is logged and counted (`faust_timer_runs_total{timer,result}`); the next run comes
//! on schedule. Runs of one timer never overlap.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use faust_actors::state::spec::{TableKey, TableValue};
use faust_actors::{AgentError, Clock, GlobalTable, Metrics, Store, TopicCodecs};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use crate::error::Error;

/// When a timer runs.
#[derive(Clone)]
pub enum Schedule {
    /// Every interval, the first run one interval after the node starts.
    Every(Duration),
    /// On a cron expression with seconds (`sec min hour day month weekday [year]`), in UTC.
    Cron(Box<cron::Schedule>),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {d:?}"),
            Schedule::Cron(c) => write!(f, "cron `{c}`"),
        }
    }
}

type Task =
    Arc<dyn Fn(TimerContext) -> LocalBoxFuture<'static, Result<(), AgentError>> + Send + Sync>;

/// A periodic task of an app (see the module doc).
#[derive(Clone)]
pub struct Timer {
    pub(crate) name: String,
    pub(crate) schedule: Schedule,
    pub(crate) leader_only: bool,
    task: Task,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .field("leader_only", &self.leader_only)
            .finish()
    }
}

impl Timer {
    /// A timer running `task` every `interval`.
    pub fn every<F, Fut>(name: &str, interval: Duration, task: F) -> Self
    where
        F: Fn(TimerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), AgentError>> + 'static,
    {
        Timer {
            name: name.into(),
            schedule: Schedule::Every(interval.max(Duration::from_millis(1))),
            leader_only: false,
            task: Arc::new(move |ctx| task(ctx).boxed_local()),
        }
    }

    /// A timer running `task` on the cron expression `expr` (with a seconds field, UTC).
    ///
    /// # Errors
    /// [`Error::BadSchedule`] when `expr` is not a cron expression.
    pub fn cron<F, Fut>(name: &str, expr: &str, task: F) -> Result<Self, Error>
    where
        F: Fn(TimerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), AgentError>> + 'static,
    {
        let schedule = cron::Schedule::from_str(expr).map_err(|e| Error::BadSchedule {
            timer: name.into(),
            expr: expr.into(),
            reason: e.to_string(),
        })?;
        let mut timer = Self::every(name, Duration::from_secs(1), task);
        timer.schedule = Schedule::Cron(Box::new(schedule));
        Ok(timer)
    }

    /// Runs only on the group's leader.
    pub fn on_leader(mut self) -> Self {
        self.leader_only = true;
        self
    }

    /// The timer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long after `now_ms` the run following the one at `last_ms` is due (zero when
    /// overdue), and its time; `None` when a cron schedule has no more times.
    fn next_run(&self, last_ms: i64, now_ms: i64) -> Option<(Duration, i64)> {
        let at = match &self.schedule {
            Schedule::Every(d) => last_ms + d.as_millis() as i64,
            Schedule::Cron(c) => {
                let last = DateTime::<Utc>::from_timestamp_millis(last_ms)?;
                c.after(&last).next()?.timestamp_millis()
            }
        };
        Some((Duration::from_millis((at - now_ms).max(0) as u64), at))
    }
}

/// What a timer's task gets: sending records, and the node's metrics.
#[derive(Clone)]
pub struct TimerContext {
    producer: Option<FutureProducer>,
    codecs: Arc<TopicCodecs>,
    metrics: Metrics,
    store: Option<Store>,
}

impl TimerContext {
    /// A context sending through `producer` with the topics' `codecs`.
    pub(crate) fn new(
        producer: Option<FutureProducer>,
        codecs: Arc<TopicCodecs>,
        metrics: Metrics,
    ) -> Self {
        TimerContext {
            producer,
            codecs,
            metrics,
            store: None,
        }
    }

    /// The same context, reading global tables from `store`.
    pub(crate) fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The value of `key` in the global `table`, as this node's copy holds it (the same copy
    /// agents read; it follows the table's changelog, committed writes only).
    ///
    /// # Errors
    /// The store cannot be read, or the key or value does not fit the table's codecs.
    pub fn global<K: TableKey, V: TableValue>(
        &self,
        table: &GlobalTable<K, V>,
        key: &K,
    ) -> Result<Option<V>, AgentError> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| AgentError::msg("this timer runs without a store"))?;
        Ok(store.global_get(table, key)?)
    }

    /// Every key and value of the global `table`, as this node's copy holds it.
    ///
    /// # Errors
    /// As [`TimerContext::global`].
    pub fn global_contents<K: TableKey, V: TableValue>(
        &self,
        table: &GlobalTable<K, V>,
    ) -> Result<std::collections::HashMap<K, V>, AgentError> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| AgentError::msg("this timer runs without a store"))?;
        Ok(store.global_contents(table)?)
    }

    /// Sends `key`/`value` to `topic` with its codecs and waits for the acknowledgement.
    ///
    /// # Errors
    /// The value does not encode, or the broker did not take it within 30 s.
    pub async fn send<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        topic: &str,
        key: Option<&K>,
        value: &V,
    ) -> Result<(), AgentError> {
        let producer = self
            .producer
            .as_ref()
            .ok_or_else(|| AgentError::msg("this timer has no producer"))?;
        let (kc, vc) = self.codecs.get(topic);
        let key = key.map(|k| kc.encode("key", k)).transpose()?;
        let value = vc.encode("value", value)?;
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(&value);
        if let Some(k) = &key {
            record = record.key(k.as_slice());
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| AgentError::msg(format!("sending to `{topic}`: {e}")))?;
        Ok(())
    }
}

/// Runs `timer` until the future is dropped: sleeps (on tokio's clock) until each run is due
/// by `clock`, asks `is_leader` when the timer is leader-only, and runs the task.
pub(crate) async fn run(
    timer: Timer,
    ctx: TimerContext,
    clock: Arc<dyn Clock>,
    is_leader: impl Fn() -> bool,
) {
    let runs = ctx.metrics.timer_runs_total.clone();
    let mut last = clock.now_ms();
    while let Some((wait, at)) = timer.next_run(last, clock.now_ms()) {
        tokio::time::sleep(wait).await;
        last = at;
        if timer.leader_only && !is_leader() {
            runs.with_label_values(&[&timer.name, "not_leader"]).inc();
            continue;
        }
        let call = AssertUnwindSafe((timer.task)(ctx.clone())).catch_unwind();
        let result = match call.await {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                tracing::error!(timer = %timer.name, error = %e, "timer run failed");
                "error"
            }
            Err(_) => {
                tracing::error!(timer = %timer.name, "timer run panicked");
                "panic"
            }
        };
        runs.with_label_values(&[&timer.name, result]).inc();
    }
    tracing::info!(timer = %timer.name, "timer schedule has no more runs");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use faust_actors::ManualClock;

    use super::*;

    fn context() -> TimerContext {
        TimerContext::new(None, Arc::default(), Metrics::new().unwrap())
    }

    /// Drives `timer` on a paused tokio clock, moving `clock` along with it, for `total`.
    async fn drive(timer: Timer, leader: Arc<AtomicBool>, total: Duration) -> TimerContext {
        let ctx = context();
        let clock = ManualClock::new(1_000_000);
        let c = clock.clone();
        let running = tokio::task::spawn_local(run(timer, ctx.clone(), c, move || {
            leader.load(Ordering::SeqCst)
        }));
        let step = Duration::from_millis(100);
        let mut passed = Duration::ZERO;
        while passed < total {
            tokio::time::advance(step).await;
            clock.advance(step);
            passed += step;
            tokio::task::yield_now().await;
        }
        running.abort();
        ctx
    }

    fn counting(name: &str, every: Duration, n: &Arc<AtomicU32>) -> Timer {
        let n = n.clone();
        Timer::every(name, every, move |_| {
            let n = n.clone();
            async move {
                let k = n.fetch_add(1, Ordering::SeqCst);
                match k {
                    1 => Err(AgentError::msg("second run fails")),
                    2 => panic!("third run panics"),
                    _ => Ok(()),
                }
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_timer_fires_on_time_and_survives_errors_and_panics() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let n = Arc::new(AtomicU32::new(0));
                let leader = Arc::new(AtomicBool::new(true));
                let timer = counting("tick", Duration::from_secs(10), &n);
                let ctx = drive(timer, leader, Duration::from_millis(45_050)).await;
                assert_eq!(n.load(Ordering::SeqCst), 4, "runs at 10, 20, 30 and 40 s");
                let runs = &ctx.metrics().timer_runs_total;
                let get = |r: &str| runs.with_label_values(&["tick", r]).get();
                assert_eq!((get("ok"), get("error"), get("panic")), (2, 1, 1));
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_cron_timer_fires_on_its_schedule_and_a_leader_only_one_only_on_the_leader() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let n = Arc::new(AtomicU32::new(0));
                let m = n.clone();
                let timer = Timer::cron("every5", "*/5 * * * * *", move |_| {
                    let m = m.clone();
                    async move {
                        m.fetch_add(10, Ordering::SeqCst);
                        Ok(())
                    }
                })
                .unwrap()
                .on_leader();
                // The clock starts at 1,000,000 ms (on a 5 s boundary): runs at +5 s .. +30 s.
                let leader = Arc::new(AtomicBool::new(false));
                let ctx = drive(timer.clone(), leader, Duration::from_millis(30_050)).await;
                assert_eq!(n.load(Ordering::SeqCst), 0, "not the leader: no run");
                let skipped = &ctx.metrics().timer_runs_total;
                assert_eq!(
                    skipped.with_label_values(&["every5", "not_leader"]).get(),
                    6
                );
                let leader = Arc::new(AtomicBool::new(true));
                drive(timer, leader, Duration::from_millis(30_050)).await;
                assert_eq!(n.load(Ordering::SeqCst), 60, "six runs of +10");
            })
            .await;
        assert!(Timer::cron("bad", "every monday", |_| async { Ok(()) }).is_err());
    }
}
