//! The SigV4-style profile of the Kronos/Pegasus IoT platform (`x-arrow-*` headers), written from
//! the description in keyward's signed-request requirements and checked against an independent
//! Python implementation in tests/vectors.
//!
//! canonical request = METHOD "\n" PATH "\n" [query lines "\n"] hex(SHA-256(body)), where each query
//! line is `lower(name)` URL-encoded, `=`, the decoded value, lines sorted; with no query the line
//! block is left out (as the vendor's own client code does). string to sign = hex(SHA-256(canonical
//! request)) "\n" key id "\n" date "\n" version. k1 = hex(HMAC(key id, secret)), k2 = hex(HMAC(date,
//! k1)), k3 = hex(HMAC(version, k2)), signature = hex(HMAC(k3, string to sign)).

use chrono::{DateTime, SecondsFormat, Utc};

use super::canon::{
    decode_hex32, hex_sha256, hmac_sha256, hmac_sha256_matches, parse_iso_extended, percent_decode, raw_query_pairs,
    uri_encode,
};
use super::error::{SchemeError, SignError, VerifyError};
use super::request::Request;
use super::window::Window;

pub const API_KEY_HEADER: &str = "x-arrow-apikey";
pub const DATE_HEADER: &str = "x-arrow-date";
pub const VERSION_HEADER: &str = "x-arrow-version";
pub const SIGNATURE_HEADER: &str = "x-arrow-signature";
pub const VERSION: &str = "1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    key_id: String,
    /// Signed as text, exactly as sent.
    date: String,
    timestamp: DateTime<Utc>,
    signature: [u8; 32],
}

impl Parsed {
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    pub fn signature(&self) -> &[u8; 32] {
        &self.signature
    }
}

fn one<'a>(req: &'a Request, name: &'static str) -> Result<&'a str, SchemeError> {
    req.required_header(
        name,
        "an x-arrow-* header is repeated",
        "an x-arrow-* header is missing",
    )
}

pub fn parse(req: &Request) -> Result<Parsed, SchemeError> {
    let key_id = one(req, API_KEY_HEADER)?;
    let date = one(req, DATE_HEADER)?;
    let version = one(req, VERSION_HEADER)?;
    let signature = one(req, SIGNATURE_HEADER)?;
    if key_id.is_empty() {
        return Err(SchemeError::Malformed("empty x-arrow-apikey"));
    }
    if version != VERSION {
        return Err(SchemeError::Malformed("x-arrow-version must be 1"));
    }
    let timestamp = parse_iso_extended(date).ok_or(SchemeError::Malformed(
        "x-arrow-date must be ISO-8601 UTC like 2016-04-12T14:28:36.218Z",
    ))?;
    let signature = decode_hex32(signature).ok_or(SchemeError::Malformed("x-arrow-signature must be 64 hex digits"))?;
    // Read now so a request whose query cannot be canonicalised fails as malformed, not as a
    // mismatch after the secret lookup.
    query_lines(&req.query)?;
    Ok(Parsed {
        key_id: key_id.to_owned(),
        date: date.to_owned(),
        timestamp,
        signature,
    })
}

/// `lower(name)` URL-encoded `=` decoded value, sorted. Names and values must be UTF-8, and a
/// line break in either would make two different queries sign alike, so it is refused.
fn query_lines(query: &str) -> Result<Vec<String>, SchemeError> {
    let mut lines = Vec::new();
    for (raw_name, raw_value) in raw_query_pairs(query) {
        let name = String::from_utf8(percent_decode(raw_name))
            .map_err(|_| SchemeError::Malformed("query name is not UTF-8"))?;
        let value = String::from_utf8(percent_decode(raw_value))
            .map_err(|_| SchemeError::Malformed("query value is not UTF-8"))?;
        if value.contains(['\n', '\r']) {
            return Err(SchemeError::Malformed("query value holds a line break"));
        }
        lines.push(format!("{}={value}", uri_encode(name.to_lowercase().as_bytes(), false)));
    }
    lines.sort();
    Ok(lines)
}

/// The canonical request. Never log it.
pub fn canonical_request(req: &Request) -> Result<String, SchemeError> {
    let mut out = format!("{}\n{}\n", req.method, req.path);
    for line in query_lines(&req.query)? {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&hex::encode(req.body.sha256()));
    Ok(out)
}

