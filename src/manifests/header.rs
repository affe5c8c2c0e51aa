//! What a document is (its `apiVersion`, `kind` and name), read without building the rest of
//! it: the loader decides from this whether to build the object at all, so a large document of
//! a kind vane skips never becomes a tree of values.

use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;

/// What a document is, read without building the rest of it (see [`Skim`]).
#[derive(Debug, PartialEq)]
pub(super) enum Header {
    /// An empty document (only comments, or `null`).
    Empty,
    /// A mapping; `api_version` and `kind` are empty when missing or not strings.
    Object {
        api_version: String,
        kind: String,
        name: Option<String>,
    },
    /// A sequence or a scalar.
    NotAnObject,
}

impl Header {
    /// The header of an already parsed value (an item of a List).
    pub(super) fn of(value: &Value) -> Self {
        let text = |field: &str| value.get(field).and_then(Value::as_str).unwrap_or_default();
        match value {
            Value::Null => Header::Empty,
            Value::Mapping(_) => Header::Object {
                api_version: text("apiVersion").to_owned(),
                kind: text("kind").to_owned(),
                name: value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
            _ => Header::NotAnObject,
        }
    }
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Skim::Document.deserialize(deserializer)? {
            Skimmed::Empty => Header::Empty,
            Skimmed::Fields {
                api_version,
                kind,
                name,
            } => Header::Object {
                api_version,
                kind,
                name,
            },
            Skimmed::Text(_) | Skimmed::Other => Header::NotAnObject,
        })
    }
}

/// Reads the parts of a document that say what it is, skipping everything else unbuilt: at
/// the top, `apiVersion`, `kind` and `metadata`; in `metadata`, `name`; those as strings.
#[derive(Clone, Copy, PartialEq)]
enum Skim {
    Document,
    Metadata,
    Field,
}

enum Skimmed {
    Empty,
    Text(String),
    /// A mapping at the top or `metadata` level, with the fields read at that level.
    Fields {
        api_version: String,
        kind: String,
        name: Option<String>,
    },
    Other,
}

impl Skimmed {
    fn into_text(self) -> Option<String> {
        match self {
            Skimmed::Text(text) => Some(text),
            _ => None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Skim {
    type Value = Skimmed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Skimmed, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skim {
    type Value = Skimmed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skimmed, A::Error> {
        if self == Skim::Field {
            return IgnoredAny.visit_map(map).map(|_| Skimmed::Other);
        }
        let (mut api_version, mut kind, mut name) = (None, None, None);
        while let Some(key) = map.next_key_seed(Skim::Field)? {
            match (self, key.into_text().as_deref()) {
                (Skim::Document, Some("apiVersion")) => {
                    api_version = map.next_value_seed(Skim::Field)?.into_text();
                }
                (Skim::Document, Some("kind")) => {
                    kind = map.next_value_seed(Skim::Field)?.into_text();
                }
                (Skim::Document, Some("metadata")) => {
                    if let Skimmed::Fields { name: found, .. } =
                        map.next_value_seed(Skim::Metadata)?
                    {
                        name = found;
                    }
                }
                (Skim::Metadata, Some("name")) => {
                    name = map.next_value_seed(Skim::Field)?.into_text();
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Skimmed::Fields {
            api_version: api_version.unwrap_or_default(),
            kind: kind.unwrap_or_default(),
            name,
        })
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Skimmed, E> {
        Ok(Skimmed::Text(text.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Skimmed, E> {
        Ok(Skimmed::Empty)
    }

    fn visit_none<E: de::Error>(self) -> Result<Skimmed, E> {
        Ok(Skimmed::Empty)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Skimmed, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Skimmed::Other)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Skimmed, A::Error> {
        IgnoredAny.visit_enum(data).map(|_| Skimmed::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skimmed, E> {
        Ok(Skimmed::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skimmed, E> {
        Ok(Skimmed::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skimmed, E> {
        Ok(Skimmed::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skimmed, E> {
        Ok(Skimmed::Other)
    }
}
