//! SigV2: Authorization (first line), x-amz-date (second line) and the query (third line).
#![no_main]

mod common;

use keyward::signing::{sigv2, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let auth = parts.next().unwrap_or_default();
    let amz_date = parts.next().unwrap_or_default();
    let mut req = Request::new("PUT", "/b/k", parts.next().unwrap_or_default())
        .with_header("Host", "b.s3.amazonaws.com:443")
        .with_header("Date", "Tue, 27 Mar 2007 19:36:42 +0000")
        .with_header("Content-MD5", "4gJE4saaMU4BqNR0kLY+lw==")
        .with_header("Authorization", auth);
    if !amz_date.is_empty() {
        req.headers.push(("x-amz-date".to_owned(), amz_date.to_owned()));
    }
    let options = sigv2::Options {
        virtual_host_suffixes: vec!["s3.amazonaws.com".to_owned()],
    };
    if let Ok(parsed) = sigv2::parse(&req) {
        let _ = sigv2::verify(&parsed, &req, b"secret", common::window(), &options);
    }
});