pub fn string_to_sign(canonical_request: &str, key_id: &str, date: &str) -> String {
    format!(
        "{}\n{key_id}\n{date}\n{VERSION}",
        hex_sha256(canonical_request.as_bytes())
    )
}

/// k3 of the vendor's chain; each step's hex text is the next step's data.
pub fn signing_key(secret: &[u8], key_id: &str, date: &str) -> String {
    let k1 = hex::encode(hmac_sha256(key_id.as_bytes(), secret));
    let k2 = hex::encode(hmac_sha256(date.as_bytes(), k1.as_bytes()));
    hex::encode(hmac_sha256(VERSION.as_bytes(), k2.as_bytes()))
}

pub fn verify(parsed: &Parsed, req: &Request, secret: &[u8], window: Window) -> Result<(), VerifyError> {
    let cr = canonical_request(req)?;
    let sts = string_to_sign(&cr, &parsed.key_id, &parsed.date);
    let key = signing_key(secret, &parsed.key_id, &parsed.date);
    if !hmac_sha256_matches(key.as_bytes(), sts.as_bytes(), &parsed.signature) {
        return Err(VerifyError::Mismatch);
    }
    window.check(parsed.timestamp)
}

/// Adds the four `x-arrow-*` headers, the date with milliseconds.
pub fn sign(req: &mut Request, key_id: &str, secret: &[u8], time: DateTime<Utc>) -> Result<(), SignError> {
    if key_id.is_empty() {
        return Err(SignError::Invalid("empty key id"));
    }
    let date = time.to_rfc3339_opts(SecondsFormat::Millis, true);
    let cr = canonical_request(req).map_err(|_| SignError::Invalid("query cannot be signed"))?;
    let sts = string_to_sign(&cr, key_id, &date);
    let signature = hmac_sha256(signing_key(secret, key_id, &date).as_bytes(), sts.as_bytes());
    req.set_header(API_KEY_HEADER, key_id);
    req.set_header(DATE_HEADER, date);
    req.set_header(VERSION_HEADER, VERSION);
    req.set_header(SIGNATURE_HEADER, hex::encode(signature));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> Request {
        Request::new("GET", "/api/v1/kronos/gateways", "")
            .with_header("x-arrow-apikey", "key_1")
            .with_header("x-arrow-date", "2016-04-12T14:28:36.218Z")
            .with_header("x-arrow-version", "1")
            .with_header("x-arrow-signature", "00".repeat(32))
    }

    #[test]
    fn the_four_headers_are_read() {
        let parsed = parse(&signed()).unwrap();
        assert_eq!(parsed.key_id(), "key_1");
        assert_eq!(parsed.timestamp().timestamp_subsec_millis(), 218);
    }

    #[test]
    fn another_version_is_malformed() {
        let mut req = signed();
        req.set_header(VERSION_HEADER, "2");
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn a_date_with_an_offset_is_malformed() {
        let mut req = signed();
        req.set_header(DATE_HEADER, "2016-04-12T14:28:36.218+00:00");
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn query_lines_lower_case_and_encode_names_and_sort() {
        assert_eq!(
            query_lines("lastName=Doe&firstName=Jane&Age=30").unwrap(),
            ["age=30", "firstname=Jane", "lastname=Doe"]
        );
        assert_eq!(query_lines("A%20B=x%20y").unwrap(), ["a%20b=x y"]);
    }

    #[test]
    fn a_line_break_in_a_query_value_is_malformed() {
        assert!(query_lines("a=1%0Ab%3D2").is_err());
    }

    #[test]
    fn without_a_query_the_canonical_request_has_three_lines() {
        let req = Request::new("GET", "/x", "");
        assert_eq!(
            canonical_request(&req).unwrap(),
            "GET\n/x\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_signer_writes_milliseconds() {
        let mut req = Request::new("GET", "/x", "");
        let time = DateTime::from_timestamp(1_460_471_316, 218_000_000).unwrap();
        sign(&mut req, "k", b"s", time).unwrap();
        assert_eq!(req.header(DATE_HEADER), Some("2016-04-12T14:28:36.218Z"));
    }
}
