//! What a type asks its deserializer for ([`Shape`]), found without any data by a probe
//! deserializer, so that start-up can refuse a codec that can never decode an agent's key or
//! value type ([`Codec::cannot_decode`]): a struct on a `string` codec, a number on `raw`.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};

use crate::model::codec::Codec;

/// The first thing a type asks a deserializer for (newtypes and options seen through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `bool`.
    Bool,
    /// An integer.
    Int,
    /// A float.
    Float,
    /// A `char`.
    Char,
    /// A string.
    Str,
    /// Bytes.
    Bytes,
    /// `()` or a unit struct.
    Unit,
    /// A sequence of the inner shape.
    Seq(Box<Shape>),
    /// A tuple or tuple struct.
    Tuple,
    /// A map.
    Map,
    /// A struct, by name.
    Struct(&'static str),
    /// An enum, by name.
    Enum(&'static str),
    /// Decided by the data (`deserialize_any`, such as `serde_json::Value` or an untagged
    /// enum): nothing can be said before.
    Unknown,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Bool => f.write_str("a bool"),
            Shape::Int => f.write_str("an integer"),
            Shape::Float => f.write_str("a float"),
            Shape::Char => f.write_str("a char"),
            Shape::Str => f.write_str("a string"),
            Shape::Bytes => f.write_str("bytes"),
            Shape::Unit => f.write_str("a unit"),
            Shape::Seq(inner) => write!(f, "a sequence of {inner}"),
            Shape::Tuple => f.write_str("a tuple"),
            Shape::Map => f.write_str("a map"),
            Shape::Struct(name) => write!(f, "struct `{name}`"),
            Shape::Enum(name) => write!(f, "enum `{name}`"),
            Shape::Unknown => f.write_str("a shape decided by the data"),
        }
    }
}

/// The shape of `T`.
pub fn shape_of<T: DeserializeOwned>() -> Shape {
    match T::deserialize(Probe) {
        Err(Found(shape)) => shape,
        // A type that needs nothing (never for the types agents use).
        Ok(_) => Shape::Unknown,
    }
}

impl Codec {
    /// Why this codec can never decode a type of `shape`, if so. Only sure refusals: a shape
    /// the codec might decode (an enum on `string`, say) passes.
    pub fn cannot_decode(self, shape: &Shape) -> Option<String> {
        let refused = match self {
            // serde_plain: scalars, strings, unit variants; nothing with parts.
            Codec::String => matches!(
                shape,
                Shape::Seq(_) | Shape::Tuple | Shape::Map | Shape::Struct(_) | Shape::Bytes
            ),
            // The bytes as they are: strings, byte buffers, sequences of bytes.
            Codec::Raw => !matches!(
                shape,
                Shape::Str | Shape::Bytes | Shape::Seq(_) | Shape::Unknown
            ),
            Codec::Json | Codec::Msgpack | Codec::Custom(_) => false,
        };
        refused.then(|| {
            let fits = match self {
                Codec::String => "strings, numbers, booleans and unit enum variants",
                _ => "strings and bytes",
            };
            format!(
                "the `{}` codec decodes only {fits}, and the type is {shape}; use `json` or \
                 `msgpack`, or change the type",
                self.name()
            )
        })
    }
}

/// The probe's one "error": what was asked for.
#[derive(Debug)]
struct Found(Shape);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for Found {}

impl de::Error for Found {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Found(Shape::Unknown)
    }
}

struct Probe;

macro_rules! found {
    ($($method:ident => $shape:expr),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found($shape))
        })*
    };
}

impl<'de> de::Deserializer<'de> for Probe {
    type Error = Found;

