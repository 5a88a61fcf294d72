//! keyward's plain HMAC scheme: `X-Keyward-Signature` = hex(HMAC-SHA256(secret, METHOD "\n" PATH
//! "\n" CANONICAL_QUERY "\n" TIMESTAMP "\n" hex(SHA-256(body)) ["\n" NONCE])), the query canonical
//! as in SigV4. The optional `X-Keyward-Nonce` lets a client send the same request twice within
//! a second: it is signed only when present, so signatures made without one stay valid.

use chrono::{DateTime, Utc};

use super::canon::{canonical_query, decode_hex32, hmac_sha256, hmac_sha256_matches};
use super::error::{SchemeError, SignError, VerifyError};
use super::request::Request;
use super::window::Window;

pub const KEY_ID_HEADER: &str = "X-Keyward-Key-Id";
pub const TIMESTAMP_HEADER: &str = "X-Keyward-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Keyward-Signature";
pub const NONCE_HEADER: &str = "X-Keyward-Nonce";

/// A nonce is 1 to this many visible ASCII characters: it is signed as text after a newline.
pub const MAX_NONCE_LEN: usize = 128;

/// Longer than any Unix time in seconds this millennium needs; keeps parsing bounded.
const MAX_TIMESTAMP_DIGITS: usize = 12;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    key_id: String,
    /// The timestamp exactly as sent: it is signed as text.
    timestamp_text: String,
    timestamp: DateTime<Utc>,
    /// `X-Keyward-Nonce`, when the client sent one.
    nonce: Option<String>,
    signature: [u8; 32],
}

impl Parsed {
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    pub fn signature(&self) -> &[u8; 32] {
        &self.signature
    }
}

fn is_valid_nonce(nonce: &str) -> bool {
    (1..=MAX_NONCE_LEN).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_graphic())
}

/// The request's nonce: `Ok(None)` without one, an error when it repeats or is not 1 to
/// [`MAX_NONCE_LEN`] visible ASCII characters.
fn nonce_of(req: &Request) -> Result<Option<&str>, &'static str> {
    let nonce = req
        .single_header(NONCE_HEADER)
        .map_err(|()| "X-Keyward-Nonce is repeated")?
        .map(str::trim);
    match nonce {
        Some(nonce) if !is_valid_nonce(nonce) => Err("X-Keyward-Nonce must be 1 to 128 visible ASCII characters"),
        nonce => Ok(nonce),
    }
}

fn one<'a>(req: &'a Request, name: &'static str) -> Result<&'a str, SchemeError> {
    req.required_header(
        name,
        "an X-Keyward-* signature header is repeated",
        "an X-Keyward-* signature header is missing",
    )
}

pub fn parse(req: &Request) -> Result<Parsed, SchemeError> {
    let key_id = one(req, KEY_ID_HEADER)?;
    let timestamp_text = one(req, TIMESTAMP_HEADER)?;
    let signature = one(req, SIGNATURE_HEADER)?;
    if key_id.is_empty() {
        return Err(SchemeError::Malformed("empty X-Keyward-Key-Id"));
    }
    let timestamp = (!timestamp_text.is_empty()
        && timestamp_text.len() <= MAX_TIMESTAMP_DIGITS
        && timestamp_text.bytes().all(|b| b.is_ascii_digit()))
    .then(|| timestamp_text.parse::<i64>().ok())
    .flatten()
    .and_then(|secs| DateTime::from_timestamp(secs, 0))
    .ok_or(SchemeError::Malformed("X-Keyward-Timestamp must be Unix seconds"))?;
    let signature =
        decode_hex32(signature).ok_or(SchemeError::Malformed("X-Keyward-Signature must be 64 hex digits"))?;
    let nonce = nonce_of(req).map_err(SchemeError::Malformed)?;
    Ok(Parsed {
        key_id: key_id.to_owned(),
        timestamp_text: timestamp_text.to_owned(),
        timestamp,
        nonce: nonce.map(str::to_owned),
        signature,
    })
}

