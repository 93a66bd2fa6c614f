//! Every example runs as its docs say: `cargo run --example <name> -- worker --config
//! config/<file>.toml` on the embedded broker processes events, serves its metrics, and stops
//! cleanly (exit 0) on SIGTERM. `cargo test` builds the examples; this runs those binaries.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// (example, its config): the command line each example's doc gives.
const EXAMPLES: &[(&str, &str)] = &[
    ("page_views", "config/demo.toml"),
    ("windowed_clicks", "config/windowed_clicks.toml"),
    ("enrichment", "config/enrichment.toml"),
    ("join", "config/join.toml"),
    ("lookups", "config/lookups.toml"),
];

fn example(name: &str) -> PathBuf {
    // target/debug/deps/examples-<hash> -> target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    dir.join(name)
}

fn events(port: u16) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut page = String::new();
    s.read_to_string(&mut page).ok()?;
    Some(
        page.lines()
            .filter(|l| l.starts_with("faust_events_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

fn stop(child: &mut Child) -> Option<i32> {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[test]
fn every_example_processes_events_on_the_embedded_broker_and_stops_cleanly() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (i, (name, config)) in EXAMPLES.iter().enumerate() {
        let bin = example(name);
        assert!(
            bin.exists(),
            "{} not built (cargo test builds examples)",
            bin.display()
        );
        let store = tempfile::tempdir().unwrap();
        let port = 16_160 + i as u16;
        let mut child = Command::new(&bin)
            .args(["worker", "--config", config])
            .current_dir(&root)
            .env("FAUST__WEB__BIND", format!("127.0.0.1:{port}"))
            .env("FAUST__STORE__PATH", store.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut seen = 0.0;
        while Instant::now() < deadline && seen < 10.0 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("example {name} exited early: {status}");
            }
            seen = events(port).unwrap_or(0.0);
            std::thread::sleep(Duration::from_millis(200));
        }
        let code = stop(&mut child);
        eprintln!("example {name}: {seen} events, exit {code:?}");
        assert!(
            seen >= 10.0,
            "example {name} processed {seen} events in 90 s"
        );
        assert_eq!(
            code,
            Some(0),
            "example {name} did not stop cleanly on SIGTERM"
        );
    }
}
