//! Failover policies and the DNS records they switch.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::error::FailoverError;
use crate::ids::{IdKind, TenantId, validate_id};

/// The most consecutive failures a policy may require (Route 53's failure threshold range).
pub const MAX_FAILURE_THRESHOLD: u32 = 10;

/// The longest TTL a switched record may have: clients must see the switch within 60 s.
pub const MAX_TTL_S: u32 = 60;

/// The kind of a switched DNS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordType {
    /// An IPv4 address.
    A,
    /// An IPv6 address.
    Aaaa,
    /// An alias to another name.
    Cname,
}

impl RecordType {
    /// The record type's name (`A`, `AAAA`, `CNAME`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
        }
    }

    /// Parses a type name (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "A" => Some(Self::A),
            "AAAA" => Some(Self::Aaaa),
            "CNAME" => Some(Self::Cname),
            _ => None,
        }
    }
}

/// A DNS record a failover switches from its primary to its secondary value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The zone it lives in (`example.com.`).
    pub zone: String,
    /// Its fully qualified name, inside the zone (`api.example.com.`).
    pub name: String,
    /// A, AAAA or CNAME.
    pub rtype: RecordType,
    /// The value while the primary region serves.
    pub primary_value: String,
    /// The value after failover.
    pub secondary_value: String,
    /// Time to live in seconds, 1 to [`MAX_TTL_S`].
    pub ttl: u32,
}

impl DnsRecord {
    /// A validated record; names are made absolute (a trailing dot is added).
    pub fn new(
        zone: &str,
        name: &str,
        rtype: RecordType,
        primary_value: &str,
        secondary_value: &str,
        ttl: u32,
    ) -> Result<Self, FailoverError> {
        let invalid = |reason: String| FailoverError::InvalidRecord {
            name: name.to_owned(),
            reason,
        };
        let zone = absolute(zone).map_err(|r| invalid(format!("zone: {r}")))?;
        let fqdn = absolute(name).map_err(|r| invalid(format!("name: {r}")))?;
        if !(fqdn == zone || fqdn.ends_with(&format!(".{zone}"))) {
            return Err(invalid(format!("{fqdn} is not inside zone {zone}")));
        }
        if !(1..=MAX_TTL_S).contains(&ttl) {
            return Err(invalid(format!(
                "ttl {ttl} s is outside 1..={MAX_TTL_S} (resolvers must see a switch within 60 s)"
            )));
        }
        let check = |value: &str| -> Result<String, String> {
            match rtype {
                RecordType::A => value
                    .parse::<Ipv4Addr>()
                    .map(|a| a.to_string())
                    .map_err(|_| format!("{value:?} is not an IPv4 address")),
                RecordType::Aaaa => value
                    .parse::<Ipv6Addr>()
                    .map(|a| a.to_string())
                    .map_err(|_| format!("{value:?} is not an IPv6 address")),
                RecordType::Cname => absolute(value),
            }
        };
        let primary_value = check(primary_value).map_err(&invalid)?;
        let secondary_value = check(secondary_value).map_err(&invalid)?;
        if primary_value == secondary_value {
            return Err(invalid(
                "the primary and secondary values are the same".into(),
            ));
        }
        Ok(Self {
            zone,
            name: fqdn,
            rtype,
            primary_value,
            secondary_value,
            ttl,
        })
    }
}

/// `name` lower-cased with a trailing dot, if it is a valid host name (RFC 1123 labels).
fn absolute(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(format!("{name:?} is not a host name"));
    }
    for label in trimmed.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("{name:?} has an invalid label {label:?}"));
        }
    }
    Ok(format!("{}.", trimmed.to_ascii_lowercase()))
}

/// A tenant's failover policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverPolicy {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The region that serves normally.
    pub primary_region: String,
    /// The region that takes over.
    pub secondary_region: String,
    /// Consecutive failed checks (1 to 10) before a zone counts as failing.
    pub failure_threshold: u32,
    /// Failed checks older than this many seconds no longer count.
    pub evaluation_window_s: u32,
    /// How many zones of a region must be failing before the region counts as down.
    pub min_unhealthy_zones: u32,
    /// How long the primary must have been healthy before a failback (and the least time
    /// between two automatic transitions).
    pub failback_after_s: u32,
    /// Whether to fail back automatically once the primary has been healthy long enough.
    pub auto_failback: bool,
    /// The DNS records to switch.
    pub dns_records: Vec<DnsRecord>,
}

