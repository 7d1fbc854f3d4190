"""Enumerations used by omnicloud's API.

Each is a ``str`` enum: members compare equal to their values, so the library accepts either
a member or its string value wherever one is expected.
"""

from __future__ import annotations

import enum

__all__ = ["RoundingStrategy", "AuditProblem", "EventKind", "ResourceState", "ChangeKind", "DeploymentState"]


class RoundingStrategy(str, enum.Enum):
    """How :meth:`Money.rounded` rounds to the currency's minor units."""

    HALF_AWAY_FROM_ZERO = "half_away_from_zero"
    """0.5 rounds away from zero (1.005 -> 1.01). The default, as in Lago and Kill Bill."""
    HALF_EVEN = "half_even"
    """0.5 rounds to the even neighbour (banker's rounding)."""
    HALF_TOWARD_ZERO = "half_toward_zero"
    """0.5 rounds toward zero."""
    TOWARD_ZERO = "toward_zero"
    """Truncate."""
    AWAY_FROM_ZERO = "away_from_zero"
    """Always away from zero."""
    FLOOR = "floor"
    """Toward negative infinity."""
    CEILING = "ceiling"
    """Toward positive infinity."""

    def __str__(self) -> str:
        return self.value


class AuditProblem(str, enum.Enum):
    """What :meth:`AuditLog.verify_report` found wrong at the first bad entry."""

    CONTENT_EDITED = "content_edited"
    """The entry no longer matches its hash."""
    BROKEN_LINK = "broken_link"
    """The entry's prev_hash is not the previous entry's hash."""
    MISSING_ENTRIES = "missing_entries"
    """Sequence numbers jump: entries were deleted."""
    TRUNCATED_TAIL = "truncated_tail"
    """The chain ends before the recorded head."""
    HEAD_MISMATCH = "head_mismatch"
    """The recorded head does not match the last entry."""
    ANCHOR_MISMATCH = "anchor_mismatch"
    """The chain no longer holds the anchor (a head kept elsewhere): it was rewritten."""
    UNDECODABLE = "undecodable"
    """A column cannot be decoded."""
    OTHER = "other"
    """A problem this version of the bindings does not name."""

    def __str__(self) -> str:
        return self.value


class EventKind(str, enum.Enum):
    """Kinds of events on the :class:`EventBus`, for ``subscribe(kinds=...)``."""

    TENANT_CREATED = "tenant.created"
    """A tenant was added."""
    RESOURCE_REGISTERED = "resource.registered"
    """A resource was registered with a StateManager."""
    RESOURCE_STATE_CHANGED = "resource.state_changed"
    """A resource moved between lifecycle states."""
    RESOURCE_REMOVED = "resource.removed"
    """A resource was removed from a StateManager."""
    STATE_RESTORED = "state.restored"
    """A StateManager's state was replaced from a snapshot."""
    DEPLOYMENT_STATE_CHANGE = "deployment.state_change"
    """A deployment was queued or moved to another state."""
    DEPLOYMENT_HEALTH_CHECK_FAILED = "deployment.health_check_failed"
    """A health check of a deployment failed."""
    DEPLOYMENT_ROLLBACK_INITIATED = "deployment.rollback_initiated"
    """A rollback of a deployment is starting."""
    CUSTOM = "custom"
    """An application-defined event published with ``EventBus.publish``."""

    def __str__(self) -> str:
        return self.value


class ResourceState(str, enum.Enum):
    """Where a resource is in its lifecycle (see :class:`StateMachine` for the transitions)."""

    PENDING = "pending"
    """Declared, nothing created yet."""
    PROVISIONING = "provisioning"
    """Being created."""
    ACTIVE = "active"
    """Serving."""
    UPDATING = "updating"
    """Being changed in place."""
    DEGRADED = "degraded"
    """Serving with reduced capacity or failing health checks."""
    FAILED = "failed"
    """Not serving; needs intervention or a retry."""
    STANDBY = "standby"
    """Provisioned and ready to take over (a failover target)."""
    DEPROVISIONING = "deprovisioning"
    """Being torn down."""
    TERMINATED = "terminated"
    """Gone. Terminal."""

    def __str__(self) -> str:
        return self.value


class ChangeKind(str, enum.Enum):
    """How a path differs in a :class:`DriftReport`."""

    ADDED = "added"
    """Present in the actual configuration only."""
    REMOVED = "removed"
    """Present in the desired configuration only."""
    CHANGED = "changed"
    """Present in both with different values."""

    def __str__(self) -> str:
        return self.value


class DeploymentState(str, enum.Enum):
    """Where a deployment stands: queued -> in_progress -> completed | failed, and rolled_back
    from in_progress, completed or failed (terminal)."""

    QUEUED = "queued"
    """Accepted, waiting to start."""
    IN_PROGRESS = "in_progress"
    """Rolling out."""
    COMPLETED = "completed"
    """Rolled out; it can still be rolled back."""
    FAILED = "failed"
    """The rollout failed; it can be rolled back."""
    ROLLED_BACK = "rolled_back"
    """Undone. Terminal."""

    def __str__(self) -> str:
        return self.value
