//! The `omnicloud` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// OmniCloud: the engine for the hard parts of multi-cloud orchestration.
#[derive(Debug, Parser)]
#[command(name = "omnicloud", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the end-to-end demo on an embedded SQLite file and print its timeline.
    Demo {
        /// The database file. The default file is recreated on every run; an explicit path
        /// must not exist yet.
        #[arg(long, default_value = crate::demo::DEFAULT_DB)]
        db: PathBuf,
    },
    /// Backfill billing currencies for legacy (USD-only) billing accounts, in checkpointed
    /// batches; killed at any point, the next run resumes after the last committed batch.
    MigrateCurrency(crate::migrate::MigrateArgs),
    /// Work with the audit trail of a database file.
    Audit {
        /// What to do with it.
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `omnicloud audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit with status 1 and name the first bad entry if it is broken.
    Verify {
        /// The database file.
        #[arg(long)]
        db: PathBuf,
    },
}
