//! The `tenants` table.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::bad_column;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{Tenant, TenantPatch, TenantStatus};

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: Uuid,
    slug: String,
    name: String,
    status: String,
    settings: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = sqlx::Error;

    fn try_from(row: TenantRow) -> Result<Self, Self::Error> {
        Ok(Tenant {
            id: TenantId(row.id),
            status: TenantStatus::parse(&row.status).ok_or_else(|| bad_column("tenants.status", &row.status))?,
            slug: row.slug,
            name: row.name,
            // Absent keys take their defaults.
            settings: serde_json::from_value(row.settings).unwrap_or_default(),
            created_at: row.created_at,
        })
    }
}

const COLUMNS: &str = "id, slug, name, status, settings, created_at";

pub async fn insert(conn: &mut PgConnection, tenant: &Tenant) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO tenants (id, slug, name, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
        .bind(tenant.id.0)
        .bind(&tenant.slug)
        .bind(&tenant.name)
        .bind(tenant.status.as_str())
        .bind(tenant.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get(db: impl PgExecutor<'_>, id: TenantId) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, TenantRow>(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(db)
        .await?
        .map(Tenant::try_from)
        .transpose()
}

/// Tenants in creation order, after the `after` id when given.
pub async fn list(db: impl PgExecutor<'_>, after: Option<TenantId>, limit: i64) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, TenantRow>(&format!(
        "SELECT {COLUMNS} FROM tenants WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
    ))
    .bind(after.map(|t| t.0))
    .bind(limit)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(Tenant::try_from)
    .collect()
}

pub async fn update(
    conn: &mut PgConnection,
    id: TenantId,
    patch: &TenantPatch,
    now: DateTime<Utc>,
) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, TenantRow>(&format!(
        "UPDATE tenants SET name = COALESCE($2, name), status = COALESCE($3, status),
             settings = settings || COALESCE($5, '{{}}'::jsonb), updated_at = $4
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id.0)
    .bind(patch.name.as_deref())
    .bind(patch.status.map(TenantStatus::as_str))
    .bind(now)
    .bind(
        patch
            .settings
            .as_ref()
            .map(|s| serde_json::to_value(s).unwrap_or_default()),
    )
    .fetch_optional(conn)
    .await?
    .map(Tenant::try_from)
    .transpose()
}
