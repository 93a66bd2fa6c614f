//! Group members and what each one holds, as every node sees it.
//!
//! librdkafka runs no custom partition assignor, so standby placement cannot ride on the
//! assignment itself. Instead each node publishes its active partitions to the app's compacted
//! members topic (`<app-id>-members`, one partition; key = node id, JSON value, a tombstone when
//! it leaves) every second and on every rebalance, and reads everybody's. A member whose last
//! announcement is older than the liveness bound is considered gone. [`place_standbys`] then
//! gives every node the same answer to "which partitions do I keep a warm copy of?".

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::model::error::{Error, Result};
use crate::model::names::members_topic;

/// A source partition: (topic, partition).
pub type Part = (String, i32);

#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    active: Vec<Part>,
    /// The member's web server (table queries are forwarded there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    web: Option<String>,
}

#[derive(Debug, Clone)]
struct Member {
    active: Vec<Part>,
    /// Record timestamp of the last announcement, ms since the epoch.
    at_ms: i64,
    web: Option<String>,
}

/// A live member that holds a partition, as the members topic says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Its node id.
    pub node: String,
    /// Its web server's address, if it serves one.
    pub web: Option<String>,
}

/// A read-only view of the members, cheap to clone (for the web server's table queries).
#[derive(Debug, Clone)]
pub struct Directory {
    node: String,
    view: Arc<Mutex<HashMap<String, Member>>>,
    live_for: Duration,
}

impl Directory {
    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The live members other than this node.
    pub fn others(&self) -> Vec<Owner> {
        self.live_others(|_| true)
    }

    /// The live members other than this node that announce `part` as active (normally one;
    /// two for a moment during a rebalance).
    pub fn owners(&self, part: &Part) -> Vec<Owner> {
        self.live_others(|m| m.active.contains(part))
    }

