//! Property tests standing in for a fuzzer: arbitrary bytes fed to every codec, into several
//! target types, and to the parsers of the headers the runtime writes (dead letters, sources),
//! must give a value or an error, never a panic.

use faust_actors::api::policy::parse_source;
use faust_actors::{Codec, DeadLetter, Header};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct View {
    url: String,
    user: Option<String>,
    ts: i64,
    tags: Vec<String>,
    nested: Option<Box<View>>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum Kind {
    Click,
    Visit { page: String },
    Pair(u8, i128),
}

const CODECS: [Codec; 4] = [Codec::Json, Codec::Msgpack, Codec::String, Codec::Raw];

fn decode_all(bytes: &[u8]) {
    for codec in CODECS {
        let _ = codec.decode::<View>("value", bytes);
        let _ = codec.decode::<Kind>("value", bytes);
        let _ = codec.decode::<String>("key", bytes);
        let _ = codec.decode::<Vec<u8>>("value", bytes);
        let _ = codec.decode::<u64>("key", bytes);
        let _ = codec.decode::<f64>("value", bytes);
        let _ = codec.decode::<serde_json::Value>("value", bytes);
        let _ = codec.decode::<std::collections::HashMap<String, i32>>("value", bytes);
        let _ = codec.decode::<(i32, String)>("value", bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn codecs_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
    }

    #[test]
    fn codecs_never_panic_on_mutated_valid_input(
        cut in 0usize..64,
        flip in any::<u8>(),
        at in 0usize..64,
    ) {
        let view = serde_json::json!({"url": "/a", "user": null, "ts": 5, "tags": ["x"], "nested": null});
        let valid = [
            serde_json::to_vec(&view).unwrap(),
            rmp_serde::to_vec_named(&view).unwrap(),
        ];
        for mut bytes in valid {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= flip;
            }
            bytes.truncate(bytes.len().saturating_sub(cut));
            decode_all(&bytes);
        }
    }

    #[test]
    fn header_parsers_never_panic(
        headers in proptest::collection::vec(
            (
                prop_oneof![
                    Just("faust-error".to_string()),
                    Just("faust-error-reason".to_string()),
                    Just("faust-agent".to_string()),
                    Just("faust-source-topic".to_string()),
                    Just("faust-source-partition".to_string()),
                    Just("faust-source-offset".to_string()),
                    ".{0,12}",
                ],
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
            ),
            0..10,
        ),
        source in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        let headers: Vec<Header> = headers
            .into_iter()
            .map(|(key, value)| Header { key, value })
            .collect();
        let _ = DeadLetter::parse(&headers);
        let _ = parse_source(&source);
    }

    #[test]
    fn source_headers_round_trip(topic in "[a-z/._-]{1,20}", partition in any::<i32>(), offset in any::<i64>()) {
        let value = format!("{topic}/{partition}/{offset}");
        prop_assert_eq!(parse_source(value.as_bytes()).unwrap(), (topic, partition, offset));
    }
}
