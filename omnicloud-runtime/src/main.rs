//! The `omnicloud` command: demo, audit verification and the billing currency migration (and,
//! as capabilities arrive, the REST server).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use omnicloud_core::apikey::ApiKeys;
use omnicloud_core::audit::AuditLog;
use omnicloud_core::clock::SystemClock;
use omnicloud_core::ids::TenantId;
use omnicloud_core::store::Store;
use omnicloud_core::webhook::IpNetwork;
use omnicloud_runtime::cli::{ApiKeyCommand, AuditCommand, Cli, Command, ServeArgs};
use omnicloud_runtime::demo;
use omnicloud_runtime::server::{Server, ServerConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let result = match cli.command {
        Command::Demo { db } => demo::run(&db, db.as_os_str() == demo::DEFAULT_DB, &mut out),
        Command::MigrateCurrency(args) => omnicloud_runtime::migrate::run(&args, &mut out),
        Command::Openapi => out
            .write_all(omnicloud_runtime::api::openapi_json().as_bytes())
            .map(|()| ExitCode::SUCCESS)
            .map_err(demo::DemoError::from),
        Command::Audit {
            command: AuditCommand::Verify { db },
        } => verify_audit(&db, &mut out),
        Command::Serve(args) => serve(&args, &mut out),
        Command::ApiKey {
            command: ApiKeyCommand::Create { db, tenant, name },
        } => create_api_key(&db, &tenant, &name, &mut out),
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

fn serve(args: &ServeArgs, out: &mut impl Write) -> Result<ExitCode, demo::DemoError> {
    let allow = args
        .allow
        .iter()
        .map(|a| IpNetwork::parse(a).map_err(omnicloud_core::Error::from))
        .collect::<Result<Vec<_>, _>>()?;
    let config = ServerConfig {
        db_path: Some(args.db.clone()),
        host: args.host.clone(),
        port: args.port,
        allow,
        base_url: args.base_url.clone(),
        ..ServerConfig::default()
    };
    let server = Server::start(&config).map_err(|e| demo::DemoError::Refused(e.to_string()))?;
    writeln!(out, "listening on {}", server.base_url())?;
    out.flush()?;
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    signals.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    server.stop();
    writeln!(out, "stopped")?;
    Ok(ExitCode::SUCCESS)
}

fn create_api_key(
    db: &std::path::Path,
    tenant: &str,
    name: &str,
    out: &mut impl Write,
) -> Result<ExitCode, demo::DemoError> {
    let keys = ApiKeys::new(Store::open(db)?, std::sync::Arc::new(SystemClock));
    let tenant = TenantId::new(tenant).map_err(omnicloud_core::Error::from)?;
    let (key, secret) = keys.issue(&tenant, name)?;
    writeln!(out, "{secret}")?;
    eprintln!(
        "issued API key {} ({}) for tenant {}; it is shown only once",
        key.id, key.name, key.tenant_id
    );
    Ok(ExitCode::SUCCESS)
}
