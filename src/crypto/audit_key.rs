//! The audit key: an Ed25519 key that signs the checkpoints of the audit chains. Its private
//! half stays in a PKCS#8 PEM file (`KEYWARD_AUDIT_SIGNING_KEY_FILE`); its public half is
//! served to anyone, so that checkpoints verify without keyward's secrets.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// The key that signs checkpoints. Its `Debug` form names only the key id.
pub struct AuditKey {
    signing: SigningKey,
    id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditKeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)")]
    Format,
}

impl AuditKey {
    pub fn from_pem(pem: &str) -> Result<Self, AuditKeyError> {
        let signing = SigningKey::from_pkcs8_pem(pem).map_err(|_| AuditKeyError::Format)?;
        Ok(Self::from_signing(signing))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let id = key_id_of(&signing.verifying_key().to_bytes());
        AuditKey { signing, id }
    }

    /// A new random key as PKCS#8 PEM, for `keyward audit keygen` (and `make run`).
    pub fn generate_pem() -> zeroize::Zeroizing<String> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        let signing = SigningKey::from_bytes(&seed);
        match signing.to_pkcs8_pem(Default::default()) {
            Ok(pem) => zeroize::Zeroizing::new(pem.to_string()),
            // Encoding 32 bytes as PKCS#8 cannot fail.
            Err(_) => zeroize::Zeroizing::new(String::new()),
        }
    }

    /// The first 8 bytes of SHA-256 of the raw public key, hex: what a checkpoint names.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A raw public key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), which
/// OpenSSL and every Ed25519 library read.
pub fn public_pem(public: &[u8; 32]) -> Option<String> {
    let key = VerifyingKey::from_bytes(public).ok()?;
    key.to_public_key_pem(Default::default()).ok()
}

/// The raw key of a SubjectPublicKeyInfo PEM.
pub fn public_key_from_pem(pem: &str) -> Option<[u8; 32]> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    VerifyingKey::from_public_key_pem(pem).ok().map(|key| key.to_bytes())
}

/// The key id of a raw public key: the first 8 bytes of its SHA-256, hex.
pub fn key_id_of(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

/// Whether `signature` is `public`'s signature of `message`.
pub fn verifies(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(public), Ok(signature)) = (<[u8; 32]>::try_from(public), <[u8; 64]>::try_from(signature)) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&public) else {
        return false;
    };
    key.verify(message, &ed25519_dalek::Signature::from_bytes(&signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_and_its_signatures_verify() {
        let key = AuditKey::from_pem(&AuditKey::generate_pem()).unwrap();
        let signature = key.sign(b"checkpoint");
        assert!(verifies(&key.public_key(), b"checkpoint", &signature));
        assert!(!verifies(&key.public_key(), b"checkpoinT", &signature));
        assert_eq!(key.id().len(), 16);
    }

    #[test]
    fn a_file_that_is_not_a_private_key_is_refused() {
        assert_eq!(
            AuditKey::from_pem("-----BEGIN PUBLIC KEY-----").err(),
            Some(AuditKeyError::Format)
        );
    }

    #[test]
    fn its_debug_form_names_only_the_key_id() {
        let pem = AuditKey::generate_pem();
        let key = AuditKey::from_pem(&pem).unwrap();
        assert_eq!(format!("{key:?}"), format!("AuditKey {{ id: {:?}, .. }}", key.id()));
    }

    #[test]
    fn the_public_key_is_served_as_spki_pem() {
        let key = AuditKey::from_pem(&AuditKey::generate_pem()).unwrap();
        assert!(public_pem(&key.public_key())
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
