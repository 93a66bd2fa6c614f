//! The ceiling: a bare rdkafka consumer in the group `--group`, reading `--topic` to its end
//! with no processing, storing and auto-committing offsets every 100 ms like the systems under
//! test commit. It commits once more at the end and exits; the driver times it by its
//! committed offsets, as it times every system.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// `faust-bench ceiling`.
#[derive(clap::Args)]
pub struct Args {
    /// Bootstrap servers.
    #[arg(long)]
    broker: String,
    /// The topic to read.
    #[arg(long)]
    topic: String,
    /// The consumer group.
    #[arg(long)]
    group: String,
}

pub fn run(args: &Args) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.broker)
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "100")
        .set("enable.partition.eof", "true")
        .create()
        .context("creating the consumer")?;
    consumer
        .subscribe(&[&args.topic])
        .with_context(|| format!("subscribing to {}", args.topic))?;
    let partitions = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))?
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let (mut records, mut bytes, mut at_end) = (0u64, 0usize, HashSet::new());
    while at_end.len() < partitions {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len();
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => return Err(e).context("consuming"),
            None => {}
        }
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // The auto-commit already committed everything read: nothing new to commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) | Ok(()) => {}
        Err(e) => return Err(e).context("the final commit"),
    }
    println!("ceiling: {records} records, {bytes} bytes");
    Ok(())
}
