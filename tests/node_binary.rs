//! The shipped binary, run as a user runs it: `faust-node worker --config config/demo.toml`,
//! scraped over HTTP, stopped with SIGTERM.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::nodes::free_port;
use faust::demo::page_counts;
use faust::Store;

fn metrics(addr: SocketAddr) -> Option<String> {
    common::http_get(addr, "/metrics")
}

fn sum(body: &str, prefix: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn start(store: &Path, port: u16, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_faust-node"))
        .args(["worker", "--config", "config/demo.toml"])
        .env("FAUST__WEB__BIND", format!("127.0.0.1:{port}"))
        .env("FAUST__STORE__PATH", store)
        .env("FAUST__PROCESSING__COMMIT_INTERVAL", "200ms")
        .env("FAUST__LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// SIGTERM, then the exit status within `bound`.
fn terminate(child: &mut Child, bound: Duration) -> std::process::ExitStatus {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            panic!("no exit within {bound:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `events` field of the JSON log line "node stopped cleanly".
fn stopped_events(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "node stopped cleanly")
        .and_then(|v| v["fields"]["events"].as_u64())
        .unwrap_or_else(|| panic!("no clean-stop line in the log:\n{text}"))
}

/// The WARN and ERROR lines of a JSON log, for failure messages.
fn problems(log: &Path) -> String {
    let _ = std::fs::copy(
        log,
        std::env::temp_dir().join("faust-node-binary-failure.log"),
    );
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("\"level\":\"WARN\"")
                || l.contains("\"level\":\"ERROR\"")
                || l.contains("partition")
                || l.contains("standby")
                || l.contains("revoked")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sum of every count in the stored `page_counts` table.
fn stored_total(store: &Path) -> u64 {
    let store = Store::open_existing(store).unwrap();
    store.table_contents(&page_counts()).unwrap().values().sum()
}

fn run_once(store: &Path, log: &Path) -> u64 {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = start(store, port, log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the node exited early; see {}",
            log.display()
        );
        if let Some(body) = metrics(addr) {
            if sum(&body, "faust_events_total{") > 0.0
                && sum(&body, "faust_table_keys{") > 0.0
                && sum(&body, "faust_commits_total") > 0.0
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no events counted within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = terminate(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    stopped_events(log)
}

#[test]
fn demo_counts_serves_metrics_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let first = dir.path().join("first.log");
    let events = run_once(&store, &first);
    assert!(events > 0);
    assert_eq!(
        stored_total(&store),
        events,
        "every processed event is in the stored table at exit; warnings and errors:\n{}",
        problems(&first)
    );

    // A second run gets a new embedded cluster: the old store must be set aside, not mixed in.
    let log = dir.path().join("second.log");
    let events = run_once(&store, &log);
    assert_eq!(
        stored_total(&store),
        events,
        "the new store holds only the second run's events; warnings and errors:\n{}",
        problems(&log)
    );
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("store.stale-"))
        .count();
    assert_eq!(aside, 1, "the first run's store was moved aside");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("moved it aside"));
}

/// `faust-node send`: the record lands with the key, value, partition and headers asked for,
/// encoded with the codec asked for; a value that is not JSON is refused before sending.
#[test]
fn send_produces_one_record_as_asked() {
    use rdkafka::message::{Headers, Message};
    let kafka = common::Kafka::new("send");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_faust-node"))
            .arg("send")
            .arg(&kafka.topic)
            .args(["--broker", &kafka.bootstrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--key",
        "/home",
        "--value",
        r#"{"url": "/home", "user": "u1", "ts": 5}"#,
        "--codec",
        "msgpack",
        "--partition",
        "2",
        "--header",
        "trace=abc",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {:?}", out);
    assert_eq!(stdout.trim(), format!("sent to {}[2]@0", kafka.topic));

    let bad = run(&["--value", "{\"url\": "]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("the value is not JSON"), "{stderr}");

    let mut seen = Vec::new();
    kafka.read_to_end(&kafka.topic, |m| {
        let header = m.headers().map(|h| h.get(0)).map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8_lossy(h.value.unwrap()).into_owned(),
            )
        });
        let value: faust::demo::PageView = rmp_serde::from_slice(m.payload().unwrap()).unwrap();
        seen.push((m.partition(), m.key().unwrap().to_vec(), value.url, header));
    });
    assert_eq!(
        seen,
        [(
            2,
            b"/home".to_vec(),
            "/home".to_string(),
            Some(("trace".to_string(), "abc".to_string()))
        )]
    );
}
