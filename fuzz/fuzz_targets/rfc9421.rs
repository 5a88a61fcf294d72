//! RFC 9421: Signature-Input (first line) and Signature (second line) over a fixed request, under
//! keyward's requirements and under none.
#![no_main]

mod common;

use keyward::signing::{rfc9421, Body, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (input, signature) = text.split_once('\n').unwrap_or((&text, ""));
    let req = Request::new("POST", "/foo", "param=Value&Pet=dog&a+b=%20")
        .with_header("Host", "example.com:443")
        .with_header("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
        .with_header(
            "Content-Digest",
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        )
        .with_header("X-Dict", "a=1, b=(x y);p, c")
        .with_header("Signature-Input", input)
        .with_header("Signature", signature)
        .with_body(Body::Bytes(b"{\"hello\": \"world\"}".to_vec()));
    for requirements in [rfc9421::Requirements::default(), rfc9421::Requirements::none()] {
        if let Ok(parsed) = rfc9421::parse_with(&req, &requirements) {
            let _ = rfc9421::signature_base(&rfc9421::Message::Request(&req), parsed.input());
            let _ = rfc9421::verify(&parsed, &req, b"secret", common::window());
        }
    }
});
