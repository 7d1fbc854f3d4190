//! The `omnicloud` command: demo, audit verification and the billing currency migration (and,
//! as capabilities arrive, the REST server).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use omnicloud_core::audit::AuditLog;
use omnicloud_core::clock::SystemClock;
use omnicloud_core::store::Store;
use omnicloud_runtime::cli::{AuditCommand, Cli, Command};
use omnicloud_runtime::demo;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let result = match cli.command {
        Command::Demo { db } => demo::run(&db, db.as_os_str() == demo::DEFAULT_DB, &mut out),
        Command::MigrateCurrency(args) => omnicloud_runtime::migrate::run(&args, &mut out),
        Command::Audit {
            command: AuditCommand::Verify { db },
        } => verify_audit(&db, &mut out),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let _ = out.flush();
            eprintln!("omnicloud: error: {err}");
            ExitCode::from(2)
        }
    }
}

fn verify_audit(db: &std::path::Path, out: &mut impl Write) -> Result<ExitCode, demo::DemoError> {
    // Read-only: verification never creates, migrates or converts the file it checks.
    let log = AuditLog::new(Store::open_read_only(db)?, std::sync::Arc::new(SystemClock));
    let report = log.verify()?;
    match report.first_violation {
        None => {
            let head = log.head()?;
            writeln!(
                out,
                "audit chain intact: {} entries, head seq {} hash {}",
                report.entries_checked, head.seq, head.hash
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some(v) => {
            writeln!(out, "audit chain BROKEN: {v}")?;
            Ok(ExitCode::from(1))
        }
    }
}
