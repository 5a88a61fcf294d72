//! Reading a SigV4 signature from the `Authorization` header or a presigned query, before any
//! secret is involved.

use chrono::{DateTime, Duration, Utc};

use super::super::canon::{
    decode_hex32, format_amz_date, parse_amz_date, parse_http_date, percent_decode, raw_query_pairs,
};
use super::super::error::SchemeError;
use super::super::request::Request;
use super::{
    CredentialScope, Form, Parsed, ALGORITHM, MAX_PRESIGN_EXPIRES_SECS, P_ALGORITHM, P_CREDENTIAL, P_DATE, P_EXPIRES,
    P_SIGNATURE, P_SIGNED_HEADERS, TERMINATOR,
};

/// More signed headers than any real client sends; bounds the work of a hostile list.
const MAX_SIGNED_HEADERS: usize = 64;

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
}
