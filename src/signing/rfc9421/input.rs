//! `Signature-Input` members: the covered components and the signature parameters, checked
//! against RFC 9421's rules for identifiers and parameter types.

use super::super::error::SchemeError;
use super::super::sfv::{self, BareItem, InnerList, Item, Member, Parameters};

const DERIVED: [&str; 9] = [
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@request-target",
    "@path",
    "@query",
    "@query-param",
    "@status",
];

/// One covered component: a field name (`content-type`) or a derived one (`@method`), with its
/// parameters (`;name="..."`, `;key="..."`, `;sf`, `;bs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub params: Parameters,
}

impl Component {
    pub fn new(name: &str) -> Self {
        Component {
            name: name.to_owned(),
            params: Vec::new(),
        }
    }

    /// `"@query-param";name="..."` for an already encoded parameter name.
    pub fn query_param(encoded_name: &str) -> Self {
        Component {
            name: "@query-param".to_owned(),
            params: vec![("name".to_owned(), BareItem::String(encoded_name.to_owned()))],
        }
    }

    pub(super) fn to_item(&self) -> Item {
        Item {
            bare: BareItem::String(self.name.clone()),
            params: self.params.clone(),
        }
    }

    pub(super) fn flag(&self, key: &str) -> bool {
        sfv::param(&self.params, key).is_some()
    }

    pub(super) fn string_param(&self, key: &str) -> Option<&str> {
        match sfv::param(&self.params, key) {
            Some(BareItem::String(s)) => Some(s),
            _ => None,
        }
    }

    fn from_item(item: &Item) -> Result<Self, SchemeError> {
        let BareItem::String(name) = &item.bare else {
            return Err(SchemeError::Malformed("a covered component must be a string"));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(SchemeError::Malformed("component names are lower-case"));
        }
        if name.starts_with('@') && !DERIVED.contains(&name.as_str()) {
            return Err(SchemeError::Malformed("unknown derived component"));
        }
        for (key, value) in &item.params {
            let ok = match key.as_str() {
                "sf" | "bs" | "req" | "tr" => *value == BareItem::Boolean(true),
                "key" | "name" => matches!(value, BareItem::String(_)),
                _ => false,
            };
            if !ok {
                return Err(SchemeError::Malformed("unknown component parameter"));
            }
        }
        let component = Component {
            name: name.clone(),
            params: item.params.clone(),
        };
        let derived = name.starts_with('@');
        let name_param = component.flag("name");
        if name_param != (name == "@query-param")
            || (derived && (component.flag("sf") || component.flag("key") || component.flag("bs")))
            || (component.flag("bs") && (component.flag("sf") || component.flag("key")))
        {
            return Err(SchemeError::Malformed("component parameters do not fit the component"));
        }
        Ok(component)
    }
}

/// What one signature covers and its parameters: one `Signature-Input` member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureInput {
    pub components: Vec<Component>,
    pub params: Parameters,
}

impl SignatureInput {
    pub fn from_member(member: &Member) -> Result<Self, SchemeError> {
        let Member::InnerList(list) = member else {
            return Err(SchemeError::Malformed("a Signature-Input member must be an inner list"));
        };
        let mut components: Vec<Component> = Vec::with_capacity(list.items.len());
        for item in &list.items {
            let component = Component::from_item(item)?;
            if components.contains(&component) {
                return Err(SchemeError::Malformed("a component is covered twice"));
            }
            components.push(component);
        }
        for (key, value) in &list.params {
            let ok = match key.as_str() {
                "created" | "expires" => matches!(value, BareItem::Integer(_)),
                "keyid" | "alg" | "nonce" | "tag" => matches!(value, BareItem::String(_)),
                // Unknown parameters are signed like the others and otherwise ignored.
                _ => true,
            };
            if !ok {
                return Err(SchemeError::Malformed("signature parameter of the wrong type"));
            }
        }
        Ok(SignatureInput {
            components,
            params: list.params.clone(),
        })
    }

    fn to_inner_list(&self) -> InnerList {
        InnerList {
            items: self.components.iter().map(Component::to_item).collect(),
            params: self.params.clone(),
        }
    }

    /// The `@signature-params` value, which is also the `Signature-Input` member value.
    pub fn serialize(&self) -> Result<String, sfv::SfvError> {
        sfv::serialize_inner_list(&self.to_inner_list())
    }

    fn integer(&self, key: &str) -> Option<i64> {
        match sfv::param(&self.params, key) {
            Some(BareItem::Integer(i)) => Some(*i),
            _ => None,
        }
    }

    fn string(&self, key: &str) -> Option<&str> {
        match sfv::param(&self.params, key) {
            Some(BareItem::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn created(&self) -> Option<i64> {
        self.integer("created")
    }

    pub fn expires(&self) -> Option<i64> {
        self.integer("expires")
    }

    pub fn key_id(&self) -> Option<&str> {
        self.string("keyid")
    }

    pub fn alg(&self) -> Option<&str> {
        self.string("alg")
    }

    pub fn nonce(&self) -> Option<&str> {
        self.string("nonce")
    }

    pub(super) fn covers(&self, name: &str) -> bool {
        self.components.iter().any(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> Result<SignatureInput, SchemeError> {
        let dict = sfv::parse_dictionary(text).map_err(|_| SchemeError::Malformed("sfv"))?;
        SignatureInput::from_member(&dict[0].1)
    }

    #[test]
    fn upper_case_component_names_are_malformed() {
        assert!(matches!(input(r#"s=("Host")"#), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn unknown_derived_components_are_malformed() {
        assert!(matches!(input(r#"s=("@nope")"#), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn a_component_covered_twice_is_malformed() {
        assert!(matches!(input(r#"s=("a" "a")"#), Err(SchemeError::Malformed(_))));
        assert!(input(r#"s=("a" "a";bs)"#).is_ok());
    }

    #[test]
    fn query_param_without_name_is_malformed() {
        assert!(matches!(input(r#"s=("@query-param")"#), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn created_must_be_an_integer() {
        assert!(matches!(input(r#"s=();created="1""#), Err(SchemeError::Malformed(_))));
        assert_eq!(input("s=();created=1").map(|i| i.created()), Ok(Some(1)));
    }

    #[test]
    fn a_label_that_is_not_an_inner_list_is_malformed() {
        assert!(matches!(input(r#"s="@method""#), Err(SchemeError::Malformed(_))));
    }
}
