//! Codecs: how keys and values of topics and tables turn into bytes and back.
//!
//! Every topic and table names a codec for its keys and one for its values. The bytes a table
//! writes to its store are the same bytes a changelog carries, so any Kafka tool can read them.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A serialization format for keys or values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Json => "json",
            Codec::Msgpack => "msgpack",
            Codec::String => "string",
        })
    }
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
        };
        res.map_err(|reason| Error::Encode {
            what,
            codec: self,
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
        };
        res.map_err(|reason| Error::Decode {
            what,
            codec: self,
            reason,
        })
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