impl FailoverPolicy {
    /// A validated policy.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenant_id: TenantId,
        primary_region: &str,
        secondary_region: &str,
        failure_threshold: u32,
        evaluation_window_s: u32,
        min_unhealthy_zones: u32,
        failback_after_s: u32,
        auto_failback: bool,
        dns_records: Vec<DnsRecord>,
    ) -> Result<Self, FailoverError> {
        let invalid = |reason: String| FailoverError::InvalidPolicy {
            tenant_id: tenant_id.to_string(),
            reason,
        };
        for region in [primary_region, secondary_region] {
            validate_id(IdKind::Region, region).map_err(|e| invalid(e.to_string()))?;
        }
        if primary_region == secondary_region {
            return Err(invalid(format!(
                "the primary and secondary regions are both {primary_region}"
            )));
        }
        if !(1..=MAX_FAILURE_THRESHOLD).contains(&failure_threshold) {
            return Err(invalid(format!(
                "failure_threshold {failure_threshold} is outside 1..={MAX_FAILURE_THRESHOLD}"
            )));
        }
        if !(10..=86_400).contains(&evaluation_window_s) {
            return Err(invalid(format!(
                "evaluation_window_s {evaluation_window_s} is outside 10..=86400"
            )));
        }
        if min_unhealthy_zones == 0 {
            return Err(invalid("min_unhealthy_zones must be at least 1".into()));
        }
        if failback_after_s > 7 * 86_400 {
            return Err(invalid(format!(
                "failback_after_s {failback_after_s} is more than a week"
            )));
        }
        let mut names = std::collections::HashSet::new();
        if let Some(dup) = dns_records
            .iter()
            .find(|r| !names.insert((r.name.as_str(), r.rtype)))
        {
            return Err(invalid(format!(
                "DNS record {} {} is listed twice",
                dup.name,
                dup.rtype.as_str()
            )));
        }
        Ok(Self {
            tenant_id,
            primary_region: primary_region.to_owned(),
            secondary_region: secondary_region.to_owned(),
            failure_threshold,
            evaluation_window_s,
            min_unhealthy_zones,
            failback_after_s,
            auto_failback,
            dns_records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::new("acme").expect("id")
    }

    fn record() -> DnsRecord {
        DnsRecord::new(
            "Example.com",
            "api.example.com.",
            RecordType::A,
            "192.0.2.10",
            "198.51.100.10",
            60,
        )
        .expect("record")
    }

    #[test]
    fn records_are_normalised_and_checked() {
        let r = record();
        assert_eq!(
            (r.zone.as_str(), r.name.as_str()),
            ("example.com.", "api.example.com.")
        );
        let bad = [
            (
                "example.com",
                "api.other.com",
                RecordType::A,
                "192.0.2.1",
                "192.0.2.2",
                60,
            ),
            (
                "example.com",
                "api.example.com",
                RecordType::A,
                "192.0.2.1",
                "192.0.2.2",
                61,
            ),
            (
                "example.com",
                "api.example.com",
                RecordType::A,
                "192.0.2.1",
                "192.0.2.2",
                0,
            ),
            (
                "example.com",
                "api.example.com",
                RecordType::A,
                "192.0.2.1",
                "2001:db8::1",
                60,
            ),
            (
                "example.com",
                "api.example.com",
                RecordType::Aaaa,
                "2001:db8::1",
                "2001:db8::1",
                60,
            ),
            (
                "example.com",
                "-bad.example.com",
                RecordType::Cname,
                "a.example.net",
                "b.example.net",
                60,
            ),
            (
                "",
                "api.example.com",
                RecordType::A,
                "192.0.2.1",
                "192.0.2.2",
                60,
            ),
        ];
        for (zone, name, rtype, p, s, ttl) in bad {
            assert!(
                DnsRecord::new(zone, name, rtype, p, s, ttl).is_err(),
                "{name} {ttl}"
            );
        }
        let alias = DnsRecord::new(
            "example.com",
            "www.example.com",
            RecordType::Cname,
            "EU.example.net",
            "us.example.net.",
            30,
        )
        .expect("cname");
        assert_eq!(alias.primary_value, "eu.example.net.");
        assert_eq!(RecordType::parse("aaaa"), Some(RecordType::Aaaa));
    }

    #[test]
    fn policies_are_validated() {
        let ok = FailoverPolicy::new(
            tenant(),
            "eu-west-1",
            "eu-central-1",
            3,
            60,
            2,
            300,
            true,
            vec![record()],
        );
        assert!(ok.is_ok());
        let cases: [(&str, &str, u32, u32, u32, u32); 7] = [
            ("eu-west-1", "eu-west-1", 3, 60, 2, 300),
            ("eu-west-1", "eu central", 3, 60, 2, 300),
            ("eu-west-1", "eu-central-1", 0, 60, 2, 300),
            ("eu-west-1", "eu-central-1", 11, 60, 2, 300),
            ("eu-west-1", "eu-central-1", 3, 5, 2, 300),
            ("eu-west-1", "eu-central-1", 3, 60, 0, 300),
            ("eu-west-1", "eu-central-1", 3, 60, 2, 8 * 86_400),
        ];
        for (p, s, t, w, z, f) in cases {
            let err = FailoverPolicy::new(tenant(), p, s, t, w, z, f, true, vec![]);
            assert!(
                matches!(err, Err(FailoverError::InvalidPolicy { .. })),
                "{p} {s} {t} {w} {z} {f}"
            );
        }
        let twice = FailoverPolicy::new(
            tenant(),
            "a",
            "b",
            3,
            60,
            1,
            0,
            false,
            vec![record(), record()],
        );
        assert!(twice.is_err());
    }
}
