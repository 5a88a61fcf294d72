//! RFC 9530 Content-Digest checking against a fixed body, as bytes and as a hash.
#![no_main]

use keyward::signing::{content_digest, Body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let field = String::from_utf8_lossy(data);
    let body = Body::Bytes(b"{\"hello\": \"world\"}".to_vec());
    let _ = content_digest::check(&field, &body);
    let _ = content_digest::check(&field, &Body::Sha256(body.sha256()));
});
