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
    /// Print the REST API's OpenAPI 3.1 document (JSON) on standard output.
    Openapi,
    /// Serve the REST API and deliver webhooks, on the embedded SQLite file, until SIGINT or
    /// SIGTERM. Prints `listening on <base URL>` once it accepts requests.
    Serve(ServeArgs),
    /// Manage tenants' REST API keys.
    ApiKey {
        /// What to do.
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
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

/// `omnicloud serve`
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The database file (created if missing).
    #[arg(long, default_value = DEFAULT_DB)]
    pub db: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A network (CIDR or address) webhook destinations may be in although the SSRF guard
    /// refuses private, loopback and link-local ones; repeatable.
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    /// The public base URL payload links point under (default: the listening address).
    #[arg(long)]
    pub base_url: Option<String>,
}

/// `omnicloud api-key ...`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Issue a key for a tenant and print it (it is stored hashed and shown only once).
    Create {
        /// The database file.
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        /// The tenant the key acts for.
        #[arg(long)]
        tenant: String,
        /// A name for the key (who or what uses it).
        #[arg(long, default_value = "default")]
        name: String,
    },
}

/// The database `omnicloud serve` and `omnicloud api-key` use when none is given.
pub const DEFAULT_DB: &str = "omnicloud.db";
