//! Turns fuzzer bytes into a request: first line `METHOD TARGET`, then `name: value` lines,
//! then an empty line and the body. Every target parses and verifies; none may panic.

#![allow(dead_code)] // each target uses only some helpers

use chrono::{DateTime, Utc};
use keyward::signing::{Body, Policy, Request, Window};

pub fn request(data: &[u8]) -> Request {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.split('\n');
    let first = lines.next().unwrap_or_default();
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let mut req = Request::from_target(method, target);
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        req.headers.push((name.to_owned(), value.to_owned()));
    }
    req.body = Body::Bytes(body.as_bytes().to_vec());
    req
}

/// A request built around one attacker-chosen header value.
pub fn with_header(base: Request, name: &str, data: &[u8]) -> Request {
    base.with_header(name, String::from_utf8_lossy(data))
}

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

pub fn policy() -> Policy {
    Policy::default()
}

pub fn window() -> Window {
    Window::new(now(), policy().max_skew)
}

/// Parses with the generic entry point and, when that works, verifies.
pub fn parse_and_verify(req: &Request) {
    if let Ok(Some(parsed)) = keyward::signing::parse(req) {
        let _ = parsed.key_id();
        let _ = parsed.replay_id();
        let _ = parsed.replay_window_end(policy().max_skew);
        let _ = parsed.verify(req, b"secret", now(), &policy());
    }
}
