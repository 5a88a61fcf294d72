//! Password hashing and access tokens (JWT). Token hashing lives with the token format in
//! `domain::token`; request signing in `signing`.

pub mod audit_key;
pub mod jwt;
pub mod password;
pub mod secrets;
