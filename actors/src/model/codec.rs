//! Codecs: how keys and values of topics and tables turn into bytes and back.
//!
//! Every topic and table names a codec for its keys and one for its values: `json` (the
//! default), `msgpack`, `string`, `raw`, or a codec an app registered with [`register_codec`].
//! The bytes a table writes to its store are the same bytes a changelog carries, so any Kafka
//! tool can read them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::error::{Error, Result};

/// A serialization format for keys or values. Named in config by its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON text (`serde_json`). The default: readable by every tool.
    #[default]
    Json,
    /// MessagePack (`rmp-serde`), structs as maps: compact and self-describing.
    Msgpack,
    /// Plain UTF-8 text: strings, numbers, booleans and unit enum variants as their text form
    /// (`serde_plain`). The usual choice for record keys such as a URL or a user id.
    String,
    /// The bytes as they are: decodes into `String` (UTF-8 checked), `Vec<u8>` or
    /// `serde_bytes`-style byte buffers; encodes strings and byte sequences. For payloads an
    /// agent forwards untouched or parses itself.
    Raw,
    /// A codec registered by the app with [`register_codec`], by name.
    Custom(&'static str),
}

impl Codec {
    /// The codec called `name`: a built-in one or one registered with [`register_codec`].
    pub fn named(name: &str) -> Option<Codec> {
        Some(match name {
            "json" => Codec::Json,
            "msgpack" => Codec::Msgpack,
            "string" => Codec::String,
            "raw" => Codec::Raw,
            other => Codec::Custom(lookup(other)?.0),
        })
    }

    /// The codec's name, as config files spell it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Msgpack => "msgpack",
            Codec::String => "string",
            Codec::Raw => "raw",
            Codec::Custom(name) => name,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Codec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Codec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Codec::named(&name).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown codec `{name}`: expected json, msgpack, string, raw{}",
                registered_names()
                    .iter()
                    .map(|n| format!(", {n}"))
                    .collect::<String>()
            ))
        })
    }
}

/// A codec an app brings (CBOR, a schema-registry framing, compressed JSON...). It converts
/// between bytes and a JSON value, which then converts to and from the agent's serde types.
pub trait CustomCodec: Send + Sync + 'static {
    /// Bytes for `value`.
    ///
    /// # Errors
    /// A message saying why the value has no form in this codec.
    fn encode(&self, value: serde_json::Value) -> std::result::Result<Vec<u8>, String>;

    /// The value in `bytes`.
    ///
    /// # Errors
    /// A message saying what is wrong with the bytes.
    fn decode(&self, bytes: &[u8]) -> std::result::Result<serde_json::Value, String>;
}

type Registry = RwLock<Vec<(&'static str, Arc<dyn CustomCodec>)>>;

fn registry() -> &'static Registry {
    static CODECS: OnceLock<Registry> = OnceLock::new();
    CODECS.get_or_init(|| RwLock::new(Vec::new()))
}

fn lookup(name: &str) -> Option<(&'static str, Arc<dyn CustomCodec>)> {
    let codecs = registry().read().unwrap_or_else(|e| e.into_inner());
    codecs.iter().find(|(n, _)| *n == name).cloned()
}

fn registered_names() -> Vec<&'static str> {
    let codecs = registry().read().unwrap_or_else(|e| e.into_inner());
    codecs.iter().map(|(n, _)| *n).collect()
}

/// Registers `codec` under `name` for the whole process, so that config files and code can
/// name it like a built-in one (like Faust's `codecs.register`). Registering a name again
/// replaces the codec; the built-in names cannot be taken.
///
/// # Errors
/// [`Error::Codec`] when `name` is a built-in codec's name or empty.
pub fn register_codec(name: &str, codec: impl CustomCodec) -> Result<Codec> {
    if name.is_empty() || ["json", "msgpack", "string", "raw"].contains(&name) {
        return Err(Error::Codec {
            name: name.into(),
            reason: "is a built-in codec's name (or empty)".into(),
        });
    }
    let mut codecs = registry().write().unwrap_or_else(|e| e.into_inner());
    let codec: Arc<dyn CustomCodec> = Arc::new(codec);
    if let Some(entry) = codecs.iter_mut().find(|(n, _)| *n == name) {
        entry.1 = codec;
        return Ok(Codec::Custom(entry.0));
    }
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    codecs.push((name, codec));
    Ok(Codec::Custom(name))
}

