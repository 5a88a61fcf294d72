//! Our reference RFC 9421 signer: hmac-sha256 over the components keyward requires.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};

use super::super::canon::hmac_sha256;
use super::super::content_digest;
use super::super::error::SignError;
use super::super::request::Request;
use super::super::sfv::{self, BareItem, Parameters};
use super::{signature_base, BaseError, Component, Message, SignatureInput, ALG, SIGNATURE, SIGNATURE_INPUT};

/// Everything our signer puts into a signature.
#[derive(Clone, Debug)]
pub struct SignParams<'a> {
    pub label: &'a str,
    pub key_id: &'a str,
    pub created: i64,
    pub expires: Option<i64>,
    pub nonce: Option<&'a str>,
    pub components: Vec<Component>,
    /// Adds `alg="hmac-sha256"` (the RFC leaves it optional; curl sends it).
    pub include_alg: bool,
}

/// Signs with explicit parameters; replaces any `Signature-Input`/`Signature` present.
pub fn sign_with(req: &mut Request, secret: &[u8], params: &SignParams<'_>) -> Result<(), SignError> {
    if params.key_id.is_empty() {
        return Err(SignError::Invalid("empty key id"));
    }
    let mut sig_params: Parameters = vec![
        ("created".to_owned(), BareItem::Integer(params.created)),
        ("keyid".to_owned(), BareItem::String(params.key_id.to_owned())),
    ];
    if let Some(expires) = params.expires {
        sig_params.push(("expires".to_owned(), BareItem::Integer(expires)));
    }
    if let Some(nonce) = params.nonce {
        sig_params.push(("nonce".to_owned(), BareItem::String(nonce.to_owned())));
    }
    if params.include_alg {
        sig_params.push(("alg".to_owned(), BareItem::String(ALG.to_owned())));
    }
    let input = SignatureInput {
        components: params.components.clone(),
        params: sig_params,
    };
    let base = signature_base(&Message::Request(req), &input).map_err(|e| match e {
        BaseError::Missing(_) => SignError::Invalid("a component to sign is missing"),
        BaseError::Invalid(why) => SignError::Invalid(why),
    })?;
    let signature = hmac_sha256(secret, base.as_bytes());
    let member = input
        .serialize()
        .map_err(|_| SignError::Invalid("signature parameters cannot be serialised"))?;
    if !sfv::is_valid_key(params.label) {
        return Err(SignError::Invalid("label must be a structured-field key"));
    }
    req.set_header(SIGNATURE_INPUT, format!("{}={member}", params.label));
    req.set_header(SIGNATURE, format!("{}=:{}:", params.label, STANDARD.encode(signature)));
    Ok(())
}

/// Signs the way keyward wants to verify: label `sig1`, `@method @authority @path`, `@query`
/// when there is one, and `content-digest` (added as sha-256 when missing) when there is a body.
pub fn sign(req: &mut Request, key_id: &str, secret: &[u8], created: DateTime<Utc>) -> Result<(), SignError> {
    let mut components = vec![
        Component::new("@method"),
        Component::new("@authority"),
        Component::new("@path"),
    ];
    if !req.query.is_empty() {
        components.push(Component::new("@query"));
    }
    if !req.body.is_empty() {
        if !req.has_header(content_digest::HEADER) {
            let field = content_digest::sha256_field(&req.body.sha256());
            req.set_header(content_digest::HEADER, field);
        }
        components.push(Component::new("content-digest"));
    }
    sign_with(
        req,
        secret,
        &SignParams {
            label: "sig1",
            key_id,
            created: created.timestamp(),
            expires: None,
            nonce: None,
            components,
            include_alg: true,
        },
    )
}
