//! The node's configuration: typed sections, loaded from built-in defaults, then a TOML file,
//! then `FAUST__<SECTION>__<KEY>` environment variables, and validated as a whole.
//!
//! Loading never stops at the first problem: unknown keys, values of the wrong type and values
//! that make no sense are all collected, each naming its key and where it came from (the file or
//! the environment variable), and reported together as [`ConfigErrors`].

mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use faust_actors::{Codec, OnError};
use serde::{Deserialize, Serialize};

pub use load::{ConfigErrors, Issue};

/// The value of `broker.bootstrap` that starts the embedded in-process broker.
pub const EMBEDDED: &str = "embedded";

/// The whole configuration of a node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[app]`: identity.
    pub app: AppConfig,
    /// `[broker]`: where Kafka is and how to talk to it.
    pub broker: BrokerConfig,
    /// `[store]`: the local table store.
    pub store: StoreConfig,
    /// `[web]`: the metrics and health server.
    pub web: WebConfig,
    /// `[processing]`: commits, batches, retries, workers.
    pub processing: ProcessingConfig,
    /// `[topics.<name>]`: partitions and codecs of each topic the app uses.
    pub topics: BTreeMap<String, TopicConfig>,
    /// `[agents.<name>]`: per-agent settings (input topics, sinks).
    pub agents: BTreeMap<String, AgentConfig>,
    /// `[tables.<name>]`: per-table settings (standby replicas).
    pub tables: BTreeMap<String, TableConfig>,
    /// `[generator]`: the built-in synthetic page-view producer (demos, benchmarks).
    pub generator: GeneratorConfig,
    /// `[log]`: log level and format.
    pub log: LogConfig,
}

/// `[app]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// The app id: the consumer group id and the prefix of every internal topic. Required.
    pub id: String,
}

/// `[broker]`. Its `Debug` masks the values of secret librdkafka keys.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `"embedded"` (an in-process mock cluster, data in memory only) or a Kafka bootstrap list
    /// such as `"127.0.0.1:9092"`.
    pub bootstrap: String,
    /// How long the group waits for a silent member before it rebalances its partitions.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How long start-up waits for the broker to answer.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Extra librdkafka properties passed through as they are (`security.protocol`,
    /// `sasl.username`, ...). Values of keys that look secret are never logged.
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            bootstrap: EMBEDDED.into(),
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            librdkafka: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings = self
            .librdkafka
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        f.debug_struct("BrokerConfig")
            .field("bootstrap", &self.bootstrap)
            .field("session_timeout", &self.session_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field(
                "librdkafka",
                &faust_actors::model::secrets::masked_settings(settings),
            )
            .finish()
    }
}

impl BrokerConfig {
    /// Whether this config asks for the embedded broker.
    pub fn is_embedded(&self) -> bool {
        self.bootstrap == EMBEDDED
    }

    /// The function that puts a keyed record in its partition: `[broker.librdkafka]
    /// partitioner` when it names one faust-rs can compute too (`murmur2_random`, `murmur2`,
    /// `consistent_random`, `consistent`; [`Config::check`] refuses the others), else Java's
    /// murmur2, so faust-rs partitions like Java clients, Kafka Streams and Faust.
    pub fn partitioner(&self) -> faust_actors::Partitioner {
        self.librdkafka
            .get("partitioner")
            .and_then(|p| faust_actors::Partitioner::from_librdkafka(p))
            .unwrap_or_default()
    }
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the store; default `./data/<app.id>`.
    pub path: Option<PathBuf>,
    /// Clean keys kept in memory per table and partition after a commit.
    pub cache_keys: usize,
    /// sled's page cache, in MiB. sled's resident memory grows to about ten times this under
    /// a write-heavy load (measured: 64 MiB let a node reach 800 MiB in `scripts/bench`), and
    /// the hot keys are cached above sled anyway (`cache_keys`), so the default is small.
    pub cache_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: None,
            cache_keys: 100_000,
            cache_mb: 1,
        }
    }
}

/// `[web]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve `/metrics` and `/healthz`.
    pub enabled: bool,
    /// Address to listen on; port 0 picks a free port (logged at start).
    pub bind: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            bind: "127.0.0.1:6066".into(),
        }
    }
}

