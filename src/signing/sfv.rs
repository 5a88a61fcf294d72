//! RFC 8941 Structured Field Values as RFC 9421 (`Signature-Input`, `Signature`) and RFC 9530
//! (`Content-Digest`) use them. The `sfv` crate parses and serialises (in its RFC 8941 mode, so
//! no RFC 9651 dates or display strings); this adapter keeps keyward's plain, ordered data model,
//! the size limits and fixed error texts that never echo the input.

use ::sfv::{
    DictSerializer, InnerListSerializer, Integer, ItemSerializer, KeyRef, ListSerializer, ParameterSerializer, Parser,
    RefBareItem, StringRef, TokenRef, Version,
};

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
/// Ordered; a repeated key keeps its first position and takes the last value.
pub type Dictionary = Vec<(String, Member)>;

/// Why a field value is not a valid structured field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid structured field: {0}")]
pub struct SfvError(pub &'static str);

type Result<T> = std::result::Result<T, SfvError>;

/// Every syntax error reads the same: the crate's message names a position in client input.
const SYNTAX: SfvError = SfvError("not RFC 8941 syntax");

pub fn param<'a>(params: &'a Parameters, key: &str) -> Option<&'a BareItem> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn parser(input: &str) -> Parser<'_> {
    Parser::new(input).with_version(Version::Rfc8941)
}

fn at_most(len: usize, max: usize, why: &'static str) -> Result<()> {
    if len > max {
        Err(SfvError(why))
    } else {
        Ok(())
    }
}

pub fn parse_dictionary(input: &str) -> Result<Dictionary> {
    let dict: ::sfv::Dictionary = parser(input).parse().map_err(|_| SYNTAX)?;
    at_most(dict.len(), MAX_MEMBERS, "more than 1024 members")?;
    dict.into_iter()
        .map(|(key, member)| Ok((key.into(), from_member(member)?)))
        .collect()
}

pub fn parse_list(input: &str) -> Result<List> {
    let list: ::sfv::List = parser(input).parse().map_err(|_| SYNTAX)?;
    at_most(list.len(), MAX_MEMBERS, "more than 1024 members")?;
    list.into_iter().map(from_member).collect()
}

pub fn parse_item(input: &str) -> Result<Item> {
    let item: ::sfv::Item = parser(input).parse().map_err(|_| SYNTAX)?;
    from_item(item)
}

fn from_member(member: ::sfv::ListEntry) -> Result<Member> {
    Ok(match member {
        ::sfv::ListEntry::Item(item) => Member::Item(from_item(item)?),
        ::sfv::ListEntry::InnerList(list) => {
            at_most(list.items.len(), MAX_INNER_ITEMS, "more than 256 inner list items")?;
            Member::InnerList(InnerList {
                items: list.items.into_iter().map(from_item).collect::<Result<_>>()?,
                params: from_params(list.params)?,
            })
        }
    })
}

fn from_item(item: ::sfv::Item) -> Result<Item> {
    Ok(Item {
        bare: from_bare(item.bare_item)?,
        params: from_params(item.params)?,
    })
}

fn from_params(params: ::sfv::Parameters) -> Result<Parameters> {
    at_most(params.len(), MAX_PARAMS, "more than 256 parameters")?;
    params
        .into_iter()
        .map(|(key, value)| Ok((key.into(), from_bare(value)?)))
        .collect()
}

fn from_bare(bare: ::sfv::BareItem) -> Result<BareItem> {
    Ok(match bare {
        ::sfv::BareItem::Integer(i) => BareItem::Integer(i.into()),
        ::sfv::BareItem::Decimal(d) => BareItem::Decimal(Decimal(d.as_integer_scaled_1000().into())),
        ::sfv::BareItem::String(s) => BareItem::String(s.into()),
        ::sfv::BareItem::Token(t) => BareItem::Token(t.into()),
        ::sfv::BareItem::ByteSequence(bytes) => BareItem::ByteSeq(bytes),
        ::sfv::BareItem::Boolean(b) => BareItem::Boolean(b),
        // RFC 9651 types; the RFC 8941 parser never produces them.
        ::sfv::BareItem::Date(_) | ::sfv::BareItem::DisplayString(_) => return Err(SfvError("unknown item type")),
    })
}

