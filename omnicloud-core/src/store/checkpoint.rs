//! `Checkpointer`: copies a file store's write-ahead log back into the database file on a
//! thread of its own, so no commit waits for a checkpoint.
//!
//! By default SQLite checkpoints inside the commit that leaves the log at 1,000 pages or more:
//! whoever commits then pays for copying everything written since, which for a large
//! transaction (queueing 50,000 events) takes half as long again as the transaction itself.
//! The store's connection reports such commits here instead, and a second connection on the
//! same file runs a passive checkpoint in the background, the arrangement SQLite documents for
//! applications that care about write latency. A passive checkpoint never blocks readers or
//! writers; what it cannot copy yet (frames a reader may still need) is copied on a later
//! round, and SQLite restarts the log once everything in it is copied. Durability is
//! unchanged: a commit is durable in the log whether or not it has been copied. This module
//! never reads or writes rows.

use std::ffi::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

/// A commit that leaves this many pages or more in the log asks for a checkpoint (SQLite's
/// own `wal_autocheckpoint` default).
pub(crate) const CHECKPOINT_PAGES: c_int = 1_000;

/// The background checkpoint thread of one store; stopping it (on drop) waits for a
/// checkpoint in progress to finish.
pub(crate) struct Checkpointer {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

/// What the committing connection tells the thread.
#[derive(Default)]
struct Signal {
    state: Mutex<Requests>,
    wake: Condvar,
}

#[derive(Default)]
struct Requests {
    checkpoint: bool,
    stop: bool,
}

impl Checkpointer {
    /// Starts the thread, with its own connection to the database file at `path`, and routes
    /// `conn`'s large commits to it (replacing SQLite's in-commit checkpoints). `None` if the
    /// thread or its connection cannot be had; `conn` then keeps checkpointing in its commits.
    pub(crate) fn start(conn: &mut Connection, path: &Path) -> Option<Self> {
        let own = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        own.busy_timeout(Duration::from_secs(10)).ok()?;
        // A connection knows the file is in WAL mode (and can checkpoint it) once it has read
        // the header.
        let mode: String = own
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .ok()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return None;
        }
        let signal = Arc::new(Signal::default());
        let thread = std::thread::Builder::new()
            .name("omnicloud-checkpoint".to_owned())
            .spawn({
                let signal = Arc::clone(&signal);
                move || run(&own, &signal)
            })
            .ok()?;
        let mut checkpointer = Self {
            signal,
            thread: Some(thread),
        };
        let hook = Arc::clone(&checkpointer.signal);
        let routed = conn.wal_hook(Some(move |_: &mut Wal, pages: c_int| {
            if pages >= CHECKPOINT_PAGES {
                hook.update(|r| r.checkpoint = true);
            }
            Ok(())
        }));
        if routed.is_err() {
            checkpointer.stop();
            return None;
        }
        Some(checkpointer)
    }

    fn stop(&mut self) {
        self.signal.update(|r| r.stop = true);
        if let Some(thread) = self.thread.take() {
            // The thread only checkpoints; a panic there has nothing to hand back.
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Signal {
    fn update(&self, change: impl FnOnce(&mut Requests)) {
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.wake.notify_one();
    }

    /// Waits for a request; `false` once asked to stop.
    fn next(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.checkpoint && !state.stop {
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.checkpoint = false;
        !state.stop
    }
}

fn run(conn: &Connection, signal: &Signal) {
    while signal.next() {
        // Busy (another connection is checkpointing) or an I/O error: the frames stay in the
        // log, which is still read correctly, and the next large commit asks again.
        let _ = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE);
    }
}
