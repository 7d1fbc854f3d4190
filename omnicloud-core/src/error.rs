//! The error design of the core.
//!
//! Each domain owns one `thiserror` enum with typed fields (the path that failed to open, the
//! two currencies that do not match, the tenant that is unknown). [`Error`] gathers them so a
//! caller that drives several capabilities can hold one type; it is `#[non_exhaustive]`
//! because every capability adds its own domain. Nothing here formats for a particular
//! front-end: the Python binding maps each variant to an exception class in one place.

use std::path::PathBuf;

use crate::ids::IdKind;
use crate::state::ResourceState;

/// Any error the core can return.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value failed validation (an id, a name, a clock step).
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The embedded database could not be opened, migrated, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit trail refused a query or an entry.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Tenancy: unknown or duplicate tenants.
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// Money and currencies.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// Billing: metering, prices, invoices, credits, the currency migration.
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// Resource state: lifecycle, dependencies, drift, state stores.
    #[error(transparent)]
    State(#[from] StateError),
    /// Snapshots of resource state.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Scheduling: placement of workloads on nodes.
    #[error(transparent)]
    Scheduling(#[from] SchedulingError),
    /// The event bus: a subscriber failed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Failover: policies, health, plans.
    #[error(transparent)]
    Failover(#[from] FailoverError),
    /// Webhooks: endpoints, templates, signatures, deliveries.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// Deployments: unknown deployments, transitions the lifecycle does not allow.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// API keys: a key that does not authenticate, an unknown key, the random source.
    #[error(transparent)]
    ApiKey(#[from] ApiKeyError),
}

/// A shorthand for results whose error is a core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A value given to the core is not acceptable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// An identifier is empty, too long or contains characters outside `[A-Za-z0-9._:-]`.
    #[error("invalid {kind} id {value:?}: {reason}")]
    InvalidId {
        /// Which kind of id was being parsed.
        kind: IdKind,
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A human-readable name is empty or too long.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidName {
        /// The field being set (for example `tenant name`).
        field: &'static str,
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A text is longer than its field allows.
    #[error("{field} is {length} characters long, more than the {max_chars} allowed")]
    TooLong {
        /// The field being set.
        field: &'static str,
        /// The most characters allowed.
        max_chars: usize,
        /// How many characters were given.
        length: usize,
    },
    /// An instant lies outside the years 0001 to 9999 (what RFC 3339 and Python can hold).
    #[error("instant {instant} is outside the years 0001 to 9999")]
    InstantOutOfRange {
        /// The instant, as text.
        instant: String,
    },
    /// A clock was asked to move by a negative, NaN or out-of-range number of seconds.
    #[error("invalid clock step of {seconds} seconds: {reason}")]
    InvalidClockStep {
        /// The rejected step.
        seconds: f64,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// The embedded SQLite store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open store at {path}: {reason}")]
    Open {
        /// The path given to [`crate::store::Store::open`].
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
    /// The file exists but is not an SQLite database, or its pages are damaged.
    #[error("store at {path} is corrupt or not an OmniCloud database: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// SQLite's diagnosis.
        reason: String,
    },
    /// The file was written by a newer OmniCloud whose schema this build does not know.
    #[error(
        "store at {path} has schema version {found}, newer than the {supported} this build knows"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u32,
        /// The newest version this build can migrate to.
        supported: u32,
    },
    /// A schema migration failed and was rolled back.
    #[error("schema migration {version} ({name}) failed on {path}: {source}")]
    Migration {
        /// The database file (`:memory:` for in-memory stores).
        path: PathBuf,
        /// The migration's version.
        version: u32,
        /// The migration's name.
        name: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed.
    #[error("store operation failed on {path}: {source}")]
    Sqlite {
        /// The database file (`:memory:` for in-memory stores).
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A row holds a value this build cannot decode (for example a malformed timestamp).
    #[error("store at {path} holds an undecodable value in {table}.{column}: {reason}")]
    Decode {
        /// The database file.
        path: PathBuf,
        /// The table read.
        table: &'static str,
        /// The column read.
        column: &'static str,
        /// What was wrong with the value.
        reason: String,
    },
}

/// The audit trail refused an operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A query's time range ends before it starts.
    #[error("audit query range is empty: since {since} is after until {until}")]
    EmptyRange {
        /// Inclusive lower bound (RFC 3339).
        since: String,
        /// Exclusive upper bound (RFC 3339).
        until: String,
    },
    /// An action name is empty or malformed.
    #[error("invalid audit action {action:?}: {reason}")]
    InvalidAction {
        /// The rejected action name.
        action: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// Tenancy failed: unknown or duplicate tenants.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TenancyError {
    /// No tenant has this id.
    #[error("unknown tenant {tenant_id:?}")]
    UnknownTenant {
        /// The id that was looked up.
        tenant_id: String,
    },
    /// A tenant with this id already exists.
    #[error("tenant {tenant_id:?} already exists")]
    DuplicateTenant {
        /// The id that is taken.
        tenant_id: String,
    },
}

/// Money and currencies failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// The code is not in the ISO 4217 list.
    #[error(
        "unknown currency code {code:?} (expected an ISO 4217 alphabetic code such as USD, EUR or JPY)"
    )]
    UnknownCurrency {
        /// The rejected code.
        code: String,
    },
    /// Two amounts in different currencies were combined or compared.
    #[error("currency mismatch: cannot combine {left} with {right}")]
    CurrencyMismatch {
        /// The left operand's currency.
        left: String,
        /// The right operand's currency.
        right: String,
    },
    /// The currency has no minor unit in ISO 4217 (gold, SDR, testing codes) or was withdrawn
    /// from the list, and cannot be billed.
    #[error(
        "currency {code} cannot be used for billing (ISO 4217 gives it no minor unit, or has withdrawn it)"
    )]
    NotBillable {
        /// The currency's code.
        code: String,
    },
    /// An exchange rate is unusable (not positive, against itself, unnamed source, or a
    /// conflicting rewrite of history).
    #[error("invalid exchange rate: {reason}")]
    InvalidRate {
        /// What is wrong.
        reason: String,
    },
    /// No rate is known for the pair at that moment, directly, inverted or through USD or EUR.
    #[error("no exchange rate from {base} to {quote} at {at}")]
    ExchangeRateNotFound {
        /// The currency converted from.
        base: String,
        /// The currency converted to.
        quote: String,
        /// The moment (RFC 3339).
        at: String,
    },
    /// An allocation's weights or amount are unusable.
    #[error("cannot allocate: {reason}")]
    InvalidAllocation {
        /// What is wrong.
        reason: String,
    },
    /// An arithmetic result does not fit in a 96-bit decimal.
    #[error("decimal overflow computing {operation}")]
    Overflow {
        /// The operation that overflowed (for example `add`).
        operation: &'static str,
    },
}

/// Billing refused an operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BillingError {
    /// An issued invoice would change: it is immutable, and corrections are credit notes.
    #[error(
        "invoice {invoice_id} is issued and immutable: {reason}; correct it with a credit note"
    )]
    InvoiceImmutable {
        /// The issued invoice.
        invoice_id: String,
        /// What would have changed it.
        reason: String,
    },
    /// No invoice has this id.
    #[error("unknown invoice {invoice_id:?}")]
    UnknownInvoice {
        /// The id looked up.
        invoice_id: String,
    },
    /// No price is set for the meter, in any currency.
    #[error("no price is set for meter {meter:?}{}", region.as_deref().map(|r| format!(" in region {r:?}")).unwrap_or_default())]
    PriceNotFound {
        /// The meter.
        meter: String,
        /// The region of the usage, if any.
        region: Option<String>,
    },
    /// A usage record, period, discount, credit or pool allocation is unusable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was refused (`usage record`, `period`, `discount`…).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The currency migration was stopped by its progress callback; the batches done so far
    /// are checkpointed and a new run resumes after them.
    #[error("currency migration stopped after {processed} tenants: {reason}")]
    MigrationStopped {
        /// Tenants processed so far (all runs).
        processed: u64,
        /// Why it stopped.
        reason: String,
    },
}

