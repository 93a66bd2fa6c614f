//! Configuration: defaults, file, `FAUST__*` overrides, and every error reported at once with
//! its key and origin.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use faust::config::{Config, Guarantee, LogFormat};
use faust::Partitioner;

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_then_file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[app]\nid = \"shop\"\n[web]\nbind = \"127.0.0.1:7000\"\n[processing]\ncommit_interval = \"250ms\"\n\
         [topics.orders]\npartitions = 8\nkey_codec = \"string\"\n[broker.librdkafka]\n\"security.protocol\" = \"SASL_SSL\"\n",
    );
    let c = Config::load_with_env(
        &path,
        env(&[
            ("FAUST__WEB__BIND", "127.0.0.1:0"),
            ("FAUST__PROCESSING__MAX_BATCH", "64"),
            ("FAUST__APP__ID", "007"),
            ("FAUST__WEB__ENABLED", "false"),
            ("FAUST__BROKER__SESSION_TIMEOUT", "45s"),
            ("FAUST__TOPICS__ORDERS__PARTITIONS", "12"),
            ("OTHER__IGNORED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.app.id, "007",
        "a number-like value set on a text key stays text"
    );
    assert!(!c.web.enabled);
    assert_eq!(c.broker.session_timeout, Duration::from_secs(45));
    assert_eq!(c.topics["orders"].partitions, 12);
    assert_eq!(c.web.bind, "127.0.0.1:0", "environment wins over the file");
    assert_eq!(c.processing.max_batch, 64);
    assert_eq!(c.processing.commit_interval, Duration::from_millis(250));
    assert_eq!(c.broker.bootstrap, "embedded", "default");
    assert_eq!(c.store_path(), Path::new("data").join("007"));
    assert_eq!(c.broker.librdkafka["security.protocol"], "SASL_SSL");
    assert_eq!(c.log.format, LogFormat::Human);
    assert_eq!(
        c.broker.partitioner(),
        Partitioner::Murmur2,
        "Java's, by default"
    );
}

#[test]
fn a_librdkafka_key_with_a_typed_setting_is_refused_and_the_setting_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[app]\nid = \"shop\"\n[processing]\nauto_offset_reset = \"latest\"\n",
    );
    let c = Config::load_with_env(&path, env(&[])).unwrap();
    assert_eq!(
        c.processing.auto_offset_reset,
        faust::config::OffsetReset::Latest
    );
    let bad = write(
        dir.path(),
        "[app]\nid = \"shop\"\n[broker.librdkafka]\n\"auto.offset.reset\" = \"latest\"\n\
         \"session.timeout.ms\" = \"45000\"\n",
    );
    let text = Config::load_with_env(&bad, env(&[]))
        .unwrap_err()
        .to_string();
    for needle in [
        "broker.librdkafka.auto.offset.reset: is a faust-rs setting: set `processing.auto_offset_reset` instead",
        "broker.librdkafka.session.timeout.ms: is a faust-rs setting: set `broker.session_timeout` instead",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn secrets_never_show_in_a_config_dump() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[app]\nid = \"shop\"\n[broker.librdkafka]\n\"sasl.password\" = \"hunter2\"\n\
         \"sasl.username\" = \"faust\"\n",
    );
    let c = Config::load_with_env(&path, env(&[])).unwrap();
    let dump = format!("{c:?}");
    assert!(!dump.contains("hunter2"), "{dump}");
    assert!(
        dump.contains("\"sasl.password\": \"******\"") && dump.contains("faust"),
        "{dump}"
    );
    assert_eq!(
        c.broker.librdkafka["sasl.password"], "hunter2",
        "the value itself is intact"
    );
}

#[test]
fn the_partitioner_is_one_faust_rs_can_route_keys_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "[app]\nid = \"shop\"\n");
    let with = |p: &str| {
        Config::load_with_env(&path, env(&[("FAUST__BROKER__LIBRDKAFKA__PARTITIONER", p)]))
    };
    let c = with("consistent_random").unwrap();
    assert_eq!(c.broker.partitioner(), Partitioner::Crc32);
    assert_eq!(c.broker.librdkafka["partitioner"], "consistent_random");
    assert_eq!(
        with("murmur2").unwrap().broker.partitioner(),
        Partitioner::Murmur2
    );
    let text = with("fnv1a_random").unwrap_err().to_string();
    assert!(
        text.contains(
            "broker.librdkafka.partitioner: `fnv1a_random` does not place a key by its bytes alone"
        ),
        "{text}"
    );
}

