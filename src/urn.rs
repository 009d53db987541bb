//! DataHub urns (`urn:li:<entity type>:<id>`), validated once at the edge.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const PREFIX: &str = "urn:li:";
const MAX_LEN: usize = 1024;

/// The entity type of user urns, the only actors tokens are issued for.
pub(crate) const CORP_USER: &str = "corpuser";

/// A syntactically valid DataHub urn such as `urn:li:corpuser:datahub`.
///
/// Parsing checks the `urn:li:` prefix, a non-empty alphanumeric entity type,
/// a non-empty id, no control characters and at most 1024 bytes.
///
/// Clones share the text, so the many records naming one user can share
/// one copy of its urn.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Urn {
    text: Arc<str>,
    // Byte offset of the `:` between entity type and id.
    type_end: usize,
}

/// `Urn("urn:li:corpuser:datahub")`: the text is all there is to see.
impl fmt::Debug for Urn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Urn").field(&&*self.text).finish()
    }
}

impl Urn {
    /// Parses and validates `text`.
    pub fn parse(text: impl AsRef<str>) -> Result<Self> {
        // Borrowed: the shared text is then the only copy made (an owned
        // `String` would be copied into the `Arc` all the same).
        let text = text.as_ref();
        let invalid = |why: &str| Error::invalid_input(format!("invalid urn {text:?}: {why}"));
        if text.len() > MAX_LEN {
            return Err(Error::invalid_input(format!(
                "invalid urn: longer than {MAX_LEN} bytes"
            )));
        }
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Err(invalid("must start with \"urn:li:\""));
        };
        let Some(colon) = rest.find(':') else {
            return Err(invalid("expected urn:li:<entity type>:<id>"));
        };
        let (entity_type, id) = (&rest[..colon], &rest[colon + 1..]);
        if entity_type.is_empty() || !entity_type.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid("the entity type must be non-empty and alphanumeric"));
        }
        if id.is_empty() {
            return Err(invalid("the id is empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("contains control characters"));
        }
        let type_end = PREFIX.len() + colon;
        Ok(Urn {
            text: text.into(),
            type_end,
        })
    }

    /// The urn of the DataHub user with this id: `urn:li:corpuser:<id>`.
    pub fn corp_user(id: &str) -> Result<Self> {
        // Every validation builds one, so skip the checks the fixed prefix
        // passes anyway, and assemble short urns on the stack so the shared
        // text is the only allocation; anything doubtful goes through `parse`
        // for its error.
        let len = PREFIX.len() + CORP_USER.len() + 1 + id.len();
        if id.is_empty() || len > MAX_LEN || id.chars().any(char::is_control) {
            return Self::parse(format!("{PREFIX}{CORP_USER}:{id}"));
        }
        let mut buf = [0u8; 128];
        let text: Arc<str> = match buf.get_mut(..len) {
            Some(out) => {
                let mut at = 0;
                for part in [PREFIX, CORP_USER, ":", id] {
                    out[at..at + part.len()].copy_from_slice(part.as_bytes());
                    at += part.len();
                }
                // Whole `str`s joined: always UTF-8.
                match std::str::from_utf8(out) {
                    Ok(text) => text.into(),
                    Err(_) => return Self::parse(format!("{PREFIX}{CORP_USER}:{id}")),
                }
            }
            None => format!("{PREFIX}{CORP_USER}:{id}").into(),
        };
        Ok(Urn {
            text,
            type_end: PREFIX.len() + CORP_USER.len(),
        })
    }

    /// The entity type, e.g. `corpuser`.
    pub fn entity_type(&self) -> &str {
        &self.text[PREFIX.len()..self.type_end]
    }

    /// The id after the entity type, e.g. `datahub` for `urn:li:corpuser:datahub`.
    pub fn id(&self) -> &str {
        &self.text[self.type_end + 1..]
    }

    /// Whether this is a user (`corpuser`) urn.
    pub fn is_corp_user(&self) -> bool {
        self.entity_type() == CORP_USER
    }

    /// Whether this urn can be a caller: a user urn whose id has no white
    /// space at either end (DataHub would read such an id as another user).
    /// Only such urns act, own tokens or hold privileges.
    ///
    /// ```
    /// use datahub_access_tokens::Urn;
    ///
    /// assert!(Urn::parse("urn:li:corpuser:alice").unwrap().is_user());
    /// assert!(!Urn::parse("urn:li:corpuser: alice").unwrap().is_user());
    /// assert!(!Urn::parse("urn:li:corpGroup:admins").unwrap().is_user());
    /// ```
    pub fn is_user(&self) -> bool {
        self.is_corp_user() && !is_padded(self.id())
    }

    /// The whole urn.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Whether a user id has white space at its start or end. DataHub's JWT
/// library trims claim values, so a token carrying such an id would act
/// there as another user: such ids are refused wherever they would become
/// an actor (a token's `actorId`, a create's `actorUrn`, a policy's key).
pub(crate) fn is_padded(id: &str) -> bool {
    id.trim() != id
}

impl fmt::Display for Urn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Urn {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Urn {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(s)
    }
}

impl From<Urn> for String {
    fn from(urn: Urn) -> String {
        String::from(&*urn.text)
    }
}

impl AsRef<str> for Urn {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts() {
        let urn = Urn::parse("urn:li:corpuser:jdoe@example.com").unwrap();
        assert_eq!(urn.entity_type(), "corpuser");
        assert_eq!(urn.id(), "jdoe@example.com");
        assert!(urn.is_corp_user());
        assert_eq!(
            Urn::corp_user("datahub").unwrap().as_str(),
            "urn:li:corpuser:datahub"
        );
        // Ids may themselves contain colons (e.g. nested urns).
        assert_eq!(
            Urn::parse("urn:li:dataset:(urn:li:x:y,z)").unwrap().id(),
            "(urn:li:x:y,z)"
        );
        assert_eq!(format!("{urn:?}"), r#"Urn("urn:li:corpuser:jdoe@example.com")"#);
    }

    #[test]
    fn corp_user_agrees_with_parse() {
        let long = "x".repeat(1100);
        for id in [
            "datahub",
            "a:b",
            "jdoe@example.com",
            "",
            "a\nb",
            "\u{85}",
            "é",
            long.as_str(),
        ] {
            let built = Urn::corp_user(id).map_err(|e| e.to_string());
            let parsed = Urn::parse(format!("urn:li:corpuser:{id}")).map_err(|e| e.to_string());
            assert_eq!(built, parsed, "{id:?}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "datahub",
            "urn:li:",
            "urn:li:corpuser",
            "urn:li:corpuser:",
            "urn:li::datahub",
            "urn:li:corp user:x",
            "urn:xx:corpuser:x",
            "urn:li:corpuser:a\nb",
        ] {
            let err = Urn::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid urn"), "{bad:?}: {err}");
        }
        assert!(Urn::parse(format!("urn:li:corpuser:{}", "x".repeat(2000))).is_err());
    }

    #[test]
    fn serde_validates() {
        let urn: Urn = serde_json::from_str("\"urn:li:corpuser:a\"").unwrap();
        assert_eq!(serde_json::to_string(&urn).unwrap(), "\"urn:li:corpuser:a\"");
        assert!(serde_json::from_str::<Urn>("\"nope\"").is_err());
    }
}
