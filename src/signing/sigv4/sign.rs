//! The reference signer: header form and presigned URLs.

use chrono::{DateTime, Duration, Utc};

use super::super::canon::{format_amz_date, hmac_sha256, uri_encode};
use super::super::error::SignError;
use super::super::request::Request;
use super::canonical::{canonical_request, signing_key};
use super::{
    CredentialScope, Form, Parsed, ALGORITHM, MAX_PRESIGN_EXPIRES_SECS, P_ALGORITHM, P_CREDENTIAL, P_DATE, P_EXPIRES,
    P_SECURITY_TOKEN, P_SIGNATURE, P_SIGNED_HEADERS, UNSIGNED_PAYLOAD,
};

/// Headers our signer leaves out, as the AWS SDKs do: proxies rewrite them.
const UNSIGNED_BY_SIGNER: [&str; 4] = ["authorization", "user-agent", "expect", "x-amzn-trace-id"];

/// Who signs, and for which scope.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub key_id: &'a str,
    pub secret: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
    /// Sent and signed as `X-Amz-Security-Token` when present.
    pub session_token: Option<&'a str>,
}

fn check_credentials(creds: &Credentials<'_>) -> Result<(), SignError> {
    let part_ok = |s: &str| !s.is_empty() && !s.contains('/');
    if creds.key_id.is_empty() || !part_ok(creds.region) || !part_ok(creds.service) {
        return Err(SignError::Invalid("key id, region and service must be set"));
    }
    Ok(())
}

/// Signs `req` in the header form: sets `X-Amz-Date` (and the session token), then adds
/// `Authorization`. Every header present is signed except those proxies rewrite.
pub fn sign(req: &mut Request, creds: &Credentials<'_>, time: DateTime<Utc>) -> Result<(), SignError> {
    check_credentials(creds)?;
    if !req.has_header("host") {
        return Err(SignError::MissingHost);
    }
    req.remove_header("authorization");
    let amz_date = format_amz_date(time);
    req.set_header("X-Amz-Date", amz_date.clone());
    if let Some(token) = creds.session_token {
        req.set_header("X-Amz-Security-Token", token);
    }
    if creds.service == "s3" && !req.has_header("x-amz-content-sha256") {
        req.set_header("x-amz-content-sha256", hex::encode(req.body.sha256()));
    }
    let mut names: Vec<String> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| !UNSIGNED_BY_SIGNER.contains(&n.as_str()))
        .collect();
    names.sort();
    names.dedup();

    let parsed = unsigned_parsed(Form::Header, creds, amz_date, time, None, names);
    let payload_hash = match req.header("x-amz-content-sha256") {
        Some(value) => value.trim().to_owned(),
        None => hex::encode(req.body.sha256()),
    };
    let signature = compute(&parsed, req, creds.secret, &payload_hash);
    req.headers.push((
        "Authorization".to_owned(),
        format!(
            "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
            creds.key_id,
            parsed.scope.to_scope_string(),
            parsed.signed_headers.join(";"),
            hex::encode(signature)
        ),
    ));
    Ok(())
}

/// Presigns `req`: appends the `X-Amz-*` query parameters (signing only `host`, payload
/// `UNSIGNED-PAYLOAD`), valid for `expires` from `time`.
pub fn presign(
    req: &mut Request,
    creds: &Credentials<'_>,
    time: DateTime<Utc>,
    expires: Duration,
) -> Result<(), SignError> {
    check_credentials(creds)?;
    if !req.has_header("host") {
        return Err(SignError::MissingHost);
    }
    if !(1..=MAX_PRESIGN_EXPIRES_SECS).contains(&expires.num_seconds()) {
        return Err(SignError::Invalid("expiry must be 1 second to 7 days"));
    }
    let amz_date = format_amz_date(time);
    let parsed = unsigned_parsed(
        Form::Presigned,
        creds,
        amz_date.clone(),
        time,
        Some(expires),
        vec!["host".to_owned()],
    );
    let credential = format!("{}/{}", creds.key_id, parsed.scope.to_scope_string());
    let mut params = vec![
        (P_ALGORITHM, ALGORITHM.to_owned()),
        (P_CREDENTIAL, credential),
        (P_DATE, amz_date),
        (P_EXPIRES, expires.num_seconds().to_string()),
        (P_SIGNED_HEADERS, "host".to_owned()),
    ];
    if let Some(token) = creds.session_token {
        params.push((P_SECURITY_TOKEN, token.to_owned()));
    }
    for (name, value) in &params {
        append_query(&mut req.query, name, value);
    }
    let signature = compute(&parsed, req, creds.secret, UNSIGNED_PAYLOAD);
    append_query(&mut req.query, P_SIGNATURE, &hex::encode(signature));
    Ok(())
}

fn append_query(query: &mut String, name: &str, value: &str) {
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&uri_encode(name.as_bytes(), false));
    query.push('=');
    query.push_str(&uri_encode(value.as_bytes(), false));
}

fn unsigned_parsed(
    form: Form,
    creds: &Credentials<'_>,
    amz_date: String,
    time: DateTime<Utc>,
    expires: Option<Duration>,
    signed_headers: Vec<String>,
) -> Parsed {
    Parsed {
        form,
        key_id: creds.key_id.to_owned(),
        scope: CredentialScope {
            date: amz_date.get(..8).unwrap_or_default().to_owned(),
            region: creds.region.to_owned(),
            service: creds.service.to_owned(),
        },
        amz_date,
        timestamp: time,
        expires,
        signed_headers,
        signature: [0; 32],
    }
}

fn compute(parsed: &Parsed, req: &Request, secret: &[u8], payload_hash: &str) -> [u8; 32] {
    let sts = parsed.string_to_sign(&canonical_request(parsed, req, payload_hash));
    hmac_sha256(&signing_key(secret, &parsed.scope), sts.as_bytes())
}
