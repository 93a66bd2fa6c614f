//! The benchmark's own tools, against real Kafka (they use the admin API, which the mock
//! cluster lacks): `faust-bench preload` writes the page views and their true counts, the
//! faust-rs system counts them, `verify` accepts its output and rejects a wrong truth by
//! naming the key, and the ceiling consumer reads every record.

mod common;

use std::process::Command;
use std::time::Duration;

use common::bench::{bench, text};
use common::{committed, unique, wait_for, Kafka};

const RECORDS: u64 = 3_000;
/// The preload's records plus one flush record per partition.
const TOTAL: i64 = RECORDS as i64 + 4;

#[test]
fn preload_count_verify_and_ceiling() {
    let Some(kafka) = Kafka::real("bench_tools") else {
        return;
    };
    let broker = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.json");
    let truth_arg = truth.to_str().unwrap();
    let input = unique("bench-views");
    let records = RECORDS.to_string();
    let out = bench(&[
        "preload",
        "--broker",
        &broker,
        "--topic",
        &input,
        "--records",
        &records,
        "--truth",
        truth_arg,
    ]);
    assert!(out.status.success(), "preload failed: {}", text(&out));
    assert!(
        text(&out).contains(&format!("preloaded {TOTAL} records")),
        "{}",
        text(&out)
    );

    // The faust-rs system, workload A, as scripts/bench runs it.
    let group = unique("bench-a");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[app]\nid = \"{group}\"\n[broker]\nbootstrap = \"{broker}\"\nsession_timeout = \"6s\"\n\
             [store]\npath = \"{}\"\n[web]\nbind = \"127.0.0.1:0\"\n[processing]\n\
             commit_interval = \"100ms\"\n[topics.{input}]\npartitions = 4\nkey_codec = \"string\"\n\
             value_codec = \"json\"\n[topics.{out}]\npartitions = 4\nkey_codec = \"string\"\n\
             value_codec = \"json\"\n[agents.page_views]\nsinks = [\"{out}\"]\n[log]\nlevel = \"warn\"\n",
            dir.path().join("store").display(),
            out = kafka.out,
        ),
    )
    .unwrap();
    let mut node = Command::new(env!("CARGO_BIN_EXE_faust-bench"))
        .args(["node", "a", "--input", &input, "--output", &kafka.out, "--"])
        .args(["worker", "--config", config.to_str().unwrap()])
        .spawn()
        .unwrap();
    wait_for(
        "the node to commit every record",
        Duration::from_secs(90),
        || committed(&broker, &group, &input).values().sum::<i64>() == TOTAL,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status();
    assert!(
        node.wait().unwrap().success(),
        "the node did not stop cleanly"
    );

    let verify = |truth: &str| {
        bench(&[
            "verify",
            "--broker",
            &broker,
            "--topic",
            &kafka.out,
            "--workload",
            "a",
            "--truth",
            truth,
            "--wait",
            "2",
        ])
    };
    let ok = verify(truth_arg);
    assert!(
        ok.status.success(),
        "verify rejected a right output: {}",
        text(&ok)
    );
    assert!(
        text(&ok).contains(&format!("({TOTAL} output records)")),
        "{}",
        text(&ok)
    );

    // One count off by one: the check must fail and name the key.
    let mut t: serde_json::Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    let counts = t["a"].as_object_mut().unwrap();
    let (url, n) = counts
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .unwrap();
    counts.insert(url.clone(), (n + 1).into());
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, serde_json::to_vec(&t).unwrap()).unwrap();
    let bad = verify(wrong.to_str().unwrap());
    assert!(!bad.status.success(), "verify accepted a wrong truth");
    let expected = format!("{url}: {n} (true {})", n + 1);
    assert!(
        text(&bad).contains(&expected),
        "want `{expected}` in: {}",
        text(&bad)
    );

    let ceiling = bench(&[
        "ceiling",
        "--broker",
        &broker,
        "--topic",
        &input,
        "--group",
        &unique("ceiling"),
    ]);
    assert!(
        ceiling.status.success(),
        "ceiling failed: {}",
        text(&ceiling)
    );
    assert!(
        text(&ceiling).contains(&format!("ceiling: {TOTAL} records")),
        "{}",
        text(&ceiling)
    );
}
