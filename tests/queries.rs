//! Table queries over HTTP (`/tables...`): the owner's value from any node (forwarded), pages
//! of the keys a node holds, and clear errors.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{http_get, logs, unique, wait_for, Kafka, PARTITIONS};
use faust::demo::{page_counts, PageViews};
use faust::{App, Partitioner};

const WAIT: Duration = Duration::from_secs(120);

/// Status code and JSON body of `GET path`.
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value, String) {
    let raw = http_get(addr, path).expect("the node answers");
    let status = raw[9..12].parse().unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json, head.to_owned())
}

fn path_of(url: &str) -> String {
    url.replace('/', "%2F")
}

#[test]
fn every_node_answers_for_every_key_with_the_owners_value() {
    logs();
    let kafka = Kafka::new("queries");
    let truth: HashMap<String, u64> = kafka.produce_page_views(1_200, 5);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("queries");
    let config = |name: &str| {
        let mut c = kafka.config(&dir.path().join(name), &group);
        c.agents.get_mut("page_views").unwrap().sinks.clear();
        c
    };
    let mut a = App::new()
        .agent(PageViews::on_topic(&kafka.topic))
        .spawn(config("a"))
        .unwrap();
    let mut b = App::new()
        .agent(PageViews::on_topic(&kafka.topic))
        .spawn(config("b"))
        .unwrap();
    let (ia, ib) = (a.wait_ready(WAIT).unwrap(), b.wait_ready(WAIT).unwrap());
    let held = |m: &faust::Metrics| m.assigned_partitions.with_label_values(&["active"]).get();
    wait_for("both nodes to hold partitions", WAIT, || {
        held(&ia.metrics) >= 1
            && held(&ib.metrics) >= 1
            && held(&ia.metrics) + held(&ib.metrics) == i64::from(PARTITIONS)
    });
    wait_for("every event committed", WAIT, || {
        kafka.committed(&group).values().sum::<i64>() == 1_200
    });
    let addrs = [ia.web_addr.unwrap(), ib.web_addr.unwrap()];
    // Both nodes announce their partitions and web address within a second or two.
    wait_for("every key answered by both nodes", WAIT, || {
        truth.keys().all(|url| {
            addrs
                .iter()
                .all(|addr| get(*addr, &format!("/tables/page_counts/{}", path_of(url))).0 == 200)
        })
    });
    let mut relayed = 0;
    for (url, count) in &truth {
        let want = Partitioner::Murmur2.partition(url.as_bytes(), PARTITIONS);
        for addr in addrs {
            let (status, body, head) = get(addr, &format!("/tables/page_counts/{}", path_of(url)));
            assert_eq!(status, 200, "{url} at {addr}: {body}");
            assert_eq!(body["value"], serde_json::json!(count), "{url} at {addr}");
            assert_eq!(body["key"], serde_json::json!(url));
            assert_eq!(
                body["partition"],
                serde_json::json!(want),
                "{url}: murmur2's partition"
            );
            relayed += usize::from(head.to_ascii_lowercase().contains("x-faust-answered-by"));
        }
    }
    assert_eq!(
        relayed,
        truth.len(),
        "each key answered once directly, once relayed by the other node"
    );

    // A page through the keys node a holds, then the rest from node b: every key exactly once.
    let mut seen: HashMap<String, u64> = HashMap::new();
    for addr in addrs {
        let mut from: Option<String> = None;
        loop {
            let path = match &from {
                Some(f) => format!("/tables/page_counts?limit=7&from={}", path_of(f)),
                None => "/tables/page_counts?limit=7".to_owned(),
            };
            let (status, body, _) = get(addr, &path);
            assert_eq!(status, 200, "{body}");
            for e in body["entries"].as_array().unwrap() {
                let key = e["key"].as_str().unwrap().to_owned();
                assert!(
                    seen.insert(key, e["value"].as_u64().unwrap()).is_none(),
                    "{e}"
                );
            }
            match body["next"].as_str() {
                Some(n) => from = Some(n.to_owned()),
                None => break,
            }
        }
    }
    assert_eq!(seen, truth, "the pages of both nodes hold every key once");

    let (status, body, _) = get(addrs[0], "/tables");
    assert_eq!(status, 200);
    let listed = &body["tables"][0];
    assert_eq!(listed["name"], "page_counts");
    let keys: u64 = listed["keys_by_partition"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        keys,
        seen.len() as u64 - count_on(addrs[1]),
        "node a counts its own keys"
    );

    let (status, body, _) = get(addrs[0], "/tables/nope/x");
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no table `nope` in this app (tables: [\"page_counts\"])"),
        "{body}"
    );
    let (status, body, _) = get(
        addrs[0],
        "/tables/page_counts/%7B%22an%22%3A%22object%22%7D",
    );
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = get(
        addrs[0],
        &format!("/tables/page_counts/{}", path_of("/page/none")),
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "no value for this key");
    a.stop().unwrap();
    b.stop().unwrap();
    let _ = page_counts();
}

/// The keys node `addr` lists for itself.
fn count_on(addr: std::net::SocketAddr) -> u64 {
    let (_, body, _) = get(addr, "/tables");
    body["tables"][0]["keys_by_partition"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}
