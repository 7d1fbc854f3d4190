//! The two things a failover changes outside the core, as small traits: promoting a standby
//! resource, and switching a DNS record. In-memory implementations serve tests and the demo;
//! the runtime crate implements them against real systems (RFC 2136 DNS).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use super::DnsRecord;
use crate::state::Resource;

/// Promotes standby resources in a region. Implementations must be idempotent: promoting a
/// standby that is already promoted succeeds and changes nothing (a plan resumed after a crash
/// may repeat the step it was in).
pub trait ResourceController: Send + Sync {
    /// Promotes `resource`'s standby in `region`; an error message if it could not.
    fn promote(&self, resource: &Resource, region: &str) -> Result<(), String>;
}

/// Switches DNS records. Implementations must be idempotent (setting the value a record
/// already has succeeds).
pub trait DnsProvider: Send + Sync {
    /// Makes `record` answer `value` (with the record's TTL); an error message if it could not.
    fn set(&self, record: &DnsRecord, value: &str) -> Result<(), String>;
}

/// Standbys promoted in memory, with a log of every call (effective or not) and failures that
/// can be injected per resource.
#[derive(Debug, Default)]
pub struct InMemoryResources {
    inner: Mutex<InMemoryResourcesState>,
}

#[derive(Debug, Default)]
struct InMemoryResourcesState {
    promoted: BTreeMap<String, String>,
    calls: Vec<String>,
    failures: HashMap<String, u32>,
}

impl InMemoryResources {
    /// Nothing promoted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `times` promotions of `resource_id` fail.
    pub fn fail_next(&self, resource_id: &str, times: u32) {
        self.lock().failures.insert(resource_id.to_owned(), times);
    }

    /// The resources promoted, with the region each was promoted in.
    pub fn promoted(&self) -> BTreeMap<String, String> {
        self.lock().promoted.clone()
    }

    /// Every call made, in order (resource ids).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InMemoryResourcesState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResourceController for InMemoryResources {
    fn promote(&self, resource: &Resource, region: &str) -> Result<(), String> {
        let mut state = self.lock();
        state.calls.push(resource.id.clone());
        if let Some(left) = state.failures.get_mut(&resource.id)
            && *left > 0
        {
            *left -= 1;
            return Err(format!("injected failure promoting {}", resource.id));
        }
        state
            .promoted
            .insert(resource.id.clone(), region.to_owned());
        Ok(())
    }
}

/// DNS records kept in memory.
#[derive(Debug, Default)]
pub struct InMemoryDns {
    records: Mutex<BTreeMap<(String, String), (String, u32)>>,
}

impl InMemoryDns {
    /// No records yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value and TTL `name` (absolute, lower case) answers for `rtype`, if set.
    pub fn lookup(&self, name: &str, rtype: &str) -> Option<(String, u32)> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(name.to_owned(), rtype.to_owned()))
            .cloned()
    }
}

impl DnsProvider for InMemoryDns {
    fn set(&self, record: &DnsRecord, value: &str) -> Result<(), String> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (record.name.clone(), record.rtype.as_str().to_owned()),
                (value.to_owned(), record.ttl),
            );
        Ok(())
    }
}
