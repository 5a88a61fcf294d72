//! Access tokens: short-lived JWTs with a pinned algorithm (HS256 with a ≥ 32-byte secret, or
//! EdDSA with a key file). Times are judged by keyward's own clock.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::user::UserId;

pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
pub const MIN_SECRET_BYTES: usize = 32;
/// Tolerated clock difference for `nbf` and `iat`.
const LEEWAY_SECONDS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// The user's session version when the token was issued.
    pub ver: i32,
    /// The session (login) the token belongs to: ending the session ends the token.
    pub sid: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("KEYWARD_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
    #[error("the JWT private key file is not an Ed25519 PKCS#8 PEM key")]
    BadKey,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the access token is invalid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
}

pub struct Jwt {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Jwt({:?}, iss={}, aud={})",
            self.algorithm, self.issuer, self.audience
        )
    }
}

impl Jwt {
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Result<Self, JwtConfigError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(JwtConfigError::ShortSecret);
        }
        Ok(Self {
            algorithm: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// EdDSA from an Ed25519 private key in PKCS#8 PEM; the public key is derived from it.
    pub fn eddsa_from_pem(private_pem: &str, issuer: &str, audience: &str) -> Result<Self, JwtConfigError> {
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(private_pem).map_err(|_| JwtConfigError::BadKey)?;
        let public = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        Ok(Self {
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(private_pem.as_bytes()).map_err(|_| JwtConfigError::BadKey)?,
            decoding: DecodingKey::from_ed_components(&public).map_err(|_| JwtConfigError::BadKey)?,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// Issues an access token; returns it with its lifetime in seconds.
    pub fn issue(
        &self,
        user: UserId,
        version: i32,
        session: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(String, i64), JwtError> {
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.to_string(),
            exp: now.timestamp() + ACCESS_TOKEN_SECONDS,
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: Uuid::new_v4().to_string(),
            ver: version,
            sid: session,
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)
            .map_err(|_| JwtError::Invalid)?;
        Ok((token, ACCESS_TOKEN_SECONDS))
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, JwtError> {
        refuse_critical_header(token)?;
        let mut validation = Validation::new(self.algorithm);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf", "iat"]);
        // Expiry and not-before are judged below against keyward's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| JwtError::Invalid)?
            .claims;
        let now = now.timestamp();
        if claims.exp <= now {
            return Err(JwtError::Expired);
        }
        if claims.nbf > now + LEEWAY_SECONDS || claims.iat > now + LEEWAY_SECONDS {
            return Err(JwtError::NotYetValid);
        }
        if claims.exp - claims.iat > ACCESS_TOKEN_SECONDS {
            return Err(JwtError::Invalid);
        }
        Ok(claims)
    }
}

/// RFC 7515: a `crit` header names extensions the verifier must understand; keyward knows none.
fn refuse_critical_header(token: &str) -> Result<(), JwtError> {
    let header = token.split('.').next().ok_or(JwtError::Invalid)?;
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwtError::Invalid)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Invalid)?;
    match value.get("crit") {
        None => Ok(()),
        Some(serde_json::Value::Array(items)) if items.is_empty() => Ok(()),
        Some(_) => Err(JwtError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt() -> Jwt {
        Jwt::hs256(&[7u8; 32], "keyward", "keyward-api").unwrap()
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(matches!(
            Jwt::hs256(&[1u8; 31], "i", "a"),
            Err(JwtConfigError::ShortSecret)
        ));
    }

    #[test]
    fn issued_token_verifies_until_it_expires() {
        let now = Utc::now();
        let user = UserId::generate();
        let (token, ttl) = jwt().issue(user, 3, Uuid::now_v7(), now).unwrap();
        assert_eq!(ttl, 900);
        let claims = jwt().verify(&token, now).unwrap();
        assert_eq!((claims.sub, claims.ver), (user.to_string(), 3));
        assert_eq!(
            jwt().verify(&token, now + chrono::Duration::seconds(900)),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn critical_header_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","crit":["exp"]}"#);
        assert_eq!(
            refuse_critical_header(&format!("{header}.e30.sig")),
            Err(JwtError::Invalid)
        );
    }
}