#[test]
fn every_error_is_reported_at_once_with_key_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[app]\nid = \"bad id!\"\n[web]\nbnd = \"127.0.0.1:1\"\n[processing]\nmax_batch = \"lots\"\n\
         commit_interval = \"soon\"\n[topics.t]\npartitions = 0\n[surprise]\nx = 1\n\
         [broker.librdkafka]\n\"group.id\" = \"mine\"\n[agents.x]\nconcurrency = 0\n",
    );
    let err = Config::load_with_env(&path, env(&[("FAUST__WEB__BIND", "nowhere")])).unwrap_err();
    let text = err.to_string();
    let file = path.display().to_string();
    assert!(
        text.starts_with(&format!("9 errors in config {file}:")),
        "{text}"
    );
    for needle in [
        "app.id: `bad id!` may only hold",
        "web.bnd: unknown key (known keys: enabled, bind)",
        "processing.max_batch: invalid type: string \"lots\"",
        "processing.commit_interval:",
        "topics.t.partitions: is 0",
        "surprise: unknown section",
        "broker.librdkafka.group.id: is set by faust-rs itself",
        "web.bind: `nowhere` is not an address such as 127.0.0.1:6066 (from FAUST__WEB__BIND)",
        "agents.x.concurrency: must be at least 1",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn exactly_once_is_typed_and_needs_a_real_broker() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[app]\nid = \"bank\"\n[broker]\nbootstrap = \"127.0.0.1:9092\"\n\
         [processing]\nguarantee = \"exactly_once\"\n",
    );
    let c = Config::load_with_env(&path, env(&[])).unwrap();
    assert_eq!(c.processing.guarantee, Guarantee::ExactlyOnce);
    let c = Config::load_with_env(
        &path,
        env(&[("FAUST__PROCESSING__GUARANTEE", "at_least_once")]),
    )
    .unwrap();
    assert_eq!(c.processing.guarantee, Guarantee::AtLeastOnce);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[app]\nid = \"bank\"\n[processing]\nguarantee = \"exactly_once\"\n\
         [broker.librdkafka]\n\"isolation.level\" = \"read_uncommitted\"\n",
    )
    .unwrap();
    let text = Config::load_with_env(&bad, env(&[]))
        .unwrap_err()
        .to_string();
    for needle in [
        "processing.guarantee: exactly_once needs a real Kafka broker",
        "broker.librdkafka.isolation.level: is set by faust-rs itself",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    let text = Config::load_with_env(&path, env(&[("FAUST__PROCESSING__GUARANTEE", "maybe")]))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("processing.guarantee:")
            && text.contains("maybe")
            && text.contains("FAUST__PROCESSING__GUARANTEE"),
        "{text}"
    );
}

#[test]
fn a_missing_file_or_broken_toml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = Config::load_with_env(&missing, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.toml") && err.contains("not found"),
        "{err}"
    );
    let broken = write(dir.path(), "[app\nid = 1\n");
    let err = Config::load_with_env(&broken, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("node.toml"), "{err}");
}

#[test]
fn shipped_configs_are_valid() {
    for file in ["config/demo.toml", "config/page_views.toml"] {
        let c = Config::load_with_env(Path::new(file), env(&[])).unwrap();
        assert!(c.topics.contains_key("page_views"), "{file}");
    }
}

#[test]
fn validate_command_lists_errors_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "[app]\nid = \"x\"\n[web]\nbind = 5\nport = 1\n");
    let out = Command::new(env!("CARGO_BIN_EXE_faust-node"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("web.port: unknown key"), "{stderr}");
    assert!(
        stderr.contains("web.bind: `5` is not an address"),
        "{stderr}"
    );
    assert!(
        stderr.contains("topics.page_views: agent `page_views` consumes topic"),
        "{stderr}"
    );

    let described = Command::new(env!("CARGO_BIN_EXE_faust-node"))
        .args(["agents", "--config", "config/demo.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(described.status.success(), "{text}");
    for line in [
        "agent page_views",
        "  topics: page_views",
        "  table page_counts: key string, value json, changelog faust-demo-page_counts-changelog",
        "  on error: 3 retries, then dead-letter to faust-demo-page_views-dlq",
        "  faust-demo-page_counts-changelog (4 partitions, compacted)",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_faust-node"))
        .args(["agents", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a bad config is reported, not described"
    );

    let ok = Command::new(env!("CARGO_BIN_EXE_faust-node"))
        .args(["validate", "--config", "config/demo.toml"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
