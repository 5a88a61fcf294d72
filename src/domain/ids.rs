//! Identifier newtypes. Tenants are UUIDv7 (time-ordered, so keyset pagination follows creation
//! order); keys are `key_`/`svc_` + ULID, which sort the same way and read well in logs.

use serde::{Deserialize, Serialize};
use std::fmt;
use ulid::Ulid;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct TenantId(pub Uuid);

impl TenantId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses the canonical hyphenated form; anything else is not a tenant id.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 36 {
            return None;
        }
        Uuid::parse_str(text).ok().map(Self)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which family an id belongs to: customer API keys or keyward's own service tokens.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum KeyKind {
    Customer,
    Service,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }

    fn id_prefix(self) -> &'static str {
        match self {
            KeyKind::Customer => "key_",
            KeyKind::Service => "svc_",
        }
    }
}

// A key's id: `key_`/`svc_` and a ULID, 30 characters, kept inline (no allocation; cloning it
// is a copy), since the verify cache holds a million of them. An id of another length read back
// from the database is kept as text. (Not a doc comment: it would become the schema's text.)
#[derive(Clone, ToSchema)]
#[schema(value_type = String, example = "key_01JDQ3W6Z8G7X2V9K4M5N6P7Q8")]
pub struct KeyId(IdText);

/// The length of every id keyward makes.
const ID_LEN: usize = 30;

#[derive(Clone)]
enum IdText {
    Inline([u8; ID_LEN]),
    Other(Box<str>),
}

impl KeyId {
    pub fn generate(kind: KeyKind) -> Self {
        Self::from_text(&format!("{}{}", kind.id_prefix(), Ulid::new()))
    }

    /// Accepts only the canonical form of an id of the given kind.
    pub fn parse(kind: KeyKind, text: &str) -> Option<Self> {
        let ulid = text.strip_prefix(kind.id_prefix())?;
        let parsed = Ulid::from_string(ulid).ok()?;
        (parsed.to_string() == ulid).then(|| Self::from_text(text))
    }

    /// Wraps an id read back from the database.
    pub fn from_trusted(text: String) -> Self {
        Self::from_text(&text)
    }

    fn from_text(text: &str) -> Self {
        match <[u8; ID_LEN]>::try_from(text.as_bytes()) {
            Ok(bytes) => KeyId(IdText::Inline(bytes)),
            Err(_) => KeyId(IdText::Other(text.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied whole from a `&str`, so always UTF-8.
            IdText::Inline(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
            IdText::Other(text) => text,
        }
    }
}

impl PartialEq for KeyId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for KeyId {}

impl std::hash::Hash for KeyId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for KeyId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(KeyId::from_text(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_round_trips_and_rejects_other_kinds() {
        let id = KeyId::generate(KeyKind::Customer);
        assert_eq!(KeyId::parse(KeyKind::Customer, id.as_str()), Some(id.clone()));
        assert_eq!(KeyId::parse(KeyKind::Service, id.as_str()), None);
        assert_eq!(KeyId::parse(KeyKind::Customer, "key_nope"), None);
        assert_eq!(KeyId::parse(KeyKind::Customer, &id.as_str().to_lowercase()), None);
    }

    #[test]
    fn an_id_keyward_makes_is_kept_inline_and_another_as_text() {
        let made = KeyId::generate(KeyKind::Service);
        assert!(matches!(made.0, IdText::Inline(_)));
        let other = KeyId::from_trusted("key_legacy".to_owned());
        assert!(matches!(other.0, IdText::Other(_)));
        assert_eq!(other.as_str(), "key_legacy");
        assert_eq!(serde_json::to_value(&made).unwrap(), made.as_str());
        assert_eq!(serde_json::from_value::<KeyId>(made.as_str().into()).unwrap(), made);
        assert_eq!(std::mem::size_of::<KeyId>(), 32);
    }

    #[test]
    fn tenant_id_accepts_only_hyphenated_uuids() {
        let id = TenantId::generate();
        assert_eq!(TenantId::parse(&id.to_string()), Some(id));
        assert_eq!(TenantId::parse("1"), None);
        assert_eq!(TenantId::parse(&id.0.simple().to_string()), None);
    }
}
