//! Scopes: free-form strings `[a-z0-9_:.*-]{1,64}`, non-empty segments separated by `:`. A `*` segment in a
//! key's scope matches any one segment, and as the last segment it matches any non-empty suffix.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::validation::ValidationErrors;

pub const MAX_SCOPE_LEN: usize = 64;
pub const MAX_SCOPES_PER_KEY: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scope(String);

impl Scope {
    pub fn parse(text: &str) -> Option<Self> {
        let ok_char = |b: u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b':' | b'.' | b'*' | b'-');
        // An empty segment (`billing:`, `a::b`, `:x`) would be covered by `billing:*` and friends
        // without naming anything: it is not a scope.
        let segments_named = text.split(':').all(|segment| !segment.is_empty());
        (!text.is_empty() && text.len() <= MAX_SCOPE_LEN && text.bytes().all(ok_char) && segments_named)
            .then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this granted scope covers the `required` one.
    pub fn covers(&self, required: &Scope) -> bool {
        let mut granted = self.0.split(':').peekable();
        let mut wanted = required.0.split(':');
        while let Some(g) = granted.next() {
            let Some(w) = wanted.next() else {
                return false;
            };
            if g == "*" && granted.peek().is_none() {
                return true;
            }
            if g != "*" && g != w {
                return false;
            }
        }
        wanted.next().is_none()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether the granted scopes cover every required one.
pub fn covers_all(granted: &[Scope], required: &[Scope]) -> bool {
    required.iter().all(|r| granted.iter().any(|g| g.covers(r)))
}

/// Parses a list of scopes, reporting each bad one under `field[i]`; duplicates are dropped.
pub fn parse_scopes(errors: &mut ValidationErrors, field: &str, texts: &[String], max: usize) -> Vec<Scope> {
    if texts.len() > max {
        errors.add(field, format!("at most {max} scopes are allowed"));
        return Vec::new();
    }
    let mut scopes: Vec<Scope> = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        match Scope::parse(text) {
            Some(scope) if !scopes.contains(&scope) => scopes.push(scope),
            Some(_) => {}
            None => errors.add(
                format!("{field}[{i}]"),
                "a scope is 1 to 64 characters of a-z, 0-9, '_', '.', '*' and '-' in segments separated by ':', none of them empty",
            ),
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Scope {
        Scope::parse(text).expect("valid scope")
    }

    #[test]
    fn exact_scope_covers_only_itself() {
        assert!(s("billing:read").covers(&s("billing:read")));
        assert!(!s("billing:read").covers(&s("billing:write")));
        assert!(!s("billing").covers(&s("billing:read")));
        assert!(!s("billing:read").covers(&s("billing")));
    }

    #[test]
    fn trailing_star_covers_any_suffix() {
        assert!(s("billing:*").covers(&s("billing:read")));
        assert!(s("billing:*").covers(&s("billing:invoices:read")));
        assert!(!s("billing:*").covers(&s("billing")));
        assert!(!s("billing:*").covers(&s("users:read")));
        assert!(s("*").covers(&s("anything:at:all")));
    }

    #[test]
    fn inner_star_covers_exactly_one_segment() {
        assert!(s("*:read").covers(&s("billing:read")));
        assert!(!s("*:read").covers(&s("billing:invoices:read")));
        assert!(s("org:*:read").covers(&s("org:acme:read")));
        assert!(!s("org:*:read").covers(&s("org:acme:write")));
    }

    #[test]
    fn empty_segments_are_not_scopes() {
        for text in ["billing:", "billing::", "a::b", ":billing", ":"] {
            assert!(Scope::parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn scope_syntax_is_enforced() {
        assert!(Scope::parse("Billing").is_none());
        assert!(Scope::parse("").is_none());
        assert!(Scope::parse("a b").is_none());
        assert!(Scope::parse(&"a".repeat(65)).is_none());
        assert!(Scope::parse(&"a".repeat(64)).is_some());
    }

    #[test]
    fn every_required_scope_must_be_covered() {
        let granted = [s("billing:*"), s("users:read")];
        assert!(covers_all(&granted, &[s("billing:read"), s("users:read")]));
        assert!(!covers_all(&granted, &[s("billing:read"), s("users:write")]));
        assert!(covers_all(&granted, &[]));
    }
}
