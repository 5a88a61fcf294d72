//! Request-signature verification for every signed-request scheme keyward accepts, as a pure
//! library: no I/O, no HTTP framework types, no clock of its own. The caller looks up the secret
//! and keeps replays.
//!
//! Flow: [`detect`] or [`parse`] a [`Request`] (no secret needed, so a malformed request never
//! costs a lookup), fetch the signing secret for [`Parsed::key_id`], then [`Parsed::verify`].
//! Each scheme module also has its own `parse`/`verify` and a reference `sign`.

pub mod arrow;
pub(crate) mod canon;
pub mod client;
pub mod content_digest;
mod error;
pub mod keyward_hmac;
mod request;
pub mod rfc9421;
mod secret;
pub mod sfv;
pub mod sigv2;
pub mod sigv4;
mod window;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

pub use canon::canonical_query;
pub use error::{Refusal, SchemeError, SignError, VerifyError};
pub use request::{Body, Request, EMPTY_SHA256};
pub use secret::{DerivedKeys, Secret};
pub use window::Window;

/// The signing schemes keyward verifies.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
pub enum Scheme {
    /// AWS Signature Version 4, header form or presigned URL.
    #[serde(rename = "aws-sigv4")]
    #[strum(serialize = "aws-sigv4")]
    AwsSigV4,
    /// keyward's plain `X-Keyward-*` HMAC headers.
    #[serde(rename = "hmac")]
    #[strum(serialize = "hmac")]
    Hmac,
    /// RFC 9421 HTTP Message Signatures, hmac-sha256.
    #[serde(rename = "rfc9421")]
    #[strum(serialize = "rfc9421")]
    HttpMessageSignature,
    /// The Kronos/Pegasus IoT `x-arrow-*` profile.
    #[serde(rename = "arrow")]
    #[strum(serialize = "arrow")]
    Arrow,
    /// AWS Signature Version 2 for S3 (HMAC-SHA1); whether a tenant allows it is the caller's call.
    #[serde(rename = "aws-sigv2")]
    #[strum(serialize = "aws-sigv2")]
    AwsSigV2,
}

impl Scheme {
    /// The name in the verify answer's `scheme` field.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Which scheme the request's headers (or query) claim, in a fixed order of precedence:
/// SigV4 header, SigV4 presigned query, SigV2 header, RFC 9421, keyward HMAC, x-arrow.
pub fn detect(req: &Request) -> Option<Scheme> {
    let auth = req.header("authorization");
    if auth.is_some_and(sigv4::is_sigv4_authorization) || sigv4::has_presigned_query(&req.query) {
        return Some(Scheme::AwsSigV4);
    }
    if auth.is_some_and(sigv2::is_sigv2_authorization) {
        return Some(Scheme::AwsSigV2);
    }
    if req.has_header(rfc9421::SIGNATURE_INPUT) {
        return Some(Scheme::HttpMessageSignature);
    }
    if req.has_header(keyward_hmac::SIGNATURE_HEADER) {
        return Some(Scheme::Hmac);
    }
    if req.has_header(arrow::SIGNATURE_HEADER) {
        return Some(Scheme::Arrow);
    }
    None
}

/// A signature read from a request, whatever its scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    AwsSigV4(sigv4::Parsed),
    Hmac(keyward_hmac::Parsed),
    HttpMessageSignature(rfc9421::Parsed),
    Arrow(arrow::Parsed),
    AwsSigV2(sigv2::Parsed),
}

/// Reads the request's signature under keyward's rules. `Ok(None)` when it carries none.
pub fn parse(req: &Request) -> Result<Option<Parsed>, SchemeError> {
    let Some(scheme) = detect(req) else {
        return Ok(None);
    };
    let parsed = match scheme {
        Scheme::AwsSigV4 => Parsed::AwsSigV4(sigv4::parse(req)?),
        Scheme::Hmac => Parsed::Hmac(keyward_hmac::parse(req)?),
        Scheme::HttpMessageSignature => Parsed::HttpMessageSignature(rfc9421::parse(req)?),
        Scheme::Arrow => Parsed::Arrow(arrow::parse(req)?),
        Scheme::AwsSigV2 => Parsed::AwsSigV2(sigv2::parse(req)?),
    };
    Ok(Some(parsed))
}

