//! Verification of signed requests, for every scheme of `signing`: the signature is read
//! without any secret (so a malformed one costs no lookup), the key is found by the id the
//! client named, its signing secret is unsealed (once: the engine keeps it while the key is
//! unchanged), and the signature is checked against keyward's
//! clock and the tenant's settings. An accepted signature is remembered so a replay is refused
//! on every replica.

use super::key::record_outcome;
use super::replays::Signature;
use super::{judge, Verdict, Verifiable, VerifyCode};
use crate::domain::audit::RequestMeta;
use crate::domain::ids::{KeyId, KeyKind};
use crate::domain::permissions::Caller;
use crate::domain::scope::covers_all;
use crate::domain::tenant::{TenantSettings, TenantStatus};
use crate::service::{Context, Error, Result};
use crate::signing::{self, Policy, Scheme};

pub async fn verify_request(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    request: &signing::Request,
    required_scopes: &[String],
) -> Result<Verdict> {
    let required = super::admit(ctx, caller, required_scopes)?;
    let now = ctx.clock.now();

    let parsed = match signing::parse(request) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(refused(ctx, caller, meta, None, None, VerifyCode::Malformed)),
        Err(error) => {
            let scheme = signing::detect(request);
            let code = VerifyCode::from(error.refusal());
            return Ok(refused(ctx, caller, meta, scheme, None, code));
        }
    };
    let scheme = Some(parsed.scheme());
    let found = match KeyId::parse(KeyKind::Customer, parsed.key_id()) {
        Some(id) => ctx.verify.find_customer_by_id(&ctx.pool, &id).await?,
        None => None,
    };
    let Some(signer) = found.filter(|signer| caller.sees_keys_of(signer.key.tenant_id())) else {
        return Ok(refused(ctx, caller, meta, scheme, None, VerifyCode::NotFound));
    };
    let (key, settings) = (&signer.key, &signer.settings);
    let tenant_status = key.tenant_status().unwrap_or(TenantStatus::Active);
    // The key's own state and its tenant's, as for a plain key; scopes come after the signature.
    let state = match judge(key, tenant_status, &[], now) {
        VerifyCode::Valid if signer.secret.is_none() => Some(VerifyCode::NotFound),
        VerifyCode::Valid if parsed.scheme() == Scheme::AwsSigV2 && !settings.sigv2_enabled => {
            Some(VerifyCode::SchemeDisabled)
        }
        VerifyCode::Valid => None,
        refused => Some(refused),
    };
    if let Some(code) = state {
        return Ok(refused(ctx, caller, meta, scheme, Some(key), code));
    }

    let (Some(sealed), Some(master)) = (&signer.secret, ctx.master_keys.as_deref()) else {
        return Err(Error::NotConfigured(
            "signing secrets need KEYWARD_MASTER_KEYS to be set",
        ));
    };
    let unsealed = ctx
        .verify
        .signing_secret(master, key.id(), sealed)
        .map_err(|_| Error::SecretUndecryptable(key.id().clone()))?;
    let policy = Policy {
        max_skew: settings.max_skew(),
        sigv4: ctx.verify.settings().sigv4.clone(),
        ..Policy::default()
    };
    if let Err(error) = parsed.verify(request, unsealed.secret(), now, &policy) {
        let code = VerifyCode::from(error.refusal());
        return Ok(refused(ctx, caller, meta, scheme, Some(key), code));
    }
    if !covers_all(key.granted_scopes(), &required) {
        return Ok(refused(
            ctx,
            caller,
            meta,
            scheme,
            Some(key),
            VerifyCode::InsufficientScope,
        ));
    }
    if settings.replay_protection {
        // Kept for the widest window the setting allows: the tenant may widen it tomorrow.
        let retention = TenantSettings::replay_retention();
        let window_end = parsed.replay_window_end(retention).unwrap_or(now + retention).max(now);
        let signature = Signature {
            key: key.id().clone(),
            digest: *parsed.replay_id().as_bytes(),
            expires_at: window_end,
        };
        let first = ctx.verify.remember_signature(&ctx.pool, signature).await?;
        if !first {
            return Ok(refused(ctx, caller, meta, scheme, Some(key), VerifyCode::Replayed));
        }
    }
    let spent = match ctx.verify.consume_limits(&ctx.pool, key, now).await? {
        Ok(spent) => spent,
        Err(limited) => {
            let verdict = refused(ctx, caller, meta, scheme, Some(key), limited.code);
            return Ok(Verdict {
                rate: limited.rate,
                ..verdict
            });
        }
    };
    record_outcome(ctx, caller, meta, Some(key), VerifyCode::Valid, || {
        serde_json::Value::Null
    });
    Ok(Verdict::valid(key.clone(), scheme, spent))
}

/// Counts the refusal and builds the verdict.
fn refused(
    ctx: &Context,
    caller: &Caller,
    meta: &RequestMeta,
    scheme: Option<Scheme>,
    key: Option<&Verifiable>,
    code: VerifyCode,
) -> Verdict {
    record_outcome(ctx, caller, meta, key, code, || {
        serde_json::json!({
            "code": code.as_str(),
            "scheme": scheme.map(Scheme::as_str),
        })
    });
    Verdict::refused(code, scheme)
}
