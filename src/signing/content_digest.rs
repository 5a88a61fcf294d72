//! RFC 9530 `Content-Digest`: a dictionary of algorithm → byte sequence over the body bytes.
//! We write sha-256 and check sha-256 and sha-512; other algorithms are ignored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256, Sha512};

use super::canon::ct_eq;
use super::request::Body;
use super::sfv::{self, BareItem, Item, Member};

pub const HEADER: &str = "Content-Digest";

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("Content-Digest is not a valid structured field")]
    Malformed,
    /// No algorithm we can check with what we were given (sha-512 needs the body bytes).
    #[error("Content-Digest has no algorithm keyward can check")]
    Unsupported,
    #[error("Content-Digest does not match the body")]
    Mismatch,
}

/// The digest of `content` under an RFC 9530 algorithm name we support.
pub fn digest(algorithm: &str, content: &[u8]) -> Option<Vec<u8>> {
    match algorithm {
        "sha-256" => Some(Sha256::digest(content).to_vec()),
        "sha-512" => Some(Sha512::digest(content).to_vec()),
        _ => None,
    }
}

/// `sha-256=:<base64>:` for a body whose SHA-256 is `hash`.
pub fn sha256_field(hash: &[u8; 32]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(hash))
}

/// The bytes of the `sha-256` member of a `Content-Digest` value, other members ignored. `None`
/// when the value is not a dictionary or its `sha-256` is missing or not a 32-byte sequence.
pub fn declared_sha256(field_value: &str) -> Option<[u8; 32]> {
    let dict = sfv::parse_dictionary(field_value).ok()?;
    let (_, member) = dict.iter().find(|(algorithm, _)| algorithm == "sha-256")?;
    match member {
        Member::Item(Item {
            bare: BareItem::ByteSeq(bytes),
            ..
        }) => bytes.as_slice().try_into().ok(),
        _ => None,
    }
}

/// Checks a `Content-Digest` value against the body: at least one algorithm we know must be
/// present and checkable, and every checkable one must match.
pub fn check(field_value: &str, body: &Body) -> Result<(), DigestError> {
    let dict = sfv::parse_dictionary(field_value).map_err(|_| DigestError::Malformed)?;
    let mut checked = false;
    for (algorithm, member) in &dict {
        let expected = match member {
            Member::Item(item) => match &item.bare {
                BareItem::ByteSeq(bytes) => bytes,
                _ => return Err(DigestError::Malformed),
            },
            Member::InnerList(_) => return Err(DigestError::Malformed),
        };
        let actual = match (algorithm.as_str(), body) {
            ("sha-256", body) => Some(body.sha256().to_vec()),
            (algorithm, Body::Bytes(bytes)) => digest(algorithm, bytes),
            (_, Body::Sha256(_)) => None,
        };
        if let Some(actual) = actual {
            if !ct_eq(&actual, expected) {
                return Err(DigestError::Mismatch);
            }
            checked = true;
        }
    }
    if checked {
        Ok(())
    } else {
        Err(DigestError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &[u8] = b"{\"hello\": \"world\"}\n";
    const HELLO_SHA256: &str = "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:";

    #[test]
    fn a_matching_sha256_digest_checks() {
        assert_eq!(check(HELLO_SHA256, &Body::Bytes(HELLO.to_vec())), Ok(()));
    }

    #[test]
    fn a_digest_of_other_bytes_is_a_mismatch() {
        assert_eq!(
            check(HELLO_SHA256, &Body::Bytes(b"tampered".to_vec())),
            Err(DigestError::Mismatch)
        );
    }

    #[test]
    fn sha256_is_checked_against_a_body_given_only_as_its_hash() {
        let body = Body::Sha256(Body::Bytes(HELLO.to_vec()).sha256());
        assert_eq!(check(HELLO_SHA256, &body), Ok(()));
    }

    #[test]
    fn only_unknown_algorithms_is_unsupported() {
        assert_eq!(
            check("md5=:AAAA:", &Body::Bytes(HELLO.to_vec())),
            Err(DigestError::Unsupported)
        );
    }

    #[test]
    fn sha512_cannot_be_checked_without_the_bytes() {
        let field =
            "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:";
        assert_eq!(check(field, &Body::Bytes(HELLO.to_vec())), Ok(()));
        let hashed = Body::Sha256(Body::Bytes(HELLO.to_vec()).sha256());
        assert_eq!(check(field, &hashed), Err(DigestError::Unsupported));
    }

    #[test]
    fn a_digest_that_is_not_a_byte_sequence_is_malformed() {
        assert_eq!(
            check("sha-256=\"abc\"", &Body::Bytes(Vec::new())),
            Err(DigestError::Malformed)
        );
    }

    #[test]
    fn the_declared_sha256_is_read_among_other_members() {
        let hash = Body::Bytes(HELLO.to_vec()).sha256();
        assert_eq!(declared_sha256(HELLO_SHA256), Some(hash));
        assert_eq!(declared_sha256(&format!("md5=:AAAA:, {HELLO_SHA256};p=1")), Some(hash));
    }

    #[test]
    fn no_declared_sha256_when_absent_or_malformed() {
        assert_eq!(declared_sha256("sha-512=:AAAA:"), None);
        assert_eq!(declared_sha256("sha-256=:AAAA:"), None);
        assert_eq!(declared_sha256("sha-256=\"abc\""), None);
        assert_eq!(declared_sha256("sha-256=(:AAAA:)"), None);
        assert_eq!(declared_sha256(&format!("{HELLO_SHA256},")), None);
        assert_eq!(declared_sha256(""), None);
    }

    #[test]
    fn sha256_field_formats_as_the_rfc_does() {
        let hash = Body::Bytes(HELLO.to_vec()).sha256();
        assert_eq!(sha256_field(&hash), HELLO_SHA256);
    }
}