/// Deployment and tenant settings the checks depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Accepted distance between the signing time and now (`signature_max_skew_seconds`).
    pub max_skew: Duration,
    pub sigv4: sigv4::Accept,
    pub sigv2: sigv2::Options,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_skew: Duration::seconds(300),
            sigv4: sigv4::Accept::default(),
            sigv2: sigv2::Options::default(),
        }
    }
}

/// Identifies one signature for replay protection: SHA-256 over a label, the scheme, the key id
/// and the signature bytes. Equal ids mean the same signature was presented again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplayId([u8; 32]);

impl ReplayId {
    fn of(scheme: Scheme, key_id: &str, signature: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"keyward-replay-v1\0");
        hash.update(scheme.as_str().as_bytes());
        hash.update([0]);
        hash.update(key_id.as_bytes());
        hash.update([0]);
        hash.update(signature);
        ReplayId(hash.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Parsed {
    pub fn scheme(&self) -> Scheme {
        match self {
            Parsed::AwsSigV4(_) => Scheme::AwsSigV4,
            Parsed::Hmac(_) => Scheme::Hmac,
            Parsed::HttpMessageSignature(_) => Scheme::HttpMessageSignature,
            Parsed::Arrow(_) => Scheme::Arrow,
            Parsed::AwsSigV2(_) => Scheme::AwsSigV2,
        }
    }

    /// The public key id the client named: look the signing secret up by it.
    pub fn key_id(&self) -> &str {
        match self {
            Parsed::AwsSigV4(p) => p.key_id(),
            Parsed::Hmac(p) => p.key_id(),
            Parsed::HttpMessageSignature(p) => p.key_id(),
            Parsed::Arrow(p) => p.key_id(),
            Parsed::AwsSigV2(p) => p.key_id(),
        }
    }

    fn signature(&self) -> &[u8] {
        match self {
            Parsed::AwsSigV4(p) => p.signature(),
            Parsed::Hmac(p) => p.signature(),
            Parsed::HttpMessageSignature(p) => p.signature(),
            Parsed::Arrow(p) => p.signature(),
            Parsed::AwsSigV2(p) => p.signature(),
        }
    }

    /// Stable id for the replay store; meaningful only after [`Parsed::verify`] succeeded.
    pub fn replay_id(&self) -> ReplayId {
        ReplayId::of(self.scheme(), self.key_id(), self.signature())
    }

    /// When the client says it signed; `None` only for an RFC 9421 signature without `created`
    /// (which keyward's rules refuse at parse time).
    pub fn signed_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Parsed::AwsSigV4(p) => Some(p.timestamp()),
            Parsed::Hmac(p) => Some(p.timestamp()),
            Parsed::HttpMessageSignature(p) => p.created(),
            Parsed::Arrow(p) => Some(p.timestamp()),
            Parsed::AwsSigV2(p) => Some(p.timestamp()),
        }
    }

