//! Per-tenant API keys: what authenticates a caller of the REST API and names its tenant.
//!
//! A key is shown once, when it is issued, as `ock_<key id>_<secret>`: the key id is 32
//! lower-case hex digits (a UUIDv7, time-ordered), the secret 32 random bytes from the
//! operating system, in unpadded URL-safe base64 (43 characters). The store keeps only the
//! SHA-256 of the secret (hex), so a copy of the database authenticates nobody; the secret
//! is compared with the stored hash in constant time. Every way a presented key can fail —
//! malformed, unknown, revoked, wrong secret — is the same [`ApiKeyError::InvalidKey`], so a
//! caller learns nothing about which.
//!
//! Like deployments and webhook endpoints, keys are scoped by tenant id only: issuing a key
//! does not require the tenant to be registered in the
//! [`TenantRegistry`](crate::tenancy::TenantRegistry).
//!
//! ```
//! use std::sync::Arc;
//! use omnicloud_core::{apikey::ApiKeys, clock::SystemClock, ids::TenantId, store::Store};
//!
//! let keys = ApiKeys::new(Store::memory()?, Arc::new(SystemClock));
//! let tenant = TenantId::new("acme")?;
//! let (key, plaintext) = keys.issue(&tenant, "ci pipeline")?;
//! assert_eq!(keys.authenticate(&plaintext)?, tenant);
//! keys.revoke(&key.id, &tenant)?;
//! assert!(keys.authenticate(&plaintext).is_err());
//! # Ok::<(), omnicloud_core::Error>(())
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::error::{ApiKeyError, Error, Result};
use crate::ids::{TenantId, generate_prefixed_id, validate_display_text};
use crate::store::{Store, format_timestamp};

/// The prefix of every key's plaintext.
pub const KEY_PREFIX: &str = "ock_";
/// How many random bytes a key's secret holds.
pub const KEY_SECRET_BYTES: usize = 32;
/// The longest key name accepted, in characters.
pub const MAX_KEY_NAME_CHARS: usize = 200;
/// How many hex digits a key id has.
const KEY_ID_LEN: usize = 32;

/// The API key table (migration 10).
pub(crate) const SCHEMA: &str = "
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
) WITHOUT ROWID;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
";

/// An API key's metadata (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The key id (32 lower-case hex digits), the part of the plaintext after `ock_`.
    pub id: String,
    /// The tenant the key authenticates as.
    pub tenant_id: TenantId,
    /// A name for people (what the key is for).
    pub name: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was; a revoked key authenticates nobody.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key's row, as read: id, tenant, name, secret hash, created, revoked.
type KeyRow = (String, String, String, String, String, Option<String>);

const COLUMNS: &str = "id, tenant_id, name, secret_sha256, created_at, revoked_at";

/// Tenants' API keys in one store.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    store: Store,
    clock: SharedClock,
}

