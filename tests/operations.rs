//! What operators get beside the node: the Grafana dashboard (`dashboards/faust-rs.json`) and
//! the Prometheus alert rules (`alerts/faust-rs.rules.yml`) use only metrics a node exports,
//! the rules pass their `promtool` unit tests, and a live `/metrics` passes
//! `promtool check metrics`.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{http_get, logs, unique, wait_for, Kafka};
use faust::demo::PageViews;
use faust::App;

const WAIT: Duration = Duration::from_secs(120);

/// Every `faust_*` and `process_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("faust_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// `promtool`, which scripts/test installs (Debian package `prometheus`).
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: scripts/test installs it (Debian package `prometheus`)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_dashboard_and_the_alerts_use_only_metrics_the_node_exports() {
    logs();
    let kafka = Kafka::new("ops");
    kafka.produce_page_views(300, 3);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("ops");
    let mut node = App::new()
        .agent(PageViews::on_topic(&kafka.topic))
        .spawn(kafka.config(dir.path(), &group))
        .unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    wait_for("every event", WAIT, || {
        info.metrics.agent_events("page_views") == 300
    });
    let exported: BTreeSet<String> = info.metrics.names().iter().cloned().collect();
    let known = |name: &str| {
        exported.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| exported.contains(base))
            })
    };

    let dashboard = std::fs::read_to_string("dashboards/faust-rs.json").unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = parsed["panels"].as_array().unwrap();
    assert!(panels.len() >= 12, "{} panels", panels.len());
    let mut used = BTreeSet::new();
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            used.extend(metric_names(t["expr"].as_str().unwrap()));
        }
    }
    let rules = std::fs::read_to_string("alerts/faust-rs.rules.yml").unwrap();
    let in_rules: BTreeSet<String> = rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
        .flat_map(metric_names)
        .collect();
    assert!(in_rules.len() >= 8, "{in_rules:?}");
    used.extend(in_rules);
    let unknown: Vec<&String> = used.iter().filter(|n| !known(n)).collect();
    assert!(unknown.is_empty(), "used but not exported: {unknown:?}");
    for family in [
        "faust_latency_seconds",
        "faust_partition_lag_seconds",
        "process_resident_memory_bytes",
    ] {
        assert!(
            used.iter().any(|u| u.starts_with(family)),
            "the dashboard shows {family}"
        );
    }

    // A live /metrics is valid exposition text, by Prometheus' own checker.
    let text = http_get(info.web_addr.unwrap(), "/metrics").unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    assert!(body.contains("faust_latency_seconds_bucket"), "{body}");
    let (ok, said) = promtool(&["check", "metrics"], Some(body));
    assert!(ok, "promtool check metrics: {said}");
    node.stop().unwrap();
}

#[test]
fn the_alert_rules_pass_their_promtool_tests() {
    let (ok, said) = promtool(&["check", "rules", "alerts/faust-rs.rules.yml"], None);
    assert!(ok && said.contains("SUCCESS: 10 rules found"), "{said}");
    let (ok, said) = promtool(&["test", "rules", "alerts/faust-rs.rules.test.yml"], None);
    assert!(ok && said.contains("SUCCESS"), "{said}");
}
