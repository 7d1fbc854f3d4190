//! The deployment record and its lifecycle table.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::TenantId;

/// The longest service name accepted, in characters.
pub const MAX_SERVICE_NAME_CHARS: usize = 200;

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Accepted, waiting to start.
    Queued,
    /// Rolling out.
    InProgress,
    /// Rolled out. It can still be rolled back.
    Completed,
    /// The rollout failed. It can be rolled back.
    Failed,
    /// Undone. Terminal.
    RolledBack,
}

impl DeploymentState {
    /// Every state, in lifecycle order.
    pub const ALL: [DeploymentState; 5] = [
        Self::Queued,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::RolledBack,
    ];

    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        }
    }

    /// The states a deployment may move to from this one: queued to in progress (or failed,
    /// when it cannot start); in progress to completed, failed or rolled back; completed and
    /// failed to rolled back. Rolled back is terminal.
    pub fn next(self) -> &'static [DeploymentState] {
        match self {
            Self::Queued => &[Self::InProgress, Self::Failed],
            Self::InProgress => &[Self::Completed, Self::Failed, Self::RolledBack],
            Self::Completed | Self::Failed => &[Self::RolledBack],
            Self::RolledBack => &[],
        }
    }

    /// Whether the lifecycle allows moving from this state to `to`.
    pub fn can_move_to(self, to: DeploymentState) -> bool {
        self.next().contains(&to)
    }

    /// Whether nothing can follow (rolled back).
    pub fn is_terminal(self) -> bool {
        self.next().is_empty()
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeploymentState {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ValidationError::InvalidName {
                field: "deployment state",
                value: s.to_owned(),
                reason: "is not one of queued, in_progress, completed, failed, rolled_back",
            })
    }
}

/// One deployment of a tenant's service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique, time-ordered id.
    pub id: String,
    /// The tenant deploying.
    pub tenant_id: TenantId,
    /// The service deployed.
    pub service_name: String,
    /// Where it stands.
    pub state: DeploymentState,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it started rolling out.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached completed, failed or rolled back (the latest of these).
    pub finished_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Why it failed or was rolled back, if it was.
    pub reason: Option<String>,
}

impl Deployment {
    /// Seconds from the start of the rollout (or from queueing, if it never started) to its
    /// end, or to `now` while it runs.
    pub fn duration_seconds(&self, now: DateTime<Utc>) -> f64 {
        let from = self.started_at.unwrap_or(self.created_at);
        let to = self.finished_at.unwrap_or(now);
        (to - from).as_seconds_f64().max(0.0)
    }
}

/// One recorded change of a deployment's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentTransition {
    /// Where it was (`None`: this is its creation).
    pub from: Option<DeploymentState>,
    /// Where it went.
    pub to: DeploymentState,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, for a failure or a rollback.
    pub reason: Option<String>,
}
