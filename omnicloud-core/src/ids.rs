//! Identifiers: validated newtypes for caller-chosen ids and generated time-ordered ids.
//!
//! Caller-chosen ids (tenants, resources, nodes) are 1–128 characters from `[A-Za-z0-9._:-]`, so
//! they are safe in URLs, log lines, SQL parameters and DNS-adjacent labels. Generated ids are
//! UUIDv7 (time-ordered, so they sort by creation). This module never touches storage.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Longest accepted caller-chosen id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Which kind of id a validation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdKind {
    /// A tenant id.
    Tenant,
    /// A resource id.
    Resource,
    /// A billing meter's name.
    Meter,
    /// A region's name.
    Region,
    /// An invoice id.
    Invoice,
    /// A cost pool's name.
    Pool,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Tenant => "tenant",
            IdKind::Resource => "resource",
            IdKind::Meter => "meter",
            IdKind::Region => "region",
            IdKind::Invoice => "invoice",
            IdKind::Pool => "pool",
        })
    }
}

/// Checks a caller-chosen id against the id grammar.
pub fn validate_id(kind: IdKind, value: &str) -> Result<(), ValidationError> {
    let reason = if value.is_empty() {
        Some("must not be empty")
    } else if value.len() > MAX_ID_LEN {
        Some("must be at most 128 characters")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        Some("may only contain letters, digits and . _ : -")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ValidationError::InvalidId {
            kind,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The id of a tenant: the unit of isolation, billing and policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Validates and wraps a tenant id.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        validate_id(IdKind::Tenant, &value)?;
        Ok(Self(value))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks free text shown to people (names, actors): not blank, at most `max_chars`
/// characters, no control characters.
pub fn validate_display_text(
    field: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<(), ValidationError> {
    let invalid = |reason| ValidationError::InvalidName {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.trim().is_empty() {
        return Err(invalid("must not be blank"));
    }
    let length = value.chars().count();
    if length > max_chars {
        return Err(ValidationError::TooLong {
            field,
            max_chars,
            length,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("must not contain control characters"));
    }
    Ok(())
}

/// Generates a new time-ordered unique id (UUIDv7, hyphenated lower-case text).
pub fn generate_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Generates a new time-ordered unique id written after `prefix` as 32 lower-case hex digits
/// (a UUIDv7 without hyphens), e.g. `dlv_019a…`; ids with one prefix sort in creation order.
pub fn generate_prefixed_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_ids_are_the_prefix_and_32_hex_digits_in_creation_order() {
        let first = generate_prefixed_id("dlv_");
        let second = generate_prefixed_id("dlv_");
        for id in [&first, &second] {
            let digits = id.strip_prefix("dlv_").expect("prefix");
            assert_eq!(digits.len(), 32, "{id}");
            assert!(
                digits
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
        assert!(first < second);
        assert_eq!(generate_prefixed_id("").len(), 32);
    }

    #[test]
    fn accepts_the_id_grammar() {
        for ok in ["t1", "acme-prod", "a.b_c:d-e", &"x".repeat(MAX_ID_LEN)] {
            assert_eq!(TenantId::new(ok).expect("valid").as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty_long_and_unsafe_ids_with_the_reason() {
        let cases = [
            ("", "must not be empty"),
            (
                &"x".repeat(MAX_ID_LEN + 1) as &str,
                "must be at most 128 characters",
            ),
            ("a b", "may only contain letters, digits and . _ : -"),
            ("a/b", "may only contain letters, digits and . _ : -"),
            ("é", "may only contain letters, digits and . _ : -"),
        ];
        for (bad, why) in cases {
            let err = TenantId::new(bad).expect_err(bad);
            assert_eq!(
                err,
                ValidationError::InvalidId {
                    kind: IdKind::Tenant,
                    value: bad.to_owned(),
                    reason: why
                }
            );
            assert!(err.to_string().starts_with("invalid tenant id"));
        }
    }

    #[test]
    fn display_text_rules() {
        assert!(validate_display_text("name", "Acme Corp", 10).is_ok());
        assert!(matches!(
            validate_display_text("name", "  ", 10),
            Err(ValidationError::InvalidName {
                reason: "must not be blank",
                ..
            })
        ));
        assert_eq!(
            validate_display_text("name", "x".repeat(11).as_str(), 10),
            Err(ValidationError::TooLong {
                field: "name",
                max_chars: 10,
                length: 11
            })
        );
        assert!(matches!(
            validate_display_text("name", "a\tb", 10),
            Err(ValidationError::InvalidName { .. })
        ));
    }

    #[test]
    fn serde_round_trip_validates() {
        let id = TenantId::new("acme").expect("valid");
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, "\"acme\"");
        assert_eq!(serde_json::from_str::<TenantId>(&json).expect("parse"), id);
        assert!(serde_json::from_str::<TenantId>("\"a b\"").is_err());
    }

    #[test]
    fn generated_ids_are_unique_and_time_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| generate_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "UUIDv7 text sorts in creation order");
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
    }
}
