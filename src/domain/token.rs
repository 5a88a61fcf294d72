//! The token format: `<prefix><43-char base62 body><6-char base62 CRC-32>`, and its SHA-256 digest,
//! which is the only thing stored. Parsing checks format and checksum, so a mistyped token is
//! refused without touching the database.

use rand::{distributions::Alphanumeric, rngs::OsRng, Rng};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;

pub const BODY_LEN: usize = 43;
pub const CHECKSUM_LEN: usize = 6;
/// How many characters after the prefix are kept for display.
pub const START_LEN: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPrefix {
    Live,
    Test,
    Service,
    /// Refresh tokens of user sessions.
    Refresh,
    /// One-time invitation tokens.
    Invite,
}

impl TokenPrefix {
    pub const ALL: [TokenPrefix; 5] = [
        TokenPrefix::Live,
        TokenPrefix::Test,
        TokenPrefix::Service,
        TokenPrefix::Refresh,
        TokenPrefix::Invite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenPrefix::Live => "sk_live_",
            TokenPrefix::Test => "sk_test_",
            TokenPrefix::Service => "kw_svc_",
            TokenPrefix::Refresh => "kw_rt_",
            TokenPrefix::Invite => "kw_inv_",
        }
    }
}

/// SHA-256 of the whole token text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A hash read back from storage or a notification.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// The base62 CRC-32 (IEEE) of `prefix + body`, left-padded with `0` to six characters.
pub fn checksum(prefix_and_body: &str) -> String {
    let crc = crc32fast::hash(prefix_and_body.as_bytes());
    format!("{:0>width$}", base62::encode(crc), width = CHECKSUM_LEN)
}

/// A freshly minted token. Its text is exposed once, to the response that creates it.
pub struct NewToken {
    prefix: TokenPrefix,
    text: SecretString,
}

impl NewToken {
    pub fn generate(prefix: TokenPrefix) -> Self {
        let body: String = OsRng
            .sample_iter(&Alphanumeric)
            .take(BODY_LEN)
            .map(char::from)
            .collect();
        let mut text = String::with_capacity(prefix.as_str().len() + BODY_LEN + CHECKSUM_LEN);
        text.push_str(prefix.as_str());
        text.push_str(&body);
        let sum = checksum(&text);
        text.push_str(&sum);
        Self {
            prefix,
            text: SecretString::from(text),
        }
    }

    pub fn prefix(&self) -> TokenPrefix {
        self.prefix
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.text.expose_secret())
    }

    /// The first characters after the prefix, safe to show in listings.
    pub fn start(&self) -> String {
        let p = self.prefix.as_str().len();
        self.text.expose_secret()[p..p + START_LEN].to_owned()
    }

    pub fn expose(&self) -> &str {
        self.text.expose_secret()
    }
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewToken({}...)", self.prefix.as_str())
    }
}

/// A token someone presented, whose format and checksum are right.
pub struct PresentedToken<'a> {
    prefix: TokenPrefix,
    text: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("token is malformed")]
pub struct MalformedToken;

impl<'a> PresentedToken<'a> {
    pub fn parse(text: &'a str) -> Result<Self, MalformedToken> {
        let prefix = TokenPrefix::ALL
            .into_iter()
            .find(|p| text.starts_with(p.as_str()))
            .ok_or(MalformedToken)?;
        let rest = &text[prefix.as_str().len()..];
        if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedToken);
        }
        let (signed, sum) = text.split_at(text.len() - CHECKSUM_LEN);
        if checksum(signed) != sum {
            return Err(MalformedToken);
        }
        Ok(Self { prefix, text })
    }

    pub fn prefix(&self) -> TokenPrefix {
        self.prefix
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.text)
    }
}

impl fmt::Debug for PresentedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresentedToken({}...)", self.prefix.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_crc32_in_base62_padded_to_six() {
        // crc32("") = 0, crc32("a") = 0xE8B7BE43 = 3904355907
        assert_eq!(checksum(""), "000000");
        assert_eq!(crc32fast::hash(b"a"), 3_904_355_907);
        assert_eq!(checksum("a"), format!("{:0>6}", base62::encode(3_904_355_907u32)));
        assert_eq!(base62::encode(61u32), "z");
        assert_eq!(base62::encode(62u32), "10");
    }

    #[test]
    fn generated_tokens_match_the_scanner_regex_shape() {
        for prefix in TokenPrefix::ALL {
            let token = NewToken::generate(prefix);
            let text = token.expose();
            assert!(text.starts_with(prefix.as_str()));
            assert_eq!(text.len(), prefix.as_str().len() + 49);
            assert!(text[prefix.as_str().len()..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(PresentedToken::parse(text).is_ok());
        }
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let token = NewToken::generate(TokenPrefix::Live);
        let mut bytes = token.expose().as_bytes().to_vec();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(PresentedToken::parse(&tampered).err(), Some(MalformedToken));
    }

    #[test]
    fn wrong_prefix_length_or_alphabet_is_malformed() {
        let token = NewToken::generate(TokenPrefix::Test);
        let text = token.expose();
        assert!(PresentedToken::parse(&text.replace("sk_test_", "sk_prod_")).is_err());
        assert!(PresentedToken::parse(&text[..text.len() - 1]).is_err());
        assert!(PresentedToken::parse(&format!("{text}0")).is_err());
        assert!(PresentedToken::parse("sk_live_").is_err());
        assert!(PresentedToken::parse("").is_err());
        let mut with_dash = text.to_owned();
        with_dash.replace_range(12..13, "-");
        assert!(PresentedToken::parse(&with_dash).is_err());
    }

    #[test]
    fn body_characters_are_spread_over_the_whole_alphabet() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let token = NewToken::generate(TokenPrefix::Live);
            seen.extend(token.expose()[8..8 + BODY_LEN].chars());
        }
        assert_eq!(seen.len(), 62);
    }

    #[test]
    fn debug_output_never_contains_the_token() {
        let token = NewToken::generate(TokenPrefix::Live);
        assert!(!format!("{token:?}").contains(&token.expose()[8..]));
        assert!(!format!("{:?}", token.hash()).contains("0x"));
    }
}