impl Codec {
    /// Encodes `value`; `what` names it in the error ("key", "table value", ...).
    ///
    /// # Errors
    /// [`Error::Encode`] when the value has no form in this codec (a struct under `string`).
    pub fn encode<T: Serialize + ?Sized>(self, what: &'static str, value: &T) -> Result<Vec<u8>> {
        let res = match self {
            Codec::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
            Codec::Msgpack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
            Codec::String => serde_plain::to_string(&value)
                .map(String::into_bytes)
                .map_err(|e| e.to_string()),
            Codec::Raw => raw_bytes(value),
            Codec::Custom(name) => match lookup(name) {
                Some((_, c)) => serde_json::to_value(value)
                    .map_err(|e| e.to_string())
                    .and_then(|v| c.encode(v)),
                None => Err(format!("codec `{name}` is not registered")),
            },
        };
        res.map_err(|reason| Error::Encode {
            what,
            codec: self.name(),
            reason,
        })
    }

    /// Decodes `bytes` into a `T`; `what` names it in the error.
    ///
    /// # Errors
    /// [`Error::Decode`] with the codec's message when the bytes are not a valid `T`.
    pub fn decode<T: DeserializeOwned>(self, what: &'static str, bytes: &[u8]) -> Result<T> {
        let res = match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::Msgpack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::String => match std::str::from_utf8(bytes) {
                Ok(text) => serde_plain::from_str(text).map_err(|e| e.to_string()),
                Err(e) => Err(format!("not UTF-8: {e}")),
            },
            Codec::Raw => T::deserialize(RawDeserializer(bytes)).map_err(|e| e.to_string()),
            Codec::Custom(name) => match lookup(name) {
                Some((_, c)) => c
                    .decode(bytes)
                    .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string())),
                None => Err(format!("codec `{name}` is not registered")),
            },
        };
        res.map_err(|reason| Error::Decode {
            what,
            codec: self.name(),
            reason,
        })
    }
}

/// The bytes of a value under the raw codec: a string's UTF-8, or a sequence of bytes.
fn raw_bytes<T: Serialize + ?Sized>(value: &T) -> std::result::Result<Vec<u8>, String> {
    match serde_json::to_value(value).map_err(|e| e.to_string())? {
        serde_json::Value::String(s) => Ok(s.into_bytes()),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| "the raw codec holds bytes or text, not a list of other values".into()),
        other => Err(format!(
            "the raw codec holds bytes or text, not {}",
            match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                _ => "a map or struct",
            }
        )),
    }
}

/// Hands raw bytes to a type as bytes, as a sequence of `u8`, or as text when it asks for it.
struct RawDeserializer<'a>(&'a [u8]);

