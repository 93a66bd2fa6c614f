//! How a windowed table's entries are stored: the shard key ([`WKey`]: stream time, or one
//! window of one key) and value ([`Slot`]), and their bytes (see the layout in `windowed`).

use crate::model::codec::Codec;
use crate::model::error::{Error, Result};
use crate::model::names::STREAM_TIME_KEY;
use crate::state::shard::{ShardKey, ShardValue};
use crate::state::spec::{TableKey, TableValue};

const SIGN: u64 = 1 << 63;
const OPEN: u8 = 1;
/// The first byte of a closed window's stored value.
pub(crate) const CLOSED: u8 = 2;
/// The first byte of an open session's stored value.
pub(crate) const OPEN_SESSION: u8 = 3;
/// The first byte of a closed session's stored value (then its start, 8 bytes, then the value).
pub(crate) const CLOSED_SESSION: u8 = 4;

/// A windowed table's shard key: its stream time, or one window of one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum WKey<K> {
    StreamTime,
    Window(i64, K),
}

impl<K: TableKey> ShardKey for WKey<K> {
    fn encode_key(&self, codec: Codec) -> Result<Vec<u8>> {
        match self {
            WKey::StreamTime => Ok(STREAM_TIME_KEY.to_vec()),
            WKey::Window(start, key) => {
                let mut out = vec![1];
                out.extend(((*start as u64) ^ SIGN).to_be_bytes());
                out.extend(codec.encode("table key", key)?);
                Ok(out)
            }
        }
    }

    fn decode_key(codec: Codec, bytes: &[u8]) -> Result<Self> {
        if bytes == STREAM_TIME_KEY {
            return Ok(WKey::StreamTime);
        }
        match window_key(bytes) {
            Some((start, key)) => Ok(WKey::Window(start, codec.decode("table key", key)?)),
            None => Err(not_windowed("key", codec)),
        }
    }

    fn counted(&self) -> bool {
        matches!(self, WKey::Window(..))
    }

    fn written_last(&self) -> bool {
        matches!(self, WKey::StreamTime)
    }
}

/// A window entry's start and key bytes, from its store key after the table's prefix (`None`:
/// not a window entry).
pub(crate) fn window_key(bytes: &[u8]) -> Option<(i64, &[u8])> {
    match bytes.split_first() {
        Some((1, rest)) if rest.len() >= 8 => {
            let (time, key) = rest.split_at(8);
            let raw = u64::from_be_bytes(time.try_into().ok()?);
            Some(((raw ^ SIGN) as i64, key))
        }
        _ => None,
    }
}

fn not_windowed(what: &str, codec: Codec) -> Error {
    Error::Decode {
        what: "windowed table entry",
        codec: codec.name(),
        reason: format!(
            "this {what} was not written by a windowed table (was the table plain before?)"
        ),
    }
}

/// A windowed table's shard value: its stream time, one window's value and state, or one
/// session's (a session is stored under its last event time, and keeps its start here).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Slot<V> {
    StreamTime(i64),
    Window { value: V, closed: bool },
    Session { start: i64, value: V, closed: bool },
}

impl<V> Slot<V> {
    /// A window's or session's value and whether it closed; `None` for stream time.
    pub(crate) fn into_window(self) -> Option<(V, bool)> {
        match self {
            Slot::Window { value, closed } | Slot::Session { value, closed, .. } => {
                Some((value, closed))
            }
            Slot::StreamTime(_) => None,
        }
    }
}

impl<V: TableValue> ShardValue for Slot<V> {
    fn encode_value(&self, codec: Codec) -> Result<Vec<u8>> {
        match self {
            Slot::StreamTime(t) => Ok([[0].as_slice(), &t.to_be_bytes()].concat()),
            Slot::Window { value, closed } => {
                let mut out = vec![if *closed { CLOSED } else { OPEN }];
                out.extend(codec.encode("table value", value)?);
                Ok(out)
            }
            Slot::Session {
                start,
                value,
                closed,
            } => {
                let mut out = vec![if *closed {
                    CLOSED_SESSION
                } else {
                    OPEN_SESSION
                }];
                out.extend(start.to_be_bytes());
                out.extend(codec.encode("table value", value)?);
                Ok(out)
            }
        }
    }

    fn decode_value(codec: Codec, bytes: &[u8]) -> Result<Self> {
        match bytes.split_first() {
            Some((0, t)) if t.len() == 8 => Ok(Slot::StreamTime(i64::from_be_bytes(
                t.try_into().unwrap_or_default(),
            ))),
            Some((&state, value)) if state == OPEN || state == CLOSED => Ok(Slot::Window {
                value: codec.decode("table value", value)?,
                closed: state == CLOSED,
            }),
            Some((&state, rest))
                if (state == OPEN_SESSION || state == CLOSED_SESSION) && rest.len() >= 8 =>
            {
                let (start, value) = rest.split_at(8);
                Ok(Slot::Session {
                    start: i64::from_be_bytes(start.try_into().unwrap_or_default()),
                    value: codec.decode("table value", value)?,
                    closed: state == CLOSED_SESSION,
                })
            }
            _ => Err(not_windowed("value", codec)),
        }
    }
}
