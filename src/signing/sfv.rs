//! RFC 8941 Structured Field Values: the parser and serialiser RFC 9421 (`Signature-Input`,
//! `Signature`) and RFC 9530 (`Content-Digest`) need. Strict where the RFC is strict.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use std::fmt::Write;

/// RFC 8941 §4.2.7: parsers should not fail on missing padding or non-zero pad bits.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

const MAX_INTEGER: i64 = 999_999_999_999_999;

/// RFC 8941 §3 sizes every parser must support; we support exactly those, which also bounds the
/// work a hostile header can cause (repeated keys are looked up linearly).
const MAX_MEMBERS: usize = 1024;
const MAX_INNER_ITEMS: usize = 256;
const MAX_PARAMS: usize = 256;

/// A decimal kept as thousandths, so it serialises back exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal(pub i64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BareItem {
    Integer(i64),
    Decimal(Decimal),
    String(String),
    Token(String),
    ByteSeq(Vec<u8>),
    Boolean(bool),
}

/// Ordered; a repeated key overwrites the earlier value in place (RFC 8941 §4.2.3.2).
pub type Parameters = Vec<(String, BareItem)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub bare: BareItem,
    pub params: Parameters,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InnerList {
    pub items: Vec<Item>,
    pub params: Parameters,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    Item(Item),
    InnerList(InnerList),
}

pub type List = Vec<Member>;
/// Ordered; a repeated key overwrites the earlier value in place.
pub type Dictionary = Vec<(String, Member)>;