impl<'de> Deserializer<'de> for RawDeserializer<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, Self::Error> {
        v.visit_bytes(self.0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, Self::Error> {
        match std::str::from_utf8(self.0) {
            Ok(text) => v.visit_str(text),
            Err(e) => Err(de::Error::custom(format!("not UTF-8: {e}"))),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(
        self,
        v: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        self.deserialize_str(v)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, Self::Error> {
        v.visit_seq(de::value::SeqDeserializer::new(
            self.0.iter().map(|b| b.into_deserializer()),
        ))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf option unit
        unit_struct tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The key and value codecs of every topic the app knows; unknown topics get the defaults.
#[derive(Debug, Clone, Default)]
pub struct TopicCodecs {
    map: HashMap<String, (Codec, Codec)>,
}

impl TopicCodecs {
    /// Sets the codecs of `topic`.
    pub fn insert(&mut self, topic: &str, key: Codec, value: Codec) {
        self.map.insert(topic.to_owned(), (key, value));
    }

    /// The (key, value) codecs of `topic`: JSON for both when the topic is not configured.
    pub fn get(&self, topic: &str) -> (Codec, Codec) {
        self.map
            .get(topic)
            .copied()
            .unwrap_or((Codec::Json, Codec::Json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct View {
        url: String,
        ts: i64,
    }

    #[test]
    fn every_codec_round_trips_what_it_can_hold() {
        let v = View {
            url: "/a".into(),
            ts: 7,
        };
        for codec in [Codec::Json, Codec::Msgpack] {
            assert_eq!(Codec::named(codec.name()), Some(codec));
            let bytes = codec.encode("value", &v).unwrap();
            assert_eq!(codec.decode::<View>("value", &bytes).unwrap(), v);
        }
        let bytes = Codec::String.encode("key", "/home").unwrap();
        assert_eq!(bytes, b"/home");
        assert_eq!(
            Codec::String.decode::<String>("key", &bytes).unwrap(),
            "/home"
        );
        assert_eq!(Codec::String.decode::<u64>("key", b"42").unwrap(), 42);
    }

    #[test]
    fn raw_holds_bytes_and_text() {
        let bytes = Codec::Raw.encode("value", &vec![0u8, 255, 7]).unwrap();
        assert_eq!(bytes, [0, 255, 7]);
        assert_eq!(
            Codec::Raw.decode::<Vec<u8>>("value", &bytes).unwrap(),
            [0, 255, 7]
        );
        assert_eq!(Codec::Raw.encode("key", "/home").unwrap(), b"/home");
        assert_eq!(Codec::Raw.decode::<String>("key", b"/x").unwrap(), "/x");
        let err = Codec::Raw.decode::<String>("key", &[0xff]).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        let err = Codec::Raw.encode(
            "value",
            &View {
                url: "x".into(),
                ts: 1,
            },
        );
        assert!(err.unwrap_err().to_string().contains("bytes or text"));
    }

    /// A codec as an app would bring one: JSON behind a one-byte format marker.
    struct Framed;
    impl CustomCodec for Framed {
        fn encode(&self, value: serde_json::Value) -> std::result::Result<Vec<u8>, String> {
            let mut out = vec![0x2a];
            serde_json::to_writer(&mut out, &value).map_err(|e| e.to_string())?;
            Ok(out)
        }
        fn decode(&self, bytes: &[u8]) -> std::result::Result<serde_json::Value, String> {
            match bytes.split_first() {
                Some((0x2a, rest)) => serde_json::from_slice(rest).map_err(|e| e.to_string()),
                _ => Err("no 0x2a marker".into()),
            }
        }
    }

    #[test]
    fn a_registered_codec_is_named_like_a_built_in_one() {
        let codec = register_codec("framed", Framed).unwrap();
        assert_eq!(Codec::named("framed"), Some(codec));
        let v = View {
            url: "/a".into(),
            ts: 7,
        };
        let bytes = codec.encode("value", &v).unwrap();
        assert_eq!(bytes[0], 0x2a);
        assert_eq!(codec.decode::<View>("value", &bytes).unwrap(), v);
        let err = codec.decode::<View>("value", b"{}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot decode value with the framed codec: no 0x2a marker"
        );
        let parsed: Codec = serde_json::from_str("\"framed\"").unwrap();
        assert_eq!(parsed, codec);
        let unknown = serde_json::from_str::<Codec>("\"avro\"").unwrap_err();
        assert!(
            unknown.to_string().contains("unknown codec `avro`"),
            "{unknown}"
        );
        assert!(register_codec("json", Framed).is_err());
    }

    #[test]
    fn bad_bytes_give_an_error_naming_codec_and_cause() {
        let err = Codec::Json
            .decode::<View>("value", b"{\"url\":")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot decode value with the json codec"),
            "{text}"
        );
        let err = Codec::String
            .decode::<String>("key", &[0xff, 0xfe])
            .unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        let err = Codec::String
            .encode(
                "key",
                &View {
                    url: "x".into(),
                    ts: 1,
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("string codec"), "{err}");
    }
}