/// Failover refused an operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FailoverError {
    /// A failover policy is unusable.
    #[error("invalid failover policy for tenant {tenant_id:?}: {reason}")]
    InvalidPolicy {
        /// The tenant the policy is for.
        tenant_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A DNS record to switch is unusable.
    #[error("invalid DNS record {name:?}: {reason}")]
    InvalidRecord {
        /// The record's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A health check result is unusable (unknown region for the tenant's policy, bad ids).
    #[error("invalid health check result: {reason}")]
    InvalidHealthResult {
        /// What is wrong.
        reason: String,
    },
    /// An active health check is malformed (bad URL, port or timeout).
    #[error("invalid health check: {reason}")]
    InvalidHealthCheck {
        /// What is wrong.
        reason: String,
    },
    /// Usage attribution was asked of a controller built without a billing service.
    #[error("the failover controller has no billing service to record usage in")]
    BillingNotConfigured,
    /// The tenant has no failover policy.
    #[error("tenant {tenant_id:?} has no failover policy")]
    NoPolicy {
        /// The tenant.
        tenant_id: String,
    },
    /// A manual failover of a tenant already on its secondary, or a failback of one already on
    /// its primary.
    #[error("tenant {tenant_id:?} is already where a {kind} would take it")]
    AlreadyThere {
        /// The tenant.
        tenant_id: String,
        /// `failover` or `failback`.
        kind: &'static str,
    },
    /// Another plan of the tenant is still running (or waiting to be resumed).
    #[error("tenant {tenant_id:?} has plan {plan_id} in progress")]
    PlanInProgress {
        /// The tenant.
        tenant_id: String,
        /// The plan in progress.
        plan_id: String,
    },
}

/// The event bus failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// A subscriber could not handle an event (for example a Python callback raised).
    #[error("event subscriber failed: {message}")]
    SubscriberFailed {
        /// What the subscriber reported.
        message: String,
    },
}

