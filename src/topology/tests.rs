//! The topology's unit tests: compiling an app and its config, every problem at once.

use super::*;
use crate::demo::PageViews;
use crate::App;

fn config(toml: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    std::fs::write(&path, toml).unwrap();
    Config::load_with_env(&path, std::iter::empty()).unwrap()
}

const BASE: &str = r#"
[app]
id = "t"
[broker]
bootstrap = "embedded"
[topics.page_views]
partitions = 4
key_codec = "string"
[topics.clicks]
partitions = 2
"#;

#[test]
fn an_app_compiles_once_into_everything_the_node_needs() {
    let app = App::new().agent(PageViews::new());
    let t = Topology::compile(&app.agents, &config(BASE)).unwrap();
    assert_eq!(t.runtime.source_topics(), ["page_views"]);
    let source = t.runtime.source("page_views").unwrap();
    assert_eq!(source.partitions, 4);
    assert_eq!(source.agents.len(), 1);
    let changelog = (
        Arc::from("page_counts"),
        "t-page_counts-changelog".to_owned(),
    );
    assert_eq!(source.changelogs, [changelog]);
    let mut topics: Vec<(&str, i32, bool)> = t
        .topics
        .iter()
        .map(|n| (n.name.as_str(), n.partitions, n.compact))
        .collect();
    topics.sort();
    assert_eq!(
        topics,
        [
            ("clicks", 2, false),
            ("page_views", 4, false),
            ("t-members", 1, true),
            ("t-page_counts-changelog", 4, true),
            ("t-page_views-dlq", 4, false),
        ]
    );
    let parts = (0..4).map(|p| ("page_views".to_owned(), p)).collect();
    assert_eq!(t.standbys, Some((1, parts)));
    assert_eq!(t.leader.as_deref(), Some("page_views"));
    assert!(t.runtime.global_tables.is_empty());
    assert_eq!(t.agents()[0].policy().dead_letter_topic, "t-page_views-dlq");
}

#[test]
fn every_problem_is_reported_at_once() {
    let app = App::new().agent(PageViews::on_topic("missing"));
    let toml = format!("{BASE}[agents.nobody]\non_error = \"skip\"\n");
    let err = Topology::compile(&app.agents, &config(&toml)).unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    assert!(keys.contains(&"topics.missing"), "{keys:?}");
    assert!(keys.contains(&"agents.nobody"), "{keys:?}");
}

/// The demo agent and a second one on `clicks` sharing its table.
fn sharing() -> Vec<AgentRef> {
    let a = App::new().agent(PageViews::new());
    let clicks = crate::demo::PageViews::on_topic("clicks");
    let mut agents = a.agents.clone();
    agents.push(faust_actors::AgentRef::new(Renamed(clicks)));
    agents
}

#[test]
fn topics_sharing_a_table_must_have_equal_partition_counts() {
    let err = Topology::compile(&sharing(), &config(BASE)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "topics clicks (2), page_views (4) feed the same tables, so partition p of \
             each is processed together (co-partitioned), but their partition counts differ"
        ),
        "{text}"
    );
    assert_eq!(err.issues[0].key, "topics.clicks");
}

#[test]
fn topics_sharing_a_table_form_one_task_group_led_by_the_first_by_name() {
    let toml = BASE.replace("partitions = 2", "partitions = 4");
    let t = Topology::compile(&sharing(), &config(&toml)).unwrap();
    assert_eq!(
        t.runtime.source_topics(),
        ["clicks"],
        "only the lead is subscribed"
    );
    assert_eq!(t.runtime.all_topics(), ["clicks", "page_views"]);
    let group = t.runtime.source("clicks").unwrap();
    let topics: Vec<&str> = group.topics.iter().map(|t| &**t).collect();
    assert_eq!(topics, ["clicks", "page_views"]);
    assert_eq!(group.agents.len(), 2);
    assert_eq!(group.tables.len(), 1, "one shared table");
    assert_eq!(
        t.runtime.lead_of("page_views").map(|l| &**l),
        Some("clicks")
    );
    assert!(
        t.describe().contains(
            "task group clicks + page_views: partition p of each is one task (4 tasks; \
             subscribed: clicks)"
        ),
        "{}",
        t.describe()
    );
}