/// Why a field value is not a valid structured field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid structured field: {0}")]
pub struct SfvError(pub &'static str);

type Result<T> = std::result::Result<T, SfvError>;

pub fn param<'a>(params: &'a Parameters, key: &str) -> Option<&'a BareItem> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn insert<V>(map: &mut Vec<(String, V)>, key: String, value: V) {
    match map.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => map.push((key, value)),
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        // RFC 8941 §4.2 step 2: leading SP are discarded (trailing ones at the end).
        let bytes = input.as_bytes();
        let start = bytes.iter().take_while(|b| **b == b' ').count();
        let end = bytes.len() - bytes.iter().rev().take_while(|b| **b == b' ').count();
        Parser {
            input: bytes.get(start..end.max(start)).unwrap_or_default(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn expect_end(&self) -> Result<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(SfvError("trailing characters"))
        }
    }

    /// After a list or dictionary member: end, or `,` and another member.
    fn member_separator(&mut self) -> Result<bool> {
        self.skip_ows();
        if self.at_end() {
            return Ok(false);
        }
        if self.peek() != Some(b',') {
            return Err(SfvError("expected ',' between members"));
        }
        self.pos += 1;
        self.skip_ows();
        if self.at_end() {
            return Err(SfvError("trailing ','"));
        }
        Ok(true)
    }

    fn list(&mut self) -> Result<List> {
        let mut members = Vec::new();
        if self.at_end() {
            return Ok(members);
        }
        loop {
            if members.len() == MAX_MEMBERS {
                return Err(SfvError("more than 1024 members"));
            }
            members.push(self.member()?);
            if !self.member_separator()? {
                return Ok(members);
            }
        }
    }

    fn dictionary(&mut self) -> Result<Dictionary> {
        let mut members = Vec::new();
        if self.at_end() {
            return Ok(members);
        }
        loop {
            let key = self.key()?;
            let member = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.member()?
            } else {
                Member::Item(Item {
                    bare: BareItem::Boolean(true),
                    params: self.parameters()?,
                })
            };
            insert(&mut members, key, member);
            if members.len() > MAX_MEMBERS {
                return Err(SfvError("more than 1024 members"));
            }
            if !self.member_separator()? {
                return Ok(members);
            }
        }
    }

    fn member(&mut self) -> Result<Member> {
        if self.peek() == Some(b'(') {
            Ok(Member::InnerList(self.inner_list()?))
        } else {
            Ok(Member::Item(self.item()?))
        }
    }

    fn inner_list(&mut self) -> Result<InnerList> {
        self.pos += 1; // '('
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    let params = self.parameters()?;
                    return Ok(InnerList { items, params });
                }
                None => return Err(SfvError("unterminated inner list")),
                Some(_) => {
                    if items.len() == MAX_INNER_ITEMS {
                        return Err(SfvError("more than 256 inner list items"));
                    }
                    items.push(self.item()?);
                    if !matches!(self.peek(), Some(b' ' | b')')) {
                        return Err(SfvError("inner list items must be separated by spaces"));
                    }
                }
            }
        }
    }

    fn item(&mut self) -> Result<Item> {
        let bare = self.bare_item()?;
        let params = self.parameters()?;
        Ok(Item { bare, params })
    }

    fn parameters(&mut self) -> Result<Parameters> {
        let mut params = Vec::new();
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_sp();
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            insert(&mut params, key, value);
            if params.len() > MAX_PARAMS {
                return Err(SfvError("more than 256 parameters"));
            }
        }
        Ok(params)
    }

    fn key(&mut self) -> Result<String> {
        match self.peek() {
            Some(b) if b.is_ascii_lowercase() || b == b'*' => {}
            _ => return Err(SfvError("a key must start with a lower-case letter or '*'")),
        }
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*') {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.ascii(start)
    }

    fn ascii(&self, start: usize) -> Result<String> {
        let bytes = self.input.get(start..self.pos).unwrap_or_default();
        String::from_utf8(bytes.to_vec()).map_err(|_| SfvError("not ASCII"))
    }

    fn bare_item(&mut self) -> Result<BareItem> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string(),
            Some(b':') => self.byte_seq(),
            Some(b'?') => self.boolean(),
            Some(b) if b.is_ascii_alphabetic() || b == b'*' => self.token(),
            _ => Err(SfvError("unknown item type")),
        }
    }

    fn number(&mut self) -> Result<BareItem> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        let mut dot: Option<usize> = None;
        while let Some(b) = self.peek() {
            if b.is_ascii_digit() {
                self.pos += 1;
            } else if b == b'.' && dot.is_none() {
                if self.pos - start > 12 {
                    return Err(SfvError("decimal integer part longer than 12 digits"));
                }
                dot = Some(self.pos);
                self.pos += 1;
            } else {
                break;
            }
            let len = self.pos - start;
            if (dot.is_none() && len > 15) || (dot.is_some() && len > 16) {
                return Err(SfvError("number too long"));
            }
        }
        let text = self.ascii(start)?;
        let sign = if negative { -1 } else { 1 };
        match dot {
            None => {
                if text.is_empty() {
                    return Err(SfvError("'-' without digits"));
                }
                let value: i64 = text.parse().map_err(|_| SfvError("bad integer"))?;
                Ok(BareItem::Integer(sign * value))
            }
            Some(dot_at) => {
                let int_len = dot_at - start;
                let (int_part, frac_part) = text.split_at(int_len);
                let frac_part = frac_part.get(1..).unwrap_or_default();
                if int_part.is_empty() || frac_part.is_empty() || frac_part.len() > 3 {
                    return Err(SfvError("a decimal needs 1-12 integer and 1-3 fraction digits"));
                }
                let int: i64 = int_part.parse().map_err(|_| SfvError("bad decimal"))?;
                let mut frac: i64 = frac_part.parse().map_err(|_| SfvError("bad decimal"))?;
                for _ in frac_part.len()..3 {
                    frac *= 10;
                }
                Ok(BareItem::Decimal(Decimal(sign * (int * 1000 + frac))))
            }
        }
    }

    fn string(&mut self) -> Result<BareItem> {
        self.pos += 1; // '"'
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(SfvError("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(BareItem::String(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(char::from(c));
                            self.pos += 1;
                        }
                        _ => return Err(SfvError("bad escape in string")),
                    }
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(char::from(c));
                    self.pos += 1;
                }
                Some(_) => return Err(SfvError("control or non-ASCII character in string")),
            }
        }
    }

    fn token(&mut self) -> Result<BareItem> {
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.peek() {
            if is_tchar(b) || b == b':' || b == b'/' {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(BareItem::Token(self.ascii(start)?))
    }

    fn byte_seq(&mut self) -> Result<BareItem> {
        self.pos += 1; // ':'
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.peek() != Some(b':') {
            return Err(SfvError("unterminated byte sequence"));
        }
        let encoded = self.input.get(start..self.pos).unwrap_or_default();
        self.pos += 1;
        LENIENT_BASE64
            .decode(encoded)
            .map(BareItem::ByteSeq)
            .map_err(|_| SfvError("bad base64 in byte sequence"))
    }

    fn boolean(&mut self) -> Result<BareItem> {
        self.pos += 1; // '?'
        let value = match self.peek() {
            Some(b'1') => true,
            Some(b'0') => false,
            _ => return Err(SfvError("a boolean is ?0 or ?1")),
        };
        self.pos += 1;
        Ok(BareItem::Boolean(value))
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub fn parse_list(input: &str) -> Result<List> {
    let mut p = Parser::new(input);
    let list = p.list()?;
    p.expect_end()?;
    Ok(list)
}

pub fn parse_dictionary(input: &str) -> Result<Dictionary> {
    let mut p = Parser::new(input);
    let dict = p.dictionary()?;
    p.expect_end()?;
    Ok(dict)
}

pub fn parse_item(input: &str) -> Result<Item> {
    let mut p = Parser::new(input);
    if p.at_end() {
        return Err(SfvError("empty item"));
    }
    let item = p.item()?;
    p.expect_end()?;
    Ok(item)
}

/// RFC 8941 key syntax: `lcalpha` or `*`, then `lcalpha`, digits, `_ - . *`.
pub fn is_valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*'))
}

pub fn serialize_bare_item(bare: &BareItem, out: &mut String) -> Result<()> {
    match bare {
        BareItem::Integer(i) => {
            if !(-MAX_INTEGER..=MAX_INTEGER).contains(i) {
                return Err(SfvError("integer out of range"));
            }
            let _ = write!(out, "{i}");
        }
        BareItem::Decimal(Decimal(milli)) => {
            if milli.unsigned_abs() / 1000 > 999_999_999_999 {
                return Err(SfvError("decimal out of range"));
            }
            if *milli < 0 {
                out.push('-');
            }
            let abs = milli.unsigned_abs();
            let _ = write!(out, "{}.", abs / 1000);
            let frac = format!("{:03}", abs % 1000);
            let trimmed = frac.trim_end_matches('0');
            out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
        }
        BareItem::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    ' '..='~' => out.push(c),
                    _ => return Err(SfvError("string with a character outside ASCII")),
                }
            }
            out.push('"');
        }
        BareItem::Token(t) => {
            let mut bytes = t.bytes();
            let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'*');
            if !first_ok || !bytes.all(|b| is_tchar(b) || b == b':' || b == b'/') {
                return Err(SfvError("invalid token"));
            }
            out.push_str(t);
        }
        BareItem::ByteSeq(bytes) => {
            out.push(':');
            out.push_str(&STANDARD.encode(bytes));
            out.push(':');
        }
        BareItem::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
    }
    Ok(())
}