    fn live_others(&self, keep: impl Fn(&Member) -> bool) -> Vec<Owner> {
        let cutoff = now_ms() - self.live_for.as_millis() as i64;
        let Ok(view) = self.view.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Owner> = view
            .iter()
            .filter(|(node, m)| **node != self.node && m.at_ms >= cutoff && keep(m))
            .map(|(node, m)| Owner {
                node: node.clone(),
                web: m.web.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }
}

/// This node's view of the members, kept current by a reader thread.
pub struct Membership {
    node: String,
    topic: String,
    view: Arc<Mutex<HashMap<String, Member>>>,
    producer: ThreadedProducer<DefaultProducerContext>,
    live_for: Duration,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    web: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Membership {
    /// Starts reading the members topic of `app_id` as node `node`.
    ///
    /// # Errors
    /// The clients cannot be created or the topic cannot be assigned.
    pub fn start(
        client: &ClientConfig,
        app_id: &str,
        node: &str,
        live_for: Duration,
    ) -> Result<Self> {
        let topic = members_topic(app_id);
        let consumer: BaseConsumer = client
            .clone()
            .set("group.id", format!("{app_id}-members-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| Error::kafka("creating the members reader", e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(|e| Error::kafka("assigning the members topic", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| Error::kafka("assigning the members topic", e))?;
        drop(tpl);
        let producer = client
            .create()
            .map_err(|e| Error::kafka("creating the members producer", e))?;
        let view = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (view.clone(), stop.clone());
        let reader = std::thread::Builder::new()
            .name("faust-members".into())
            .spawn(move || read(consumer, &v, &s))
            .map_err(|source| Error::Io {
                action: "cannot start the members reader thread",
                path: "faust-members".into(),
                source,
            })?;
        Ok(Membership {
            node: node.to_owned(),
            topic,
            view,
            producer,
            live_for,
            stop,
            reader: Some(reader),
            web: None,
        })
    }

    /// Announces `web` as this node's web server from now on.
    pub fn with_web(mut self, web: Option<String>) -> Self {
        self.web = web;
        self
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A read-only view of the members for other parts of the node.
    pub fn directory(&self) -> Directory {
        Directory {
            node: self.node.clone(),
            view: self.view.clone(),
            live_for: self.live_for,
        }
    }

    /// Announces this node's active partitions (also its heartbeat).
    pub fn publish(&self, active: &[Part]) {
        let value = serde_json::to_vec(&Announcement {
            active: active.to_vec(),
            web: self.web.clone(),
        })
        .unwrap_or_default();
        let record = BaseRecord::to(&self.topic)
            .key(&self.node)
            .payload(&value)
            .timestamp(now_ms());
        if let Err((e, _)) = self.producer.send(record) {
            tracing::warn!(error = %e, "cannot announce this node's partitions");
        }
    }

    /// The members heard from within the liveness bound, with their active partitions.
    pub fn live(&self) -> Vec<(String, Vec<Part>)> {
        let cutoff = now_ms() - self.live_for.as_millis() as i64;
        let mut out: Vec<_> = self
            .view
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(node, m)| m.at_ms >= cutoff || **node == self.node)
                    .map(|(node, m)| (node.clone(), m.active.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if !out.iter().any(|(n, _)| *n == self.node) {
            out.push((self.node.clone(), Vec::new()));
        }
        out
    }

    /// Leaves: a tombstone for this node, then the reader stops.
    pub fn leave(mut self) {
        let _ = self
            .producer
            .send(BaseRecord::<str, [u8]>::to(&self.topic).key(&self.node));
        let _ = self.producer.flush(Duration::from_secs(5));
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn read(consumer: BaseConsumer, view: &Mutex<HashMap<String, Member>>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let Some(node) = msg.key().map(|k| String::from_utf8_lossy(k).into_owned()) else {
            continue;
        };
        let Ok(mut view) = view.lock() else { return };
        match msg.payload().map(serde_json::from_slice::<Announcement>) {
            Some(Ok(a)) => {
                let at_ms = msg.timestamp().to_millis().unwrap_or_else(now_ms);
                view.insert(
                    node,
                    Member {
                        active: a.active,
                        at_ms,
                        web: a.web,
                    },
                );
            }
            None => {
                view.remove(&node);
            }
            Some(Err(e)) => tracing::warn!(%node, error = %e, "unreadable member announcement"),
        }
    }
}

fn score(node: &str, part: &Part) -> u64 {
    let mut h = DefaultHasher::new();
    (node, &part.0, part.1).hash(&mut h);
    h.finish()
}

/// The partitions (of `parts`) that `me` should keep a standby of: for each partition, the
/// `replicas` live members other than its owner(s) that hold the fewest active partitions,
/// ties broken by rendezvous hashing (stable as members come and go, the same on every node).
///
/// Why load first: librdkafka runs no custom assignor, so a dead owner's partition goes where
/// the group's balanced assignment puts it: the least-loaded survivor. Placing the standby there
/// makes that survivor the one that takes the partition over with a warm copy. When survivors
/// tie, the group may pick another one, which then restores from the changelog.
pub fn place_standbys(
    me: &str,
    live: &[(String, Vec<Part>)],
    parts: &[Part],
    replicas: usize,
) -> Vec<Part> {
    parts
        .iter()
        .filter(|part| {
            let mut candidates: Vec<(&str, usize)> = live
                .iter()
                .filter(|(_, active)| !active.contains(part))
                .map(|(node, active)| (node.as_str(), active.len()))
                .collect();
            candidates.sort_by_key(|(node, load)| (*load, std::cmp::Reverse(score(node, part))));
            candidates.iter().take(replicas).any(|(n, _)| *n == me)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Vec<Part> {
        (0..4).map(|p| ("t".to_owned(), p)).collect()
    }

    #[test]
    fn every_partition_gets_its_replicas_on_members_other_than_its_owner() {
        let live: Vec<(String, Vec<Part>)> = vec![
            ("a".into(), vec![("t".into(), 0), ("t".into(), 1)]),
            ("b".into(), vec![("t".into(), 2)]),
            ("c".into(), vec![("t".into(), 3)]),
        ];
        let by_node: HashMap<&str, Vec<Part>> = ["a", "b", "c"]
            .iter()
            .map(|n| (*n, place_standbys(n, &live, &parts(), 1)))
            .collect();
        for part in parts() {
            let holders: Vec<_> = by_node
                .iter()
                .filter(|(_, s)| s.contains(&part))
                .map(|(n, _)| *n)
                .collect();
            assert_eq!(holders.len(), 1, "{part:?}: {holders:?}");
            let owner = live.iter().find(|(_, a)| a.contains(&part)).unwrap();
            assert_ne!(holders[0], owner.0, "a standby never sits on the owner");
        }
    }

    #[test]
    fn placement_is_stable_when_an_unrelated_member_leaves() {
        let three: Vec<(String, Vec<Part>)> = vec![
            ("a".into(), vec![]),
            ("b".into(), vec![]),
            ("c".into(), vec![]),
        ];
        let two = &three[..2];
        for part in parts() {
            let one = std::slice::from_ref(&part);
            let before = ["a", "b", "c"]
                .iter()
                .find(|n| !place_standbys(n, &three, one, 1).is_empty())
                .unwrap();
            if *before != "c" {
                assert!(
                    !place_standbys(before, two, one, 1).is_empty(),
                    "{part:?} moved off {before}"
                );
            }
        }
    }

    #[test]
    fn the_standby_sits_where_a_balanced_assignment_sends_the_partition() {
        // a holds 2, b and c hold 1 each: if b dies, its partition goes to c (the least loaded).
        let live: Vec<(String, Vec<Part>)> = vec![
            ("a".into(), vec![("t".into(), 0), ("t".into(), 1)]),
            ("b".into(), vec![("t".into(), 2)]),
            ("c".into(), vec![("t".into(), 3)]),
        ];
        assert!(place_standbys("c", &live, &parts(), 1).contains(&("t".into(), 2)));
        assert!(place_standbys("b", &live, &parts(), 1).contains(&("t".into(), 3)));
    }

    #[test]
    fn a_lone_member_keeps_standbys_of_partitions_it_does_not_own() {
        let live: Vec<(String, Vec<Part>)> = vec![("a".into(), vec![("t".into(), 0)])];
        assert_eq!(place_standbys("a", &live, &parts(), 1).len(), 3);
    }
}
