//! The `omnicloud` binary, run as a real process.

use std::process::Command;

fn omnicloud() -> Command {
    Command::new(env!("CARGO_BIN_EXE_omnicloud"))
}

#[test]
fn help_lists_the_commands() {
    let out = omnicloud().arg("--help").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("demo") && text.contains("audit"), "{text}");
}

#[test]
fn demo_then_audit_verify_on_the_same_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("demo.db");
    let demo = omnicloud()
        .args(["demo", "--db"])
        .arg(&db)
        .output()
        .expect("run");
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(String::from_utf8_lossy(&demo.stdout).contains("tampering detected"));

    let verify = omnicloud()
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .output()
        .expect("run");
    assert!(verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stdout).contains("audit chain intact:"));

    let conn = rusqlite::Connection::open(&db).expect("raw open");
    conn.execute_batch(
        "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 3;",
    )
    .expect("tamper");
    drop(conn);
    let broken = omnicloud()
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .output()
        .expect("run");
    assert_eq!(broken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&broken.stdout).contains("BROKEN: audit entry seq 3"));
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.db");
    let out = omnicloud()
        .args(["audit", "verify", "--db"])
        .arg(&missing)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!missing.exists(), "verify never creates a database");

    let out = omnicloud()
        .args(["demo", "--db"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));

    let out = omnicloud().arg("no-such-command").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}
