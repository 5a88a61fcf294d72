//! The X-Keyward-* headers: key id, timestamp, signature and (from a fourth line) nonce.
#![no_main]

mod common;

use keyward::signing::{keyward_hmac, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let mut req = Request::new("POST", "/v1/x", "b=2&a=1");
    for name in [
        keyward_hmac::KEY_ID_HEADER,
        keyward_hmac::TIMESTAMP_HEADER,
        keyward_hmac::SIGNATURE_HEADER,
    ] {
        req.headers
            .push((name.to_owned(), parts.next().unwrap_or_default().to_owned()));
    }
    if let Some(nonce) = parts.next() {
        req.headers
            .push((keyward_hmac::NONCE_HEADER.to_owned(), nonce.to_owned()));
    }
    if let Ok(parsed) = keyward_hmac::parse(&req) {
        let _ = keyward_hmac::verify(&parsed, &req, b"secret", common::window());
    }
});
