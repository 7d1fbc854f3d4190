//! Deployments (spec Task 4): a service's rollout through queued, in progress, completed,
//! failed and rolled back, with validated transitions and timing, kept in the store and
//! announced on the event bus (`deployment.state_change`, `deployment.health_check_failed`,
//! `deployment.rollback_initiated`).
//!
//! This folder owns the lifecycle and its events. It never delivers anything: an outbox (the
//! webhook queue) writes each event's deliveries in the transaction that records the change,
//! so a committed change always has them and a transition never waits on a recipient.

mod model;
mod schema;
mod service;

pub use model::{Deployment, DeploymentState, DeploymentTransition, MAX_SERVICE_NAME_CHARS};
pub use service::{DeploymentOutbox, DeploymentService};

pub(crate) use schema::SCHEMA;

#[cfg(test)]
mod tests;