/// Resource state failed: lifecycle, dependencies, drift or a state store.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The transition is not in the lifecycle table.
    #[error("invalid transition for resource {resource_id:?}: {from} -> {to}")]
    InvalidTransition {
        /// The resource.
        resource_id: String,
        /// Its current state.
        from: ResourceState,
        /// The refused target state.
        to: ResourceState,
    },
    /// A state name is not one of the lifecycle's.
    #[error(
        "unknown resource state {name:?} (expected one of pending, provisioning, active, updating, degraded, failed, standby, deprovisioning, terminated)"
    )]
    UnknownState {
        /// The rejected name.
        name: String,
    },
    /// No resource has this id.
    #[error("unknown resource {resource_id:?}")]
    UnknownResource {
        /// The id looked up.
        resource_id: String,
    },
    /// A resource with this id is already registered.
    #[error("resource {resource_id:?} is already registered")]
    DuplicateResource {
        /// The id that is taken.
        resource_id: String,
    },
    /// The dependencies form a cycle; its members are listed in cycle order.
    #[error("dependency cycle: {}", cycle_text(.cycle))]
    DependencyCycle {
        /// The cycle's members in cycle order, starting from the smallest id: each member
        /// depends on the next, and the last on the first.
        cycle: Vec<String>,
    },
    /// A resource depends on one that is not registered.
    #[error("resource {resource_id:?} depends on unknown resource {dependency:?}")]
    UnknownDependency {
        /// The dependent resource.
        resource_id: String,
        /// The missing dependency.
        dependency: String,
    },
    /// A resource cannot be removed while others depend on it.
    #[error("resource {resource_id:?} cannot be removed: {dependents:?} depend on it")]
    HasDependents {
        /// The resource.
        resource_id: String,
        /// Its direct dependents, sorted.
        dependents: Vec<String>,
    },
    /// A write was based on a stale version of the resource (optimistic concurrency).
    #[error(
        "conflict writing resource {resource_id:?}: expected serial {expected:?}, found {found:?}"
    )]
    Conflict {
        /// The resource.
        resource_id: String,
        /// The serial the writer based its change on (`None`: it expected no resource).
        expected: Option<u64>,
        /// The serial in the store (`None`: no resource).
        found: Option<u64>,
    },
    /// A write or restore came from another state lineage.
    #[error("state lineage mismatch: the store is {store:?}, the write is from {writer:?}")]
    LineageMismatch {
        /// The store's lineage.
        store: String,
        /// The writer's lineage.
        writer: String,
    },
    /// A resource definition is invalid (for example a spec that is not a JSON object).
    #[error("invalid resource {resource_id:?}: {reason}")]
    InvalidResource {
        /// The resource.
        resource_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A drift path pattern or tolerance is invalid.
    #[error("invalid drift rule {rule:?}: {reason}")]
    InvalidDriftRule {
        /// The rejected path or tolerance.
        rule: String,
        /// What is wrong.
        reason: String,
    },
    /// A user-supplied drift strategy failed.
    #[error("drift strategy failed: {message}")]
    DriftStrategy {
        /// What it reported.
        message: String,
    },
}