pub fn serialize_parameters(params: &Parameters, out: &mut String) -> Result<()> {
    for (key, value) in params {
        if !is_valid_key(key) {
            return Err(SfvError("invalid key"));
        }
        out.push(';');
        out.push_str(key);
        if *value != BareItem::Boolean(true) {
            out.push('=');
            serialize_bare_item(value, out)?;
        }
    }
    Ok(())
}

pub fn serialize_item(item: &Item) -> Result<String> {
    let mut out = String::new();
    write_item(item, &mut out)?;
    Ok(out)
}

fn write_item(item: &Item, out: &mut String) -> Result<()> {
    serialize_bare_item(&item.bare, out)?;
    serialize_parameters(&item.params, out)
}

pub fn serialize_inner_list(list: &InnerList) -> Result<String> {
    let mut out = String::new();
    write_inner_list(list, &mut out)?;
    Ok(out)
}

fn write_inner_list(list: &InnerList, out: &mut String) -> Result<()> {
    out.push('(');
    for (i, item) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_item(item, out)?;
    }
    out.push(')');
    serialize_parameters(&list.params, out)
}

pub fn serialize_member(member: &Member) -> Result<String> {
    let mut out = String::new();
    write_member(member, &mut out)?;
    Ok(out)
}

fn write_member(member: &Member, out: &mut String) -> Result<()> {
    match member {
        Member::Item(item) => write_item(item, out),
        Member::InnerList(list) => write_inner_list(list, out),
    }
}

