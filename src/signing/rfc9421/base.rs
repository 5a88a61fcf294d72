//! The signature base (RFC 9421 §2.5): each covered component's identifier and value, byte for
//! byte as the RFC derives them, then `@signature-params`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::super::canon::{percent_decode, raw_query_pairs};
use super::super::request::Request;
use super::super::sfv;
use super::input::{Component, SignatureInput};

/// Fields whose structured type we know, for the `sf` component parameter.
const DICTIONARY_FIELDS: [&str; 6] = [
    "signature",
    "signature-input",
    "content-digest",
    "repr-digest",
    "want-content-digest",
    "want-repr-digest",
];

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

#[cfg(test)]
mod tests {
    use super::super::super::sfv::BareItem;
    use super::*;

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
}
