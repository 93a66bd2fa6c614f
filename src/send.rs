//! `faust-node send`: produce one record by hand, encoded with a codec, like Faust's `send`.
//!
//! The value is given as text: under `json`, `msgpack` or a registered codec it is parsed as
//! JSON first (so a typo is an error here, not a poison record downstream); under `string` and
//! `raw` its bytes are sent as they are. A key under a JSON-based codec that is not valid JSON
//! is taken as a JSON string, so `--key /home` works.

use std::time::Duration;

use faust_actors::Codec;
use faust_actors::Partitioner;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::clients::set_default;
use crate::config::Config;

/// What to send, and where: the arguments of `faust-node send`.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// The topic.
    pub topic: String,
    /// The record's key, as text.
    #[arg(short, long)]
    pub key: Option<String>,
    /// The record's value, as text (JSON under JSON-based codecs).
    #[arg(short, long)]
    pub value: String,
    /// Value codec (json, msgpack, string, raw or a registered one); default: the topic's
    /// `value_codec` in the config, else json.
    #[arg(long, value_parser = parse_codec)]
    pub codec: Option<Codec>,
    /// Key codec; default: the topic's `key_codec` in the config, else string.
    #[arg(long, value_parser = parse_codec)]
    pub key_codec: Option<Codec>,
    /// Send to this partition instead of the key's.
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// A header, `name=value`; repeat for more.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Kafka bootstrap list; default: the config's broker.
    #[arg(short, long)]
    pub broker: Option<String>,
}

fn parse_codec(name: &str) -> Result<Codec, String> {
    Codec::named(name).ok_or_else(|| {
        format!("unknown codec `{name}`: expected json, msgpack, string, raw or a registered one")
    })
}

/// Encodes `text` with `codec`; `json_fallback` takes text that is not JSON as a JSON string.
fn encode(
    what: &'static str,
    codec: Codec,
    text: &str,
    json_fallback: bool,
) -> Result<Vec<u8>, String> {
    match codec {
        Codec::String | Codec::Raw => Ok(text.as_bytes().to_vec()),
        _ => {
            let value: serde_json::Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(_) if json_fallback => serde_json::Value::String(text.into()),
                Err(e) => return Err(format!("the {what} is not JSON ({e}): `{text}`")),
            };
            codec.encode(what, &value).map_err(|e| e.to_string())
        }
    }
}

/// Sends the record and waits (up to 30 s) for the broker's acknowledgement; returns
/// `(partition, offset)`.
///
/// # Errors
/// A message saying what was wrong: no broker, a value that does not encode, a refused record.
pub async fn send(args: &SendArgs, config: Option<&Config>) -> Result<(i32, i64), String> {
    let topic_config = config.and_then(|c| c.topics.get(&args.topic));
    let codec = args
        .codec
        .or(topic_config.map(|t| t.value_codec))
        .unwrap_or(Codec::Json);
    let key_codec = args
        .key_codec
        .or(topic_config.map(|t| t.key_codec))
        .unwrap_or(Codec::String);
    let broker = match (&args.broker, config) {
        (Some(b), _) => b.clone(),
        (None, Some(c)) if c.broker.is_embedded() => {
            return Err(
                "the config's broker is `embedded`, which lives inside a node process \
                        and cannot be reached from here: give --broker host:port"
                    .into(),
            )
        }
        (None, Some(c)) => c.broker.bootstrap.clone(),
        (None, None) => return Err("give --broker host:port or --config FILE".into()),
    };
    let value = encode("value", codec, &args.value, false)?;
    let key = match &args.key {
        Some(k) => Some(encode("key", key_codec, k, true)?),
        None => None,
    };
    let mut headers = OwnedHeaders::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once('=')
            .ok_or_else(|| format!("header `{h}` is not name=value"))?;
        headers = headers.insert(KafkaHeader {
            key: name,
            value: Some(value),
        });
    }
    let mut client = ClientConfig::new();
    if let Some(c) = config {
        for (k, v) in &c.broker.librdkafka {
            client.set(k, v);
        }
    }
    // The node's default partitioner: keys land where a node's queries and joins look for them.
    set_default(
        &mut client,
        "partitioner",
        Partitioner::default().librdkafka_name(),
    );
    set_default(&mut client, "message.timeout.ms", "30000");
    let producer: FutureProducer = client
        .set("bootstrap.servers", &broker)
        .create()
        .map_err(|e| format!("cannot create a producer for {broker}: {e}"))?;
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&args.topic)
        .payload(value.as_slice())
        .headers(headers);
    if let Some(k) = &key {
        record = record.key(k.as_slice());
    }
    if let Some(p) = args.partition {
        record = record.partition(p);
    }
    let delivered = producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| format!("cannot send to `{}` at {broker}: {e}", args.topic))?;
    Ok((delivered.partition, delivered.offset))
}

#[cfg(test)]
mod tests {
    use super::encode;
    use faust_actors::Codec;

    #[test]
    fn values_are_checked_and_keys_may_be_bare_text() {
        assert_eq!(
            encode("value", Codec::Json, "{\"a\": 1}", false).unwrap(),
            b"{\"a\":1}"
        );
        let err = encode("value", Codec::Json, "{\"a\": ", false).unwrap_err();
        assert!(err.starts_with("the value is not JSON"), "{err}");
        assert_eq!(
            encode("key", Codec::Json, "/home", true).unwrap(),
            b"\"/home\""
        );
        assert_eq!(
            encode("key", Codec::String, "/home", true).unwrap(),
            b"/home"
        );
        let packed = encode("value", Codec::Msgpack, "[1,2]", false).unwrap();
        assert_eq!(packed, [0x92, 1, 2]);
    }
}