    /// After this instant `verify` refuses the signature as expired whatever happens, so a
    /// replay-store entry for it can be pruned.
    pub fn replay_window_end(&self, max_skew: Duration) -> Option<DateTime<Utc>> {
        let plus_skew = |at: DateTime<Utc>| at.checked_add_signed(max_skew);
        match self {
            Parsed::AwsSigV4(p) => match p.expires() {
                Some(expires) => p.timestamp().checked_add_signed(expires),
                None => plus_skew(p.timestamp()),
            },
            Parsed::HttpMessageSignature(p) => {
                let by_created = p.created().and_then(plus_skew);
                let by_expires = p.input().expires().and_then(|e| DateTime::from_timestamp(e, 0));
                match (by_created, by_expires) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            _ => self.signed_at().and_then(plus_skew),
        }
    }

    /// Checks the signature with `secret` (the UTF-8 bytes of the signing secret) at `now`.
    pub fn verify<'s>(
        &self,
        req: &Request,
        secret: impl Into<Secret<'s>>,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Result<(), VerifyError> {
        let window = Window::new(now, policy.max_skew);
        let secret = secret.into();
        match self {
            Parsed::AwsSigV4(p) => sigv4::verify(p, req, secret, window, &policy.sigv4),
            Parsed::Hmac(p) => keyward_hmac::verify(p, req, secret.bytes(), window),
            Parsed::HttpMessageSignature(p) => rfc9421::verify(p, req, secret.bytes(), window),
            Parsed::Arrow(p) => arrow::verify(p, req, secret.bytes(), window),
            Parsed::AwsSigV2(p) => sigv2::verify(p, req, secret.bytes(), window, &policy.sigv2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn nothing_signed_detects_nothing() {
        let req = Request::new("GET", "/", "").with_header("Authorization", "Bearer kw_x");
        assert_eq!(detect(&req), None);
        assert_eq!(parse(&req), Ok(None));
    }

    #[test]
    fn each_scheme_is_detected_from_its_marker() {
        let base = || Request::new("GET", "/", "");
        let cases = [
            (
                base().with_header("Authorization", "AWS4-HMAC-SHA256 Credential=x"),
                Scheme::AwsSigV4,
            ),
            (Request::new("GET", "/", "X-Amz-Signature=00"), Scheme::AwsSigV4),
            (base().with_header("Authorization", "AWS k:s"), Scheme::AwsSigV2),
            (base().with_header("Signature-Input", "x"), Scheme::HttpMessageSignature),
            (base().with_header("X-Keyward-Signature", "x"), Scheme::Hmac),
            (base().with_header("x-arrow-signature", "x"), Scheme::Arrow),
        ];
        for (req, scheme) in cases {
            assert_eq!(detect(&req), Some(scheme), "{}", scheme.as_str());
        }
    }

    #[test]
    fn a_sigv4_header_wins_over_other_markers() {
        let req = Request::new("GET", "/", "")
            .with_header("X-Keyward-Signature", "x")
            .with_header("Authorization", "aws4-hmac-sha256 Credential=x");
        assert_eq!(detect(&req), Some(Scheme::AwsSigV4));
    }

    #[test]
    fn replay_ids_differ_by_scheme_key_and_signature() {
        let a = ReplayId::of(Scheme::Hmac, "k", b"sig");
        assert_eq!(a, ReplayId::of(Scheme::Hmac, "k", b"sig"));
        assert_ne!(a, ReplayId::of(Scheme::Arrow, "k", b"sig"));
        assert_ne!(a, ReplayId::of(Scheme::Hmac, "k2", b"sig"));
        assert_ne!(a, ReplayId::of(Scheme::Hmac, "k", b"sig2"));
    }

    #[test]
    fn a_parsed_signature_verifies_through_the_common_entry_point() {
        let mut req = Request::new("POST", "/v1/x", "a=1").with_body(Body::Bytes(b"{}".to_vec()));
        keyward_hmac::sign(&mut req, "key_1", b"secret", at(1_700_000_000)).unwrap();
        let parsed = parse(&req).unwrap().unwrap();
        assert_eq!(parsed.scheme(), Scheme::Hmac);
        assert_eq!(parsed.key_id(), "key_1");
        let policy = Policy::default();
        assert_eq!(parsed.verify(&req, b"secret", at(1_700_000_100), &policy), Ok(()));
        assert_eq!(
            parsed.verify(&req, b"other", at(1_700_000_100), &policy),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            parsed.verify(&req, b"secret", at(1_700_000_301), &policy),
            Err(VerifyError::Expired)
        );
        assert_eq!(parsed.replay_window_end(policy.max_skew), Some(at(1_700_000_300)));
    }
}
