//! API keys: random secrets handed out once, stored only as SHA-256 hashes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::time::now_ms;
use crate::{ApiKey, NewApiKey, Store, StoreError};

/// Marks a string as ours (to people and to secret scanners).
const SECRET_PREFIX: &str = "sb_";

impl Store {
    /// Makes a key: 256 bits from the operating system's RNG, shown once in the result. Only its
    /// hash is stored, so a leaked database leaks no usable key.
    pub async fn create_api_key(&self, name: &str) -> Result<NewApiKey, StoreError> {
        let mut bytes = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| StoreError::Random(e.to_string()))?;
        let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let key = ApiKey {
            id: Uuid::now_v7().to_string(),
            name: name.to_string(),
            created_at: now_ms(),
            last_used_at: None,
        };
        sqlx::query("INSERT INTO api_keys (id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(key.id.as_str())
            .bind(key.name.as_str())
            .bind(secret_hash(&secret))
            .bind(key.created_at)
            .execute(&self.pool)
            .await?;
        Ok(NewApiKey { key, secret })
    }

    /// The live key whose secret this is, noting it as used now; `None` for an unknown or revoked
    /// one. The lookup is by hash, so no secret is ever compared (nothing to time).
    pub async fn verify_api_key(&self, secret: &str) -> Result<Option<ApiKey>, StoreError> {
        if !secret.starts_with(SECRET_PREFIX) {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 WHERE secret_hash = $1 AND revoked_at IS NULL \
             RETURNING id, name, created_at, last_used_at",
        )
        .bind(secret_hash(secret))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(api_key)
        .transpose()
    }

    /// Live keys, oldest first (revoked ones are not listed).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        sqlx::query(
            "SELECT id, name, created_at, last_used_at FROM api_keys WHERE revoked_at IS NULL \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(api_key)
        .collect()
    }

    /// Revokes a key for good; `false` if there is no such live key.
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// SHA-256 of the whole secret, lowercase hex: the `api_keys.secret_hash` column.
pub(crate) fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn api_key(row: &AnyRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