impl ApiKeys {
    /// Keys kept in `store`, stamped by `clock`.
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self { store, clock }
    }

    /// Issues a new key for the tenant: returns its metadata and its plaintext
    /// (`ock_<id>_<secret>`), which is shown this once and never stored.
    ///
    /// # Errors
    ///
    /// A [`ValidationError`](crate::error::ValidationError) for a blank, over-long or
    /// control-character name; [`ApiKeyError::RandomUnavailable`] if the random source fails;
    /// a store error.
    pub fn issue(&self, tenant_id: &TenantId, name: &str) -> Result<(ApiKey, String)> {
        validate_display_text("API key name", name, MAX_KEY_NAME_CHARS)?;
        let mut secret = [0u8; KEY_SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|e| ApiKeyError::RandomUnavailable {
            reason: e.to_string(),
        })?;
        let key = ApiKey {
            id: generate_prefixed_id(""),
            tenant_id: tenant_id.clone(),
            name: name.to_owned(),
            created_at: self.clock.now(),
            revoked_at: None,
        };
        let plaintext = format!("{KEY_PREFIX}{}_{}", key.id, URL_SAFE_NO_PAD.encode(secret));
        self.store.write(|tx| -> Result<()> {
            tx.execute(
                &format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL)"),
                params![
                    key.id,
                    tenant_id.as_str(),
                    key.name,
                    hash_hex(&secret),
                    format_timestamp(key.created_at)
                ],
            )
            .map_err(|e| self.sql(e))?;
            Ok(())
        })?;
        Ok((key, plaintext))
    }

    /// The tenant a presented key authenticates as.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError::InvalidKey`] for a malformed, unknown or revoked key or a wrong secret
    /// (one error for all, on purpose); a store error.
    pub fn authenticate(&self, presented: &str) -> Result<TenantId> {
        let (id, secret) = parse_plaintext(presented).ok_or(ApiKeyError::InvalidKey)?;
        let row: Option<(String, String, Option<String>)> = self.store.read(|c| {
            c.prepare_cached(
                "SELECT tenant_id, secret_sha256, revoked_at FROM api_keys WHERE id = ?1",
            )?
            .query_row([id], |r| r.try_into())
            .optional()
        })?;
        let presented_hash = hash_hex(&secret);
        match row {
            Some((tenant, stored_hash, None))
                if constant_time_eq(presented_hash.as_bytes(), stored_hash.as_bytes()) =>
            {
                Ok(TenantId::new(tenant)?)
            }
            _ => Err(ApiKeyError::InvalidKey.into()),
        }
    }

    /// The tenant's key with this id.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError::UnknownKey`] if no key of the tenant has this id; a store error.
    pub fn get(&self, key_id: &str, tenant_id: &TenantId) -> Result<ApiKey> {
        let row: Option<KeyRow> = self.store.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE id = ?1 AND tenant_id = ?2"
            ))?
            .query_row(params![key_id, tenant_id.as_str()], |r| r.try_into())
            .optional()
        })?;
        let row = row.ok_or_else(|| ApiKeyError::UnknownKey {
            key_id: key_id.to_owned(),
        })?;
        self.decode(row)
    }

    /// Revokes the tenant's key: it authenticates nobody from now on. Revoking a revoked key
    /// changes nothing (it keeps its first revocation time).
    ///
    /// # Errors
    ///
    /// [`ApiKeyError::UnknownKey`] if no key of the tenant has this id (another tenant's key
    /// is unknown too); a store error.
    pub fn revoke(&self, key_id: &str, tenant_id: &TenantId) -> Result<ApiKey> {
        let now = self.clock.now();
        let changed = self.store.write(|tx| -> Result<usize> {
            tx.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3)
                 WHERE id = ?1 AND tenant_id = ?2",
                params![key_id, tenant_id.as_str(), format_timestamp(now)],
            )
            .map_err(|e| self.sql(e))
        })?;
        if changed == 0 {
            return Err(ApiKeyError::UnknownKey {
                key_id: key_id.to_owned(),
            }
            .into());
        }
        self.get(key_id, tenant_id)
    }

    /// The tenant's keys (revoked ones included), oldest first; never their secrets.
    ///
    /// # Errors
    ///
    /// A store error.
    pub fn list(&self, tenant_id: &TenantId) -> Result<Vec<ApiKey>> {
        let rows: Vec<KeyRow> = self.store.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at, id"
            ))?;
            stmt.query_map([tenant_id.as_str()], |r| r.try_into())?
                .collect()
        })?;
        rows.into_iter().map(|r| self.decode(r)).collect()
    }

    fn sql(&self, e: rusqlite::Error) -> Error {
        Error::Store(self.store.sqlite_error(e))
    }

    fn decode(&self, row: KeyRow) -> Result<ApiKey> {
        let (id, tenant, name, _hash, created, revoked) = row;
        let time = |column, text: &str| self.store.decode_time("api_keys", column, text);
        Ok(ApiKey {
            id,
            tenant_id: TenantId::new(tenant)?,
            name,
            created_at: time("created_at", &created)?,
            revoked_at: revoked.map(|t| time("revoked_at", &t)).transpose()?,
        })
    }
}

/// Splits `ock_<id>_<secret>` into the key id and the secret's bytes, if well formed.
fn parse_plaintext(text: &str) -> Option<(&str, Vec<u8>)> {
    let (id, secret) = text.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    let id_ok = id.len() == KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !id_ok {
        return None;
    }
    let secret = URL_SAFE_NO_PAD.decode(secret).ok()?;
    (secret.len() == KEY_SECRET_BYTES).then_some((id, secret))
}