fn cycle_text(cycle: &[String]) -> String {
    let mut text = cycle.join(" -> ");
    if let Some(first) = cycle.first() {
        text.push_str(" -> ");
        text.push_str(first);
    }
    text
}

/// A snapshot could not be written, read, verified or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The snapshot directory cannot be used.
    #[error("snapshot directory {path}: {reason}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a snapshot file failed.
    #[error("snapshot I/O on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// No snapshot has this id.
    #[error("unknown snapshot {snapshot_id:?}")]
    UnknownSnapshot {
        /// The id looked up.
        snapshot_id: String,
    },
    /// The snapshot file is damaged or truncated; nothing was loaded from it.
    #[error("snapshot {snapshot_id:?} is corrupt: {reason}")]
    Corrupt {
        /// The snapshot.
        snapshot_id: String,
        /// What verification found.
        reason: String,
    },
    /// The snapshot id is malformed.
    #[error("invalid snapshot id {snapshot_id:?}")]
    InvalidId {
        /// The rejected id.
        snapshot_id: String,
    },
}

/// Scheduling failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulingError {
    /// No node can take the workload; each reason with how many nodes it excluded.
    #[error("0/{nodes} nodes are available for workload {workload_id:?}: {}", reasons_text(.reasons))]
    Unschedulable {
        /// The workload.
        workload_id: String,
        /// How many nodes were considered.
        nodes: usize,
        /// Reason -> number of nodes it excluded.
        reasons: std::collections::BTreeMap<String, usize>,
    },
    /// No node has this id.
    #[error("unknown node {node_id:?}")]
    UnknownNode {
        /// The id.
        node_id: String,
    },
    /// A node with this id already exists.
    #[error("node {node_id:?} already exists")]
    DuplicateNode {
        /// The id.
        node_id: String,
    },
    /// A node description is invalid.
    #[error("invalid node {node_id:?}: {reason}")]
    InvalidNode {
        /// The node.
        node_id: String,
        /// What is wrong.
        reason: String,
    },
    /// No placed workload has this id.
    #[error("unknown workload {workload_id:?}")]
    UnknownWorkload {
        /// The id.
        workload_id: String,
    },
    /// A workload with this id is already placed.
    #[error("workload {workload_id:?} is already placed")]
    DuplicateWorkload {
        /// The id.
        workload_id: String,
    },
    /// A request (or one of its rules or groups) is invalid.
    #[error("invalid scheduling request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
}

