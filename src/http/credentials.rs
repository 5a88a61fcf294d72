//! The one reader of the credentials a request carries in `Authorization`: `Bearer` and `Basic`,
//! their scheme names matched without regard to case (RFC 9110, section 11.1), as the `headers`
//! crate reads them.

use axum::http::HeaderMap;
use headers::authorization::{Basic, Bearer};
use headers::{Authorization, HeaderMapExt};

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let authorization = headers.typed_get::<Authorization<Bearer>>()?;
    Some(authorization.token().trim().to_owned())
}

/// The user name and password of `Authorization: Basic base64(<user>:<password>)`.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let authorization = headers.typed_get::<Authorization<Basic>>()?;
    Some((authorization.username().to_owned(), authorization.password().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_letter_case() {
        for value in ["Bearer kw_svc_abc", "bearer kw_svc_abc", "BEARER kw_svc_abc"] {
            assert_eq!(bearer(&authorization(value)).as_deref(), Some("kw_svc_abc"), "{value}");
        }
    }

    #[test]
    fn the_basic_scheme_is_read_in_any_letter_case() {
        // base64("key_01:sk_live_x")
        for value in ["Basic a2V5XzAxOnNrX2xpdmVfeA==", "basic a2V5XzAxOnNrX2xpdmVfeA=="] {
            assert_eq!(
                basic(&authorization(value)),
                Some(("key_01".to_owned(), "sk_live_x".to_owned())),
                "{value}"
            );
        }
    }

    #[test]
    fn another_scheme_is_neither_bearer_nor_basic() {
        let headers = authorization("Token abc");

        assert_eq!(bearer(&headers), None);
        assert_eq!(basic(&headers), None);
    }
}
