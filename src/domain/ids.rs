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

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "key_01JDQ3W6Z8G7X2V9K4M5N6P7Q8")]
pub struct KeyId(String);

impl KeyId {
    pub fn generate(kind: KeyKind) -> Self {
        Self(format!("{}{}", kind.id_prefix(), Ulid::new()))
    }

    /// Accepts only the canonical form of an id of the given kind.
    pub fn parse(kind: KeyKind, text: &str) -> Option<Self> {
        let ulid = text.strip_prefix(kind.id_prefix())?;
        let parsed = Ulid::from_string(ulid).ok()?;
        (parsed.to_string() == ulid).then(|| Self(text.to_owned()))
    }

    /// Wraps an id read back from the database.
    pub fn from_trusted(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
    fn tenant_id_accepts_only_hyphenated_uuids() {
        let id = TenantId::generate();
        assert_eq!(TenantId::parse(&id.to_string()), Some(id));
        assert_eq!(TenantId::parse("1"), None);
        assert_eq!(TenantId::parse(&id.0.simple().to_string()), None);
    }
}