/// The SHA-256 of a secret, as lower-case hex.
fn hash_hex(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// Whether two byte strings are equal, in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::error::ValidationError;

    fn keys() -> (ApiKeys, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
                .single()
                .expect("valid"),
        ));
        let shared: SharedClock = clock.clone();
        (
            ApiKeys::new(Store::memory().expect("memory store"), shared),
            clock,
        )
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::new(id).expect("valid tenant id")
    }

    fn secret_of<'a>(key: &ApiKey, plaintext: &'a str) -> &'a str {
        plaintext
            .strip_prefix(&format!("ock_{}_", key.id))
            .expect("ock_<id>_<secret>")
    }

    fn is_invalid(result: &Result<TenantId>) -> bool {
        matches!(result, Err(Error::ApiKey(ApiKeyError::InvalidKey)))
    }

    #[test]
    fn an_issued_key_authenticates_as_its_tenant() {
        let (keys, clock) = keys();
        let (key, plaintext) = keys.issue(&tenant("acme"), "ci").expect("issue");
        assert!(plaintext.starts_with(&format!("ock_{}_", key.id)));
        assert_eq!(key.id.len(), 32);
        assert_eq!(plaintext.len(), 4 + 32 + 1 + 43);
        assert_eq!(key.name, "ci");
        assert_eq!(key.created_at, clock.now());
        assert_eq!(key.revoked_at, None);
        assert_eq!(keys.authenticate(&plaintext).expect("auth"), tenant("acme"));
    }

    #[test]
    fn two_keys_differ_and_each_names_its_own_tenant() {
        let (keys, _) = keys();
        let (_, a) = keys.issue(&tenant("a"), "k").expect("issue");
        let (_, b) = keys.issue(&tenant("b"), "k").expect("issue");
        assert_ne!(a, b);
        assert_eq!(keys.authenticate(&a).expect("a"), tenant("a"));
        assert_eq!(keys.authenticate(&b).expect("b"), tenant("b"));
    }

    #[test]
    fn a_revoked_key_no_longer_authenticates() {
        let (keys, clock) = keys();
        let (key, plaintext) = keys.issue(&tenant("acme"), "ci").expect("issue");
        clock.advance(10.0).expect("advance");
        let revoked = keys.revoke(&key.id, &tenant("acme")).expect("revoke");
        assert_eq!(revoked.revoked_at, Some(clock.now()));
        assert!(is_invalid(&keys.authenticate(&plaintext)));
        // Revoking again keeps the first time.
        clock.advance(10.0).expect("advance");
        let again = keys.revoke(&key.id, &tenant("acme")).expect("revoke again");
        assert_eq!(again.revoked_at, revoked.revoked_at);
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let (keys, _) = keys();
        let (key, _) = keys.issue(&tenant("acme"), "ci").expect("issue");
        let forged = format!("ock_{}_{}", key.id, URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert!(is_invalid(&keys.authenticate(&forged)));
    }

    #[test]
    fn malformed_and_unknown_keys_are_the_same_error() {
        let (keys, _) = keys();
        let (key, plaintext) = keys.issue(&tenant("acme"), "ci").expect("issue");
        let secret = secret_of(&key, &plaintext);
        let unknown_id = "0".repeat(32);
        let cases = [
            String::new(),
            "ock_".to_owned(),
            "Bearer x".to_owned(),
            plaintext.replacen("ock_", "ocx_", 1),
            format!("ock_{}", key.id),
            format!("ock_{}_", key.id),
            format!("ock_{}_{}=", key.id, secret),
            format!("ock_{}_{}", key.id.to_uppercase(), secret),
            format!("ock_{}_{}", &key.id[1..], secret),
            format!("ock_{}_{}", key.id, &secret[1..]),
            format!("ock_{unknown_id}_{secret}"),
            format!("{plaintext} "),
        ];
        for case in cases {
            assert!(is_invalid(&keys.authenticate(&case)), "{case:?}");
        }
    }

    #[test]
    fn a_tenant_cannot_revoke_or_see_another_tenants_key() {
        let (keys, _) = keys();
        let (key, plaintext) = keys.issue(&tenant("acme"), "ci").expect("issue");
        let err = keys.revoke(&key.id, &tenant("other")).expect_err("foreign");
        assert!(
            matches!(&err, Error::ApiKey(ApiKeyError::UnknownKey { key_id }) if *key_id == key.id),
            "{err}"
        );
        assert!(keys.get(&key.id, &tenant("other")).is_err());
        assert!(keys.list(&tenant("other")).expect("list").is_empty());
        assert_eq!(
            keys.authenticate(&plaintext).expect("still valid"),
            tenant("acme")
        );
    }

    #[test]
    fn list_shows_metadata_oldest_first_and_the_store_holds_only_a_hash() {
        let (keys, clock) = keys();
        let (first, plaintext) = keys.issue(&tenant("acme"), "first").expect("issue");
        clock.advance(1.0).expect("advance");
        let (second, _) = keys.issue(&tenant("acme"), "second").expect("issue");
        keys.revoke(&first.id, &tenant("acme")).expect("revoke");
        let listed = keys.list(&tenant("acme")).expect("list");
        assert_eq!(
            listed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            [first.id.as_str(), second.id.as_str()]
        );
        assert!(listed[0].revoked_at.is_some());
        let secret = secret_of(&first, &plaintext);
        let stored: String = keys
            .store
            .read(|c| {
                c.query_row(
                    "SELECT secret_sha256 FROM api_keys WHERE id = ?1",
                    [&first.id],
                    |r| r.get(0),
                )
            })
            .expect("row");
        assert_eq!(stored.len(), 64);
        assert!(!stored.contains(secret));
        let bytes = URL_SAFE_NO_PAD.decode(secret).expect("base64");
        assert_eq!(stored, hash_hex(&bytes));
    }

    #[test]
    fn names_are_validated() {
        let (keys, _) = keys();
        for bad in ["", "  ", "a\nb", &"x".repeat(MAX_KEY_NAME_CHARS + 1)] {
            let err = keys.issue(&tenant("acme"), bad).expect_err("bad name");
            assert!(
                matches!(
                    err,
                    Error::Validation(
                        ValidationError::InvalidName { .. } | ValidationError::TooLong { .. }
                    )
                ),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
