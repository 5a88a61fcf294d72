//! The secret a signature is checked with. A caller that verifies many requests of one key
//! keeps a [`DerivedKeys`] beside the secret, so that a SigV4 signing key (four HMACs of the
//! secret, the date, the region and the service) is derived once a day rather than per request.

use std::sync::Mutex;

use zeroize::Zeroizing;

use super::sigv4::{signing_key, CredentialScope};

/// The UTF-8 bytes of a signing secret, and the caller's memo of keys derived from it, if any.
#[derive(Clone, Copy)]
pub struct Secret<'a> {
    bytes: &'a [u8],
    derived: Option<&'a DerivedKeys>,
}

impl<'a> Secret<'a> {
    /// A secret whose derived keys are remembered in `derived`. `derived` must belong to these
    /// bytes alone: a memo shared by two secrets would hand one the other's keys.
    pub fn remembered(bytes: &'a [u8], derived: &'a DerivedKeys) -> Self {
        Secret {
            bytes,
            derived: Some(derived),
        }
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The SigV4 signing key for `scope`, from the memo when it holds that scope's.
    pub(super) fn sigv4_key(&self, scope: &CredentialScope) -> Zeroizing<[u8; 32]> {
        let Some(derived) = self.derived else {
            return Zeroizing::new(signing_key(self.bytes, scope));
        };
        if let Ok(memo) = derived.sigv4.lock() {
            if let Some((memo_scope, key)) = memo.as_ref() {
                if memo_scope == scope {
                    return key.clone();
                }
            }
        }
        let key = Zeroizing::new(signing_key(self.bytes, scope));
        if let Ok(mut memo) = derived.sigv4.lock() {
            *memo = Some((scope.clone(), key.clone()));
        }
        key
    }
}

impl<'a> From<&'a [u8]> for Secret<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Secret { bytes, derived: None }
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Secret<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        Secret { bytes, derived: None }
    }
}

impl std::fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Keys derived from one secret, kept by the caller with it: the SigV4 signing key of the
/// latest scope (a client signs with one date, region and service at a time). Zeroized when
/// replaced or dropped.
#[derive(Default)]
pub struct DerivedKeys {
    sigv4: Mutex<Option<(CredentialScope, Zeroizing<[u8; 32]>)>>,
}

impl std::fmt::Debug for DerivedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedKeys(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(date: &str) -> CredentialScope {
        CredentialScope {
            date: date.to_owned(),
            region: "us-east-1".to_owned(),
            service: "execute-api".to_owned(),
        }
    }

    #[test]
    fn a_remembered_secret_derives_the_same_sigv4_key_as_a_plain_one() {
        let derived = DerivedKeys::default();
        let remembered = Secret::remembered(b"s3cret", &derived);
        let plain = Secret::from(b"s3cret");
        assert_eq!(
            remembered.sigv4_key(&scope("20261203")),
            plain.sigv4_key(&scope("20261203"))
        );
        assert_eq!(
            remembered.sigv4_key(&scope("20261203")),
            plain.sigv4_key(&scope("20261203"))
        );
    }

    #[test]
    fn a_new_scope_replaces_the_remembered_key() {
        let derived = DerivedKeys::default();
        let remembered = Secret::remembered(b"s3cret", &derived);
        let today = remembered.sigv4_key(&scope("20261203"));
        let tomorrow = remembered.sigv4_key(&scope("20261204"));
        assert_ne!(today, tomorrow);
        assert_eq!(tomorrow, Secret::from(b"s3cret").sigv4_key(&scope("20261204")));
        let memo = derived.sigv4.lock().unwrap();
        assert_eq!(memo.as_ref().map(|(s, _)| s.date.as_str()), Some("20261204"));
    }
}