/// The signed string; the nonce line only when there is a nonce. Never log it: together with a
/// signature it helps guess at secrets.
pub fn string_to_sign(req: &Request, timestamp: &str, nonce: Option<&str>) -> String {
    let mut sts = format!(
        "{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        canonical_query(&req.query),
        timestamp,
        hex::encode(req.body.sha256())
    );
    if let Some(nonce) = nonce {
        sts.push('\n');
        sts.push_str(nonce);
    }
    sts
}

pub fn verify(parsed: &Parsed, req: &Request, secret: &[u8], window: Window) -> Result<(), VerifyError> {
    let sts = string_to_sign(req, &parsed.timestamp_text, parsed.nonce());
    if !hmac_sha256_matches(secret, sts.as_bytes(), &parsed.signature) {
        return Err(VerifyError::Mismatch);
    }
    window.check(parsed.timestamp)
}

/// The three headers that sign `req` at `time`: what `keyward sign` prints. An
/// `X-Keyward-Nonce` already on `req` is signed with it (and must be sent with it).
pub fn signature_headers(
    req: &Request,
    key_id: &str,
    secret: &[u8],
    time: DateTime<Utc>,
) -> Result<[(&'static str, String); 3], SignError> {
    if key_id.is_empty() {
        return Err(SignError::Invalid("empty key id"));
    }
    let nonce = nonce_of(req).map_err(SignError::Invalid)?;
    let timestamp = time.timestamp().to_string();
    let signature = hmac_sha256(secret, string_to_sign(req, &timestamp, nonce).as_bytes());
    Ok([
        (KEY_ID_HEADER, key_id.to_owned()),
        (TIMESTAMP_HEADER, timestamp),
        (SIGNATURE_HEADER, hex::encode(signature)),
    ])
}

/// Adds (or replaces) the three signature headers on `req`.
pub fn sign(req: &mut Request, key_id: &str, secret: &[u8], time: DateTime<Utc>) -> Result<(), SignError> {
    for (name, value) in signature_headers(req, key_id, secret, time)? {
        req.set_header(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> Request {
        Request::new("GET", "/v1/things", "")
            .with_header(KEY_ID_HEADER, "key_1")
            .with_header(TIMESTAMP_HEADER, "1700000000")
            .with_header(SIGNATURE_HEADER, "ab".repeat(32))
    }

    #[test]
    fn the_three_headers_are_read() {
        let parsed = parse(&signed()).unwrap();
        assert_eq!(parsed.key_id(), "key_1");
        assert_eq!(parsed.timestamp().timestamp(), 1_700_000_000);
    }

    #[test]
    fn a_missing_header_is_malformed() {
        let mut req = signed();
        req.remove_header(SIGNATURE_HEADER);
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn a_repeated_header_is_malformed() {
        let req = signed().with_header(TIMESTAMP_HEADER, "1700000001");
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn a_timestamp_with_a_sign_or_fraction_is_malformed() {
        for bad in ["-1", "+1700000000", "1700000000.5", "", "1e9", "1234567890123"] {
            let mut req = signed();
            req.set_header(TIMESTAMP_HEADER, bad);
            assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn the_string_to_sign_uses_the_canonical_query_and_body_hash() {
        let req = Request::new("POST", "/a%20b", "b=2&a=1").with_body(super::super::Body::Bytes(b"{}".to_vec()));
        assert_eq!(
            string_to_sign(&req, "1700000000", None),
            "POST\n/a%20b\na=1&b=2\n1700000000\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn a_nonce_is_read_and_signed_on_a_line_of_its_own() {
        let req = signed().with_header(NONCE_HEADER, "n-1");
        assert_eq!(parse(&req).unwrap().nonce(), Some("n-1"));
        assert_eq!(
            string_to_sign(&Request::new("GET", "/", ""), "1700000000", Some("n-1")),
            "GET\n/\n\n1700000000\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nn-1"
        );
    }

    #[test]
    fn a_repeated_empty_or_unprintable_nonce_is_malformed() {
        let too_long = "n".repeat(MAX_NONCE_LEN + 1);
        for bad in ["", " ", "a b", "caf\u{e9}", too_long.as_str()] {
            let req = signed().with_header(NONCE_HEADER, bad);
            assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))), "{bad:?}");
        }
        let req = signed().with_header(NONCE_HEADER, "a").with_header(NONCE_HEADER, "b");
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }
}
