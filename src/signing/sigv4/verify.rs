//! Checking a parsed signature against a secret, and which scopes and payloads are accepted.

use super::super::canon::{ct_eq, decode_hex32, hmac_sha256_matches};
use super::super::error::VerifyError;
use super::super::request::Request;
use super::super::secret::Secret;
use super::super::window::Window;
use super::canonical::canonical_request;
use super::{Form, Parsed, UNSIGNED_PAYLOAD};

/// Which credential scopes this deployment accepts (`KEYWARD_SIGV4_REGION`/`_SERVICE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept {
    pub regions: Vec<String>,
    pub services: Vec<String>,
    /// Whether a header-form request may declare `x-amz-content-sha256: UNSIGNED-PAYLOAD`, leaving
    /// its body unsigned. Presigned URLs always may: that is how presigning works.
    pub allow_unsigned_payload: bool,
}

impl Accept {
    pub fn new(regions: &[&str], services: &[&str]) -> Self {
        Accept {
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            allow_unsigned_payload: false,
        }
    }
}

impl Default for Accept {
    /// keyward's defaults: region `us-east-1`, service `keyward`.
    fn default() -> Self {
        Accept::new(&["us-east-1"], &["keyward"])
    }
}

/// The payload hashes a signature may have been made with, the likeliest first.
pub(super) fn payload_candidates(
    parsed: &Parsed,
    req: &Request,
    allow_unsigned_header: bool,
) -> Result<Vec<String>, VerifyError> {
    let body_hash = hex::encode(req.body.sha256());
    let declared = req
        .single_header("x-amz-content-sha256")
        .map_err(|()| VerifyError::Malformed("more than one x-amz-content-sha256 header"))?
        .map(str::trim);
    match declared {
        Some(UNSIGNED_PAYLOAD) => {
            if parsed.form == Form::Header && !allow_unsigned_header {
                return Err(VerifyError::UnsignedHeaderRequired("the request body"));
            }
            Ok(vec![UNSIGNED_PAYLOAD.to_owned()])
        }
        Some(value) => {
            let declared_hash =
                decode_hex32(value).ok_or(VerifyError::Malformed("unsupported x-amz-content-sha256 value"))?;
            // A body that differs from the hash the client signed was changed on the way.
            if !ct_eq(&declared_hash, &req.body.sha256()) {
                return Err(VerifyError::Mismatch);
            }
            Ok(vec![value.to_owned()])
        }
        None => match parsed.form {
            Form::Header => Ok(vec![body_hash]),
            // S3-style presigning signs UNSIGNED-PAYLOAD; AWS's generic query-auth examples sign
            // the body hash. Both bind the same request, so either is accepted.
            Form::Presigned => Ok(vec![UNSIGNED_PAYLOAD.to_owned(), body_hash]),
        },
    }
}

/// Checks a parsed SigV4 signature against `secret` (the UTF-8 bytes of the signing secret,
/// and the caller's memo of signing keys derived from it, if any). `window.now` is the caller's
/// clock; tests pass the vector's own date.
pub fn verify<'s>(
    parsed: &Parsed,
    req: &Request,
    secret: impl Into<Secret<'s>>,
    window: Window,
    accept: &Accept,
) -> Result<(), VerifyError> {
    if !accept.regions.contains(&parsed.scope.region) {
        return Err(VerifyError::ScopeNotAccepted("region"));
    }
    if !accept.services.contains(&parsed.scope.service) {
        return Err(VerifyError::ScopeNotAccepted("service"));
    }
    let key = secret.into().sigv4_key(&parsed.scope);
    let mut matched = false;
    for payload_hash in payload_candidates(parsed, req, accept.allow_unsigned_payload)? {
        let sts = parsed.string_to_sign(&canonical_request(parsed, req, &payload_hash));
        // No early exit: every candidate costs the same whether or not an earlier one matched.
        matched |= hmac_sha256_matches(&key[..], sts.as_bytes(), &parsed.signature);
    }
    if !matched {
        return Err(VerifyError::Mismatch);
    }
    match parsed.expires {
        None => window.check(parsed.timestamp),
        Some(expires) => window.check_presigned(parsed.timestamp, expires),
    }
}
