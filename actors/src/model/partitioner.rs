//! Which partition a keyed record goes to: the function the producer uses and the one queries
//! route keys with, so both always agree.
//!
//! The default is Java's: `murmur2` of the key bytes, made positive, modulo the partition count
//! (Kafka's `Utils.murmur2` and `Utils.toPositive`, librdkafka's `murmur2_random`). Java
//! clients, Kafka Streams and Faust (aiokafka) use it, so a topic faust-rs writes is partitioned
//! like one they write, and the two can be joined. librdkafka's own default (`consistent_random`,
//! CRC32) is the other choice, for apps that must keep partitioning data written by older
//! faust-rs versions or other librdkafka clients.

/// A key-to-partition function librdkafka's producer implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// Java's: `toPositive(murmur2(key)) % partitions`; librdkafka's `murmur2_random`.
    #[default]
    Murmur2,
    /// `crc32(key) % partitions`; librdkafka's `consistent_random`.
    Crc32,
}

impl Partitioner {
    /// The partitioner of librdkafka's `partitioner` setting, `None` for one that does not
    /// place a key by a function of its bytes alone (`random`, `fnv1a`, ...).
    pub fn from_librdkafka(name: &str) -> Option<Self> {
        match name {
            "murmur2" | "murmur2_random" => Some(Partitioner::Murmur2),
            "consistent" | "consistent_random" => Some(Partitioner::Crc32),
            _ => None,
        }
    }

    /// The value of librdkafka's `partitioner` setting for this function (keyless records go to
    /// a random partition, as with Java's sticky partitioner).
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Partitioner::Murmur2 => "murmur2_random",
            Partitioner::Crc32 => "consistent_random",
        }
    }

    /// The partition of `key` among `partitions` (at least 1).
    pub fn partition(self, key: &[u8], partitions: i32) -> i32 {
        let n = partitions.max(1) as u32;
        let hash = match self {
            Partitioner::Murmur2 => (murmur2(key) & 0x7fff_ffff) as u32,
            Partitioner::Crc32 => crc32fast::hash(key),
        };
        (hash % n) as i32
    }
}

/// Kafka's `Utils.murmur2`: MurmurHash2, 32 bits, seed `0x9747b28c`, the tail read little-endian.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own `UtilsTest.testMurmur2` cases.
    #[test]
    fn murmur2_gives_kafkas_values() {
        for (key, want) in [
            (&b"21"[..], -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn librdkafka_names_round_trip() {
        for p in [Partitioner::Murmur2, Partitioner::Crc32] {
            assert_eq!(Partitioner::from_librdkafka(p.librdkafka_name()), Some(p));
        }
        assert_eq!(Partitioner::from_librdkafka("random"), None);
        assert_eq!(Partitioner::default(), Partitioner::Murmur2);
    }
}
