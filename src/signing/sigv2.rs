//! AWS Signature Version 2 for S3 (`Authorization: AWS <key id>:<base64 HMAC-SHA1>`): legacy, off
//! by default per tenant (the caller decides that), kept for S3-style clients.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};

use super::canon::{
    ct_eq, format_http_date, hmac_sha1, hmac_sha1_matches, parse_amz_date, parse_http_date, percent_decode,
};
use super::error::{SchemeError, SignError, VerifyError};
use super::request::{Body, Request};
use super::window::Window;

/// Query parameters that name an S3 sub-resource and so belong to the canonicalised resource.
const SUB_RESOURCES: [&str; 40] = [
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "partNumber",
    "policy",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "retention",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    key_id: String,
    signature: [u8; 20],
    timestamp: DateTime<Utc>,
}

impl Parsed {
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    pub fn signature(&self) -> &[u8; 20] {
        &self.signature
    }
}

/// How the bucket is found for the canonicalised resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Hosts under which the first label is a bucket (`johnsmith.s3.amazonaws.com` with suffix
    /// `s3.amazonaws.com` → bucket `johnsmith`). Any other host means path-style addressing.
    pub virtual_host_suffixes: Vec<String>,
}

pub(crate) fn is_sigv2_authorization(value: &str) -> bool {
    let value = value.trim_start();
    value.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("AWS "))
}

pub fn parse(req: &Request) -> Result<Parsed, SchemeError> {
    let auth = req
        .single_header("authorization")
        .map_err(|()| SchemeError::Malformed("more than one Authorization header"))?
        .filter(|v| is_sigv2_authorization(v))
        .ok_or(SchemeError::Malformed("no AWS SigV2 Authorization header"))?;
    let credentials = auth.trim().get(4..).unwrap_or_default().trim_start();
    let (key_id, signature) = credentials
        .rsplit_once(':')
        .ok_or(SchemeError::Malformed("expected AWS <key id>:<signature>"))?;
    if key_id.is_empty() {
        return Err(SchemeError::Malformed("empty key id"));
    }
    let signature: [u8; 20] = STANDARD
        .decode(signature)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(SchemeError::Malformed("signature must be base64 of 20 bytes"))?;
    Ok(Parsed {
        key_id: key_id.to_owned(),
        signature,
        timestamp: request_time(req)?,
    })
}

fn request_time(req: &Request) -> Result<DateTime<Utc>, SchemeError> {
    if let Some(value) = req
        .single_header("x-amz-date")
        .map_err(|()| SchemeError::Malformed("more than one x-amz-date header"))?
    {
        return parse_http_date(value)
            .or_else(|| parse_amz_date(value.trim()))
            .ok_or(SchemeError::Malformed("bad x-amz-date"));
    }
    let value = req
        .single_header("date")
        .map_err(|()| SchemeError::Malformed("more than one Date header"))?
        .ok_or(SchemeError::Malformed("no Date or x-amz-date header"))?;
    parse_http_date(value).ok_or(SchemeError::Malformed("bad Date header"))
}

/// Trims a value and replaces folded line breaks (with the whitespace around them) by one space.
fn unfold(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn header_or_empty(req: &Request, name: &str) -> String {
    req.header(name).map(unfold).unwrap_or_default()
}

/// Which string-to-sign layout: AWS's documentation puts `x-amz-date` among the amz headers and
/// leaves the Date line empty; some clients (and the published "Delete" example) put the
/// x-amz-date value on the Date line instead. Both bind the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DateLayout {
    Documented,
    OnDateLine,
}

/// The string to sign in AWS's documented layout. Never log it.
pub fn string_to_sign(req: &Request, options: &Options) -> String {
    string_to_sign_with(req, options, DateLayout::Documented)
}

fn string_to_sign_with(req: &Request, options: &Options, layout: DateLayout) -> String {
    let amz_date = req.header("x-amz-date").map(unfold);
    let date_line = match (&amz_date, layout) {
        (Some(_), DateLayout::Documented) => String::new(),
        (Some(amz), DateLayout::OnDateLine) => amz.clone(),
        (None, _) => header_or_empty(req, "date"),
    };
    let mut out = format!(
        "{}\n{}\n{}\n{}\n",
        req.method,
        header_or_empty(req, "content-md5"),
        header_or_empty(req, "content-type"),
        date_line
    );

    let mut amz: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), unfold(value)))
        .filter(|(name, _)| name.starts_with("x-amz-") && !(name == "x-amz-date" && layout == DateLayout::OnDateLine))
        .collect();
    // Stable, so repeats of one name keep their arrival order when joined.
    amz.sort_by(|a, b| a.0.cmp(&b.0));
    let mut previous: Option<&str> = None;
    for (name, value) in &amz {
        if previous == Some(name.as_str()) {
            out.push(',');
        } else {
            if previous.is_some() {
                out.push('\n');
            }
            out.push_str(name);
            out.push(':');
        }
        out.push_str(value);
        previous = Some(name);
    }
    if previous.is_some() {
        out.push('\n');
    }
    out.push_str(&canonical_resource(req, options));
    out
}

