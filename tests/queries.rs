//! Table queries over HTTP (`/tables...`): the owner's value from any node (forwarded), pages
//! of the keys a node holds, and clear errors.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::bench::{BenchApp, BenchNode};
use common::{http_get, logs, real_broker, unique, wait_for, Kafka, PARTITIONS};
use faust::demo::{page_counts, PageViews};
use faust::{App, Partitioner};

const WAIT: Duration = Duration::from_secs(120);

/// Status code, JSON body and head of `GET path`.
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value, String) {
    parse(&http_get(addr, path).expect("the node answers"))
}

/// Status code, JSON body and head of a raw HTTP response.
fn parse(raw: &str) -> (u16, serde_json::Value, String) {
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
    let cluster = listed["cluster"].as_object().unwrap();
    assert_eq!(
        cluster.len(),
        PARTITIONS as usize,
        "every partition, from both nodes: {cluster:?}"
    );
    let all: u64 = cluster.values().map(|e| e["keys"].as_u64().unwrap()).sum();
    assert_eq!(all, truth.len() as u64, "the cluster's key count");
    assert_eq!(body["unreachable"], serde_json::json!([]));

    // What a node is doing: its active partitions with lag and commit age, over HTTP and
    // through `faust-node status`.
    let (status, body, _) = get(addrs[0], "/status");
    assert_eq!(status, 200, "{body}");
    let active = body["active"].as_array().unwrap();
    assert_eq!(active.len() as i64, held(&ia.metrics), "{body}");
    for p in active {
        assert_eq!(p["topic"], serde_json::json!(kafka.topic));
        assert_eq!(p["halted"], false);
        assert!(p["lag_records"].as_i64().unwrap() >= 0, "{p}");
        assert!(p["commit_age_seconds"].as_f64().is_some(), "{p}");
    }
    assert_eq!(body["health"]["status"], "ok");
    // The latency histograms saw the batches and the commits (of whichever node processed
    // them: the first rebalances decide who handled the records written before both joined).
    let (ma, mb) = (&ia.metrics, &ib.metrics);
    let latency = |m: &faust::Metrics| m.latency_seconds.with_label_values(&[&kafka.topic]);
    assert!(latency(ma).get_sample_count() + latency(mb).get_sample_count() > 0);
    assert!(latency(ma).get_sample_sum() + latency(mb).get_sample_sum() > 0.0);
    let commits = ma.commit_seconds.get_sample_count() + mb.commit_seconds.get_sample_count();
    assert!(commits > 0);
    let staged =
        ma.commit_stage_seconds.get_sample_count() + mb.commit_stage_seconds.get_sample_count();
    assert!(staged >= commits);
    let m = if latency(ma).get_sample_count() > 0 {
        ma
    } else {
        mb
    };
    let text = m.encode();
    assert!(
        text.contains("faust_latency_seconds_bucket{topic="),
        "{text}"
    );
    // The group may still be settling (a partition just assigned is not ready until its
    // restore ends and the next progress tick): ask until the node says every partition is.
    let status = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_faust-node"))
            .args(["status", "--node", &addrs[1].to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), text)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (ok, text) = loop {
        let (ok, text) = status();
        if text.contains("(0 not ready)") || std::time::Instant::now() > deadline {
            break (ok, text);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(ok, "{text}");
    assert!(text.starts_with("health: ok\n"), "{text}");
    assert!(
        text.contains(&format!(
            "active partitions: {} (0 not ready)",
            held(&ib.metrics)
        )),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faust-node"))
        .args([
            "table",
            "get",
            "page_counts",
            "/page/1",
            "--node",
            &addrs[0].to_string(),
        ])
        .output()
        .unwrap();
    let answered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answered["value"],
        serde_json::json!(truth["/page/1"]),
        "faust-node table get"
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
    let (_, body, _) = get(addr, "/tables?scope=local");
    body["tables"][0]["keys_by_partition"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// Every key a bench node holds, with its value, paging through `/tables/page_counts`.
fn keys_of(node: &BenchNode) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let mut from: Option<String> = None;
    loop {
        let path = match &from {
            Some(f) => format!("/tables/page_counts?limit=500&from={}", path_of(f)),
            None => "/tables/page_counts?limit=500".to_owned(),
        };
        let (status, body, _) = parse(&node.get(&path).expect("the node answers"));
        assert_eq!(status, 200, "{body}");
        for e in body["entries"].as_array().unwrap() {
            let key = e["key"].as_str().unwrap();
            // The preload's flush records go to every partition by number, not by key.
            if key.starts_with("/page/") {
                out.insert(key.to_owned(), e["value"].as_u64().unwrap());
            }
        }
        match body["next"].as_str() {
            Some(n) => from = Some(n.to_owned()),
            None => return out,
        }
    }
}

fn started(node: &BenchNode) -> usize {
    node.log().matches("partition started").count()
}

/// Three node processes on real Kafka: every node answers for every key with its owner's value;
/// SIGKILL one, and its keys answer 503 (the owner does not answer) until the group gives
/// their partitions to the survivors, then the new owner's value, which is the old one (the
/// table survives in its changelog and standbys).
#[test]
fn a_killed_owners_keys_answer_503_until_reassigned_then_the_new_owners_value() {
    let Some(broker) = real_broker("queries_kill") else {
        return;
    };
    let mut app = BenchApp::new(&broker, "iq", "a", "at_least_once");
    let mut nodes: Vec<BenchNode> = (0..3).map(|n| app.start_node(n, &[])).collect();
    wait_for("three nodes to hold partitions", WAIT, || {
        nodes.iter().all(|n| started(n) > 0)
    });
    app.feed(20_000, 0);
    app.fed();
    app.wait_all_committed(WAIT);
    // Each node's own keys (no key twice), and who owns which.
    let mut owner: HashMap<String, (usize, u64)> = HashMap::new();
    wait_for("the nodes' pages to hold every key once", WAIT, || {
        owner.clear();
        let mut twice = false;
        for (n, node) in nodes.iter().enumerate() {
            for (k, v) in keys_of(node) {
                twice |= owner.insert(k, (n, v)).is_some();
            }
        }
        !twice && !owner.is_empty() && nodes.iter().all(|n| !keys_of(n).is_empty())
    });
    let ask = |node: &BenchNode, key: &str| {
        parse(
            &node
                .get(&format!("/tables/page_counts/{}", path_of(key)))
                .expect("answers"),
        )
    };
    for (key, (held_by, value)) in &owner {
        for (n, node) in nodes.iter().enumerate() {
            let (status, body, head) = ask(node, key);
            assert_eq!(status, 200, "{key} at node {n}: {body}");
            assert_eq!(body["value"], serde_json::json!(value), "{key} at node {n}");
            let relayed = head.to_ascii_lowercase().contains("x-faust-answered-by");
            assert_eq!(
                relayed,
                n != *held_by,
                "{key} at node {n}: only the owner answers itself"
            );
        }
    }
    let victims: Vec<(&String, u64)> = owner
        .iter()
        .filter(|(_, (n, _))| *n == 0)
        .map(|(k, (_, v))| (k, *v))
        .collect();
    assert!(!victims.is_empty());
    nodes[0].signal("-KILL");
    let _ = nodes[0].child.wait();
    let (status, body, head) = ask(&nodes[1], victims[0].0);
    assert_eq!(status, 503, "the dead owner's key at once: {body}");
    assert!(
        head.contains("Retry-After") || head.contains("retry-after"),
        "{head}"
    );
    wait_for(
        "the dead owner's keys answered by the survivors",
        WAIT,
        || {
            victims
                .iter()
                .all(|(k, _)| ask(&nodes[1], k).0 == 200 && ask(&nodes[2], k).0 == 200)
        },
    );
    for (key, value) in &victims {
        for node in &nodes[1..] {
            let (_, body, _) = ask(node, key);
            assert_eq!(
                body["value"],
                serde_json::json!(value),
                "{key} after the takeover"
            );
        }
    }
    for (n, node) in nodes.iter_mut().enumerate().skip(1) {
        node.terminate_cleanly(&format!("node {n}"), Duration::from_secs(60));
        // Logged to a file: plain text, no terminal colours.
        assert!(
            !node.log().contains('\x1b'),
            "node {n}'s log holds ANSI escapes"
        );
    }
    app.assert_table();
}
