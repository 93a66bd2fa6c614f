//! The runtime as the node starts it: the transactional producer (exactly once), the worker
//! arbiters, the coordinator, and the consumer thread that feeds it rebalances.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use faust_actors::io::lease::Lease;
use faust_actors::io::members::Directory;
use faust_actors::runtime::consumer::{ConsumerInit, ConsumerThread};
use faust_actors::runtime::coordinator::{Coordinator, CoordinatorInit};
use faust_actors::runtime::messages::StopAll;
use faust_actors::runtime::PartitionSettings;
use faust_actors::{Metrics, Store};

use super::broker::Broker;
use super::Node;
use crate::clients::{client_config, consumer_config, open_transactions, reader_config};
use crate::config::Guarantee;
use crate::error::Error;
use crate::standbys::standby_plan;

/// The started runtime; stop it with [`Runtime::stop`].
pub(super) struct Runtime {
    /// The members' view (`None` when the app has no tables).
    directory: Option<Directory>,
    coordinator: Addr<Coordinator>,
    consumer: ConsumerThread,
    workers: Vec<Arbiter>,
}

impl Runtime {
    /// Starts the coordinator on the worker arbiters, then the consumer thread (which joins
    /// the group).
    ///
    /// # Errors
    /// The transactional producer, the members topic or the consumer cannot be set up.
    pub(super) async fn start(
        node: &Node,
        broker: &Broker,
        store: &Store,
        metrics: &Metrics,
        web: Option<SocketAddr>,
    ) -> Result<Self, Error> {
        let (config, bootstrap) = (&node.topology.config, &node.bootstrap);
        let transactions = match config.processing.guarantee {
            Guarantee::AtLeastOnce => None,
            Guarantee::ExactlyOnce => {
                let node_id = store.node_id()?;
                Some(open_transactions(config, bootstrap, &node_id).await?)
            }
        };
        let workers: Vec<Arbiter> = (0..config.workers()).map(|_| Arbiter::new()).collect();
        let standbys = standby_plan(&node.topology, &client_config(config, bootstrap), web)?;
        let directory = standbys.as_ref().map(|s| s.membership.directory());
        let p = &config.processing;
        let coordinator = Coordinator::new(CoordinatorInit {
            topology: node.topology.runtime.clone(),
            client: reader_config(config, bootstrap),
            store: store.clone(),
            metrics: metrics.clone(),
            producer: Some(match &transactions {
                Some(t) => t.producer().clone(),
                None => broker.producer.clone(),
            }),
            settings: PartitionSettings {
                commit_interval: p.commit_interval,
                max_batch: p.max_batch,
                retry_backoff: p.retry_backoff,
                retry_backoff_max: p.retry_backoff_max,
                cache_keys: config.store.cache_keys,
                exactly_once: transactions.is_some(),
                max_timestamp_ahead: p.max_timestamp_ahead,
                stall_after: p.commit_interval * p.stall_intervals,
            },
            workers: workers.iter().map(Arbiter::handle).collect(),
            stop_timeout: p.shutdown_timeout,
            standbys,
            transactions,
            lease: Lease::start(config.broker.session_timeout, Some(metrics.clone())),
        })
        .start();
        let consumer = ConsumerThread::start(ConsumerInit {
            config: consumer_config(config, bootstrap),
            topology: node.topology.runtime.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            revoke_timeout: p.shutdown_timeout,
            coordinator: Coordinator::rebalances(&coordinator),
        })?;
        Ok(Runtime {
            directory,
            coordinator,
            consumer,
            workers,
        })
    }

    /// The members' view, for table queries.
    pub(super) fn directory(&self) -> Option<Directory> {
        self.directory.clone()
    }

    /// How many worker arbiters run partitions.
    pub(super) fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Commits and stops every partition, then closes the consumer (leaving the group), each
    /// within `bound`. Returns the steps that did not finish in time, and the worker arbiters
    /// (stopped with [`stop_workers`] once the store is flushed).
    pub(super) async fn stop(self, bound: Duration) -> (Vec<&'static str>, Vec<Arbiter>) {
        let mut failures = Vec::new();
        if tokio::time::timeout(bound, self.coordinator.send(StopAll))
            .await
            .is_err()
        {
            failures.push("committing partitions");
        }
        let consumer = self.consumer;
        let closed = tokio::task::spawn_blocking(move || consumer.close(bound)).await;
        if !matches!(closed, Ok(Ok(()))) {
            failures.push("closing the consumer");
        }
        (failures, self.workers)
    }
}

/// Stops the worker arbiters and waits for their threads.
pub(super) async fn stop_workers(workers: Vec<Arbiter>) {
    for w in &workers {
        w.stop();
    }
    let _ =
        tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join()))).await;
}
