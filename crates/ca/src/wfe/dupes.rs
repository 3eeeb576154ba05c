//! Refusing JSON objects with a member twice. RFC 8259 §4 leaves duplicate
//! names to the parser, and parsers disagree (first wins, last wins): a JWS
//! header with two `alg` members can mean one thing to the signer's library
//! and another to ours. RFC 7515 §4 says such a header MUST be rejected.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Ok when no object anywhere in `json` names a member twice. Nesting is
/// bounded by serde_json's recursion limit (128), so hostile depth is an
/// error, not a stack overflow.
pub(crate) fn check(json: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_any(NoDupes).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

struct NoDupes;

impl<'de> de::Deserialize<'de> for NoDupes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDupes)
    }
}

impl<'de> Visitor<'de> for NoDupes {
    type Value = NoDupes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDupes, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("member {key:?} appears twice")));
            }
            map.next_value::<NoDupes>()?;
        }
        Ok(NoDupes)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDupes, A::Error> {
        while seq.next_element::<NoDupes>()?.is_some() {}
        Ok(NoDupes)
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDupes, E> {
        Ok(NoDupes)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDupes, E> {
        Ok(NoDupes)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDupes, E> {
        Ok(NoDupes)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDupes, E> {
        Ok(NoDupes)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDupes, E> {
        Ok(NoDupes)
    }
    fn visit_unit<E>(self) -> Result<NoDupes, E> {
        Ok(NoDupes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_at_any_depth() {
        assert!(check(br#"{"alg":"ES256","kid":"k"}"#).is_ok());
        assert!(check(br#"{"alg":"ES256","alg":"none"}"#).is_err());
        assert!(check(br#"{"jwk":{"x":"1","x":"2"}}"#).is_err());
        assert!(check(br#"[{"a":1},{"a":1}]"#).is_ok());
        assert!(check(br#"{"a":1} trailing"#).is_err());
    }
}
