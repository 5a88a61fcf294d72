//! Encryption of stored signing secrets with AES-256-GCM under versioned master keys
//! (`KEYWARD_MASTER_KEYS`): the first key encrypts, every key decrypts, so master keys can
//! rotate. The owning key's id is the associated data, so a ciphertext moved to another row
//! does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::{rngs::OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MasterKeyError {
    #[error("KEYWARD_MASTER_KEYS must be a comma-separated list of <version>:<base64 of 32 bytes>")]
    Format,
    #[error("master key versions must be unique")]
    DuplicateVersion,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("no master key of version {0} is configured")]
    UnknownVersion(i32),
    #[error("the stored secret does not decrypt (wrong master key, or moved to another row)")]
    Undecryptable,
}

pub use crate::domain::key::Sealed;

pub struct MasterKeys {
    keys: Vec<(i32, Aes256Gcm)>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions: Vec<i32> = self.keys.iter().map(|(v, _)| *v).collect();
        write!(f, "MasterKeys(versions {versions:?})")
    }
}

impl MasterKeys {
    /// Parses `v2:BASE64,v1:BASE64` (the `v` is optional): the first encrypts.
    pub fn parse(text: &SecretString) -> Result<Self, MasterKeyError> {
        let mut keys = Vec::new();
        for item in text.expose_secret().split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (version, key) = item.split_once(':').ok_or(MasterKeyError::Format)?;
            let version: i32 = version
                .trim_start_matches('v')
                .parse()
                .map_err(|_| MasterKeyError::Format)?;
            let bytes = STANDARD
                .decode(key)
                .or_else(|_| URL_SAFE_NO_PAD.decode(key))
                .map_err(|_| MasterKeyError::Format)?;
            if bytes.len() != 32 {
                return Err(MasterKeyError::Format);
            }
            if keys.iter().any(|(v, _)| *v == version) {
                return Err(MasterKeyError::DuplicateVersion);
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| MasterKeyError::Format)?;
            keys.push((version, cipher));
        }
        if keys.is_empty() {
            return Err(MasterKeyError::Format);
        }
        Ok(Self { keys })
    }

    /// A fresh random master key in the configuration format, for `make run` and tests.
    pub fn generate_config(version: i32) -> SecretString {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        SecretString::from(format!("v{version}:{}", STANDARD.encode(key)))
    }

    pub fn current_version(&self) -> i32 {
        self.keys[0].0
    }

    pub fn seal(&self, secret: &str, owner: &str) -> Sealed {
        let (version, cipher) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: owner.as_bytes(),
        };
        // Encryption with a valid key and a 12-byte nonce cannot fail.
        let ciphertext = cipher.encrypt(Nonce::from_slice(&nonce), payload).unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        Sealed {
            version: *version,
            blob,
        }
    }

    pub fn open(&self, sealed: &Sealed, owner: &str) -> Result<SecretString, SecretError> {
        let cipher = self
            .keys
            .iter()
            .find(|(v, _)| *v == sealed.version)
            .map(|(_, c)| c)
            .ok_or(SecretError::UnknownVersion(sealed.version))?;
        if sealed.blob.len() < NONCE_LEN {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, ciphertext) = sealed.blob.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: owner.as_bytes(),
        };
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| SecretError::Undecryptable)
    }
}

/// A new signing secret: 32 random bytes, base64url without padding. Schemes use the UTF-8
/// bytes of this string as the HMAC key, as AWS does with a secret access key.
pub fn new_signing_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> MasterKeys {
        MasterKeys::parse(&SecretString::from(text.to_owned())).unwrap()
    }

    #[test]
    fn sealed_secret_opens_only_for_its_owner() {
        let master = keys(MasterKeys::generate_config(1).expose_secret());
        let sealed = master.seal("s3cret", "key_A");
        assert_eq!(master.open(&sealed, "key_A").unwrap().expose_secret(), "s3cret");
        assert_eq!(master.open(&sealed, "key_B").err(), Some(SecretError::Undecryptable));
        assert!(!sealed.blob.windows(6).any(|w| w == b"s3cret"));
    }

    #[test]
    fn older_master_keys_still_decrypt_after_rotation() {
        let old = MasterKeys::generate_config(1);
        let new = MasterKeys::generate_config(2);
        let before = keys(old.expose_secret());
        let sealed = before.seal("s3cret", "key_A");
        let after = keys(&format!("{},{}", new.expose_secret(), old.expose_secret()));
        assert_eq!(after.current_version(), 2);
        assert_eq!(after.open(&sealed, "key_A").unwrap().expose_secret(), "s3cret");
        assert_eq!(after.seal("x", "key_A").version, 2);
        let only_new = keys(new.expose_secret());
        assert_eq!(
            only_new.open(&sealed, "key_A").err(),
            Some(SecretError::UnknownVersion(1))
        );
    }

    #[test]
    fn malformed_configuration_is_refused() {
        for bad in ["", "v1", "v1:short", "x:AAAA", "v1:AAAA="] {
            assert!(MasterKeys::parse(&SecretString::from(bad.to_owned())).is_err(), "{bad}");
        }
        let one = MasterKeys::generate_config(1);
        let twice = format!("{},{}", one.expose_secret(), one.expose_secret());
        assert_eq!(
            MasterKeys::parse(&SecretString::from(twice)).err(),
            Some(MasterKeyError::DuplicateVersion)
        );
    }

    #[test]
    fn signing_secrets_are_43_base64url_characters() {
        let secret = new_signing_secret();
        assert_eq!(secret.expose_secret().len(), 43);
        assert!(secret
            .expose_secret()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
