//! SigV4: the Authorization header (first half of the input) and a presigned query (second half).
#![no_main]

mod common;

use keyward::signing::{sigv4, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (auth, query) = data.split_at(data.len() / 2);
    let base = Request::new("GET", "/a/./b/../c%20d", "x=1&y")
        .with_header("Host", "example.amazonaws.com")
        .with_header("X-Amz-Date", "20231114T221320Z");
    let header_form = common::with_header(base, "Authorization", auth);
    let mut presigned = Request::new("GET", "/", "").with_header("Host", "h");
    presigned.query = String::from_utf8_lossy(query).into_owned();
    for req in [header_form, presigned] {
        if let Ok(parsed) = sigv4::parse(&req) {
            let _ = parsed.canonical_request(&req);
            let accept = sigv4::Accept::new(&["us-east-1"], &["service", "s3"]);
            let _ = sigv4::verify(&parsed, &req, b"secret", common::window(), &accept);
        }
    }
});