/// RFC 8941 key syntax: `lcalpha` or `*`, then `lcalpha`, digits, `_ - . *`.
pub fn is_valid_key(key: &str) -> bool {
    KeyRef::from_str(key).is_ok()
}

fn key(key: &str) -> Result<&KeyRef> {
    KeyRef::from_str(key).map_err(|_| SfvError("invalid key"))
}

fn integer(value: i64, why: &'static str) -> Result<Integer> {
    Integer::try_from(value).map_err(|_| SfvError(why))
}

fn bare_ref(bare: &BareItem) -> Result<RefBareItem<'_>> {
    Ok(match bare {
        BareItem::Integer(i) => RefBareItem::Integer(integer(*i, "integer out of range")?),
        BareItem::Decimal(Decimal(milli)) => RefBareItem::Decimal(::sfv::Decimal::from_integer_scaled_1000(integer(
            *milli,
            "decimal out of range",
        )?)),
        BareItem::String(s) => {
            RefBareItem::String(StringRef::from_str(s).map_err(|_| SfvError("string with a character outside ASCII"))?)
        }
        BareItem::Token(t) => RefBareItem::Token(TokenRef::from_str(t).map_err(|_| SfvError("invalid token"))?),
        BareItem::ByteSeq(bytes) => RefBareItem::ByteSequence(bytes),
        BareItem::Boolean(b) => RefBareItem::Boolean(*b),
    })
}

fn write_params(params: &Parameters, mut out: ParameterSerializer<&mut String>) -> Result<()> {
    for (name, value) in params {
        out = out.parameter(key(name)?, bare_ref(value)?);
    }
    Ok(())
}

fn write_inner_list(list: &InnerList, mut out: InnerListSerializer<'_>) -> Result<()> {
    for item in &list.items {
        write_params(&item.params, out.bare_item(bare_ref(&item.bare)?))?;
    }
    write_params(&list.params, out.finish())
}

fn write_list_member(member: &Member, out: &mut ListSerializer<&mut String>) -> Result<()> {
    match member {
        Member::Item(item) => write_params(&item.params, out.bare_item(bare_ref(&item.bare)?)),
        Member::InnerList(list) => write_inner_list(list, out.inner_list()),
    }
}

pub fn serialize_item(item: &Item) -> Result<String> {
    let mut out = String::new();
    write_params(
        &item.params,
        ItemSerializer::with_buffer(&mut out).bare_item(bare_ref(&item.bare)?),
    )?;
    Ok(out)
}

/// An inner list on its own, as the `@signature-params` value: a one-member list.
pub fn serialize_inner_list(list: &InnerList) -> Result<String> {
    let mut out = String::new();
    write_inner_list(list, ListSerializer::with_buffer(&mut out).inner_list())?;
    Ok(out)
}

/// A member on its own (a dictionary member's value): a one-member list.
pub fn serialize_member(member: &Member) -> Result<String> {
    let mut out = String::new();
    write_list_member(member, &mut ListSerializer::with_buffer(&mut out))?;
    Ok(out)
}

/// An empty list serialises as the empty string (the field is then left out).
pub fn serialize_list(list: &List) -> Result<String> {
    let mut out = String::new();
    let mut ser = ListSerializer::with_buffer(&mut out);
    for member in list {
        write_list_member(member, &mut ser)?;
    }
    Ok(out)
}

/// An empty dictionary serialises as the empty string (the field is then left out).
pub fn serialize_dictionary(dict: &Dictionary) -> Result<String> {
    let mut out = String::new();
    let mut ser = DictSerializer::with_buffer(&mut out);
    for (name, member) in dict {
        match member {
            Member::Item(item) => write_params(&item.params, ser.bare_item(key(name)?, bare_ref(&item.bare)?))?,
            Member::InnerList(list) => write_inner_list(list, ser.inner_list(key(name)?))?,
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
