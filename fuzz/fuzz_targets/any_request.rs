//! A whole request from the input: detection, parsing and verification of whatever scheme it claims.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let req = common::request(data);
    let _ = keyward::signing::detect(&req);
    common::parse_and_verify(&req);
});
