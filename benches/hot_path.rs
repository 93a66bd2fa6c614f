//! Criterion micro-benchmarks of the hot path, one step of an event's way through a node:
//!
//! - `decode`: a page view's JSON value into the agent's type (the codec step);
//! - `table_update`: one count increment through a partition's table cache (the agent's
//!   table step, with its undo log);
//! - `sled_commit`: the store half of a commit of 1,000 dirty keys, applied to the tree, with
//!   and without the flush to disk;
//! - `mailbox_hop`: a batch of 500 records handed to another actor and awaited, the way a
//!   partition actor hands each batch to an agent actor;
//! - `emit`: 1,000 events' outputs, each encoded with its `faust-source` header, staged, handed
//!   to a producer (librdkafka's mock cluster) at the end of its event, then every
//!   acknowledgement awaited as the commit does.
//!
//!   cargo bench --bench hot_path

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use faust::generator::{PageView, PageViewSource};
use faust_actors::state::hot_path::CountShard;
use faust_actors::Codec;
use faust_actors::Record;

fn views(n: usize) -> Vec<PageView> {
    let mut source = PageViewSource::new(42, 10_000, 100_000);
    (0..n)
        .map(|i| source.next_view(1_700_000_000_000 + i as i64))
        .collect()
}

fn decode(c: &mut Criterion) {
    let values: Vec<Vec<u8>> = views(1_000)
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap())
        .collect();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("json_page_view_x1000", |b| {
        b.iter(|| {
            for v in &values {
                let view: PageView = Codec::Json.decode("value", v).unwrap();
                std::hint::black_box(view);
            }
        })
    });
    g.finish();
}

fn table_update(c: &mut Criterion) {
    let urls: Vec<String> = views(10_000).into_iter().map(|v| v.url).collect();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let mut shard = CountShard::open(&db, 100_000);
    let mut g = c.benchmark_group("table_update");
    g.throughput(Throughput::Elements(urls.len() as u64));
    g.bench_function("count_x10000_zipf_urls", |b| {
        b.iter(|| {
            for url in &urls {
                std::hint::black_box(shard.increment(url));
            }
        })
    });
    g.finish();
}

fn sled_commit(c: &mut Criterion) {
    let keys: Vec<String> = (0..1_000).map(|i| format!("/page/{i}")).collect();
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let mut shard = CountShard::open(&db, 100_000);
    let mut g = c.benchmark_group("sled_commit");
    g.throughput(Throughput::Elements(keys.len() as u64));
    for flush in [false, true] {
        let name = if flush {
            "1000_keys_flushed"
        } else {
            "1000_keys_applied"
        };
        g.bench_function(name, |b| {
            // Only the commit is timed; the increments that dirty the keys are not.
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    for k in &keys {
                        shard.increment(k);
                    }
                    let started = Instant::now();
                    std::hint::black_box(shard.commit(&db, flush));
                    took += started.elapsed();
                }
                took
            })
        });
    }
    g.finish();
}

/// Stands in for an agent actor: receives a batch, touches every record, replies.
struct Agent;

impl Actor for Agent {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "usize")]
struct Batch(Arc<[Record]>, usize);

impl Handler<Batch> for Agent {
    type Result = usize;

    fn handle(&mut self, msg: Batch, _: &mut Self::Context) -> usize {
        msg.0[msg.1..].iter().map(|r| r.offset as usize).sum()
    }
}

fn mailbox_hop(c: &mut Criterion) {
    let records: Arc<[Record]> = views(500)
        .into_iter()
        .enumerate()
        .map(|(i, v)| Record {
            topic: Arc::from("page_views"),
            partition: 0,
            offset: i as i64,
            key: Some(v.url.clone().into_bytes()),
            value: Some(serde_json::to_vec(&v).unwrap()),
            timestamp: Some(v.ts),
            headers: Vec::new(),
            unreadable: None,
        })
        .collect();
    let system = actix::System::new();
    let addr = system.block_on(async { Agent.start() });
    let mut g = c.benchmark_group("mailbox_hop");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("batch_of_500", |b| {
        b.iter(|| {
            let sent = addr.send(Batch(records.clone(), 0));
            std::hint::black_box(system.block_on(sent).unwrap())
        })
    });
    g.finish();
}

fn emit(c: &mut Criterion) {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("counts", 4, 1).unwrap();
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = faust_actors::io::hot_path::Emitter::new(producer, "counts");
    let urls: Vec<String> = views(1_000).into_iter().map(|v| v.url).collect();
    let mut g = c.benchmark_group("emit");
    g.throughput(Throughput::Elements(urls.len() as u64));
    g.bench_function("output_x1000_with_acks", |b| {
        b.iter(|| {
            rt.block_on(async {
                for (i, url) in urls.iter().enumerate() {
                    out.emit(url, &(i as u64)).await.unwrap();
                }
                assert_eq!(out.confirm().await.unwrap(), urls.len());
            })
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    decode,
    table_update,
    sled_commit,
    mailbox_hop,
    emit
);
criterion_main!(benches);
