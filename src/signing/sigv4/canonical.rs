//! The canonical request, the string to sign and the signing key.

use super::super::canon::{
    canonical_query_excluding, fold_whitespace, hex_sha256, hmac_sha256, percent_decode, uri_encode,
};
use super::super::error::VerifyError;
use super::super::request::Request;
use super::verify::payload_candidates;
use super::{CredentialScope, Form, Parsed, ALGORITHM, P_SIGNATURE, TERMINATOR};

impl Parsed {
    /// The canonical request with the payload hash the verifier tries first. For debugging and
    /// tests: it must never be logged in production (it is the signature base).
    pub fn canonical_request(&self, req: &Request) -> Result<String, VerifyError> {
        let candidates = payload_candidates(self, req, true)?;
        let first = candidates.first().ok_or(VerifyError::Malformed("no payload hash"))?;
        Ok(canonical_request(self, req, first))
    }

    pub fn string_to_sign(&self, canonical_request: &str) -> String {
        format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            self.amz_date,
            self.scope.to_scope_string(),
            hex_sha256(canonical_request.as_bytes())
        )
    }
}

/// S3 signs the path as sent; every other service normalises it and encodes it once more.
fn canonical_uri(path: &str, service: &str) -> String {
    if service == "s3" {
        let path = if path.is_empty() { "/" } else { path };
        return uri_encode(&percent_decode(path), true);
    }
    uri_encode(remove_dot_segments(path).as_bytes(), true)
}

/// RFC 3986 dot-segment removal as AWS applies it: `.`/`..` go, repeated slashes merge, a
/// trailing slash stays (`//example//` → `/example/`, `/example/..` → `/`).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    let mut result = String::from("/");
    result.push_str(&out.join("/"));
    if path.ends_with('/') && !out.is_empty() {
        result.push('/');
    }
    result
}

fn canonical_headers(req: &Request, names: &[String]) -> String {
    let mut out = String::new();
    for name in names {
        let values: Vec<String> = req.header_values(name).map(fold_whitespace).collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

pub(super) fn canonical_request(parsed: &Parsed, req: &Request, payload_hash: &str) -> String {
    let query = match parsed.form {
        Form::Header => canonical_query_excluding(&req.query, None),
        Form::Presigned => canonical_query_excluding(&req.query, Some(P_SIGNATURE)),
    };
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(&req.path, &parsed.scope.service),
        query,
        canonical_headers(req, &parsed.signed_headers),
        parsed.signed_headers.join(";"),
        payload_hash
    )
}
pub(in crate::signing) fn signing_key(secret: &[u8], scope: &CredentialScope) -> [u8; 32] {
    let mut k_secret = Vec::with_capacity(secret.len() + 4);
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret);
    let k_date = hmac_sha256(&k_secret, scope.date.as_bytes());
    let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
    let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_repeated_slashes_are_removed() {
        assert_eq!(remove_dot_segments("//example//"), "/example/");
        assert_eq!(remove_dot_segments("/example/.."), "/");
        assert_eq!(remove_dot_segments("/example1/example2/../.."), "/");
        assert_eq!(remove_dot_segments("/./example"), "/example");
        assert_eq!(remove_dot_segments("/./"), "/");
        assert_eq!(remove_dot_segments(""), "/");
    }

    #[test]
    fn non_s3_paths_are_encoded_a_second_time() {
        assert_eq!(canonical_uri("/a%20b/$", "service"), "/a%2520b/%24");
    }

    #[test]
    fn s3_paths_are_neither_normalised_nor_double_encoded() {
        assert_eq!(canonical_uri("//a/./b%20c", "s3"), "//a/./b%20c");
    }

    #[test]
    fn repeated_headers_join_with_commas_in_arrival_order() {
        let req = Request::new("GET", "/", "")
            .with_header("My-Header1", "value4")
            .with_header("my-header1", " value1 ");
        assert_eq!(
            canonical_headers(&req, &["my-header1".to_owned()]),
            "my-header1:value4,value1\n"
        );
    }
}
