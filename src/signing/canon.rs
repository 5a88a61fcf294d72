//! Building blocks every scheme shares: AWS-style percent-encoding, the canonical query, header
//! value folding, HMAC with constant-time checks, and the timestamp formats on the wire.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<Sha1>;

/// Everything but the RFC 3986 unreserved characters, which are the only ones AWS leaves
/// unencoded (`percent_encode` encodes every non-ASCII byte besides, with upper-case hex).
const AWS_ENCODED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
const AWS_ENCODED_KEEP_SLASH: &AsciiSet = &AWS_ENCODED.remove(b'/');

/// Percent-encodes every byte except the unreserved ones (and `/` when `keep_slash`), with
/// upper-case hex, as AWS's `UriEncode()`.
pub(crate) fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let set = if keep_slash {
        AWS_ENCODED_KEEP_SLASH
    } else {
        AWS_ENCODED
    };
    percent_encode(bytes, set).to_string()
}

/// Decodes `%XX` sequences; a `%` not followed by two hex digits stays a literal `%`.
/// `+` stays `+`: AWS queries are not form-encoded.
pub(crate) fn percent_decode(text: &str) -> Vec<u8> {
    percent_decode_str(text).collect()
}

/// The `name=value` pairs of a raw query, as on the wire; empty segments (`a=1&&b=2`, a
/// trailing `&`) are skipped, a pair without `=` has an empty value.
pub(crate) fn raw_query_pairs(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The SigV4 canonical query string: every name and value decoded and re-encoded the AWS way,
/// sorted by encoded name and then encoded value, repeats kept. The plain HMAC scheme uses it too.
pub fn canonical_query(raw: &str) -> String {
    canonical_query_excluding(raw, None)
}

/// As [`canonical_query`], leaving out every parameter whose decoded name is `exclude`
/// (presigned URLs leave out `X-Amz-Signature`).
pub(crate) fn canonical_query_excluding(raw: &str, exclude: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = raw_query_pairs(raw)
        .filter(|(name, _)| exclude.is_none_or(|ex| percent_decode(name) != ex.as_bytes()))
        .map(|(name, value)| {
            (
                uri_encode(&percent_decode(name), false),
                uri_encode(&percent_decode(value), false),
            )
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Trims a header value and folds every run of whitespace (obs-fold line breaks included) into
/// one space, as SigV4's canonical headers want. Quotes do not protect spaces.
pub(crate) fn fold_whitespace(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_ascii_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub(crate) fn hex_sha256(data: &[u8]) -> String {
    hex::encode(sha256(data))
}

/// An HMAC keyed with `key` that has read `data`.
fn keyed<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> M {
    let mut mac = match <M as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC hashes or pads the key; no length is invalid.
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(data);
    mac
}

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    keyed::<HmacSha256>(key, data).finalize().into_bytes().into()
}

/// Constant-time check of an HMAC-SHA256 tag.
pub(crate) fn hmac_sha256_matches(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    keyed::<HmacSha256>(key, data).verify_slice(tag).is_ok()
}

pub(crate) fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    keyed::<HmacSha1>(key, data).finalize().into_bytes().into()
}

/// Constant-time check of an HMAC-SHA1 tag.
pub(crate) fn hmac_sha1_matches(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    keyed::<HmacSha1>(key, data).verify_slice(tag).is_ok()
}

/// Constant-time equality for digests that are not secret but should not leak either.
/// Slices of different lengths differ at once (their lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Exactly 64 hex digits (either case) into 32 bytes.
pub(crate) fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes
        .iter()
        .try_fold(0u32, |acc, &b| acc.checked_mul(10)?.checked_add(u32::from(b - b'0')))
}

fn date_time(y: &[u8], mo: &[u8], d: &[u8], h: &[u8], mi: &[u8], s: &[u8]) -> Option<NaiveDateTime> {
    let year = i32::try_from(digits(y)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, digits(mo)?, digits(d)?)?;
    // No leap seconds on the wire formats we read.
    let time = NaiveTime::from_hms_opt(digits(h)?, digits(mi)?, digits(s)?)?;
    Some(date.and_time(time))
}

/// `YYYYMMDDTHHMMSSZ` (ISO 8601 basic, as in `X-Amz-Date`), strictly.
pub(crate) fn parse_amz_date(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let dt = date_time(
        b.get(0..4)?,
        b.get(4..6)?,
        b.get(6..8)?,
        b.get(9..11)?,
        b.get(11..13)?,
        b.get(13..15)?,
    )?;
    Some(dt.and_utc())
}

pub(crate) fn format_amz_date(time: DateTime<Utc>) -> String {
    time.format("%Y%m%dT%H%M%SZ").to_string()
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (ISO 8601 extended, UTC), with 1 to 9 fraction digits.
pub(crate) fn parse_iso_extended(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let fixed = b.get(0..19)?;
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| fixed.get(i) != Some(&c)) || b.last() != Some(&b'Z') {
        return None;
    }
    let dt = date_time(
        fixed.get(0..4)?,
        fixed.get(5..7)?,
        fixed.get(8..10)?,
        fixed.get(11..13)?,
        fixed.get(14..16)?,
        fixed.get(17..19)?,
    )?;
    let rest = b.get(19..b.len() - 1)?;
    let nanos = match rest {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let value = digits(frac)?;
            value * 10u32.pow(9 - u32::try_from(frac.len()).ok()?)
        }
        _ => return None,
    };
    Some(dt.and_utc() + Duration::nanoseconds(i64::from(nanos)))
}

/// An HTTP date (`Tue, 27 Mar 2007 19:36:42 +0000` or `... GMT`).
pub(crate) fn parse_http_date(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(crate) fn format_http_date(time: DateTime<Utc>) -> String {
    time.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encode_keeps_unreserved_and_encodes_the_rest_upper_case() {
        assert_eq!(uri_encode(b"aZ0-._~", false), "aZ0-._~");
        assert_eq!(uri_encode(b"a b/$", false), "a%20b%2F%24");
        assert_eq!(uri_encode(b"/a b/", true), "/a%20b/");
        assert_eq!(uri_encode("ሴ".as_bytes(), false), "%E1%88%B4");
    }

    #[test]
    fn percent_decode_leaves_a_stray_percent_alone() {
        assert_eq!(percent_decode("a%2fb%zz%4"), b"a/b%zz%4");
        assert_eq!(percent_decode("a+b"), b"a+b");
    }

    #[test]
    fn canonical_query_sorts_by_name_then_value_after_encoding() {
        assert_eq!(
            canonical_query("Param-3=Value3&Param=Value2&%E1%88%B4=Value1"),
            "%E1%88%B4=Value1&Param=Value2&Param-3=Value3"
        );
        assert_eq!(
            canonical_query("Param1=value2&Param1=Value1"),
            "Param1=Value1&Param1=value2"
        );
    }

    #[test]
    fn canonical_query_gives_a_bare_name_an_empty_value() {
        assert_eq!(canonical_query("acl&b=1&"), "acl=&b=1");
    }

    #[test]
    fn canonical_query_normalises_encoding_differences() {
        assert_eq!(canonical_query("a=%7e%2a"), canonical_query("a=~*"));
        assert_eq!(canonical_query("a=x y"), "a=x%20y");
    }

    #[test]
    fn canonical_query_can_leave_out_one_parameter() {
        assert_eq!(
            canonical_query_excluding("b=2&X-Amz-Signature=ff&a=1", Some("X-Amz-Signature")),
            "a=1&b=2"
        );
    }

    #[test]
    fn fold_whitespace_trims_and_collapses_runs_even_in_quotes() {
        assert_eq!(fold_whitespace("  \"a   b   c\" "), "\"a b c\"");
        assert_eq!(fold_whitespace("value1\n  value2\n     value3"), "value1 value2 value3");
    }

    #[test]
    fn amz_dates_parse_strictly() {
        let t = parse_amz_date("20150830T123600Z");
        assert_eq!(t.map(format_amz_date).as_deref(), Some("20150830T123600Z"));
        assert!(parse_amz_date("20150830T123600").is_none());
        assert!(parse_amz_date("2015083OT123600Z").is_none());
        assert!(parse_amz_date("20150230T123600Z").is_none());
        assert!(parse_amz_date("+0150830T123600Z").is_none());
    }

    #[test]
    fn iso_extended_dates_take_fractions_of_one_to_nine_digits() {
        let t = parse_iso_extended("2016-04-12T14:28:36.218Z");
        assert_eq!(t.map(|t| t.timestamp_millis()), Some(1_460_471_316_218));
        assert!(parse_iso_extended("2016-04-12T14:28:36Z").is_some());
        assert!(parse_iso_extended("2016-04-12T14:28:36.Z").is_none());
        assert!(parse_iso_extended("2016-04-12T14:28:36.218+00:00").is_none());
        assert!(parse_iso_extended("2016-04-12 14:28:36.218Z").is_none());
    }

    #[test]
    fn http_dates_accept_gmt_and_numeric_offsets() {
        let a = parse_http_date("Tue, 27 Mar 2007 19:36:42 +0000");
        let b = parse_http_date("Tue, 27 Mar 2007 19:36:42 GMT");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(
            a.map(format_http_date).as_deref(),
            Some("Tue, 27 Mar 2007 19:36:42 GMT")
        );
    }

    #[test]
    fn hmac_checks_reject_a_changed_tag() {
        let tag = hmac_sha256(b"k", b"m");
        assert!(hmac_sha256_matches(b"k", b"m", &tag));
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(!hmac_sha256_matches(b"k", b"m", &bad));
        assert!(!hmac_sha256_matches(b"k", b"m", &tag[..31]));
    }

    #[test]
    fn decode_hex32_wants_exactly_64_digits() {
        assert!(decode_hex32(&"ab".repeat(32)).is_some());
        assert!(decode_hex32(&"AB".repeat(32)).is_some());
        assert!(decode_hex32(&"ab".repeat(31)).is_none());
        assert!(decode_hex32(&"zz".repeat(32)).is_none());
    }
}
