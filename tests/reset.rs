//! `faust-node reset` on real Kafka: refused while a node of the app runs; `--dry-run` changes
//! nothing; then the group's offsets are back at the start, the internal topics gone and the
//! store wiped, and a node started afterwards processes everything again.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{committed, real_broker, unique, wait_for, PARTITIONS};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

const WAIT: Duration = Duration::from_secs(120);

fn node(args: &[&str], config: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faust-node"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn topics(broker: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    md.topics().iter().map(|t| t.name().to_owned()).collect()
}

#[test]
fn reset_is_refused_while_a_node_runs_then_puts_the_app_back_at_its_start() {
    let Some(broker) = real_broker("reset") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (app, input) = (unique("reset"), unique("reset-in"));
    let store = dir.path().join("store");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[app]\nid = \"{app}\"\n[broker]\nbootstrap = \"{broker}\"\nsession_timeout = \"6s\"\n\
             [store]\npath = \"{}\"\n[web]\nbind = \"127.0.0.1:0\"\n\
             [processing]\ncommit_interval = \"200ms\"\n\
             [topics.{input}]\npartitions = {PARTITIONS}\nkey_codec = \"string\"\n\
             [agents.page_views]\ntopics = [\"{input}\"]\n\
             [generator]\nenabled = true\ntopic = \"{input}\"\nrate = 1000\ncount = 400\n",
            store.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_faust-node"))
        .args(["worker", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(log)
        .spawn()
        .unwrap();
    let done = || committed(&broker, &app, &input).values().sum::<i64>();
    wait_for("the generated records committed", WAIT, || done() == 400);
    let changelog = faust_actors::names::changelog_topic(&app, "page_counts");
    assert!(topics(&broker).contains(&changelog));

    let refused = node(&["reset"], &config);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("stop every node of the app first"), "{said}");
    assert_eq!(done(), 400, "nothing moved while the node runs");

    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    assert!(worker.wait().unwrap().success());
    // The node's tombstone on the members topic; its consumer has left the group.

    let dry = node(&["reset", "--dry-run"], &config);
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{plan}");
    for line in [
        format!("group {app}: offsets to"),
        format!("  {input}[0] -> 0"),
        format!("  {changelog}"),
        format!("wipe the local store: {}", store.display()),
        "dry run: nothing done".to_owned(),
    ] {
        assert!(plan.contains(&line), "missing `{line}` in:\n{plan}");
    }
    assert_eq!(done(), 400, "a dry run changes nothing");
    assert!(store.exists());

    let reset = node(&["reset"], &config);
    let said = String::from_utf8_lossy(&reset.stdout);
    assert!(
        reset.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert!(said.ends_with("reset done\n"), "{said}");
    let offsets = committed(&broker, &app, &input);
    assert_eq!(offsets.len(), PARTITIONS as usize, "{offsets:?}");
    assert!(offsets.values().all(|o| *o == 0), "{offsets:?}");
    assert!(!store.exists(), "the store is wiped");
    wait_for("the internal topics deleted", WAIT, || {
        let now = topics(&broker);
        !now.contains(&changelog) && !now.contains(&faust_actors::names::members_topic(&app))
    });
    assert!(topics(&broker).contains(&input), "source topics stay");

    // From the start again: every record counted once more, into a fresh store.
    let mut again = Command::new(env!("CARGO_BIN_EXE_faust-node"))
        .args(["worker", "--config"])
        .arg(&config)
        .env("FAUST__GENERATOR__ENABLED", "false")
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(dir.path().join("again.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for("every record processed again", WAIT, || done() == 400);
    let _ = Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status();
    assert!(again.wait().unwrap().success());
    let counts = faust::Store::open_existing(&store)
        .unwrap()
        .table_contents(&faust::demo::page_counts())
        .unwrap();
    assert_eq!(
        counts.values().sum::<u64>(),
        400,
        "each record counted once, from scratch"
    );
}
