//! The key-to-partition function against its references: Java's `Utils.murmur2` (vectors in
//! `data/murmur2_java.tsv`, printed by `data/Murmur2Vectors.java` with kafka-clients 4.1.1) and
//! librdkafka's own partitioners, asked through a producer on the mock cluster.

use std::time::Duration;

use faust_actors::partitioner::{murmur2, Partitioner};
use proptest::prelude::*;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn murmur2_and_the_partition_match_javas_for_every_reference_vector() {
    let vectors = include_str!("data/murmur2_java.tsv");
    let mut checked = 0;
    for line in vectors.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let key = unhex(f[0]);
        let hash: i32 = f[1].parse().unwrap();
        assert_eq!(murmur2(&key), hash, "murmur2 of {}", f[0]);
        let six: i32 = f[2].parse().unwrap();
        let ninety_seven: i32 = f[3].parse().unwrap();
        assert_eq!(Partitioner::Murmur2.partition(&key, 6), six, "{}", f[0]);
        assert_eq!(
            Partitioner::Murmur2.partition(&key, 97),
            ninety_seven,
            "{}",
            f[0]
        );
        checked += 1;
    }
    assert_eq!(checked, 77);
}

/// A producer on a mock cluster whose topic `t` has `partitions` partitions.
struct Mock {
    producer: FutureProducer,
    _cluster: MockCluster<'static, DefaultProducerContext>,
}

fn mock(partitioner: Partitioner, partitions: i32) -> Mock {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", partitions, 1).unwrap();
    let producer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("partitioner", partitioner.librdkafka_name())
        .set("linger.ms", "0")
        .create()
        .unwrap();
    Mock {
        producer,
        _cluster: cluster,
    }
}

fn placed(m: &Mock, key: &[u8]) -> i32 {
    let record = FutureRecord::<[u8], [u8]>::to("t").key(key).payload(b"v");
    let sent = m.producer.send(record, Duration::from_secs(10));
    let delivery = futures::executor::block_on(sent).expect("delivered");
    delivery.partition
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// For any key, librdkafka's producer puts the record where [`Partitioner::partition`]
    /// says, for both functions and several partition counts.
    #[test]
    fn librdkafka_places_keys_where_the_function_says(
        keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..48), 1..24),
    ) {
        thread_local! {
            static MOCKS: Vec<(Partitioner, i32, Mock)> = [Partitioner::Murmur2, Partitioner::Crc32]
                .into_iter()
                .flat_map(|p| [1, 3, 16].map(|n| (p, n, mock(p, n))))
                .collect();
        }
        MOCKS.with(|mocks| {
            for (p, n, m) in mocks {
                for key in &keys {
                    prop_assert_eq!(placed(m, key), p.partition(key, *n), "{:?} {} {:?}", p, n, key);
                }
            }
            Ok(())
        })?;
    }
}
