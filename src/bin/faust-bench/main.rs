//! `faust-bench`: the Rust half of `scripts/bench` (the driver, `benches/peers/bench.py`, runs
//! every system and reads the numbers; this binary does the parts that must be fast or must
//! be faust-rs).
//!
//! - `preload`: creates the input topic and writes the fixed-seed page views, one per
//!   millisecond of event time, then writes the true counts (`preload.rs`).
//! - `node`: the faust-rs system under test, workload A (count) or B (10 s tumbling window),
//!   as a user's node binary with a config file.
//! - `ceiling`: a bare rdkafka consumer reading the input to its end (`ceiling.rs`).
//! - `verify`: reads a system's output topic and compares it with the true counts
//!   (`verify.rs`).
//! - `latency`: produces at a fixed rate and measures end-to-end latency from the output
//!   topic (`latency.rs`).

mod ceiling;
mod latency;
mod preload;
mod verify;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use faust::demo::{PageViews, WindowedClicks};
use faust::App;

/// The benchmark's workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Count per URL in a changelogged table; each new count to the output topic.
    A,
    /// Count per URL per 10 s tumbling event-time window; each closed window to the output.
    B,
}

/// Size of workload B's windows.
pub const WINDOW_MS: i64 = 10_000;

/// The key of the records that end the input: one per partition, far enough ahead in event
/// time to close every window. Results for it are not compared.
pub const FLUSH_KEY: &str = "__flush__";

#[derive(Parser)]
#[command(
    name = "faust-bench",
    about = "faust-rs benchmark tools (driven by scripts/bench)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the input topic, write the page views and the true counts.
    Preload(preload::Args),
    /// Run the faust-rs system: `faust-bench node a --input T --output O -- worker --config F`.
    Node {
        /// Which workload.
        #[arg(value_enum)]
        workload: Workload,
        /// The input topic.
        #[arg(long)]
        input: String,
        /// The output topic.
        #[arg(long)]
        output: String,
        /// The node's own command line (`worker --config FILE`).
        #[arg(last = true)]
        node: Vec<String>,
    },
    /// Read the input to its end with a bare consumer, committing like the systems do.
    Ceiling(ceiling::Args),
    /// Compare an output topic with the true counts.
    Verify(verify::Args),
    /// Produce at a fixed rate and measure end-to-end latency on the output topic.
    Latency(latency::Args),
}

/// A consumer outside any group, assigned every partition of `topic` from `from`; with the
/// partition count. `config` holds extra settings.
fn reader(
    mut config: rdkafka::ClientConfig,
    broker: &str,
    topic: &str,
    from: rdkafka::Offset,
) -> anyhow::Result<(rdkafka::consumer::BaseConsumer, i32)> {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = config
        .set("bootstrap.servers", broker)
        .set("group.id", "faust-bench-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    if partitions == 0 {
        anyhow::bail!("output topic {topic} does not exist");
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, from)?;
    }
    consumer.assign(&tpl)?;
    Ok((consumer, partitions))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node {
            workload,
            input,
            output,
            node,
        } => {
            let args = std::iter::once("faust-bench".to_string()).chain(node);
            return match workload {
                Workload::A => App::new()
                    .agent(PageViews::on_topic(&input))
                    .main_from(args),
                Workload::B => {
                    let size = Duration::from_millis(WINDOW_MS as u64);
                    let agent = WindowedClicks::new(&input, size, Duration::ZERO, &output);
                    App::new().agent(agent).main_from(args)
                }
            };
        }
        Command::Preload(args) => preload::run(&args),
        Command::Ceiling(args) => ceiling::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Latency(args) => latency::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faust-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
