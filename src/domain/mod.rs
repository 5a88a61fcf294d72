//! Plain types and the rules on them: ids, tokens, scopes, keys, tenants, users and members,
//! audit events.
//! Nothing here does I/O or knows about HTTP.

pub mod audit;
pub mod audit_archive;
pub mod audit_check;
pub mod ids;
pub mod key;
pub mod member;
pub mod page;
pub mod permissions;
pub mod scope;
pub mod tenant;
pub mod token;
pub mod usage;
pub mod user;
pub mod validation;
