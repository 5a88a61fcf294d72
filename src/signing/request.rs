//! The request as a verifier sees it: what was on the wire, not what a framework made of it.
//! Paths stay percent-encoded, headers keep their order and repeats, the body may be only a hash.

use sha2::{Digest, Sha256};
use std::fmt;

use super::error::SchemeError;

/// SHA-256 of the empty string, the payload hash of every request without a body.
pub const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The request body, or only its SHA-256 when the caller does not want to ship the bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum Body {
    Bytes(Vec<u8>),
    Sha256([u8; 32]),
}

impl Default for Body {
    fn default() -> Self {
        Body::Bytes(Vec::new())
    }
}

impl Body {
    pub fn sha256(&self) -> [u8; 32] {
        match self {
            Body::Bytes(bytes) => Sha256::digest(bytes).into(),
            Body::Sha256(hash) => *hash,
        }
    }

    /// True for zero bytes, also when only the hash is known (the hash of nothing is fixed).
    pub fn is_empty(&self) -> bool {
        match self {
            Body::Bytes(bytes) => bytes.is_empty(),
            Body::Sha256(hash) => *hash == EMPTY_SHA256,
        }
    }

    /// The bytes, when the caller gave them.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Bytes(bytes) => Some(bytes),
            Body::Sha256(_) => None,
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Body::Sha256(hash) => write!(f, "Sha256({})", hex::encode(hash)),
        }
    }
}

/// One HTTP request as received.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// As sent (`GET`, `POST`, ...); not upper-cased here because HTTP methods are case-sensitive.
    pub method: String,
    /// The path as it appeared on the wire, still percent-encoded, without the query.
    pub path: String,
    /// The raw query after `?`, empty when there is none.
    pub query: String,
    /// Header fields in arrival order, repeats kept. A `Host` header is expected.
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// `http` or `https` as the client used it; `None` is read as `https`. Only RFC 9421's
    /// `@scheme`/`@target-uri` and its default-port rule for `@authority` look at it.
    pub scheme: Option<String>,
}

impl Request {
    pub fn new(method: impl Into<String>, path: impl Into<String>, query: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            ..Request::default()
        }
    }

    /// Splits `target` (`/path?query`) at the first `?`.
    pub fn from_target(method: impl Into<String>, target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request::new(method, path, query)
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// All values of a header, case-insensitively, in arrival order.
    pub fn header_values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The value of a header that must not repeat: `Err(())` when it does.
    pub(crate) fn single_header(&self, name: &str) -> Result<Option<&str>, ()> {
        let mut values = self.header_values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(());
        }
        Ok(first)
    }

    /// The trimmed value of a header that must be sent exactly once; `repeated` or `missing`
    /// is the refusal's fixed text when it is not.
    pub(crate) fn required_header(
        &self,
        name: &str,
        repeated: &'static str,
        missing: &'static str,
    ) -> Result<&str, SchemeError> {
        self.single_header(name)
            .map_err(|()| SchemeError::Malformed(repeated))?
            .map(str::trim)
            .ok_or(SchemeError::Malformed(missing))
    }

    /// Replaces every instance of a header with one value, appended at the end.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.remove_header(name);
        self.headers.push((name.to_owned(), value.into()));
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// `path` plus `?query` when there is a query: the request target of an origin-form request.
    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// Header values are left out: they carry signatures and sometimes credentials, and a request
/// printed by accident must not put those into a log.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query_len", &self.query.len())
            .field("header_names", &names)
            .field("body", &self.body)
            .field("scheme", &self.scheme)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sha256_constant_is_the_hash_of_nothing() {
        assert_eq!(Body::Bytes(Vec::new()).sha256(), EMPTY_SHA256);
    }

    #[test]
    fn a_body_given_as_the_empty_hash_counts_as_empty() {
        assert!(Body::Sha256(EMPTY_SHA256).is_empty());
        assert!(!Body::Sha256([0; 32]).is_empty());
    }

    #[test]
    fn header_lookup_ignores_case_and_keeps_order() {
        let req = Request::new("GET", "/", "")
            .with_header("X-A", "1")
            .with_header("x-a", "2");
        assert_eq!(req.header_values("X-a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(req.single_header("x-a"), Err(()));
    }

    #[test]
    fn target_splits_at_the_first_question_mark() {
        let req = Request::from_target("GET", "/a?b=c?d");
        assert_eq!(req.path, "/a");
        assert_eq!(req.query, "b=c?d");
        assert_eq!(req.target(), "/a?b=c?d");
    }

    #[test]
    fn debug_output_leaves_out_header_values() {
        let req = Request::new("GET", "/", "").with_header("Authorization", "secret-ish");
        assert!(!format!("{req:?}").contains("secret-ish"));
    }
}
