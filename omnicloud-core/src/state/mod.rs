//! State: the infrastructure resources OmniCloud manages, as four single-responsibility
//! components behind one facade.
//!
//! - [`StateMachine`] (machine.rs): the lifecycle's transition table;
//! - [`DriftDetector`] (drift.rs): desired vs actual configuration, with pluggable strategies;
//! - [`DependencyResolver`] (deps.rs): the dependency graph (order, waves, cycles, impact);
//! - [`SnapshotManager`] (snapshot.rs): atomic, checksummed, compressed snapshots;
//! - [`StateStore`] (store.rs): in-memory, SQLite and caching stores with serial and lineage;
//! - [`StateManager`] (manager.rs): the facade composing them, publishing state events.
//!
//! Nothing here performs remote I/O: providers report actual configuration in, and plans
//! (dependency orders) go out.

mod deps;
mod drift;
mod machine;
mod manager;
mod resource;
mod snapshot;
mod store;

pub use deps::DependencyResolver;
pub use drift::{
    ChangeKind, DriftChange, DriftDetector, DriftReport, DriftStrategy, ExactMatch, PathPattern,
    SemanticEquality, ThresholdBased,
};
pub use machine::{ResourceState, StateMachine, Transition};
pub use manager::StateManager;
pub use resource::Resource;
pub use snapshot::{SnapshotInfo, SnapshotManager};
pub use store::{
    CachingStateStore, InMemoryStateStore, ResourceFilter, SqliteStateStore, StateExport,
    StateStore,
};

pub(crate) use store::SCHEMA;
