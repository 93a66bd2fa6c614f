//! `faust-node tables` and `faust-node table get NAME KEY`: asking a running node over HTTP
//! (its `/tables` endpoints, see `queries`), at `--node` or the config's `web.bind`.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

/// What a node answered: the HTTP status and its JSON body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

/// `GET path` on the node at `node` (host:port), bounded by 10 s.
pub(crate) fn ask(node: &str, path: &str) -> Result<Answer, String> {
    let url = format!("http://{node}{path}");
    let system = actix::System::new();
    system.block_on(async move {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish();
        let mut response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("no answer from the node at {node} ({url}): {e}"))?;
        let bytes = response
            .body()
            .limit(64 << 20)
            .await
            .map_err(|e| format!("the node at {node} broke off its answer: {e}"))?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer {
            status: response.status().as_u16(),
            body,
        })
    })
}

/// The path of `key` in `table` (both percent-encoded: a URL key such as `/page/1` is one
/// path segment).
pub(crate) fn key_path(table: &str, key: &str) -> String {
    format!(
        "/tables/{}/{}",
        utf8_percent_encode(table, NON_ALPHANUMERIC),
        utf8_percent_encode(key, NON_ALPHANUMERIC)
    )
}

/// `GET /tables` as lines: each table, its kind and topic, then one line per partition with
/// the node that holds it and its key count; members that did not answer last.
pub(crate) fn tables_text(body: &Value) -> String {
    let mut out = String::new();
    let node = body["node"].as_str().unwrap_or("-");
    out.push_str(&format!("asked node {node}\n"));
    for t in body["tables"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{} ({}, topic {}, {} partitions)\n",
            t["name"].as_str().unwrap_or("?"),
            t["kind"].as_str().unwrap_or("?"),
            t["topic"].as_str().unwrap_or("?"),
            t["partitions"],
        ));
        let mut parts: Vec<(i64, String)> = t["cluster"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(p, e)| {
                let line = format!(
                    "  partition {p}: {} keys on {}\n",
                    e["keys"],
                    e["node"].as_str().unwrap_or("?")
                );
                (p.parse().unwrap_or(i64::MAX), line)
            })
            .collect();
        parts.sort();
        parts.into_iter().for_each(|(_, line)| out.push_str(&line));
    }
    for gone in body["unreachable"].as_array().into_iter().flatten() {
        out.push_str(&format!("did not answer: {gone}\n"));
    }
    out
}

/// `GET /status` as lines: health first (with what is wrong), then each active partition's lag
/// and last commit, then the counts.
pub(crate) fn status_text(body: &Value) -> String {
    let h = &body["health"];
    let mut out = format!("health: {}\n", h["status"].as_str().unwrap_or("?"));
    for key in ["consumer", "broker", "producer", "membership", "store"] {
        out.push_str(&format!("  {key}: {}\n", h[key].as_str().unwrap_or("?")));
    }
    for key in ["halted_partitions", "stalled_partitions"] {
        if let Some(list) = h[key].as_array().filter(|l| !l.is_empty()) {
            out.push_str(&format!("  {key}: {}\n", Value::Array(list.clone())));
        }
    }
    let active = body["active"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "active partitions: {} ({} not ready), standby partitions: {}\n",
        active.len(),
        body["partitions_not_ready"],
        body["standby_partitions"]
    ));
    for p in &active {
        let mut flags = String::new();
        if p["halted"] == true {
            flags.push_str(" HALTED");
        }
        if p["stalled"] == true {
            flags.push_str(" STALLED");
        }
        out.push_str(&format!(
            "  {}[{}]: lag {} records, {:.1} s; last commit {:.1} s ago{flags}\n",
            p["topic"].as_str().unwrap_or("?"),
            p["partition"],
            p["lag_records"],
            p["lag_seconds"].as_f64().unwrap_or(0.0),
            p["commit_age_seconds"].as_f64().unwrap_or(0.0),
        ));
    }
    out.push_str(&format!(
        "events: {}, commits: {} ({} failed), rebalances: {} assign / {} revoke\n",
        body["events_total"],
        body["commits_total"],
        body["commit_failures_total"],
        body["rebalances"]["assign"],
        body["rebalances"]["revoke"]
    ));
    out
}