fn canonical_resource(req: &Request, options: &Options) -> String {
    let mut out = String::new();
    if let Some(host) = req.header("host") {
        let host = host.trim().to_ascii_lowercase();
        let host = host.rsplit_once(':').map_or(host.as_str(), |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host.as_str()
            }
        });
        for suffix in &options.virtual_host_suffixes {
            let bucket = host
                .strip_suffix(suffix.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .filter(|bucket| !bucket.is_empty());
            if let Some(bucket) = bucket {
                out.push('/');
                out.push_str(bucket);
                break;
            }
        }
    }
    out.push_str(if req.path.is_empty() { "/" } else { &req.path });

    let mut subs: Vec<(&str, Option<String>)> = req
        .query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (pair, None),
        })
        .filter(|(name, _)| SUB_RESOURCES.contains(name))
        .map(|(name, value)| {
            let value = value.map(|v| String::from_utf8_lossy(&percent_decode(v)).into_owned());
            (name, value)
        })
        .collect();
    // Stable: repeats keep their order, as in botocore.
    subs.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (name, value)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        if let Some(value) = value {
            out.push('=');
            out.push_str(value);
        }
    }
    out
}

/// A `Content-MD5` that does not match the body means the body changed on the way. Without the
/// body bytes it cannot be checked (SigV2 signs no body otherwise).
fn check_content_md5(req: &Request) -> Result<(), VerifyError> {
    let (Some(value), Body::Bytes(bytes)) = (req.header("content-md5"), &req.body) else {
        return Ok(());
    };
    let declared = STANDARD
        .decode(value.trim())
        .map_err(|_| VerifyError::Malformed("Content-MD5 is not base64"))?;
    if !ct_eq(&declared, &Md5::digest(bytes)) {
        return Err(VerifyError::Mismatch);
    }
    Ok(())
}

pub fn verify(
    parsed: &Parsed,
    req: &Request,
    secret: &[u8],
    window: Window,
    options: &Options,
) -> Result<(), VerifyError> {
    let mut layouts = vec![DateLayout::Documented];
    if req.has_header("x-amz-date") {
        layouts.push(DateLayout::OnDateLine);
    }
    let mut matched = false;
    for layout in layouts {
        let sts = string_to_sign_with(req, options, layout);
        matched |= hmac_sha1_matches(secret, sts.as_bytes(), &parsed.signature);
    }
    if !matched {
        return Err(VerifyError::Mismatch);
    }
    check_content_md5(req)?;
    window.check(parsed.timestamp)
}

/// Sets `Date` (unless `x-amz-date` is there) and `Authorization`.
pub fn sign(
    req: &mut Request,
    key_id: &str,
    secret: &[u8],
    time: DateTime<Utc>,
    options: &Options,
) -> Result<(), SignError> {
    if key_id.is_empty() || key_id.contains(char::is_whitespace) {
        return Err(SignError::Invalid("key id must be set and without spaces"));
    }
    if !req.has_header("x-amz-date") {
        req.set_header("Date", format_http_date(time));
    }
    req.remove_header("authorization");
    let signature = hmac_sha1(secret, string_to_sign(req, options).as_bytes());
    req.headers.push((
        "Authorization".to_owned(),
        format!("AWS {key_id}:{}", STANDARD.encode(signature)),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(auth: &str) -> Request {
        Request::new("GET", "/johnsmith/photos/puppy.jpg", "")
            .with_header("Host", "s3.amazonaws.com")
            .with_header("Date", "Tue, 27 Mar 2007 19:36:42 +0000")
            .with_header("Authorization", auth)
    }

    #[test]
    fn key_id_and_signature_are_read() {
        let parsed = parse(&signed("AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU=")).unwrap();
        assert_eq!(parsed.key_id(), "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(parsed.timestamp().timestamp(), 1_175_024_202);
    }

    #[test]
    fn a_signature_of_the_wrong_length_is_malformed() {
        assert!(matches!(
            parse(&signed("AWS AKID:AAAA")),
            Err(SchemeError::Malformed(_))
        ));
        assert!(matches!(parse(&signed("AWS AKID")), Err(SchemeError::Malformed(_))));
        assert!(matches!(
            parse(&signed("AWS :bWq2s1WEIj+Ydj0vQ697zp+IXMU=")),
            Err(SchemeError::Malformed(_))
        ));
    }

    #[test]
    fn no_date_at_all_is_malformed() {
        let mut req = signed("AWS AKID:bWq2s1WEIj+Ydj0vQ697zp+IXMU=");
        req.remove_header("date");
        assert!(matches!(parse(&req), Err(SchemeError::Malformed(_))));
    }

    #[test]
    fn amz_headers_are_lower_cased_sorted_and_joined() {
        let req = Request::new("PUT", "/b/k", "")
            .with_header("X-Amz-Meta-ReviewedBy", "joe@johnsmith.net")
            .with_header("x-amz-acl", " public-read ")
            .with_header("X-Amz-Meta-ReviewedBy", "jane@johnsmith.net")
            .with_header("Date", "d");
        assert_eq!(
            string_to_sign(&req, &Options::default()),
            "PUT\n\n\nd\nx-amz-acl:public-read\nx-amz-meta-reviewedby:joe@johnsmith.net,jane@johnsmith.net\n/b/k"
        );
    }

    #[test]
    fn sub_resources_are_kept_sorted_and_other_parameters_dropped() {
        let req = Request::new("GET", "/b/k", "versionId=3%2F4&prefix=x&acl&uploads");
        assert_eq!(
            canonical_resource(&req, &Options::default()),
            "/b/k?acl&uploads&versionId=3/4"
        );
    }

    #[test]
    fn a_virtual_hosted_bucket_comes_from_the_host() {
        let options = Options {
            virtual_host_suffixes: vec!["s3.amazonaws.com".to_owned()],
        };
        let req = Request::new("GET", "/", "").with_header("Host", "johnsmith.s3.amazonaws.com:443");
        assert_eq!(canonical_resource(&req, &options), "/johnsmith/");
        let req = Request::new("GET", "/johnsmith/", "").with_header("Host", "s3.amazonaws.com");
        assert_eq!(canonical_resource(&req, &options), "/johnsmith/");
    }
}
