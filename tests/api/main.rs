//! Integration tests: real HTTP against a real server over a fresh PostgreSQL database per test.

mod helpers;

mod archive;
mod audit;
mod audit_links;
mod audit_search;
mod audit_verify;
mod cache;
mod checkpoints;
mod cli;
mod crash;
mod curl;
mod errors;
mod forward_auth;
mod identity;
mod invitations;
mod keys;
mod layers;
mod least_privilege;
mod limits;
mod logs;
mod metrics;
mod nginx;
mod openapi;
mod outage;
mod permissions;
mod rotation;
mod server;
mod service_tokens;
mod sessions;
mod signed;
mod sinks;
mod storage;
mod tenants;
mod usage;
mod verify;
