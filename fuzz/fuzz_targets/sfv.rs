//! RFC 8941 parser: no panics, and whatever parses re-serialises to something that parses back
//! to the same value.
#![no_main]

use keyward::signing::sfv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(dict) = sfv::parse_dictionary(text) {
        if let Ok(again) = sfv::serialize_dictionary(&dict) {
            assert_eq!(sfv::parse_dictionary(&again).ok(), Some(dict));
        }
    }
    if let Ok(list) = sfv::parse_list(text) {
        if let Ok(again) = sfv::serialize_list(&list) {
            assert_eq!(sfv::parse_list(&again).ok(), Some(list));
        }
    }
    if let Ok(item) = sfv::parse_item(text) {
        if let Ok(again) = sfv::serialize_item(&item) {
            assert_eq!(sfv::parse_item(&again).ok(), Some(item));
        }
    }
});
