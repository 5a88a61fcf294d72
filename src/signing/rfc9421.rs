//! RFC 9421 HTTP Message Signatures, `alg="hmac-sha256"` with `keyid` = key id: reading
//! `Signature-Input`/`Signature`, building the signature base exactly as the RFC, and the
//! keyward policy on top (which components must be covered, `created`, `content-digest`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::canon::{hmac_sha256, hmac_sha256_matches, percent_decode, raw_query_pairs};
use super::content_digest::{self, DigestError};
use super::error::{SchemeError, SignError, VerifyError};
use super::request::Request;
use super::sfv::{self, BareItem, InnerList, Item, Member, Parameters};

pub const SIGNATURE_INPUT: &str = "Signature-Input";
pub const SIGNATURE: &str = "Signature";
pub const ALG: &str = "hmac-sha256";

const DERIVED: [&str; 9] = [
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@request-target",
    "@path",
    "@query",
    "@query-param",
    "@status",
];

/// Fields whose structured type we know, for the `sf` component parameter.
const DICTIONARY_FIELDS: [&str; 6] = [
    "signature",
    "signature-input",
    "content-digest",
    "repr-digest",
    "want-content-digest",
    "want-repr-digest",
];

/// One covered component: a field name (`content-type`) or a derived one (`@method`), with its
/// parameters (`;name="..."`, `;key="..."`, `;sf`, `;bs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub params: Parameters,
}

impl Component {
    pub fn new(name: &str) -> Self {
        Component {
            name: name.to_owned(),
            params: Vec::new(),
        }
    }

    /// `"@query-param";name="..."` for an already encoded parameter name.
    pub fn query_param(encoded_name: &str) -> Self {
        Component {
            name: "@query-param".to_owned(),
            params: vec![("name".to_owned(), BareItem::String(encoded_name.to_owned()))],
        }
    }

    fn to_item(&self) -> Item {
        Item {
            bare: BareItem::String(self.name.clone()),
            params: self.params.clone(),
        }
    }

    fn flag(&self, key: &str) -> bool {
        sfv::param(&self.params, key).is_some()
    }

    fn string_param(&self, key: &str) -> Option<&str> {
        match sfv::param(&self.params, key) {
            Some(BareItem::String(s)) => Some(s),
            _ => None,
        }
    }

    fn from_item(item: &Item) -> Result<Self, SchemeError> {
        let BareItem::String(name) = &item.bare else {
            return Err(SchemeError::Malformed("a covered component must be a string"));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(SchemeError::Malformed("component names are lower-case"));
        }
        if name.starts_with('@') && !DERIVED.contains(&name.as_str()) {
            return Err(SchemeError::Malformed("unknown derived component"));
        }
        for (key, value) in &item.params {
            let ok = match key.as_str() {
                "sf" | "bs" | "req" | "tr" => *value == BareItem::Boolean(true),
                "key" | "name" => matches!(value, BareItem::String(_)),
                _ => false,
            };
            if !ok {
                return Err(SchemeError::Malformed("unknown component parameter"));
            }
        }
        let component = Component {
            name: name.clone(),
            params: item.params.clone(),
        };
        let derived = name.starts_with('@');
        let name_param = component.flag("name");
        if name_param != (name == "@query-param")
            || (derived && (component.flag("sf") || component.flag("key") || component.flag("bs")))
            || (component.flag("bs") && (component.flag("sf") || component.flag("key")))
        {
            return Err(SchemeError::Malformed("component parameters do not fit the component"));
        }
        Ok(component)
    }
}

/// What one signature covers and its parameters: one `Signature-Input` member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureInput {
    pub components: Vec<Component>,
    pub params: Parameters,
}

impl SignatureInput {
    pub fn from_member(member: &Member) -> Result<Self, SchemeError> {
        let Member::InnerList(list) = member else {
            return Err(SchemeError::Malformed("a Signature-Input member must be an inner list"));
        };
        let mut components: Vec<Component> = Vec::with_capacity(list.items.len());
        for item in &list.items {
            let component = Component::from_item(item)?;
            if components.contains(&component) {
                return Err(SchemeError::Malformed("a component is covered twice"));
            }
            components.push(component);
        }
        for (key, value) in &list.params {
            let ok = match key.as_str() {
                "created" | "expires" => matches!(value, BareItem::Integer(_)),
                "keyid" | "alg" | "nonce" | "tag" => matches!(value, BareItem::String(_)),
                // Unknown parameters are signed like the others and otherwise ignored.
                _ => true,
            };
            if !ok {
                return Err(SchemeError::Malformed("signature parameter of the wrong type"));
            }
        }
        Ok(SignatureInput {
            components,
            params: list.params.clone(),
        })
    }

