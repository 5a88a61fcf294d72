//! The x-arrow-* headers (four lines) over a request whose query is the fifth line.
#![no_main]

mod common;

use keyward::signing::{arrow, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let mut req = Request::new("GET", "/api/v1/kronos/gateways", "");
    for name in [
        arrow::API_KEY_HEADER,
        arrow::DATE_HEADER,
        arrow::VERSION_HEADER,
        arrow::SIGNATURE_HEADER,
    ] {
        req.headers
            .push((name.to_owned(), parts.next().unwrap_or_default().to_owned()));
    }
    req.query = parts.next().unwrap_or_default().to_owned();
    if let Ok(parsed) = arrow::parse(&req) {
        let _ = arrow::verify(&parsed, &req, b"secret", common::window());
    }
});