#[test]
fn a_change_stream_needs_a_declared_table_and_its_codecs() {
    let app = App::new().agent(PageViews::new());
    let toml = format!(
        "{BASE}[tables.page_counts]\nsinks = [\"clicks\", \"counts_out\"]\n\
         [tables.nope]\nsinks = [\"x\"]\n"
    );
    let err = Topology::compile(&app.agents, &config(&toml)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no agent declares a table `nope`"), "{text}");
    assert!(
        text.contains(
            "`clicks` is json/json under [topics.clicks], but table `page_counts` streams its \
             changes as string/json (its own codecs)"
        ),
        "{text}"
    );
    let toml = format!("{BASE}[tables.page_counts]\nsinks = [\"counts_out\"]\n");
    let t = Topology::compile(&app.agents, &config(&toml)).unwrap();
    let sinks: Vec<_> = t.runtime.table_sinks.iter().collect();
    assert_eq!(format!("{sinks:?}"), r#"[("page_counts", ["counts_out"])]"#);
    let needed = t
        .topics
        .iter()
        .find(|n| n.name == "counts_out")
        .expect("created");
    assert_eq!(needed.partitions, 4, "like the table's source");
}

/// A demo agent under another name.
struct Renamed(PageViews);

impl faust_actors::Agent for Renamed {
    type Key = String;
    type Value = crate::demo::PageView;

    fn name(&self) -> &str {
        "clicks"
    }

    fn topics(&self) -> Vec<String> {
        self.0.topics()
    }

    fn tables(&self) -> Vec<faust_actors::TableSpec> {
        self.0.tables()
    }

    async fn handle(
        &self,
        event: &mut faust_actors::Event<'_, String, crate::demo::PageView>,
    ) -> Result<(), faust_actors::AgentError> {
        self.0.handle(event).await
    }
}

#[test]
fn a_codec_that_can_never_decode_an_agents_types_is_a_config_error() {
    use faust_actors::{agent, Event};
    #[derive(serde::Deserialize)]
    struct Visit {
        _url: String,
    }
    // Page views keyed by a struct on a `string` codec, and numbers on `raw` values.
    let keyed = agent("keyed")
        .topic("page_views")
        .handle(async |_: &mut Event<'_, Visit, serde_json::Value>, _| Ok(()));
    let counted = agent("counted")
        .topic("clicks")
        .handle(async |_: &mut Event<'_, String, u64>, _| Ok(()));
    let toml = format!("{BASE}value_codec = \"raw\"\n");
    let app = App::new().agent(keyed).agent(counted);
    let err = Topology::compile(&app.agents, &config(&toml)).unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["topics.page_views.key_codec", "topics.clicks.value_codec"]
    );
    let text = err.to_string();
    assert!(
        text.contains("agent `keyed` reads the keys of `page_views`: the `string` codec decodes only strings, numbers, booleans and unit enum variants, and the type is struct `Visit`"),
        "{text}"
    );
    assert!(text.contains("and the type is an integer"), "{text}");
    // The demo's String keys on `string` and JSON values pass.
    let app = App::new().agent(PageViews::new());
    assert!(Topology::compile(&app.agents, &config(BASE)).is_ok());
    // A table's codecs are set in code: a tuple key on `string` is refused too.
    let pairs = faust_actors::Table::<(String, u32), u64>::new("pairs")
        .key_codec(faust_actors::Codec::String);
    let paired = agent("paired")
        .topic("page_views")
        .tables(pairs)
        .handle(async |_: &mut Event<'_, String, serde_json::Value>, _| Ok(()));
    let app = App::new().agent(paired);
    let err = Topology::compile(&app.agents, &config(BASE)).unwrap_err();
    assert_eq!(err.issues.len(), 1, "{err}");
    assert_eq!(err.issues[0].key, "tables.pairs");
    assert!(
        err.issues[0]
            .message
            .contains("table `pairs` of agent `paired` stores keys: the `string` codec"),
        "{err}"
    );
}

/// Waits for nothing: a concurrent agent for the config checks.
struct Lookups;

impl faust_actors::ConcurrentAgent for Lookups {
    type Key = String;
    type Value = serde_json::Value;
    type Prepared = ();
    fn name(&self) -> &str {
        "lookups"
    }
    fn topics(&self) -> Vec<String> {
        vec!["clicks".into()]
    }
    fn concurrency(&self) -> usize {
        4
    }
    async fn prepare(
        &self,
        _: Option<&String>,
        _: &serde_json::Value,
        _: &faust_actors::Record,
    ) -> Result<(), faust_actors::AgentError> {
        Ok(())
    }
    async fn handle(
        &self,
        _: &mut faust_actors::Event<'_, String, serde_json::Value>,
        _: (),
    ) -> Result<(), faust_actors::AgentError> {
        Ok(())
    }
}

#[test]
fn a_concurrency_in_the_config_is_honoured_for_a_concurrent_agent_and_refused_otherwise() {
    let app = App::new().agent(PageViews::new()).concurrent_agent(Lookups);
    let t = Topology::compile(&app.agents, &config(BASE)).unwrap();
    let of = |t: &Topology, name: &str| {
        let a = t.agents().iter().find(|a| a.name() == name).unwrap();
        a.concurrency()
    };
    assert_eq!(of(&t, "lookups"), Some(4), "the code's");
    assert_eq!(of(&t, "page_views"), None);
    let toml = format!("{BASE}[agents.lookups]\nconcurrency = 16\n");
    let t = Topology::compile(&app.agents, &config(&toml)).unwrap();
    assert_eq!(of(&t, "lookups"), Some(16), "the config's");
    let toml = format!("{BASE}[agents.page_views]\nconcurrency = 8\n");
    let err = Topology::compile(&app.agents, &config(&toml)).unwrap_err();
    assert_eq!(err.issues.len(), 1, "{err}");
    assert_eq!(err.issues[0].key, "agents.page_views.concurrency");
    assert!(
        err.issues[0]
            .message
            .contains("agent `page_views` is not a concurrent agent"),
        "{err}"
    );
}
