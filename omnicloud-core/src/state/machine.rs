//! The resource lifecycle: states and the explicit transition table.
//!
//! [`StateMachine`] answers one question: may a resource move from one state to another? It
//! holds no resources and records nothing; the [`super::StateManager`] applies transitions and
//! the state stores keep their history.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// Where a resource is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Declared, nothing created yet.
    Pending,
    /// Being created.
    Provisioning,
    /// Serving.
    Active,
    /// Being changed in place.
    Updating,
    /// Serving with reduced capacity or failing health checks.
    Degraded,
    /// Not serving; needs intervention or a retry.
    Failed,
    /// Provisioned and ready to take over (a failover target).
    Standby,
    /// Being torn down.
    Deprovisioning,
    /// Gone. Terminal.
    Terminated,
}

impl ResourceState {
    /// Every state, in lifecycle order.
    pub const ALL: [ResourceState; 9] = [
        ResourceState::Pending,
        ResourceState::Provisioning,
        ResourceState::Active,
        ResourceState::Updating,
        ResourceState::Degraded,
        ResourceState::Failed,
        ResourceState::Standby,
        ResourceState::Deprovisioning,
        ResourceState::Terminated,
    ];

    /// The state's name (`"active"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceState::Pending => "pending",
            ResourceState::Provisioning => "provisioning",
            ResourceState::Active => "active",
            ResourceState::Updating => "updating",
            ResourceState::Degraded => "degraded",
            ResourceState::Failed => "failed",
            ResourceState::Standby => "standby",
            ResourceState::Deprovisioning => "deprovisioning",
            ResourceState::Terminated => "terminated",
        }
    }

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        StateMachine::allowed_from(self).is_empty()
    }
}

impl fmt::Display for ResourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceState {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| StateError::UnknownState { name: s.to_owned() })
    }
}

/// One applied transition, as kept in a resource's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The resource that moved.
    pub resource_id: String,
    /// The state it left.
    pub from: ResourceState,
    /// The state it entered.
    pub to: ResourceState,
    /// When.
    pub at: DateTime<Utc>,
    /// Why (free text; may be empty).
    pub reason: String,
}

/// The lifecycle's transition table.
///
/// ```text
/// pending        -> provisioning | terminated
/// provisioning   -> active | standby | failed | deprovisioning
/// active         -> updating | degraded | failed | standby | deprovisioning
/// updating       -> active | degraded | failed
/// degraded       -> active | updating | failed | standby | deprovisioning
/// failed         -> provisioning | deprovisioning
/// standby        -> active | updating | failed | deprovisioning
/// deprovisioning -> terminated | failed
/// terminated     -> (none)
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateMachine;

impl StateMachine {
    /// The states reachable in one step from `from`.
    pub fn allowed_from(from: ResourceState) -> &'static [ResourceState] {
        use ResourceState::*;
        match from {
            Pending => &[Provisioning, Terminated],
            Provisioning => &[Active, Standby, Failed, Deprovisioning],
            Active => &[Updating, Degraded, Failed, Standby, Deprovisioning],
            Updating => &[Active, Degraded, Failed],
            Degraded => &[Active, Updating, Failed, Standby, Deprovisioning],
            Failed => &[Provisioning, Deprovisioning],
            Standby => &[Active, Updating, Failed, Deprovisioning],
            Deprovisioning => &[Terminated, Failed],
            Terminated => &[],
        }
    }

    /// Whether `from -> to` is in the table.
    pub fn can_transition(from: ResourceState, to: ResourceState) -> bool {
        Self::allowed_from(from).contains(&to)
    }

    /// Checks `from -> to` for `resource_id`, naming the resource and both states if refused.
    pub fn check(
        resource_id: &str,
        from: ResourceState,
        to: ResourceState,
    ) -> Result<(), StateError> {
        if Self::can_transition(from, to) {
            Ok(())
        } else {
            Err(StateError::InvalidTransition {
                resource_id: resource_id.to_owned(),
                from,
                to,
            })
        }
    }

    /// Checks and builds the record of a transition.
    pub fn transition(
        resource_id: &str,
        from: ResourceState,
        to: ResourceState,
        at: DateTime<Utc>,
        reason: impl Into<String>,
    ) -> Result<Transition, StateError> {
        Self::check(resource_id, from, to)?;
        Ok(Transition {
            resource_id: resource_id.to_owned(),
            from,
            to,
            at,
            reason: reason.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for state in ResourceState::ALL {
            assert_eq!(state.as_str().parse::<ResourceState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            let json = serde_json::to_string(&state).expect("ser");
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert_eq!(
            "running".parse::<ResourceState>(),
            Err(StateError::UnknownState {
                name: "running".into()
            })
        );
    }

    #[test]
    fn only_terminated_is_terminal_and_every_state_is_reachable() {
        for state in ResourceState::ALL {
            assert_eq!(state.is_terminal(), state == ResourceState::Terminated);
            assert!(
                !StateMachine::can_transition(state, state),
                "no self-loops: {state}"
            );
        }
        let mut reached = vec![ResourceState::Pending];
        let mut frontier = vec![ResourceState::Pending];
        while let Some(s) = frontier.pop() {
            for &next in StateMachine::allowed_from(s) {
                if !reached.contains(&next) {
                    reached.push(next);
                    frontier.push(next);
                }
            }
        }
        assert_eq!(reached.len(), ResourceState::ALL.len());
    }

    #[test]
    fn invalid_transitions_name_both_states_and_the_resource() {
        let err = StateMachine::check("db-1", ResourceState::Terminated, ResourceState::Active)
            .expect_err("terminal");
        assert_eq!(
            err.to_string(),
            "invalid transition for resource \"db-1\": terminated -> active"
        );
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let ok = StateMachine::transition(
            "db-1",
            ResourceState::Pending,
            ResourceState::Provisioning,
            t0,
            "create",
        )
        .expect("valid");
        assert_eq!(
            (ok.from, ok.to, ok.reason.as_str()),
            (
                ResourceState::Pending,
                ResourceState::Provisioning,
                "create"
            )
        );
    }

    proptest! {
        #[test]
        fn random_walks_never_leave_the_table(choices in proptest::collection::vec(0usize..16, 0..64), targets in proptest::collection::vec(0usize..9, 0..64)) {
            let mut state = ResourceState::Pending;
            for (choice, target) in choices.iter().zip(targets.iter()) {
                let wanted = ResourceState::ALL[*target];
                match StateMachine::check("r", state, wanted) {
                    Ok(()) => {
                        prop_assert!(StateMachine::allowed_from(state).contains(&wanted));
                        state = wanted;
                    }
                    Err(_) => prop_assert!(!StateMachine::allowed_from(state).contains(&wanted)),
                }
                let allowed = StateMachine::allowed_from(state);
                if !allowed.is_empty() {
                    state = allowed[choice % allowed.len()];
                }
                prop_assert!(ResourceState::ALL.contains(&state));
            }
        }
    }
}