    found! {
        deserialize_any => Shape::Unknown,
        deserialize_bool => Shape::Bool,
        deserialize_i8 => Shape::Int, deserialize_i16 => Shape::Int,
        deserialize_i32 => Shape::Int, deserialize_i64 => Shape::Int,
        deserialize_i128 => Shape::Int, deserialize_u8 => Shape::Int,
        deserialize_u16 => Shape::Int, deserialize_u32 => Shape::Int,
        deserialize_u64 => Shape::Int, deserialize_u128 => Shape::Int,
        deserialize_f32 => Shape::Float, deserialize_f64 => Shape::Float,
        deserialize_char => Shape::Char,
        deserialize_str => Shape::Str, deserialize_string => Shape::Str,
        deserialize_identifier => Shape::Str,
        deserialize_bytes => Shape::Bytes, deserialize_byte_buf => Shape::Bytes,
        deserialize_unit => Shape::Unit,
        deserialize_map => Shape::Map,
        deserialize_ignored_any => Shape::Unknown,
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Found> {
        v.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Found> {
        Err(Found(Shape::Unit))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Found> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Found> {
        match v.visit_seq(ProbeSeq) {
            Err(Found(inner)) => Err(Found(Shape::Seq(Box::new(inner)))),
            Ok(_) => Err(Found(Shape::Seq(Box::new(Shape::Unknown)))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Found> {
        Err(Found(Shape::Tuple))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Found> {
        Err(Found(Shape::Tuple))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Found> {
        Err(Found(Shape::Struct(name)))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Found> {
        Err(Found(Shape::Enum(name)))
    }
}

/// A sequence whose first element is probed.
struct ProbeSeq;

impl<'de> SeqAccess<'de> for ProbeSeq {
    type Error = Found;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Found> {
        seed.deserialize(Probe).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct View {
        _url: String,
    }

    #[derive(Deserialize)]
    struct UserId(#[allow(dead_code)] String);

    #[derive(Deserialize)]
    enum Color {
        Red,
    }

    #[test]
    fn shapes_are_what_the_types_ask_for() {
        assert_eq!(shape_of::<String>(), Shape::Str);
        assert_eq!(shape_of::<u64>(), Shape::Int);
        assert_eq!(shape_of::<Option<String>>(), Shape::Str);
        assert_eq!(shape_of::<UserId>(), Shape::Str);
        assert_eq!(shape_of::<View>(), Shape::Struct("View"));
        assert_eq!(shape_of::<Vec<u8>>(), Shape::Seq(Box::new(Shape::Int)));
        assert_eq!(shape_of::<(u8, u8)>(), Shape::Tuple);
        assert_eq!(shape_of::<Color>(), Shape::Enum("Color"));
        assert_eq!(shape_of::<serde_json::Value>(), Shape::Unknown);
        assert_eq!(
            shape_of::<std::collections::HashMap<String, u64>>(),
            Shape::Map
        );
        let _ = Color::Red;
    }

    #[test]
    fn codecs_refuse_only_what_they_can_never_decode() {
        let refuses = |c: Codec, s: Shape| c.cannot_decode(&s).is_some();
        assert!(refuses(Codec::String, Shape::Struct("View")));
        assert!(refuses(Codec::String, Shape::Map));
        assert!(!refuses(Codec::String, Shape::Str));
        assert!(!refuses(Codec::String, Shape::Int));
        assert!(!refuses(Codec::String, Shape::Enum("Color")));
        assert!(refuses(Codec::Raw, Shape::Int));
        assert!(refuses(Codec::Raw, Shape::Struct("View")));
        assert!(!refuses(Codec::Raw, Shape::Str));
        assert!(!refuses(Codec::Raw, Shape::Seq(Box::new(Shape::Int))));
        assert!(!refuses(Codec::Json, Shape::Struct("View")));
        let why = Codec::String.cannot_decode(&Shape::Struct("View")).unwrap();
        assert!(why.contains("struct `View`"), "{why}");
    }

    #[test]
    fn every_type_the_probe_accepts_decodes_on_its_codec() {
        // The probe's verdicts against the codecs themselves.
        assert!(Codec::String.decode::<u64>("k", b"42").is_ok());
        assert!(Codec::String.decode::<UserId>("k", b"ann").is_ok());
        assert!(Codec::String.decode::<View>("k", b"x").is_err());
        assert!(Codec::Raw.decode::<Vec<u8>>("k", b"ab").is_ok());
        assert!(Codec::Raw.decode::<u64>("k", b"42").is_err());
    }
}
