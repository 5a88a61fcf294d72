//! The reference client signer behind `keyward sign`: builds a request from a URL, headers and
//! a body, signs it with one scheme, and gives back the headers a client must add.

use chrono::{DateTime, Utc};

use super::error::SignError;
use super::request::{Body, Request};
use super::{arrow, content_digest, keyward_hmac, rfc9421, sigv4};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientScheme {
    Hmac,
    AwsSigV4 { region: String, service: String },
    Rfc9421,
    Arrow,
}

/// What to sign: `url` is absolute (`https://host[:port]/path?query`).
#[derive(Clone, Debug)]
pub struct Outgoing<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Splits an absolute URL into (scheme, authority, path, query).
fn split_url(url: &str) -> Result<(&str, &str, &str, &str), SignError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(SignError::Invalid("the URL must be absolute"))?;
    if scheme != "http" && scheme != "https" {
        return Err(SignError::Invalid("the URL must be http or https"));
    }
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(SignError::MissingHost);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = if path.is_empty() { "/" } else { path };
    Ok((scheme, authority, path, query))
}

/// Signs `outgoing` for `key_id` with `secret` at `time`; returns the headers to add (Host
/// included, since the signature covers it).
pub fn sign(
    outgoing: &Outgoing<'_>,
    scheme: &ClientScheme,
    key_id: &str,
    secret: &[u8],
    time: DateTime<Utc>,
) -> Result<Vec<(String, String)>, SignError> {
    let (url_scheme, authority, path, query) = split_url(outgoing.url)?;
    let mut req = Request::new(outgoing.method, path, query);
    req.scheme = Some(url_scheme.to_owned());
    req.headers.push(("Host".into(), authority.into()));
    req.headers.extend(outgoing.headers.iter().cloned());
    req.body = Body::Bytes(outgoing.body.clone());
    let before: Vec<(String, String)> = outgoing.headers.clone();
    match scheme {
        ClientScheme::Hmac => keyward_hmac::sign(&mut req, key_id, secret, time)?,
        ClientScheme::AwsSigV4 { region, service } => {
            let creds = sigv4::Credentials {
                key_id,
                secret,
                region,
                service,
                session_token: None,
            };
            sigv4::sign(&mut req, &creds, time)?;
        }
        ClientScheme::Rfc9421 => {
            if !outgoing.body.is_empty() {
                req.set_header("Content-Digest", content_digest::sha256_field(&req.body.sha256()));
            }
            rfc9421::sign(&mut req, key_id, secret, time)?;
        }
        ClientScheme::Arrow => arrow::sign(&mut req, key_id, secret, time)?,
    }
    Ok(req.headers.into_iter().filter(|h| !before.contains(h)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in the README: change both together.
    #[test]
    fn readme_hmac_example() {
        let outgoing = Outgoing {
            method: "POST",
            url: "https://api.example.com/v1/orders?b=2&a=1",
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"amount":100}"#.to_vec(),
        };
        let time = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let secret = b"Zm9yLWRvY3MtZXhhbXBsZS1vbmx5LW5vdC1hLXNlY3JldA";
        let headers = sign(
            &outgoing,
            &ClientScheme::Hmac,
            "key_01JDQ3W6Z8G7X2V9K4M5N6P7Q8",
            secret,
            time,
        )
        .unwrap();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["Host", "X-Keyward-Key-Id", "X-Keyward-Timestamp", "X-Keyward-Signature"]
        );
        assert_eq!(headers[2].1, "1764000000");
        let req = Request::new("POST", "/v1/orders", "b=2&a=1").with_body(Body::Bytes(outgoing.body.clone()));
        assert_eq!(
            keyward_hmac::string_to_sign(&req, "1764000000", None),
            "POST\n/v1/orders\na=1&b=2\n1764000000\n4d4bbe59c6aad22442cde199a6a8a5f034405fcd78fb5a81c24ef249de1c45f1"
        );
        // Computed independently with Python's hmac module.
        assert_eq!(
            headers[3].1,
            "67fe37fedd43229ce57b00c1708176693216fa8007c02d42546a8efb50bd4ef1"
        );
    }

    #[test]
    fn urls_are_split_into_host_path_and_query() {
        assert_eq!(
            split_url("https://h.example:8443/a/b?x=1").unwrap(),
            ("https", "h.example:8443", "/a/b", "x=1")
        );
        assert_eq!(split_url("http://h.example").unwrap(), ("http", "h.example", "/", ""));
        assert_eq!(
            split_url("http://h.example?x").unwrap(),
            ("http", "h.example", "/", "x")
        );
        assert!(split_url("/relative").is_err());
        assert!(split_url("ftp://h/").is_err());
    }
}
