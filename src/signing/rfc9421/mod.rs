//! RFC 9421 HTTP Message Signatures, `alg="hmac-sha256"` with `keyid` = key id: reading
//! `Signature-Input`/`Signature`, building the signature base exactly as the RFC, and the
//! keyward policy on top (which components must be covered, `created`, `content-digest`).

mod base;
mod input;
mod policy;
mod signer;

use chrono::{DateTime, Utc};

use super::canon::hmac_sha256_matches;
use super::content_digest::{self, DigestError};
use super::error::{SchemeError, VerifyError};
use super::request::Request;
use super::sfv::{self, BareItem, Item, Member};
use super::window::Window;

pub use base::{signature_base, BaseError, Message};
pub use input::{Component, SignatureInput};
pub use policy::Requirements;
pub use signer::{sign, sign_with, SignParams};

pub const SIGNATURE_INPUT: &str = "Signature-Input";
pub const SIGNATURE: &str = "Signature";
pub const ALG: &str = "hmac-sha256";

/// One hmac-sha256 signature read from a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    label: String,
    input: SignatureInput,
    key_id: String,
    signature: Vec<u8>,
}

impl Parsed {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn input(&self) -> &SignatureInput {
        &self.input
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    pub fn created(&self) -> Option<DateTime<Utc>> {
        self.input.created().and_then(|s| DateTime::from_timestamp(s, 0))
    }
}

fn joined(req: &Request, name: &str) -> Option<String> {
    let values: Vec<&str> = req.header_values(name).collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Reads the first hmac-sha256 signature that names a `keyid`, under keyward's requirements.
pub fn parse(req: &Request) -> Result<Parsed, SchemeError> {
    parse_with(req, &Requirements::default())
}

pub fn parse_with(req: &Request, requirements: &Requirements) -> Result<Parsed, SchemeError> {
    let inputs = signature_inputs(req)?;
    let label = inputs
        .iter()
        .find(|(_, member)| {
            let Member::InnerList(list) = member else {
                return false;
            };
            let has_keyid = matches!(sfv::param(&list.params, "keyid"), Some(BareItem::String(_)));
            let alg_ok = match sfv::param(&list.params, "alg") {
                None => true,
                Some(BareItem::String(alg)) => alg == ALG,
                Some(_) => false,
            };
            has_keyid && alg_ok
        })
        .map(|(label, _)| label.clone())
        .ok_or(SchemeError::Malformed("no hmac-sha256 signature with a keyid"))?;
    parse_label(req, &label, requirements)
}

fn signature_inputs(req: &Request) -> Result<sfv::Dictionary, SchemeError> {
    let raw = joined(req, SIGNATURE_INPUT).ok_or(SchemeError::Malformed("no Signature-Input"))?;
    sfv::parse_dictionary(&raw).map_err(|_| SchemeError::Malformed("unparseable Signature-Input"))
}

/// Reads the signature with `label`.
pub fn parse_label(req: &Request, label: &str, requirements: &Requirements) -> Result<Parsed, SchemeError> {
    let inputs = signature_inputs(req)?;
    let member = inputs
        .iter()
        .find(|(l, _)| l == label)
        .map(|(_, m)| m)
        .ok_or(SchemeError::Malformed("no Signature-Input member with that label"))?;
    let input = SignatureInput::from_member(member)?;
    match input.alg() {
        None | Some(ALG) => {}
        Some(_) => return Err(SchemeError::Malformed("only alg=\"hmac-sha256\" is supported")),
    }
    let key_id = input
        .key_id()
        .filter(|k| !k.is_empty())
        .ok_or(SchemeError::Malformed("no keyid"))?
        .to_owned();

    let raw = joined(req, SIGNATURE).ok_or(SchemeError::Malformed("no Signature header"))?;
    let signatures = sfv::parse_dictionary(&raw).map_err(|_| SchemeError::Malformed("unparseable Signature"))?;
    let signature = match signatures.iter().find(|(l, _)| l == label).map(|(_, m)| m) {
        Some(Member::Item(Item {
            bare: BareItem::ByteSeq(bytes),
            ..
        })) => bytes.clone(),
        Some(_) => return Err(SchemeError::Malformed("a signature must be a byte sequence")),
        None => return Err(SchemeError::Malformed("no Signature member with that label")),
    };
    policy::check(&input, req, requirements)?;
    Ok(Parsed {
        label: label.to_owned(),
        input,
        key_id,
        signature,
    })
}

/// Checks the signature, then a covered `Content-Digest` against the body, then the time.
pub fn verify(parsed: &Parsed, req: &Request, secret: &[u8], window: Window) -> Result<(), VerifyError> {
    let base = signature_base(&Message::Request(req), &parsed.input).map_err(|e| match e {
        // A covered header that is gone was removed on the way.
        BaseError::Missing(_) => VerifyError::Mismatch,
        BaseError::Invalid(why) => VerifyError::Malformed(why),
    })?;
    if !hmac_sha256_matches(secret, base.as_bytes(), &parsed.signature) {
        return Err(VerifyError::Mismatch);
    }
    if parsed.input.covers("content-digest") {
        let value = joined(req, content_digest::HEADER).ok_or(VerifyError::Mismatch)?;
        content_digest::check(&value, &req.body).map_err(|e| match e {
            DigestError::Mismatch => VerifyError::Mismatch,
            DigestError::Malformed => VerifyError::Malformed("unparseable Content-Digest"),
            DigestError::Unsupported => {
                VerifyError::Malformed("Content-Digest needs sha-256 (or sha-512 with the body)")
            }
        })?;
    }
    window.check_created_expires(parsed.input.created(), parsed.input.expires())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn signed(input: &str) -> Request {
        Request::new("GET", "/", "")
            .with_header("Host", "h")
            .with_header("Signature-Input", input)
            .with_header("Signature", "sig1=:AAAA:")
    }

    #[test]
    fn other_algorithms_are_skipped_for_an_hmac_signature() {
        let req = Request::new("GET", "/", "")
            .with_header("Host", "h")
            .with_header(
                "Signature-Input",
                r#"a=("@method" "@authority" "@path");created=1;keyid="e";alg="ed25519", b=("@method" "@authority" "@path");created=1;keyid="k""#,
            )
            .with_header("Signature", "a=:AAAA:, b=:BBBB:");
        let parsed = parse(&req).unwrap();
        assert_eq!(parsed.label(), "b");
        assert_eq!(parsed.key_id(), "k");
    }

    #[test]
    fn only_other_algorithms_is_malformed() {
        let req = signed(r#"sig1=("@method" "@authority" "@path");created=1;keyid="k";alg="rsa-pss-sha512""#);
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn a_signature_that_is_not_a_byte_sequence_is_malformed() {
        let req = signed(r#"sig1=("@method" "@authority" "@path");created=1;keyid="k""#);
        let mut req = req;
        req.set_header("Signature", "sig1=\"abc\"");
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn signature_input_split_over_two_field_lines_is_combined() {
        let req = Request::new("GET", "/", "")
            .with_header("Host", "h")
            .with_header("Signature-Input", r#"a=("@method");created=1;keyid="x";alg="ed25519""#)
            .with_header(
                "Signature-Input",
                r#"sig1=("@method" "@authority" "@path");created=1;keyid="k""#,
            )
            .with_header("Signature", "sig1=:AAAA:");
        assert_eq!(parse(&req).map(|p| p.label().to_owned()), Ok("sig1".to_owned()));
    }
}
