//! Exactly-once rounds (`processing.guarantee = "exactly_once"`), the KIP-447 model: one
//! transactional producer per node (`io::transactional`), whose transaction holds every partition's outputs and
//! changelog writes since the last commit, and their source offsets
//! (`send_offsets_to_transaction` with the consumer's group metadata, so a member fenced by a
//! rebalance cannot commit).
//!
//! A producer has one open transaction, so the node commits in **rounds**, not per partition.
//! The coordinator runs one every `commit_interval`, and on revoke and shutdown:
//!
//! 1. it sends [`Prepare`] to every partition actor that has joined ([`Join`]); each one finishes
//!    its batch, waits for its outputs' acknowledgements, writes its dirty table entries to the
//!    changelogs (inside the transaction) and votes with its next offset, then **stays paused**
//!    (an atomic handler) until the round's decision;
//! 2. if every partition voted ready, the coordinator sends the offsets to the transaction and
//!    commits it; otherwise (a partition dropped work, a write failed, a vote timed out), or if
//!    the commit fails, it aborts. Either way it opens the next transaction before deciding;
//! 3. on `Committed` each partition applies its staged table entries and offset to sled: sled
//!    only ever holds committed data. On `Aborted` each partition drops its uncommitted table
//!    entries and seeks back to its last committed offset; sled, changelog and offsets are as
//!    before. On `Fatal` (the producer was fenced, or broke) each partition halts: nothing
//!    partial is ever committed.
//!
//! A partition joins only between rounds, so nothing it sends can fall into a transaction whose
//! offsets leave it out. Anything that drops a partition's uncommitted work outside a round
//! (an agent actor lost with its batch, a restart) poisons it: its next vote aborts the round,
//! because the outputs of the dropped events are already in the open transaction.
//!
//! After a crash, the group's committed offset and the changelog up to its last stable offset
//! (read with `read_committed`) are the truth; the store catches up from the changelog.
//!
//! A producer that fails for good (fenced after a transaction outlived
//! `transaction.timeout.ms`, a broker outage that broke a commit or an abort) is not the end:
//! the round is `Fatal`, every partition drops its uncommitted work and stops, and the
//! coordinator builds a new producer with the same `transactional.id` (which fences the old
//! one and aborts its transaction), retrying with back-off while the broker is away; then the
//! partitions restart from the group's committed offsets. Votes are bounded below half the
//! transaction timeout, so a slow partition aborts a round instead of letting the broker
//! fence the producer.

use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::oneshot;
use futures::future::join_all;
use futures::FutureExt;
use rdkafka::consumer::Consumer;

use super::Coordinator;
use crate::io::fault_injection;
use crate::metrics::status::Fatal;
use crate::runtime::messages::{Abandon, Join, Outcome, Prepare, Vote, PRODUCER_FAILED};

impl Handler<Join> for Coordinator {
    type Result = bool;

    fn handle(&mut self, msg: Join, _ctx: &mut Self::Context) -> bool {
        match self.partitions.get_mut(&(msg.topic, msg.partition)) {
            Some(running) if running.started == msg.started => {
                running.joined = true;
                true
            }
            _ => false,
        }
    }
}

impl Coordinator {
    /// A round over every joined partition (see the module doc), as a future to run under
    /// `ctx.wait`: it asks the partitions only when it starts, so rounds never overlap and a
    /// partition's Prepare always belongs to the round under way. It resolves once the
    /// decision is sent. Without transactions (at least once) it resolves at once.
    pub(crate) fn round(&mut self) -> ResponseActFuture<Self, Outcome> {
        let start = fut::ready(());
        Box::pin(ActorFutureExt::then(start, |(), act: &mut Self, _| {
            fut::wrap_future::<_, Self>(act.start_round())
        }))
    }

