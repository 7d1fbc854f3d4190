//! The resource model: what the state capability tracks.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ResourceState;
use crate::error::StateError;
use crate::ids::{IdKind, TenantId, validate_id};

/// A managed infrastructure resource: its identity, placement, desired spec, dependencies,
/// lifecycle state and (once reported) its actual configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Unique id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// What it is (`database`, `app_server`, `load_balancer`, ...).
    pub kind: String,
    /// Region it runs in.
    pub region: String,
    /// Availability zone, if pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Desired configuration (a JSON object).
    pub spec: Value,
    /// Ids of the resources this one depends on (they come first), sorted and unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Lifecycle state.
    pub state: ResourceState,
    /// Actual configuration as last reported, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<Value>,
    /// Version of this resource in its store; every write increments it (0: never stored).
    #[serde(default)]
    pub serial: u64,
    /// When it was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Resource {
    /// A new `pending` resource, validated: ids follow the id grammar, kind and region are
    /// non-empty, the spec is a JSON object, and it does not depend on itself.
    pub fn new(
        id: impl Into<String>,
        tenant_id: TenantId,
        kind: impl Into<String>,
        region: impl Into<String>,
        spec: Value,
    ) -> Result<Self, crate::Error> {
        let resource = Self {
            id: id.into(),
            tenant_id,
            kind: kind.into(),
            region: region.into(),
            zone: None,
            spec,
            depends_on: Vec::new(),
            labels: BTreeMap::new(),
            state: ResourceState::Pending,
            actual: None,
            serial: 0,
            updated_at: None,
        };
        resource.validate()?;
        Ok(resource)
    }

    /// Sets the dependencies (sorted, duplicates removed) and re-validates.
    pub fn with_dependencies<I, S>(mut self, depends_on: I) -> Result<Self, crate::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on = depends_on.into_iter().map(Into::into).collect();
        self.depends_on.sort();
        self.depends_on.dedup();
        self.validate()?;
        Ok(self)
    }

    /// Sets the zone.
    pub fn with_zone(mut self, zone: impl Into<String>) -> Result<Self, crate::Error> {
        self.zone = Some(zone.into());
        self.validate()?;
        Ok(self)
    }

    /// Sets the labels.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// Checks every field; the error names the resource and what is wrong.
    pub fn validate(&self) -> Result<(), crate::Error> {
        validate_id(IdKind::Resource, &self.id)?;
        let invalid = |reason: String| StateError::InvalidResource {
            resource_id: self.id.clone(),
            reason,
        };
        for (field, value) in [("kind", &self.kind), ("region", &self.region)] {
            if value.trim().is_empty() || value.len() > 128 {
                return Err(invalid(format!("{field} must be 1 to 128 characters")).into());
            }
        }
        if let Some(zone) = &self.zone
            && (zone.trim().is_empty() || zone.len() > 128)
        {
            return Err(invalid("zone must be 1 to 128 characters".into()).into());
        }
        if !self.spec.is_object() {
            return Err(invalid("spec must be a JSON object".into()).into());
        }
        for dep in &self.depends_on {
            validate_id(IdKind::Resource, dep)?;
            if dep == &self.id {
                return Err(StateError::DependencyCycle {
                    cycle: vec![self.id.clone()],
                }
                .into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant() -> TenantId {
        TenantId::new("acme").expect("id")
    }

    #[test]
    fn builds_and_normalises_dependencies() {
        let r = Resource::new(
            "app-1",
            tenant(),
            "app_server",
            "eu-west-1",
            json!({"size": 2}),
        )
        .and_then(|r| r.with_dependencies(["db-2", "db-1", "db-2"]))
        .and_then(|r| r.with_zone("eu-west-1a"))
        .expect("valid");
        assert_eq!(r.depends_on, ["db-1", "db-2"]);
        assert_eq!(r.state, ResourceState::Pending);
        assert_eq!(r.zone.as_deref(), Some("eu-west-1a"));
        let back: Resource =
            serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("de");
        assert_eq!(back, r);
    }

    #[test]
    fn rejects_bad_definitions() {
        let bad = [
            Resource::new("", tenant(), "db", "r", json!({})),
            Resource::new("a b", tenant(), "db", "r", json!({})),
            Resource::new("x", tenant(), "", "r", json!({})),
            Resource::new("x", tenant(), "db", " ", json!({})),
            Resource::new("x", tenant(), "db", "r", json!([1])),
            Resource::new("x", tenant(), "db", "r", json!({}))
                .and_then(|r| r.with_dependencies(["x"])),
            Resource::new("x", tenant(), "db", "r", json!({}))
                .and_then(|r| r.with_dependencies(["bad id"])),
            Resource::new("x", tenant(), "db", "r", json!({})).and_then(|r| r.with_zone("")),
        ];
        for result in bad {
            assert!(result.is_err(), "{result:?}");
        }
    }
}
