//! The node's services around the runtime: the broker watch (marks the broker up again after
//! an outage), the app's timers (leader-only ones run where partition 0 of the first source
//! topic is held), and the generator of demo page views.

use std::sync::Arc;
use std::time::Duration;

use faust_actors::{Metrics, Store, SystemClock};
use prometheus::IntCounter;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::broker::Broker;
use super::Node;
use crate::error::Error;
use crate::generator;
use crate::timer::{self, TimerContext};

/// The running services; stop them with [`Services::stop`].
pub(super) struct Services {
    timers: Vec<JoinHandle<()>>,
    generator: Option<JoinHandle<u64>>,
    stop_generator: watch::Sender<bool>,
}

impl Services {
    /// Starts the broker watch, every timer, and the generator if enabled.
    ///
    /// # Errors
    /// The generator's counter cannot be registered.
    pub(super) fn start(
        node: &Node,
        broker: &Broker,
        store: &Store,
        metrics: &Metrics,
    ) -> Result<Self, Error> {
        let config = &node.topology.config;
        actix::spawn(crate::clients::watch_broker(
            broker.producer.clone(),
            metrics.clone(),
        ));
        let codecs = node.topology.runtime.codecs.clone();
        let context = TimerContext::new(Some(broker.producer.clone()), codecs, metrics.clone())
            .with_store(store.clone());
        let leader = node.topology.leader.clone().unwrap_or_default();
        let timers = node
            .timers
            .iter()
            .cloned()
            .map(|t| {
                let (status, topic) = (metrics.status().clone(), leader.clone());
                // The leader holds partition 0 of the first source topic (see `timer`).
                let is_leader = move || status.holds(&topic, 0);
                let clock: Arc<dyn faust_actors::Clock> = Arc::new(SystemClock);
                actix::spawn(timer::run(t, context.clone(), clock, is_leader))
            })
            .collect();
        let generated = IntCounter::new(
            "faust_generator_records_total",
            "Records sent by the generator",
        )
        .map_err(|source| faust_actors::Error::Metrics { source })?;
        metrics
            .registry()
            .register(Box::new(generated.clone()))
            .map_err(|source| faust_actors::Error::Metrics { source })?;
        let (stop_generator, stop_rx) = watch::channel(false);
        let generator = config.generator.enabled.then(|| {
            actix::spawn(generator::run(
                config.generator.clone(),
                broker.producer.clone(),
                generated,
                stop_rx,
            ))
        });
        Ok(Services {
            timers,
            generator,
            stop_generator,
        })
    }

    /// Stops the generator (bounded wait) and the timers.
    pub(super) async fn stop(self) {
        let _ = self.stop_generator.send(true);
        for t in self.timers {
            t.abort();
        }
        if let Some(g) = self.generator {
            let _ = tokio::time::timeout(Duration::from_secs(5), g).await;
        }
    }
}