/// `[processing]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// How often each partition commits (tables to the store, offsets to Kafka).
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Most records handed to an agent at once.
    pub max_batch: usize,
    /// Threads (actix arbiters) running partition and agent actors; 0 = one per CPU.
    pub workers: usize,
    /// First wait before retrying an event whose agent failed or panicked.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Longest wait between retries of one event.
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
    /// Longest wait for partitions to commit and stop, on revoke and at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Outputs stamped with an event's time (`emit`, `forward`, `group_by`) further ahead of
    /// the clock than this are refused before they reach the broker, and their event goes to
    /// the agent's error policy (reason `output_timestamp`). Kafka 4 refuses records more than
    /// `message.timestamp.after.max.ms` (1 h by default) ahead, and a refused record takes its
    /// whole produce batch with it; set this to the sinks' limit.
    #[serde(with = "humantime_serde")]
    pub max_timestamp_ahead: Duration,
    /// A partition with records waiting whose committed offset has not moved for this many
    /// commit intervals is stalled: `/healthz` answers 503 naming it, and
    /// `faust_partition_stalled` is 1.
    pub stall_intervals: u32,
    /// `at_least_once` (the default: after a crash some events are processed again) or
    /// `exactly_once` (each commit is one Kafka transaction: outputs, changelog writes and
    /// source offsets; readers use `read_committed`). Needs a real Kafka broker.
    pub guarantee: Guarantee,
    /// Where a partition the group has never committed starts: `earliest` (the default: every
    /// record of a new app is processed) or `latest` (only records written from now on).
    pub auto_offset_reset: OffsetReset,
}

/// `processing.auto_offset_reset`: where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// At the partition's first record.
    #[default]
    Earliest,
    /// At the partition's end: only records written from now on.
    Latest,
}

impl OffsetReset {
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// `processing.guarantee`: what a crash may do to outputs and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Every event is processed at least once: a crash replays the events after the last
    /// commit, so outputs can repeat (tables are exact: their writes commit with the offset).
    #[default]
    AtLeastOnce,
    /// Every event's effects (outputs, table writes, offset) commit together in one Kafka
    /// transaction (KIP-447: one transactional producer per node), or not at all.
    ExactlyOnce,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            commit_interval: Duration::from_secs(1),
            max_batch: 500,
            workers: 0,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(10),
            max_timestamp_ahead: Duration::from_secs(3600),
            stall_intervals: 30,
            shutdown_timeout: Duration::from_secs(30),
            guarantee: Guarantee::AtLeastOnce,
            auto_offset_reset: OffsetReset::Earliest,
        }
    }
}

/// `[agents.<name>]`: settings of one registered agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Consume these topics instead of the ones the agent names (per-environment topic names).
    pub topics: Option<Vec<String>>,
    /// Topics that `Event::emit` sends to, like Faust's `sink=[...]`.
    pub sinks: Vec<String>,
    /// What happens to an event that cannot be processed: `skip`, `dead-letter` (to
    /// `<app-id>-<agent>-dlq`) or `stop` (halt the partition).
    pub on_error: OnError,
    /// How often an agent error or panic is retried, with back-off, before `on_error` applies
    /// (records that do not decode go to `on_error` at once).
    pub retries: u32,
    /// Most events of a partition a concurrent agent prepares at once (Faust's
    /// `concurrency`), instead of the one its code gives; concurrent agents only.
    pub concurrency: Option<usize>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            topics: None,
            sinks: Vec::new(),
            on_error: OnError::DeadLetter,
            retries: 3,
            concurrency: None,
        }
    }
}

/// `[tables.<name>]`: settings of one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableConfig {
    /// Other nodes that keep a warm copy of each partition of the table (0: none).
    pub standby_replicas: u32,
    /// Topics that receive the table's **coalesced change stream**: at each commit, every key
    /// changed since the last one, once, with its latest value (`null` for a deleted key), in
    /// the table's codecs, keyed so the topic's partitioner places it (Kafka Streams'
    /// `KTable.toStream().to()` with its record cache). Plain tables only.
    pub sinks: Vec<String>,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            standby_replicas: 1,
            sinks: Vec::new(),
        }
    }
}

/// `[topics.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// Number of partitions: created so when missing, checked when the topic exists.
    pub partitions: i32,
    /// Replication factor for creating the topic; unset = the broker's default.
    pub replication: Option<i32>,
    /// Codec of record keys.
    pub key_codec: Codec,
    /// Codec of record values.
    pub value_codec: Codec,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            replication: None,
            key_codec: Codec::Json,
            value_codec: Codec::Json,
        }
    }
}

/// `[generator]`: synthetic page views `{"url", "user", "ts"}` keyed by URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Run the generator inside the node.
    pub enabled: bool,
    /// Topic to produce to (must be listed under `[topics]`).
    pub topic: String,
    /// Records per second.
    pub rate: u32,
    /// Number of distinct URLs (drawn Zipf-like: a few are hot).
    pub urls: u32,
    /// Number of distinct users.
    pub users: u32,
    /// Seed of the random choices, for reproducible data.
    pub seed: u64,
    /// Stop after this many records (unset: run until the node stops).
    pub count: Option<u64>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            enabled: false,
            topic: "page_views".into(),
            rate: 1000,
            urls: 100,
            users: 1000,
            seed: 42,
            count: None,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `faust=debug,rdkafka=warn`; `RUST_LOG` wins.
    pub level: String,
    /// `human` or `json`.
    pub format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Coloured text for terminals.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Human,
        }
    }
}

