//! An HTTPS endpoint receiving NDJSON batches (one chain's events in order, one per line, as
//! the export has them), each signed like a webhook:
//! `Keyward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! A 2xx answer acknowledges the batch; anything else, or no answer in time, is retried.

use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

use super::{DeliveryError, Encoded};

pub const SIGNATURE_HEADER: &str = "Keyward-Signature";

/// How long one batch may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest signing secret accepted.
pub const MIN_SECRET_LEN: usize = 32;

pub struct Https {
    url: reqwest::Url,
    secret: SecretString,
    client: reqwest::Client,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Https {
    /// A sink posting to `url` (https only), signing with `secret`, trusting `tls`'s roots.
    pub fn new(url: &str, secret: SecretString, tls: rustls::ClientConfig) -> Result<Https, String> {
        // The URL is left out of errors: it may hold a receiver's token in its query.
        let url = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if url.scheme() != "https" {
            return Err(format!("the URL must be https://, not {}://", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL must not hold credentials: the batches are signed".to_owned());
        }
        if secret.expose_secret().len() < MIN_SECRET_LEN {
            return Err(format!(
                "the signing secret must be at least {MIN_SECRET_LEN} characters"
            ));
        }
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            // A redirect could lead the batches anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Https { url, secret, client })
    }

    /// Posts `events` as one signed NDJSON batch, at `now` (unix seconds).
    pub async fn deliver(&self, events: &[Encoded], now: i64) -> Result<(), DeliveryError> {
        let body = ndjson(events);
        let signature = signature(self.secret.expose_secret().as_bytes(), now, &body);
        let answer = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Http(describe(&e.without_url())))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Refused(status.as_u16()))
        }
    }
}

/// The error and its causes (hyper's, the socket's, TLS's), which name no URL.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The events as NDJSON: each its JSON on a line of its own.
pub fn ndjson(events: &[Encoded]) -> Vec<u8> {
    let mut body = Vec::new();
    for encoded in events {
        body.extend_from_slice(encoded.json.as_bytes());
        body.push(b'\n');
    }
    body
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    format!(
        "t={t},v1={}",
        hex::encode(crate::signing::canon::hmac_sha256(secret, &signed))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_time_a_dot_and_the_body() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"secret",b"1700000000.{}\n",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"secret", 1_700_000_000, b"{}\n"),
            "t=1700000000,v1=dc2e07c928691c3fdecbdca708e89415b4ad6f1c9ddb31cd2da8967da29cd435"
        );
    }

    #[test]
    fn only_https_urls_without_credentials_and_long_secrets_are_taken() {
        let tls = || super::super::tls::client_config(None).unwrap();
        let secret = || SecretString::from("s".repeat(MIN_SECRET_LEN));
        assert!(Https::new("https://siem.example/ingest", secret(), tls()).is_ok());
        assert!(Https::new("http://siem.example/ingest", secret(), tls()).is_err());
        assert!(Https::new("https://u:p@siem.example/ingest", secret(), tls()).is_err());
        assert!(Https::new("https://siem.example/", SecretString::from("short"), tls()).is_err());
    }
}