pub fn serialize_list(list: &List) -> Result<String> {
    let mut out = String::new();
    for (i, member) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_member(member, &mut out)?;
    }
    Ok(out)
}

pub fn serialize_dictionary(dict: &Dictionary) -> Result<String> {
    let mut out = String::new();
    for (i, (key, member)) in dict.iter().enumerate() {
        if !is_valid_key(key) {
            return Err(SfvError("invalid key"));
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(key);
        match member {
            Member::Item(item) if item.bare == BareItem::Boolean(true) => {
                serialize_parameters(&item.params, &mut out)?;
            }
            _ => {
                out.push('=');
                write_member(member, &mut out)?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(bare: BareItem) -> Item {
        Item {
            bare,
            params: Vec::new(),
        }
    }

    #[test]
    fn integers_keep_their_sign_and_stop_at_fifteen_digits() {
        assert_eq!(parse_item("-42").unwrap().bare, BareItem::Integer(-42));
        assert!(parse_item("999999999999999").is_ok());
        assert!(parse_item("1000000000000000").is_err());
        assert!(parse_item("-").is_err());
    }

    #[test]
    fn decimals_round_trip_without_trailing_zeros() {
        let parsed = parse_item("4.50").unwrap();
        assert_eq!(parsed.bare, BareItem::Decimal(Decimal(4500)));
        assert_eq!(serialize_item(&parsed).unwrap(), "4.5");
        assert_eq!(serialize_item(&parse_item("-0.001").unwrap()).unwrap(), "-0.001");
        assert_eq!(serialize_item(&parse_item("3.0").unwrap()).unwrap(), "3.0");
    }

    #[test]
    fn decimals_with_four_fraction_digits_are_refused() {
        assert!(parse_item("1.2345").is_err());
        assert!(parse_item("1.").is_err());
        assert!(parse_item("1234567890123.1").is_err());
    }

    #[test]
    fn strings_take_only_quote_and_backslash_escapes() {
        assert_eq!(
            parse_item(r#""a\"b\\c""#).unwrap().bare,
            BareItem::String(r#"a"b\c"#.to_owned())
        );
        assert!(parse_item(r#""a\nb""#).is_err());
        assert!(parse_item("\"tab\there\"").is_err());
        assert!(parse_item("\"open").is_err());
    }

    #[test]
    fn strings_serialise_with_escapes() {
        let s = item(BareItem::String(r#"a"b\c"#.to_owned()));
        assert_eq!(serialize_item(&s).unwrap(), r#""a\"b\\c""#);
    }

    #[test]
    fn tokens_may_hold_colons_and_slashes() {
        assert_eq!(
            parse_item("text/html:x").unwrap().bare,
            BareItem::Token("text/html:x".to_owned())
        );
        assert!(parse_item("1abc").is_err());
    }

    #[test]
    fn byte_sequences_decode_with_or_without_padding() {
        assert_eq!(parse_item(":aGk=:").unwrap().bare, BareItem::ByteSeq(b"hi".to_vec()));
        assert_eq!(parse_item(":aGk:").unwrap().bare, BareItem::ByteSeq(b"hi".to_vec()));
        assert!(parse_item(":aGk=").is_err());
        assert!(parse_item(":a-k=:").is_err());
    }

    #[test]
    fn booleans_are_question_mark_zero_or_one() {
        assert_eq!(parse_item("?0").unwrap().bare, BareItem::Boolean(false));
        assert!(parse_item("?2").is_err());
    }

    #[test]
    fn parameters_follow_items_and_a_bare_key_is_true() {
        let parsed = parse_item("abc;a=1;b").unwrap();
        assert_eq!(
            parsed.params,
            vec![
                ("a".to_owned(), BareItem::Integer(1)),
                ("b".to_owned(), BareItem::Boolean(true))
            ]
        );
        assert_eq!(serialize_item(&parsed).unwrap(), "abc;a=1;b");
    }

    #[test]
    fn a_repeated_parameter_overwrites_in_place() {
        let parsed = parse_item("x;a=1;b=2;a=3").unwrap();
        assert_eq!(serialize_item(&parsed).unwrap(), "x;a=3;b=2");
    }

    #[test]
    fn inner_lists_allow_extra_spaces_but_need_one_between_items() {
        let dict = parse_dictionary(r#"sig=(  "a"   "b" );created=1"#).unwrap();
        assert_eq!(serialize_dictionary(&dict).unwrap(), r#"sig=("a" "b");created=1"#);
        assert!(parse_dictionary(r#"sig=("a""b")"#).is_err());
        assert!(parse_dictionary(r#"sig=("a" "b""#).is_err());
    }

    #[test]
    fn dictionaries_take_whitespace_around_commas_but_not_a_trailing_comma() {
        let dict = parse_dictionary("a=1 ,\tb=?0,  c").unwrap();
        assert_eq!(serialize_dictionary(&dict).unwrap(), "a=1, b=?0, c");
        assert!(parse_dictionary("a=1,").is_err());
        assert!(parse_dictionary("a=1 b=2").is_err());
    }

    #[test]
    fn a_repeated_dictionary_key_keeps_its_first_position_and_last_value() {
        let dict = parse_dictionary("a=1, b=2, a=3").unwrap();
        assert_eq!(serialize_dictionary(&dict).unwrap(), "a=3, b=2");
    }

    #[test]
    fn dictionary_keys_must_be_lower_case() {
        assert!(parse_dictionary("A=1").is_err());
        assert!(parse_dictionary("*a-b_c.d=1").is_ok());
    }

    #[test]
    fn leading_and_trailing_spaces_are_ignored_but_not_tabs() {
        assert!(parse_dictionary("  a=1  ").is_ok());
        assert!(parse_item("\t1").is_err());
    }

    #[test]
    fn empty_dictionaries_and_lists_are_empty() {
        assert_eq!(parse_dictionary("").unwrap(), Vec::new());
        assert_eq!(parse_list("   ").unwrap(), Vec::new());
        assert!(parse_item("").is_err());
    }

    #[test]
    fn lists_mix_items_and_inner_lists() {
        let list = parse_list(r#"a, (1 2);p, "s""#).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(serialize_list(&list).unwrap(), r#"a, (1 2);p, "s""#);
    }

    #[test]
    fn dictionaries_stop_at_1024_members() {
        let fits: Vec<String> = (0..1024).map(|i| format!("k{i}=1")).collect();
        assert!(parse_dictionary(&fits.join(",")).is_ok());
        let too_many: Vec<String> = (0..1025).map(|i| format!("k{i}=1")).collect();
        assert!(parse_dictionary(&too_many.join(",")).is_err());
    }

    #[test]
    fn parameters_stop_at_256() {
        let fits: String = (0..256).map(|i| format!(";p{i}")).collect();
        assert!(parse_item(&format!("a{fits}")).is_ok());
        assert!(parse_item(&format!("a{fits};q")).is_err());
    }

    #[test]
    fn non_ascii_input_is_refused_not_panicked_on() {
        assert!(parse_dictionary("a=\"é\"").is_err());
        assert!(parse_dictionary("é=1").is_err());
        assert!(parse_item("aé").is_err());
    }
}