    /// Asks every joined partition to prepare, now; the future decides the round.
    fn start_round(&mut self) -> impl std::future::Future<Output = Outcome> + 'static {
        let txn = self.init.transactions.clone().filter(|_| !self.broken);
        let (decide, decision) = oneshot::channel();
        let decision = decision.shared();
        let votes: Vec<_> = match &txn {
            None => Vec::new(),
            Some(_) => self
                .partitions
                .values()
                .filter(|r| r.joined)
                .map(|r| {
                    let (vote, voted) = oneshot::channel();
                    let decision = decision.clone();
                    r.addr.do_send(Prepare { vote, decision });
                    voted
                })
                .collect(),
        };
        tracing::debug!(partitions = votes.len(), "transaction round");
        let group = self.consumer.as_ref().and_then(|c| c.group_metadata());
        let stop = self.init.stop_timeout;
        let metrics = self.init.metrics.clone();
        let lease = self.init.lease.clone();
        async move {
            let Some(txn) = txn else {
                return Outcome::Committed;
            };
            let bound = txn.vote_bound(stop);
            let started = Instant::now();
            let (mut offsets, mut abort, mut wrote) = (Vec::new(), None, false);
            match tokio::time::timeout(bound, join_all(votes)).await {
                Err(_) => abort = Some(format!("partitions did not vote within {bound:?}")),
                Ok(votes) => {
                    for vote in votes {
                        match vote {
                            Ok(Vote::Ready {
                                partition,
                                next,
                                wrote: w,
                            }) => {
                                wrote |= w;
                                offsets.extend(next.iter().map(|(t, n)| (t.clone(), partition, n)));
                            }
                            Ok(Vote::Abort(why)) => abort = abort.or(Some(why)),
                            Err(_) => {
                                abort = abort.or(Some("a partition stopped mid-transaction".into()))
                            }
                        }
                    }
                }
            }
            if !wrote && abort.is_none() {
                // Nothing was sent since the last commit: the open transaction stays open.
                let _ = decide.send(Outcome::Committed);
                return Outcome::Committed;
            }
            if abort.is_none() && !lease.valid() {
                abort = Some(
                    "this node may have lost its partitions (frozen past the session \
                    timeout)"
                        .into(),
                );
            }
            if abort.is_none() && fault_injection::abort_round() {
                abort = Some("fault injection: FAUST_FAULT_ABORT_ROUNDS".into());
            }
            if abort.is_none() && txn.doomed.load(std::sync::atomic::Ordering::SeqCst) {
                abort = Some("a send failed inside the transaction".into());
            }
            let doomed = txn.doom_flag();
            let outcome =
                tokio::task::spawn_blocking(move || txn.finish(&offsets, group.as_ref(), abort))
                    .await
                    .unwrap_or(Outcome::Fatal);
            // The next transaction is open (or the producer is gone): sends may succeed again.
            doomed.store(false, std::sync::atomic::Ordering::SeqCst);
            let result = match outcome {
                Outcome::Committed => "committed",
                Outcome::Aborted => "aborted",
                Outcome::Fatal => "fatal",
            };
            metrics
                .transactions_total
                .with_label_values(&[result])
                .inc();
            metrics
                .transaction_seconds
                .observe(started.elapsed().as_secs_f64());
            let _ = decide.send(outcome);
            outcome
        }
    }

    /// Runs a round at the commit interval, unless one is already waiting or under way (ticks
    /// missed during a long round do not pile up).
    pub(crate) fn tick_round(&mut self, ctx: &mut Context<Self>) {
        if self.round_queued {
            return;
        }
        self.round_queued = true;
        ctx.wait(ActorFutureExt::map(self.round(), |outcome, act, _| {
            act.round_queued = false;
            if outcome == Outcome::Fatal && !act.broken {
                act.broken = true;
                let now = Instant::now();
                let failures = &mut act.producer_failures;
                failures.retain(|t| now.duration_since(*t) < GIVE_UP_WINDOW);
                failures.push(now);
                if failures.len() >= GIVE_UP_AFTER {
                    act.init.metrics.status().fail(Fatal::ProducerGivenUp);
                    tracing::error!(failures = failures.len(), window = ?GIVE_UP_WINDOW,
                        "the transactional producer failed again and again: another live \
                         process most likely uses this node's transactional.id (a copy of its \
                         store); this node stops");
                }
                tracing::error!(
                    "the transactional producer failed for good: every partition stops and \
                    drops its uncommitted work; a new producer is being built"
                );
                act.abandon_all();
            }
        }));
    }

    /// Every partition drops its uncommitted work and stops (restarted with the next producer).
    fn abandon_all(&self) {
        for running in self.partitions.values() {
            running.addr.do_send(Abandon(PRODUCER_FAILED));
        }
    }

    /// While the producer is broken, builds a new one (one attempt at a time, with back-off
    /// between failures, each counted in `faust_producer_rebuilds_total`); once built, the
    /// stopped partitions restart from the group's offsets at the next tick.
    pub(crate) fn rebuild_producer(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let Some(old) = self.init.transactions.clone() else {
            return;
        };
        let given_up = self.init.metrics.status().fatal() == Some(Fatal::ProducerGivenUp);
        if !self.broken
            || given_up
            || self.rebuilding
            || self.rebuild_after.is_some_and(|t| now < t)
        {
            return;
        }
        self.rebuilding = true;
        let attempt = tokio::task::spawn_blocking(move || old.rebuild());
        ctx.spawn(fut::wrap_future(attempt).map(|built, act: &mut Self, _| {
            act.rebuilding = false;
            let rebuilds = &act.init.metrics.producer_rebuilds_total;
            match built {
                Ok(Ok(txn)) => {
                    rebuilds.with_label_values(&["ok"]).inc();
                    tracing::warn!(
                        "a new transactional producer is ready: partitions restart from the \
                        group's committed offsets"
                    );
                    act.init.producer = Some(txn.producer().clone());
                    act.init.transactions = Some(txn);
                    act.broken = false;
                    act.rebuild_failures = 0;
                    // Partitions assigned meanwhile hold the old producer: they restart too.
                    act.abandon_all();
                    act.rebuild_after = None;
                }
                failed => {
                    rebuilds.with_label_values(&["failed"]).inc();
                    act.rebuild_failures += 1;
                    let wait = Duration::from_secs(1 << act.rebuild_failures.min(5));
                    tracing::error!(result = ?failed.map(|r| r.map(|_| ())), ?wait,
                        "cannot build a new transactional producer yet; trying again");
                    act.rebuild_after = Some(Instant::now() + wait);
                }
            }
        }));
    }
}

/// Producer failures within [`GIVE_UP_WINDOW`] after which the node stops instead of building
/// another: two live processes with one `transactional.id` fence each other for ever, and one
/// of them must go (the one fenced first reaches the count first).
const GIVE_UP_AFTER: usize = 3;
const GIVE_UP_WINDOW: Duration = Duration::from_secs(120);
