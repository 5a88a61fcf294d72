//! Re-sealing every signing secret under the current master key.

use secrecy::ExposeSecret;

use crate::repo;
use crate::service::{Context, Error, Result};
use crate::verify::Change;

/// Re-seals every signing secret under the current master key (after a master-key rotation).
/// Returns how many were re-sealed.
pub async fn reseal_signing_secrets(ctx: &Context) -> Result<u64> {
    let master = ctx
        .master_keys
        .as_deref()
        .ok_or(Error::NotConfigured("KEYWARD_MASTER_KEYS is not set"))?;
    let mut total = 0;
    loop {
        let batch = repo::keys::sealed_under_other_versions(&ctx.pool, master.current_version(), 500).await?;
        if batch.is_empty() {
            return Ok(total);
        }
        let mut tx = ctx.pool.begin().await?;
        let mut changes = Vec::with_capacity(batch.len());
        for key in &batch {
            let Some(sealed) = &key.signing_secret else { continue };
            let secret = master
                .open(sealed, key.id.as_str())
                .map_err(|_| Error::SecretUndecryptable(key.id.clone()))?;
            let resealed = master.seal(secret.expose_secret(), key.id.as_str());
            repo::keys::reseal(&mut tx, &key.id, &resealed).await?;
            changes.push(Change::Key(key.id.clone()));
            total += 1;
        }
        // Caches elsewhere hold the old sealed form, which stops opening once the old master
        // key is removed.
        ctx.verify.commit(&ctx.pool, tx, &changes, &[]).await?;
    }
}