fn reasons_text(reasons: &std::collections::BTreeMap<String, usize>) -> String {
    reasons
        .iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Webhooks: endpoints, payload templates, signing secrets, deliveries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A payload template does not compile (checked at registration).
    #[error("invalid template{}: {reason}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    InvalidTemplate {
        /// The 1-based line of the error, when known.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A template failed while rendering: an undefined variable (strict), its fuel used up, or
    /// output that is not the JSON the endpoint expects.
    #[error("template rendering failed{}: {reason}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Render {
        /// The 1-based line of the error, when known.
        line: Option<usize>,
        /// What went wrong.
        reason: String,
    },
    /// An endpoint's settings are unacceptable (no event types, an empty state filter, a
    /// limit or attempt count out of range).
    #[error("invalid webhook endpoint {field}: {reason}")]
    InvalidEndpoint {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No delivery has this id (for this tenant).
    #[error("unknown webhook delivery {delivery_id:?}")]
    UnknownDelivery {
        /// The id asked for.
        delivery_id: String,
    },
    /// No endpoint has this id (for this tenant).
    #[error("unknown webhook endpoint {endpoint_id:?}")]
    UnknownEndpoint {
        /// The id asked for.
        endpoint_id: String,
    },
    /// A signing secret is malformed (not `whsec_` + base64 of 24 to 64 bytes).
    #[error("invalid webhook secret: {reason}")]
    InvalidSecret {
        /// What is wrong.
        reason: String,
    },
    /// The operating system's random source failed while generating a signing secret.
    #[error("cannot generate a webhook secret: the system random source failed: {reason}")]
    RandomUnavailable {
        /// The operating system's error, in words.
        reason: String,
    },
    /// A retry policy is unusable (no delays, a delay over 24 h, attempts outside 1 to 20).
    #[error("invalid retry policy: {reason}")]
    InvalidRetryPolicy {
        /// What is wrong.
        reason: String,
    },
    /// A rate limit is unusable (outside 1 to 100,000 deliveries per minute).
    #[error("invalid rate limit: {reason}")]
    InvalidRateLimit {
        /// What is wrong.
        reason: String,
    },
    /// A delivery cannot be sent again: its payload never rendered (the endpoint's template
    /// failed when the event was queued), so there is nothing to send.
    #[error("delivery {delivery_id} cannot be redelivered: {reason}")]
    NotRedeliverable {
        /// The delivery.
        delivery_id: String,
        /// Why.
        reason: String,
    },
    /// A delivery queue's claim lease is unusable (shorter than a second).
    #[error("invalid claim lease of {lease_ms} ms: it must be at least 1 s")]
    InvalidClaimLease {
        /// The lease asked for, in milliseconds.
        lease_ms: i64,
    },
    /// A webhook URL is malformed, or written in a form the SSRF guard refuses because
    /// parsers disagree on it (a numeric host that is not a dotted quad, a percent-encoded
    /// host, credentials in the URL).
    #[error("invalid webhook URL {url:?}: {reason}")]
    InvalidUrl {
        /// The rejected URL (cut short, with its length, when over the 2048-byte limit).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The SSRF guard refuses a webhook destination: a loopback, private, link-local or
    /// otherwise non-public address the server's allow-list does not contain, or a host name
    /// that names an internal host (`localhost`, `*.internal`, ...).
    #[error("refusing webhook {}: {reason}", url.as_deref().map_or_else(|| "destination".to_owned(), |u| format!("URL {u:?}")))]
    UnsafeUrl {
        /// The URL, when the check was of a URL (`None` when only an address was checked, at
        /// connect time).
        url: Option<String>,
        /// The refused address (`None` when a host name was refused before any resolution).
        address: Option<std::net::IpAddr>,
        /// The refused address's class (`None` when a host name was refused).
        class: Option<crate::webhook::AddressClass>,
        /// Why, in words.
        reason: String,
    },
    /// An entry of the SSRF guard's allow-list is not an address or a CIDR network.
    #[error("invalid webhook allow-list entry {entry:?}: {reason}")]
    InvalidAllowList {
        /// The rejected entry.
        entry: String,
        /// What is wrong.
        reason: String,
    },
}

/// Deployments: unknown ids and transitions the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// No deployment has this id.
    #[error("unknown deployment {deployment_id:?}")]
    UnknownDeployment {
        /// The id asked for.
        deployment_id: String,
    },
    /// The lifecycle does not allow this move from the deployment's current state.
    #[error("deployment {deployment_id:?} cannot move from {from} to {to}")]
    InvalidTransition {
        /// The deployment.
        deployment_id: String,
        /// Where it is.
        from: crate::deploy::DeploymentState,
        /// Where it was asked to go.
        to: crate::deploy::DeploymentState,
    },
    /// The outbox (the webhook queue) writes through another store (another database, or
    /// another connection to the same file) than the deployments, so a change and its
    /// deliveries could not commit in one transaction.
    #[error(
        "the webhook queue must use the deployments' store object ({deployments}), not another \
         store or another opening of a file ({outbox}), so a change and its deliveries commit \
         in one transaction"
    )]
    OutboxInAnotherStore {
        /// The deployments' store.
        deployments: String,
        /// The outbox's store.
        outbox: String,
    },
}

/// API keys: authentication and key management.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The presented key does not authenticate. Deliberately one case for a malformed,
    /// unknown or revoked key and a wrong secret, so a caller learns nothing about which.
    #[error("invalid API key")]
    InvalidKey,
    /// No key has this id (for this tenant).
    #[error("unknown API key {key_id:?}")]
    UnknownKey {
        /// The id asked for.
        key_id: String,
    },
    /// The operating system's random source failed while generating a key.
    #[error("cannot generate an API key: the system random source failed: {reason}")]
    RandomUnavailable {
        /// The operating system's error, in words.
        reason: String,
    },
}
