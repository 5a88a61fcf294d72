//! AWS Signature Version 4: the `Authorization: AWS4-HMAC-SHA256 ...` header and presigned URLs,
//! canonicalised exactly as AWS specifies (the AWS test suite in ../shared/testdata is the referee).

use chrono::{DateTime, Duration, Utc};

use super::canon::{
    canonical_query_excluding, ct_eq, decode_hex32, fold_whitespace, format_amz_date, hex_sha256, hmac_sha256,
    hmac_sha256_matches, parse_amz_date, parse_http_date, percent_decode, raw_query_pairs, uri_encode,
};
use super::error::{SchemeError, SignError, VerifyError};
use super::request::Request;
use super::window::Window;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash of a request whose body is not signed (presigned URLs, some S3 uploads).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const TERMINATOR: &str = "aws4_request";
/// AWS refuses presigned URLs valid for longer than seven days; so do we.
pub const MAX_PRESIGN_EXPIRES_SECS: i64 = 604_800;

const P_ALGORITHM: &str = "X-Amz-Algorithm";
const P_CREDENTIAL: &str = "X-Amz-Credential";
const P_DATE: &str = "X-Amz-Date";
const P_EXPIRES: &str = "X-Amz-Expires";
const P_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
const P_SIGNATURE: &str = "X-Amz-Signature";
const P_SECURITY_TOKEN: &str = "X-Amz-Security-Token";

/// More signed headers than any real client sends; bounds the work of a hostile list.
const MAX_SIGNED_HEADERS: usize = 64;

/// Headers our signer leaves out, as the AWS SDKs do: proxies rewrite them.
const UNSIGNED_BY_SIGNER: [&str; 4] = ["authorization", "user-agent", "expect", "x-amzn-trace-id"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`
    Header,
    /// `?X-Amz-Algorithm=...&X-Amz-Credential=...&X-Amz-Signature=...`
    Presigned,
}

/// `<date>/<region>/<service>/aws4_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialScope {
    /// `YYYYMMDD`
    pub date: String,
    pub region: String,
    pub service: String,
}

impl CredentialScope {
    pub fn to_scope_string(&self) -> String {
        format!("{}/{}/{}/{TERMINATOR}", self.date, self.region, self.service)
    }
}

/// A SigV4 signature read from a request, before any secret is involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    form: Form,
    key_id: String,
    scope: CredentialScope,
    /// The request time exactly as it goes into the string to sign.
    amz_date: String,
    timestamp: DateTime<Utc>,
    expires: Option<Duration>,
    signed_headers: Vec<String>,
    signature: [u8; 32],
}