impl Config {
    /// The store directory: `store.path`, or `./data/<app.id>`.
    pub fn store_path(&self) -> PathBuf {
        self.store
            .path
            .clone()
            .unwrap_or_else(|| Path::new("data").join(&self.app.id))
    }

    /// Worker threads to run: `processing.workers`, or one per CPU.
    pub fn workers(&self) -> usize {
        match self.processing.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// Checks that values make sense together (types are checked while loading).
    pub fn check(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(Issue {
                key: key.into(),
                origin: String::new(),
                message,
            })
        };
        if self.app.id.is_empty() {
            bad(
                "app.id",
                "is required: the consumer group id and topic prefix".into(),
            );
        } else if !self
            .app
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            bad("app.id", format!("`{}` may only hold ASCII letters, digits, `.`, `_` and `-` (it prefixes topic names)", self.app.id));
        }
        if self.broker.bootstrap.trim().is_empty() {
            bad(
                "broker.bootstrap",
                "is empty: use \"embedded\" or host:port[,host:port]".into(),
            );
        }
        for key in self.broker.librdkafka.keys() {
            if OWNED_KEYS.contains(&key.as_str()) {
                bad(
                    &format!("broker.librdkafka.{key}"),
                    "is set by faust-rs itself and cannot be overridden".into(),
                );
            }
            if let Some((_, typed)) = TYPED_KEYS.iter().find(|(k, _)| k == key) {
                bad(
                    &format!("broker.librdkafka.{key}"),
                    format!("is a faust-rs setting: set `{typed}` instead"),
                );
            }
        }
        if let Some(p) = self.broker.librdkafka.get("partitioner") {
            if faust_actors::Partitioner::from_librdkafka(p).is_none() {
                bad(
                    "broker.librdkafka.partitioner",
                    format!(
                        "`{p}` does not place a key by its bytes alone, and faust-rs must know \
                         where each key lives (tables, queries, co-partitioned topics): use \
                         murmur2_random (Java's, the default) or consistent_random"
                    ),
                );
            }
        }
        if self.web.enabled && self.web.bind.parse::<SocketAddr>().is_err() {
            bad(
                "web.bind",
                format!(
                    "`{}` is not an address such as 127.0.0.1:6066",
                    self.web.bind
                ),
            );
        }
        if self.processing.guarantee == Guarantee::ExactlyOnce && self.broker.is_embedded() {
            bad(
                "processing.guarantee",
                "exactly_once needs a real Kafka broker: the embedded mock cluster has no \
                 read_committed isolation"
                    .into(),
            );
        }
        if self.processing.stall_intervals == 0 {
            bad("processing.stall_intervals", "must be at least 1".into());
        }
        if self.processing.max_batch == 0 {
            bad("processing.max_batch", "must be at least 1".into());
        }
        if self.processing.commit_interval < Duration::from_millis(1) {
            bad("processing.commit_interval", "must be at least 1ms".into());
        }
        for (name, agent) in &self.agents {
            if agent.concurrency == Some(0) {
                bad(
                    &format!("agents.{name}.concurrency"),
                    "must be at least 1".into(),
                );
            }
        }
        for (name, topic) in &self.topics {
            if topic.partitions < 1 {
                bad(
                    &format!("topics.{name}.partitions"),
                    format!("is {}: a topic has at least 1 partition", topic.partitions),
                );
            }
        }
        if self.generator.enabled {
            if !self.topics.contains_key(&self.generator.topic) {
                bad(
                    "generator.topic",
                    format!("`{}` is not listed under [topics]", self.generator.topic),
                );
            }
            if self.generator.urls == 0 || self.generator.users == 0 || self.generator.rate == 0 {
                bad(
                    "generator",
                    "rate, urls and users must be at least 1".into(),
                );
            }
        }
        out
    }
}

/// librdkafka properties that are typed faust-rs settings, with the setting to use: faust-rs
/// derives more than the one client setting from them (the lease, the restore readers).
pub const TYPED_KEYS: &[(&str, &str)] = &[
    ("session.timeout.ms", "broker.session_timeout"),
    ("auto.offset.reset", "processing.auto_offset_reset"),
];

/// librdkafka properties that faust-rs sets itself: overriding them would break its guarantees.
pub const OWNED_KEYS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "partition.assignment.strategy",
    "enable.partition.eof",
    "isolation.level",
    "transactional.id",
];
