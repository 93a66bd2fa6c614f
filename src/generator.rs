//! The page-view generator: a background task producing synthetic page views, like the sender
//! task of Faust's introductory example. Keys are URLs (string codec), values
//! `{"url", "user", "ts"}` in JSON; URLs are drawn Zipf-like so a few pages are hot, from a
//! seeded generator so runs are reproducible.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::GeneratorConfig;

/// One page view, as the generator writes it and the demo agent reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageView {
    /// The page.
    pub url: String,
    /// Who viewed it.
    pub user: String,
    /// When, in milliseconds since the epoch.
    pub ts: i64,
}

/// Makes the same sequence of page views for the same seed.
pub struct PageViewSource {
    rng: StdRng,
    zipf: Zipf<f64>,
    users: u32,
}

impl PageViewSource {
    /// A source over `urls` URLs and `users` users.
    pub fn new(seed: u64, urls: u32, users: u32) -> Self {
        PageViewSource {
            rng: StdRng::seed_from_u64(seed),
            // s = 1.0: the classic web-traffic skew. `urls` >= 1 is checked by the config.
            zipf: Zipf::new(f64::from(urls.max(1)), 1.0).unwrap_or_else(|_| unreachable!()),
            users: users.max(1),
        }
    }

    /// The next page view, stamped `ts`.
    pub fn next_view(&mut self, ts: i64) -> PageView {
        let url = self.zipf.sample(&mut self.rng) as u64;
        let user = self.rng.random_range(0..self.users);
        PageView {
            url: format!("/page/{url}"),
            user: format!("user-{user}"),
            ts,
        }
    }
}

/// Produces page views at `config.rate` per second until `stop` turns true or `config.count`
/// records were sent. Returns how many were sent.
pub async fn run(
    config: GeneratorConfig,
    producer: FutureProducer,
    sent: IntCounter,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut source = PageViewSource::new(config.seed, config.urls, config.users);
    let tick = Duration::from_millis(10);
    let per_tick = (f64::from(config.rate) / 100.0).max(0.01);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limit = config.count.unwrap_or(u64::MAX);
    let (mut total, mut budget) = (0u64, 0.0f64);
    tracing::info!(topic = %config.topic, rate = config.rate, urls = config.urls, "generator started");
    while total < limit {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        budget += per_tick;
        while budget >= 1.0 && total < limit {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let view = source.next_view(ts);
            let Ok(value) = serde_json::to_vec(&view) else {
                continue;
            };
            let record = FutureRecord::to(&config.topic)
                .key(&view.url)
                .payload(&value)
                .timestamp(ts);
            match producer.send_result(record) {
                Ok(_delivery) => {
                    budget -= 1.0;
                    total += 1;
                    sent.inc();
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                Err((e, _)) => {
                    tracing::error!(topic = %config.topic, error = %e, "generator cannot produce");
                    break;
                }
            }
        }
    }
    tracing::info!(sent = total, "generator stopped");
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_views_and_hot_urls_dominate() {
        let mut a = PageViewSource::new(7, 100, 10);
        let mut b = PageViewSource::new(7, 100, 10);
        let va: Vec<_> = (0..1000).map(|i| a.next_view(i)).collect();
        let vb: Vec<_> = (0..1000).map(|i| b.next_view(i)).collect();
        assert_eq!(va, vb);
        let hot = va.iter().filter(|v| v.url == "/page/1").count();
        let cold = va.iter().filter(|v| v.url == "/page/100").count();
        assert!(hot > 10 * cold.max(1), "hot={hot} cold={cold}");
    }
}