impl Parsed {
    pub fn form(&self) -> Form {
        self.form
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn scope(&self) -> &CredentialScope {
        &self.scope
    }

    /// When the client says it signed the request.
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    /// `X-Amz-Expires` of a presigned URL.
    pub fn expires(&self) -> Option<Duration> {
        self.expires
    }

    /// Lower-case names, in the order the client listed them.
    pub fn signed_headers(&self) -> &[String] {
        &self.signed_headers
    }

    pub fn signature(&self) -> &[u8; 32] {
        &self.signature
    }

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

/// Reads the SigV4 signature of `req`, header form or presigned, without any secret.
pub fn parse(req: &Request) -> Result<Parsed, SchemeError> {
    let auth = req
        .single_header("authorization")
        .map_err(|()| SchemeError::Malformed("more than one Authorization header"))?;
    let header_form = auth.is_some_and(is_sigv4_authorization);
    let presigned = has_presigned_query(&req.query);
    match (header_form, presigned) {
        (true, true) => Err(SchemeError::Malformed(
            "both an Authorization header and a presigned query",
        )),
        (true, false) => parse_header_form(req, auth.unwrap_or_default()),
        (false, true) => parse_presigned(req),
        (false, false) => Err(SchemeError::Malformed("no AWS4-HMAC-SHA256 signature")),
    }
}

pub(crate) fn is_sigv4_authorization(value: &str) -> bool {
    let value = value.trim_start();
    value
        .get(..ALGORITHM.len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(ALGORITHM))
        && value
            .as_bytes()
            .get(ALGORITHM.len())
            .is_some_and(|b| *b == b' ' || *b == b'\t')
}

pub(crate) fn has_presigned_query(query: &str) -> bool {
    raw_query_pairs(query).any(|(name, _)| {
        let name = percent_decode(name);
        name == P_SIGNATURE.as_bytes() || name == P_ALGORITHM.as_bytes()
    })
}

fn parse_header_form(req: &Request, auth: &str) -> Result<Parsed, SchemeError> {
    let params = auth
        .trim_start()
        .get(ALGORITHM.len()..)
        .ok_or(SchemeError::Malformed("Authorization header too short"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in params.split(',') {
        let part = part.trim_matches(|c| c == ' ' || c == '\t');
        let (key, value) = part
            .split_once('=')
            .ok_or(SchemeError::Malformed("Authorization parameter without '='"))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(SchemeError::Malformed("unknown Authorization parameter")),
        };
        if slot.replace(value).is_some() {
            return Err(SchemeError::Malformed("repeated Authorization parameter"));
        }
    }
    let credential = credential.ok_or(SchemeError::Malformed("no Credential"))?;
    let signed_headers = signed_headers.ok_or(SchemeError::Malformed("no SignedHeaders"))?;
    let signature = signature.ok_or(SchemeError::Malformed("no Signature"))?;

    let (amz_date, timestamp) = match req
        .single_header("x-amz-date")
        .map_err(|()| SchemeError::Malformed("more than one X-Amz-Date header"))?
    {
        Some(value) => {
            let value = value.trim();
            let at = parse_amz_date(value).ok_or(SchemeError::Malformed("bad X-Amz-Date"))?;
            (value.to_owned(), at)
        }
        // AWS lets the Date header carry the time when X-Amz-Date is absent.
        None => {
            let value = req
                .single_header("date")
                .map_err(|()| SchemeError::Malformed("more than one Date header"))?
                .ok_or(SchemeError::Malformed("no X-Amz-Date or Date header"))?;
            let at = parse_http_date(value).ok_or(SchemeError::Malformed("bad Date header"))?;
            (format_amz_date(at), at)
        }
    };
    build(
        Form::Header,
        credential,
        signed_headers,
        signature,
        amz_date,
        timestamp,
        None,
    )
}

fn parse_presigned(req: &Request) -> Result<Parsed, SchemeError> {
    let mut found: [Option<String>; 6] = Default::default();
    let names = [
        P_ALGORITHM,
        P_CREDENTIAL,
        P_DATE,
        P_EXPIRES,
        P_SIGNED_HEADERS,
        P_SIGNATURE,
    ];
    for (name, value) in raw_query_pairs(&req.query) {
        let name = percent_decode(name);
        if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
            let value = String::from_utf8(percent_decode(value))
                .map_err(|_| SchemeError::Malformed("presigned parameter is not UTF-8"))?;
            if let Some(slot) = found.get_mut(i) {
                if slot.replace(value).is_some() {
                    return Err(SchemeError::Malformed("repeated presigned parameter"));
                }
            }
        }
    }
    let [algorithm, credential, date, expires, signed_headers, signature] = found;
    let algorithm = algorithm.ok_or(SchemeError::Malformed("no X-Amz-Algorithm"))?;
    if algorithm != ALGORITHM {
        return Err(SchemeError::Malformed("X-Amz-Algorithm is not AWS4-HMAC-SHA256"));
    }
    let credential = credential.ok_or(SchemeError::Malformed("no X-Amz-Credential"))?;
    let date = date.ok_or(SchemeError::Malformed("no X-Amz-Date"))?;
    let expires = expires.ok_or(SchemeError::Malformed("no X-Amz-Expires"))?;
    let signed_headers = signed_headers.ok_or(SchemeError::Malformed("no X-Amz-SignedHeaders"))?;
    let signature = signature.ok_or(SchemeError::Malformed("no X-Amz-Signature"))?;

    let timestamp = parse_amz_date(&date).ok_or(SchemeError::Malformed("bad X-Amz-Date"))?;
    let expires_secs = if expires.bytes().all(|b| b.is_ascii_digit()) && expires.len() <= 7 {
        expires.parse::<i64>().ok()
    } else {
        None
    }
    .filter(|s| (1..=MAX_PRESIGN_EXPIRES_SECS).contains(s))
    .ok_or(SchemeError::Malformed("X-Amz-Expires must be 1 to 604800 seconds"))?;
    build(
        Form::Presigned,
        &credential,
        &signed_headers,
        &signature,
        date,
        timestamp,
        Some(Duration::seconds(expires_secs)),
    )
}

fn build(
    form: Form,
    credential: &str,
    signed_headers: &str,
    signature: &str,
    amz_date: String,
    timestamp: DateTime<Utc>,
    expires: Option<Duration>,
) -> Result<Parsed, SchemeError> {
    // The key id may itself hold '/', so the scope is read from the right.
    let mut parts = credential.rsplitn(5, '/');
    let terminator = parts.next().unwrap_or_default();
    let service = parts.next().unwrap_or_default();
    let region = parts.next().unwrap_or_default();
    let date = parts.next().unwrap_or_default();
    let key_id = parts.next().unwrap_or_default();
    if terminator != TERMINATOR {
        return Err(SchemeError::Malformed("credential scope must end in aws4_request"));
    }
    if key_id.is_empty() || region.is_empty() || service.is_empty() {
        return Err(SchemeError::Malformed("incomplete Credential"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SchemeError::Malformed("bad credential scope date"));
    }
    if amz_date.get(..8) != Some(date) {
        return Err(SchemeError::Malformed(
            "credential scope date differs from the request date",
        ));
    }

    let names: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    if names.len() > MAX_SIGNED_HEADERS {
        return Err(SchemeError::Malformed("more than 64 SignedHeaders"));
    }
    for (i, name) in names.iter().enumerate() {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b));
        if !valid {
            return Err(SchemeError::Malformed(
                "SignedHeaders must be lower-case header names separated by ';'",
            ));
        }
        if names.iter().take(i).any(|earlier| earlier == name) {
            return Err(SchemeError::Malformed("repeated name in SignedHeaders"));
        }
    }
    if !names.iter().any(|n| n == "host") {
        return Err(SchemeError::UnsignedHeaderRequired("host"));
    }
    let signature = decode_hex32(signature).ok_or(SchemeError::Malformed("Signature must be 64 hex digits"))?;

    Ok(Parsed {
        form,
        key_id: key_id.to_owned(),
        scope: CredentialScope {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        },
        amz_date,
        timestamp,
        expires,
        signed_headers: names,
        signature,
    })
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

fn canonical_request(parsed: &Parsed, req: &Request, payload_hash: &str) -> String {
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

/// The payload hashes a signature may have been made with, the likeliest first.
fn payload_candidates(parsed: &Parsed, req: &Request, allow_unsigned_header: bool) -> Result<Vec<String>, VerifyError> {
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

fn signing_key(secret: &[u8], scope: &CredentialScope) -> [u8; 32] {
    let mut k_secret = Vec::with_capacity(secret.len() + 4);
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret);
    let k_date = hmac_sha256(&k_secret, scope.date.as_bytes());
    let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
    let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

/// Checks a parsed SigV4 signature against `secret` (the UTF-8 bytes of the signing secret).
/// `window.now` is the caller's clock; tests pass the vector's own date.
pub fn verify(
    parsed: &Parsed,
    req: &Request,
    secret: &[u8],
    window: Window,
    accept: &Accept,
) -> Result<(), VerifyError> {
    if !accept.regions.contains(&parsed.scope.region) {
        return Err(VerifyError::ScopeNotAccepted("region"));
    }
    if !accept.services.contains(&parsed.scope.service) {
        return Err(VerifyError::ScopeNotAccepted("service"));
    }
    let key = signing_key(secret, &parsed.scope);
    let mut matched = false;
    for payload_hash in payload_candidates(parsed, req, accept.allow_unsigned_payload)? {
        let sts = parsed.string_to_sign(&canonical_request(parsed, req, &payload_hash));
        // No early exit: every candidate costs the same whether or not an earlier one matched.
        matched |= hmac_sha256_matches(&key, sts.as_bytes(), &parsed.signature);
    }
    if !matched {
        return Err(VerifyError::Mismatch);
    }
    match parsed.expires {
        None => window.check(parsed.timestamp),
        Some(expires) => window.check_presigned(parsed.timestamp, expires),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    fn vanilla() -> Request {
        Request::new("GET", "/", "")
            .with_header("Host", "example.amazonaws.com")
            .with_header("X-Amz-Date", "20150830T123600Z")
    }

    fn parse_auth(auth: &str) -> Result<Parsed, SchemeError> {
        parse(&vanilla().with_header("Authorization", auth))
    }

    #[test]
    fn header_form_reads_key_id_scope_and_signed_headers() {
        let parsed = parse_auth(AUTH);
        let parsed = parsed.unwrap();
        assert_eq!(parsed.form(), Form::Header);
        assert_eq!(parsed.key_id(), "AKIDEXAMPLE");
        assert_eq!(parsed.scope().region, "us-east-1");
        assert_eq!(parsed.scope().service, "service");
        assert_eq!(parsed.signed_headers(), ["host", "x-amz-date"]);
    }

    #[test]
    fn header_form_accepts_parameters_without_spaces_after_commas() {
        let auth = AUTH.replace(", ", ",");
        assert!(parse_auth(&auth).is_ok());
    }

    #[test]
    fn unsigned_host_is_refused_before_any_secret_is_needed() {
        let auth = AUTH.replace("host;x-amz-date", "x-amz-date");
        assert_eq!(parse_auth(&auth), Err(SchemeError::UnsignedHeaderRequired("host")));
    }

    #[test]
    fn a_repeated_authorization_parameter_is_malformed() {
        let auth = format!("{AUTH}, Signature=00");
        assert!(matches!(parse_auth(&auth), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn an_unknown_authorization_parameter_is_malformed() {
        let auth = format!("{AUTH}, Extra=1");
        assert!(matches!(parse_auth(&auth), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn a_short_signature_is_malformed() {
        let auth = AUTH.replace("Signature=5fa0", "Signature=");
        assert!(matches!(parse_auth(&auth), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn a_scope_date_other_than_the_request_date_is_malformed() {
        let auth = AUTH.replace("/20150830/", "/20150831/");
        assert!(matches!(parse_auth(&auth), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn a_key_id_containing_a_slash_is_read_whole() {
        let auth = AUTH.replace("AKIDEXAMPLE", "key/with/slash");
        let parsed = parse_auth(&auth).unwrap();
        assert_eq!(parsed.key_id(), "key/with/slash");
    }

    #[test]
    fn upper_case_signed_header_names_are_malformed() {
        let auth = AUTH.replace("host;x-amz-date", "Host;x-amz-date");
        assert!(matches!(parse_auth(&auth), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn missing_request_date_is_malformed() {
        let req = Request::new("GET", "/", "")
            .with_header("Host", "example.amazonaws.com")
            .with_header("Authorization", AUTH);
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn header_and_presigned_forms_together_are_malformed() {
        let mut req = vanilla().with_header("Authorization", AUTH);
        req.query = "X-Amz-Signature=00".to_owned();
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn presigned_expiry_beyond_seven_days_is_malformed() {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=604801&X-Amz-SignedHeaders=host&X-Amz-Signature=".to_owned() + &"0".repeat(64);
        let req = Request::new("GET", "/", query).with_header("Host", "h");
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn presigned_parameters_are_read_after_decoding() {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Brange&X-Amz-Signature=".to_owned() + &"0".repeat(64);
        let req = Request::new("GET", "/", query).with_header("Host", "h");
        let parsed = parse(&req).unwrap();
        assert_eq!(parsed.form(), Form::Presigned);
        assert_eq!(parsed.key_id(), "AKID");
        assert_eq!(parsed.signed_headers(), ["host", "range"]);
        assert_eq!(parsed.expires(), Some(Duration::seconds(60)));
    }

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
