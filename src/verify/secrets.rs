//! Signing secrets unsealed once and kept while their key is cached, so that a signed request
//! costs its HMACs and not a decryption (nor, for SigV4, a key derivation: each entry keeps the
//! signing key of its latest scope). An entry is dropped, and its bytes zeroized, when its key
//! changes, when the listener starts over, or when the bounded cache evicts it.
//!
//! An entry is only used for the sealed secret it was opened from: a key resealed (a new master
//! key version) or given a new secret is opened again, whatever the notifications say.

use std::sync::Arc;

use quick_cache::sync::Cache;
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::Change;
use crate::crypto::secrets::{MasterKeys, SecretError};
use crate::domain::ids::KeyId;
use crate::domain::key::Sealed;
use crate::signing::{DerivedKeys, Secret};

/// The unsealed signing secrets of the keys verified lately, by key id.
#[derive(Clone)]
pub(crate) struct SigningSecrets {
    entries: Arc<Cache<KeyId, Arc<Unsealed>>>,
}

/// One key's signing secret, opened, with what was derived from it.
pub(crate) struct Unsealed {
    sealed: Sealed,
    bytes: Zeroizing<Vec<u8>>,
    derived: DerivedKeys,
}

impl Unsealed {
    pub fn secret(&self) -> Secret<'_> {
        Secret::remembered(&self.bytes, &self.derived)
    }
}

impl SigningSecrets {
    pub fn new(capacity: usize) -> Self {
        SigningSecrets {
            entries: Arc::new(Cache::new(capacity.max(1))),
        }
    }

    /// The secret `sealed` holds for key `id`, opened now or earlier.
    pub fn open(&self, master: &MasterKeys, id: &KeyId, sealed: &Sealed) -> Result<Arc<Unsealed>, SecretError> {
        if let Some(unsealed) = self.entries.get(id).filter(|unsealed| unsealed.sealed == *sealed) {
            return Ok(unsealed);
        }
        let opened = master.open(sealed, id.as_str())?;
        let unsealed = Arc::new(Unsealed {
            sealed: sealed.clone(),
            bytes: Zeroizing::new(opened.expose_secret().as_bytes().to_vec()),
            derived: DerivedKeys::default(),
        });
        self.entries.insert(id.clone(), unsealed.clone());
        Ok(unsealed)
    }

    pub fn forget(&self, change: &Change) {
        match change {
            Change::Key(id) | Change::Created { id, .. } => {
                self.entries.remove(id);
            }
            Change::Tenant(_) => {}
        }
    }

    pub fn clear(&self) {
        self.entries.clear();
    }

    #[cfg(test)]
    fn holds(&self, id: &KeyId) -> bool {
        self.entries.get(id).is_some()
    }
}

impl std::fmt::Debug for SigningSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningSecrets")
            .field("len", &self.entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::secrets::MasterKeys;

    fn master() -> MasterKeys {
        MasterKeys::parse(&MasterKeys::generate_config(1)).unwrap()
    }

    fn key() -> KeyId {
        KeyId::from_trusted("key_secrets_test".to_owned())
    }

    #[test]
    fn a_secret_is_opened_once_and_served_from_memory_after() {
        let master = master();
        let sealed = master.seal("s3cret", key().as_str());
        let secrets = SigningSecrets::new(10);
        let first = secrets.open(&master, &key(), &sealed).unwrap();
        let second = secrets.open(&master, &key(), &sealed).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(second.secret().bytes(), b"s3cret");
    }

    #[test]
    fn a_resealed_secret_is_opened_again() {
        let master = master();
        let secrets = SigningSecrets::new(10);
        let old = master.seal("old", key().as_str());
        secrets.open(&master, &key(), &old).unwrap();
        let new = master.seal("new", key().as_str());
        assert_eq!(secrets.open(&master, &key(), &new).unwrap().secret().bytes(), b"new");
    }

    #[test]
    fn a_change_to_the_key_drops_its_secret() {
        let master = master();
        let secrets = SigningSecrets::new(10);
        secrets
            .open(&master, &key(), &master.seal("s", key().as_str()))
            .unwrap();
        secrets.forget(&Change::Key(key()));
        assert!(!secrets.holds(&key()));
    }

    #[test]
    fn a_secret_sealed_for_another_key_is_refused() {
        let master = master();
        let secrets = SigningSecrets::new(10);
        let sealed = master.seal("s", "key_someone_else");
        assert!(secrets.open(&master, &key(), &sealed).is_err());
        assert!(!secrets.holds(&key()));
    }

    #[test]
    fn its_debug_form_shows_no_secret() {
        let master = master();
        let secrets = SigningSecrets::new(10);
        let unsealed = secrets
            .open(&master, &key(), &master.seal("s3cret", key().as_str()))
            .unwrap();
        assert!(!format!("{secrets:?} {:?}", unsealed.secret()).contains("s3cret"));
    }
}
