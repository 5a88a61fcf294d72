//! Plain keys: format and checksum first (no I/O), then the cache or one indexed lookup by hash,
//! the key's state, then its limits. Every outcome is counted (a success's count is also the key's
//! last use) and refusals get their coalesced audit event through the usage writer, so no
//! verification waits on a database write.

use super::{judge, usage, Spent, Verdict, Verifiable, VerifyCode};
use crate::domain::audit::{AuditAction, NewAuditEvent, Outcome, RequestMeta};
use crate::domain::ids::KeyKind;
use crate::domain::permissions::Caller;
use crate::domain::tenant::TenantStatus;
use crate::domain::token::{PresentedToken, TokenPrefix};
use crate::service::{Context, Result};

/// Verifies a presented key. `expected_id` is the key id the client named beside the token
/// (Basic credentials): a token of another key is `NOT_FOUND`, decided before any limit is
/// consumed, and recorded as a refusal against the key it belongs to.
pub async fn verify_key(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    presented: &str,
    expected_id: Option<&str>,
    required_scopes: &[String],
) -> Result<Verdict> {
    let required = super::admit(ctx, caller, required_scopes)?;
    let now = ctx.clock.now();

    let found = match PresentedToken::parse(presented) {
        Err(_) => Err(VerifyCode::Malformed),
        // A service token is never a customer key: no lookup needed to say so.
        Ok(token) if token.prefix() == TokenPrefix::Service => Err(VerifyCode::NotFound),
        Ok(token) => ctx
            .verify
            .find_by_hash(&ctx.pool, KeyKind::Customer, &token.hash())
            .await?
            .filter(|key| caller.sees_keys_of(key.tenant_id()))
            .ok_or(VerifyCode::NotFound),
    };
    let mut id_mismatch = false;
    let (key, code) = match found {
        Ok(key) if expected_id.is_some_and(|id| id != key.id().as_str()) => {
            id_mismatch = true;
            (Some(key), VerifyCode::NotFound)
        }
        Ok(key) => {
            let tenant_status = key.tenant_status().unwrap_or(TenantStatus::Active);
            let code = judge(&key, tenant_status, &required, now);
            (Some(key), code)
        }
        Err(code) => (None, code),
    };

    let limited = match (&key, code) {
        (Some(found), VerifyCode::Valid) => ctx.verify.consume_limits(&ctx.pool, found, now).await?,
        _ => Ok(Spent::default()),
    };
    let code = match &limited {
        Ok(_) => code,
        Err(refused) => refused.code,
    };
    record_outcome(ctx, caller, meta, key.as_deref(), code, || {
        let mut details = serde_json::json!({
            "code": code.as_str(),
            "required_scopes": required.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        });
        if id_mismatch {
            details["key_id_mismatch"] = serde_json::Value::Bool(true);
        }
        details
    });
    match (key, limited) {
        (Some(key), Ok(spent)) if code == VerifyCode::Valid => Ok(Verdict::valid(key, None, spent)),
        (_, Err(refused)) => Ok(Verdict::limited(refused, None)),
        _ => Ok(Verdict::refused(code, None)),
    }
}

/// Counts a verification's outcome under the key's tenant (or the caller's, when the token
/// matched no key it may see). A refusal of a real key also gets its coalesced audit event,
/// whose details `details` makes when it is the first of its key, code and minute. Nothing
/// here waits on the database.
pub(super) fn record_outcome(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    key: Option<&Verifiable>,
    code: VerifyCode,
    details: impl FnOnce() -> serde_json::Value,
) {
    let now = ctx.clock.now();
    ctx.metrics.verification(code.as_str());
    let tenant = key.and_then(|k| k.tenant_id()).or(caller.bound_tenant());
    let outcome = usage::Outcome {
        tenant,
        key: key.map(|k| k.id()),
        code,
        at: now,
    };
    ctx.verify.count(outcome, || {
        let event = NewAuditEvent::new(
            now,
            &caller.actor(),
            meta,
            tenant,
            AuditAction::KeyVerifyFailed,
            Outcome::Denied,
        )
        .details(details());
        match key {
            Some(key) => event.target("key", key.id()),
            None => event,
        }
    });
}