    fn to_inner_list(&self) -> InnerList {
        InnerList {
            items: self.components.iter().map(Component::to_item).collect(),
            params: self.params.clone(),
        }
    }

    /// The `@signature-params` value, which is also the `Signature-Input` member value.
    pub fn serialize(&self) -> Result<String, sfv::SfvError> {
        sfv::serialize_inner_list(&self.to_inner_list())
    }

    fn integer(&self, key: &str) -> Option<i64> {
        match sfv::param(&self.params, key) {
            Some(BareItem::Integer(i)) => Some(*i),
            _ => None,
        }
    }

    fn string(&self, key: &str) -> Option<&str> {
        match sfv::param(&self.params, key) {
            Some(BareItem::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn created(&self) -> Option<i64> {
        self.integer("created")
    }

    pub fn expires(&self) -> Option<i64> {
        self.integer("expires")
    }

    pub fn key_id(&self) -> Option<&str> {
        self.string("keyid")
    }

    pub fn alg(&self) -> Option<&str> {
        self.string("alg")
    }

    pub fn nonce(&self) -> Option<&str> {
        self.string("nonce")
    }

    fn covers(&self, name: &str) -> bool {
        self.components.iter().any(|c| c.name == name)
    }
}

/// The message a base is built from. Responses exist for the RFC's own examples (B.2.4).
#[derive(Clone, Copy, Debug)]
pub enum Message<'a> {
    Request(&'a Request),
    Response {
        status: u16,
        headers: &'a [(String, String)],
    },
}

impl<'a> Message<'a> {
    fn header_values(&self, name: &'a str) -> Vec<&'a str> {
        match self {
            Message::Request(req) => req.header_values(name).collect(),
            Message::Response { headers, .. } => headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BaseError {
    /// A covered header or query parameter is not in the message.
    #[error("a covered component is missing from the message: {0}")]
    Missing(&'static str),
    #[error("a covered component cannot be used: {0}")]
    Invalid(&'static str),
}

/// The signature base (RFC 9421 §2.5) of `input` over `message`, byte for byte.
pub fn signature_base(message: &Message<'_>, input: &SignatureInput) -> Result<String, BaseError> {
    let mut base = String::new();
    for component in &input.components {
        let id = sfv::serialize_item(&component.to_item()).map_err(|_| BaseError::Invalid("component identifier"))?;
        let value = component_value(message, component)?;
        if value.contains(['\n', '\r']) {
            return Err(BaseError::Invalid("a component value holds a line break"));
        }
        base.push_str(&id);
        base.push_str(": ");
        base.push_str(&value);
        base.push('\n');
    }
    let params = input
        .serialize()
        .map_err(|_| BaseError::Invalid("signature parameters"))?;
    base.push_str("\"@signature-params\": ");
    base.push_str(&params);
    Ok(base)
}

fn component_value(message: &Message<'_>, c: &Component) -> Result<String, BaseError> {
    if c.flag("req") || c.flag("tr") {
        return Err(BaseError::Invalid("req and tr parameters are not supported"));
    }
    if !c.name.starts_with('@') {
        return field_value(message, c);
    }
    let req = match (message, c.name.as_str()) {
        (Message::Response { status, .. }, "@status") => return Ok(status.to_string()),
        (Message::Response { .. }, _) => return Err(BaseError::Invalid("request components in a response")),
        (Message::Request(_), "@status") => return Err(BaseError::Invalid("@status in a request")),
        (Message::Request(req), _) => *req,
    };
    let scheme = req.scheme.as_deref().unwrap_or("https").to_ascii_lowercase();
    Ok(match c.name.as_str() {
        "@method" => req.method.clone(),
        "@authority" => authority(req, &scheme)?,
        "@scheme" => scheme,
        "@target-uri" => {
            let authority = authority(req, &scheme)?;
            format!("{scheme}://{authority}{}", request_target(req))
        }
        "@request-target" => request_target(req),
        "@path" => path(req).to_owned(),
        "@query" => format!("?{}", req.query),
        "@query-param" => query_param(req, c.string_param("name").unwrap_or_default())?,
        _ => return Err(BaseError::Invalid("unknown derived component")),
    })
}

fn path(req: &Request) -> &str {
    if req.path.is_empty() {
        "/"
    } else {
        &req.path
    }
}

fn request_target(req: &Request) -> String {
    if req.query.is_empty() {
        path(req).to_owned()
    } else {
        format!("{}?{}", path(req), req.query)
    }
}

/// The Host value, lower-cased, without the scheme's default port.
fn authority(req: &Request, scheme: &str) -> Result<String, BaseError> {
    let mut hosts = req.header_values("host");
    let host = hosts.next().ok_or(BaseError::Missing("host"))?;
    if hosts.next().is_some() {
        return Err(BaseError::Invalid("more than one Host header"));
    }
    let host = host.trim().to_ascii_lowercase();
    let default_port = match scheme {
        "https" => Some(":443"),
        "http" => Some(":80"),
        _ => None,
    };
    Ok(match default_port.and_then(|port| host.strip_suffix(port)) {
        Some(bare) => bare.to_owned(),
        None => host,
    })
}

/// What [`form_component`] encodes: all but alphanumerics and `*-._` (and every non-ASCII byte).
const FORM_ENCODED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');

/// URL Standard form decoding (`+` is a space) then re-encoding with only `*-._` and
/// alphanumerics left bare and spaces as `%20`, as RFC 9421 §2.2.8 and its examples do.
fn form_component(raw: &str) -> String {
    let plus_as_space = raw.replace('+', " ");
    let decoded = percent_decode(&plus_as_space);
    utf8_percent_encode(&String::from_utf8_lossy(&decoded), FORM_ENCODED).to_string()
}

fn query_param(req: &Request, name: &str) -> Result<String, BaseError> {
    let mut found = None;
    for (raw_name, raw_value) in raw_query_pairs(&req.query) {
        if form_component(raw_name) != name {
            continue;
        }
        // RFC 9421 §2.2.8: a name that occurs more than once must not be covered.
        if found.replace(form_component(raw_value)).is_some() {
            return Err(BaseError::Invalid("a covered query parameter occurs twice"));
        }
    }
    found.ok_or(BaseError::Missing("query parameter"))
}

/// RFC 9421 §2.1: each line trimmed, obs-fold replaced by one space, joined with ", ".
fn canonical_field_lines(values: &[&str]) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            let v = v.trim_matches(|c| c == ' ' || c == '\t');
            let mut out = String::with_capacity(v.len());
            let mut chars = v.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\r' || c == '\n' {
                    while chars.next_if(|c| matches!(c, '\r' | '\n' | ' ' | '\t')).is_some() {}
                    out.push(' ');
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

fn field_value(message: &Message<'_>, c: &Component) -> Result<String, BaseError> {
    let values = message.header_values(&c.name);
    if values.is_empty() {
        return Err(BaseError::Missing("header field"));
    }
    let lines = canonical_field_lines(&values);
    if c.flag("bs") {
        let wrapped: Vec<String> = lines
            .iter()
            .map(|line| format!(":{}:", STANDARD.encode(line.as_bytes())))
            .collect();
        return Ok(wrapped.join(", "));
    }
    let combined = lines.join(", ");
    if let Some(key) = c.string_param("key") {
        let dict = sfv::parse_dictionary(&combined).map_err(|_| BaseError::Invalid("field is not a dictionary"))?;
        let member = dict
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, m)| m)
            .ok_or(BaseError::Missing("dictionary member"))?;
        return sfv::serialize_member(member).map_err(|_| BaseError::Invalid("dictionary member"));
    }
    if c.flag("sf") {
        if !DICTIONARY_FIELDS.contains(&c.name.as_str()) {
            return Err(BaseError::Invalid("structured type of the field is unknown"));
        }
        let dict = sfv::parse_dictionary(&combined).map_err(|_| BaseError::Invalid("field is not a dictionary"))?;
        return sfv::serialize_dictionary(&dict).map_err(|_| BaseError::Invalid("dictionary"));
    }
    Ok(combined)
}

/// What keyward insists a signature covers. RFC examples that cover less are checked with
/// [`Requirements::none`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirements {
    /// `@method`, `@authority` and `@path` (or `@target-uri`).
    pub core_components: bool,
    /// A `created` parameter.
    pub created: bool,
    /// `content-digest` covered whenever the body is not empty.
    pub content_digest: bool,
    /// The whole query covered (`@query`, `@request-target` or `@target-uri`) whenever there is
    /// one: with `@path` alone a query could be changed unnoticed. Stricter than issue 5 asks.
    pub query: bool,
}

impl Default for Requirements {
    fn default() -> Self {
        Requirements {
            core_components: true,
            created: true,
            content_digest: true,
            query: true,
        }
    }
}

impl Requirements {
    pub fn none() -> Self {
        Requirements {
            core_components: false,
            created: false,
            content_digest: false,
            query: false,
        }
    }
}

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

    if requirements.core_components {
        for required in ["@method", "@authority"] {
            if !input.covers(required) {
                return Err(SchemeError::UnsignedHeaderRequired(required));
            }
        }
        if !input.covers("@path") && !input.covers("@target-uri") {
            return Err(SchemeError::UnsignedHeaderRequired("@path"));
        }
    }
    if requirements.created && input.created().is_none() {
        return Err(SchemeError::UnsignedHeaderRequired("created"));
    }
    let query_covered = ["@query", "@request-target", "@target-uri"]
        .iter()
        .any(|name| input.covers(name));
    if requirements.query && !req.query.is_empty() && !query_covered {
        return Err(SchemeError::UnsignedHeaderRequired("@query"));
    }
    if requirements.content_digest && !req.body.is_empty() && !input.covers("content-digest") {
        return Err(SchemeError::UnsignedHeaderRequired("content-digest"));
    }
    Ok(Parsed {
        label: label.to_owned(),
        input,
        key_id,
        signature,
    })
}

/// Checks the signature, then a covered `Content-Digest` against the body, then the time.
pub fn verify(
    parsed: &Parsed,
    req: &Request,
    secret: &[u8],
    now: DateTime<Utc>,
    max_skew: Duration,
) -> Result<(), VerifyError> {
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
    let now_secs = now.timestamp();
    let skew = max_skew.num_seconds();
    if let Some(created) = parsed.input.created() {
        let age = now_secs.saturating_sub(created);
        if age > skew || age < -skew {
            return Err(VerifyError::Expired);
        }
    }
    if parsed.input.expires().is_some_and(|expires| now_secs > expires) {
        return Err(VerifyError::Expired);
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> Result<SignatureInput, SchemeError> {
        let dict = sfv::parse_dictionary(text).map_err(|_| SchemeError::Malformed("sfv"))?;
        SignatureInput::from_member(&dict[0].1)
    }

    fn request() -> Request {
        Request::new("POST", "/foo", "param=Value&Pet=dog")
            .with_header("Host", "Example.com:443")
            .with_header("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
    }

    #[test]
    fn derived_components_follow_the_rfc_definitions() {
        let req = request();
        let msg = Message::Request(&req);
        let value = |name: &str| component_value(&msg, &Component::new(name));
        assert_eq!(value("@method"), Ok("POST".to_owned()));
        assert_eq!(value("@authority"), Ok("example.com".to_owned()));
        assert_eq!(value("@scheme"), Ok("https".to_owned()));
        assert_eq!(value("@path"), Ok("/foo".to_owned()));
        assert_eq!(value("@query"), Ok("?param=Value&Pet=dog".to_owned()));
        assert_eq!(value("@request-target"), Ok("/foo?param=Value&Pet=dog".to_owned()));
        assert_eq!(
            value("@target-uri"),
            Ok("https://example.com/foo?param=Value&Pet=dog".to_owned())
        );
    }

    #[test]
    fn an_absent_query_is_a_lone_question_mark() {
        let req = Request::new("GET", "/", "").with_header("Host", "h");
        let value = component_value(&Message::Request(&req), &Component::new("@query"));
        assert_eq!(value, Ok("?".to_owned()));
    }

    #[test]
    fn the_http_default_port_is_dropped_only_for_http() {
        let mut req = Request::new("GET", "/", "").with_header("Host", "example.com:80");
        let at = |req: &Request| component_value(&Message::Request(req), &Component::new("@authority"));
        assert_eq!(at(&req), Ok("example.com:80".to_owned()));
        req.scheme = Some("http".to_owned());
        assert_eq!(at(&req), Ok("example.com".to_owned()));
    }

    #[test]
    fn query_params_are_decoded_and_re_encoded_as_the_rfc_example() {
        let req = Request::new(
            "GET",
            "/path",
            "var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something",
        );
        let msg = Message::Request(&req);
        let value = |name: &str| component_value(&msg, &Component::query_param(name));
        assert_eq!(value("var"), Ok("this%20is%20a%20big%0Amultiline%20value".to_owned()));
        assert_eq!(value("bar"), Ok("with%20plus%20whitespace".to_owned()));
        assert_eq!(value("fa%C3%A7ade%22%3A%20"), Ok("something".to_owned()));
        assert_eq!(value("missing"), Err(BaseError::Missing("query parameter")));
    }

    #[test]
    fn a_repeated_query_param_cannot_be_covered() {
        let req = Request::new("GET", "/", "a=1&a=2");
        let value = component_value(&Message::Request(&req), &Component::query_param("a"));
        assert!(matches!(value, Err(BaseError::Invalid(_))));
    }

    #[test]
    fn repeated_fields_join_with_comma_space_after_trimming() {
        let req = Request::new("GET", "/", "")
            .with_header("X-Multi", "  a ")
            .with_header("x-multi", "b\r\n  c");
        let value = component_value(&Message::Request(&req), &Component::new("x-multi"));
        assert_eq!(value, Ok("a, b c".to_owned()));
    }

    #[test]
    fn a_dictionary_member_is_picked_by_key() {
        let req = Request::new("GET", "/", "").with_header("Content-Digest", "sha-256=:AAAA:, sha-512=:BBBB:");
        let mut c = Component::new("content-digest");
        c.params
            .push(("key".to_owned(), BareItem::String("sha-512".to_owned())));
        assert_eq!(component_value(&Message::Request(&req), &c), Ok(":BBBB:".to_owned()));
    }

    #[test]
    fn byte_sequence_wrapping_encodes_each_field_line() {
        let req = Request::new("GET", "/", "")
            .with_header("X-Bin", "a")
            .with_header("X-Bin", "b");
        let mut c = Component::new("x-bin");
        c.params.push(("bs".to_owned(), BareItem::Boolean(true)));
        assert_eq!(
            component_value(&Message::Request(&req), &c),
            Ok(":YQ==:, :Yg==:".to_owned())
        );
    }

    #[test]
    fn upper_case_component_names_are_malformed() {
        assert!(matches!(input(r#"s=("Host")"#), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn unknown_derived_components_are_malformed() {
        assert!(matches!(input(r#"s=("@nope")"#), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn a_component_covered_twice_is_malformed() {
        assert!(matches!(input(r#"s=("a" "a")"#), Err(SchemeError::Malformed(_))));
        assert!(input(r#"s=("a" "a";bs)"#).is_ok());
    }

    #[test]
    fn query_param_without_name_is_malformed() {
        assert!(matches!(input(r#"s=("@query-param")"#), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn created_must_be_an_integer() {
        assert!(matches!(input(r#"s=();created="1""#), Err(SchemeError::Malformed(_))));
        assert_eq!(input("s=();created=1").map(|i| i.created()), Ok(Some(1)));
    }

    #[test]
    fn a_label_that_is_not_an_inner_list_is_malformed() {
        assert!(matches!(input(r#"s="@method""#), Err(SchemeError::Malformed(_))));
    }

    fn signed(input: &str) -> Request {
        Request::new("GET", "/", "")
            .with_header("Host", "h")
            .with_header("Signature-Input", input)
            .with_header("Signature", "sig1=:AAAA:")
    }

    #[test]
    fn keyward_requires_method_authority_and_path() {
        let req = signed(r#"sig1=("@authority" "@path");created=1;keyid="k""#);
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("@method")));
        let req = signed(r#"sig1=("@method" "@authority");created=1;keyid="k""#);
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("@path")));
        let req = signed(r#"sig1=("@method" "@authority" "@target-uri");created=1;keyid="k""#);
        assert!(parse(&req).is_ok());
    }

    #[test]
    fn keyward_requires_created() {
        let req = signed(r#"sig1=("@method" "@authority" "@path");keyid="k""#);
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("created")));
    }

    #[test]
    fn keyward_requires_the_query_covered_when_there_is_one() {
        let mut req = signed(r#"sig1=("@method" "@authority" "@path");created=1;keyid="k""#);
        req.query = "a=1".to_owned();
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("@query")));
        req.set_header(
            "Signature-Input",
            r#"sig1=("@method" "@authority" "@path" "@query");created=1;keyid="k""#,
        );
        assert!(parse(&req).is_ok());
        req.set_header(
            "Signature-Input",
            r#"sig1=("@method" "@authority" "@target-uri");created=1;keyid="k""#,
        );
        assert!(parse(&req).is_ok());
    }

    #[test]
    fn keyward_requires_content_digest_when_there_is_a_body() {
        let req = signed(r#"sig1=("@method" "@authority" "@path");created=1;keyid="k""#)
            .with_body(super::super::Body::Bytes(b"x".to_vec()));
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("content-digest")));
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
