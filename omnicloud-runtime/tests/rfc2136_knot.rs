//! `Rfc2136Dns` against a real authoritative server: Debian's `knot`, started here on loopback
//! with a TSIG key allowed to update one zone. Every test reads the record back with a plain
//! query to prove the server changed it. `make setup` (and so CI) installs knot.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use omnicloud_core::failover::{DnsProvider, DnsRecord, RecordType};
use omnicloud_runtime::dns::Rfc2136Dns;

const SECRET: &str = "c2VjcmV0LWtleS1mb3ItdGhlLW9tbmljbG91ZC10ZXN0cw==";

/// A knotd process serving `failover.test.` from a temporary directory; killed on drop.
struct Knot {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Knot {
    fn start() -> Knot {
        let knotd = ["/usr/sbin/knotd", "/usr/bin/knotd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect(
                "knotd is not installed: `apt-get install knot knot-dnsutils` (make setup does)",
            );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_udp_port();
        let root = dir.path();
        for sub in ["zones", "db", "run"] {
            std::fs::create_dir(root.join(sub)).expect("dir");
        }
        std::fs::write(
            root.join("zones/failover.test.zone"),
            "$ORIGIN failover.test.\n$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n\
             @ NS ns1\nns1 A 127.0.0.1\napp A 192.0.2.10\nwww CNAME app\n",
        )
        .expect("zone");
        let conf = format!(
            "server:\n  rundir: \"{run}\"\n  listen: 127.0.0.1@{port}\n\
             database:\n  storage: \"{db}\"\n\
             key:\n  - id: omnicloud-test.\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
             acl:\n  - id: updaters\n    key: omnicloud-test.\n    action: update\n\
             zone:\n  - domain: failover.test.\n    storage: \"{zones}\"\n\
             \x20   file: \"failover.test.zone\"\n    acl: updaters\n    zonefile-sync: -1\n",
            run = root.join("run").display(),
            db = root.join("db").display(),
            zones = root.join("zones").display(),
        );
        let conf_path: PathBuf = root.join("knot.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        let child = Command::new(knotd)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start knotd");
        let knot = Knot {
            child,
            port,
            _dir: dir,
        };
        let client = knot.client();
        let started = Instant::now();
        while client.lookup("app.failover.test", RecordType::A).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "knotd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        knot
    }

    fn client(&self) -> Rfc2136Dns {
        self.client_with(SECRET)
    }

    fn client_with(&self, secret: &str) -> Rfc2136Dns {
        Rfc2136Dns::new(
            "127.0.0.1",
            self.port,
            "failover.test",
            "omnicloud-test",
            secret,
            "hmac-sha256",
            Duration::from_secs(2),
        )
        .expect("client")
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

fn record(name: &str, rtype: RecordType, ttl: u32) -> DnsRecord {
    DnsRecord::new(
        "failover.test",
        name,
        rtype,
        "192.0.2.10",
        "198.51.100.7",
        ttl,
    )
    .expect("record")
}

#[test]
fn a_signed_update_changes_the_record_and_is_idempotent() {
    let knot = Knot::start();
    let dns = knot.client();
    let app = record("app.failover.test", RecordType::A, 30);
    assert_eq!(
        dns.lookup("app.failover.test", RecordType::A)
            .expect("lookup"),
        vec![("192.0.2.10".to_owned(), 60)]
    );
    let started = Instant::now();
    dns.set(&app, "198.51.100.7").expect("update");
    let round_trip = started.elapsed();
    assert!(round_trip < Duration::from_secs(2), "{round_trip:?}");
    assert_eq!(
        dns.lookup("app.failover.test", RecordType::A)
            .expect("lookup"),
        vec![("198.51.100.7".to_owned(), 30)]
    );
    dns.set(&app, "198.51.100.7").expect("same value again");
    assert_eq!(
        dns.lookup("app.failover.test", RecordType::A)
            .expect("lookup")
            .len(),
        1
    );
}

#[test]
fn aaaa_and_cname_records_and_new_names() {
    let knot = Knot::start();
    let dns = knot.client();
    let v6 = DnsRecord::new(
        "failover.test",
        "api.failover.test",
        RecordType::Aaaa,
        "2001:db8::1",
        "2001:db8::2",
        60,
    )
    .expect("record");
    dns.set(&v6, "2001:db8::2").expect("aaaa");
    assert_eq!(
        dns.lookup("api.failover.test", RecordType::Aaaa)
            .expect("lookup"),
        vec![("2001:db8::2".to_owned(), 60)]
    );
    let www = DnsRecord::new(
        "failover.test",
        "www.failover.test",
        RecordType::Cname,
        "app.failover.test",
        "dr.failover.test",
        45,
    )
    .expect("record");
    dns.set(&www, "dr.failover.test").expect("cname");
    assert_eq!(
        dns.lookup("www.failover.test", RecordType::Cname)
            .expect("lookup"),
        vec![("dr.failover.test.".to_owned(), 45)]
    );
}

#[test]
fn a_lookup_of_a_missing_name_or_type_is_empty() {
    let knot = Knot::start();
    let dns = knot.client();
    assert_eq!(dns.lookup("ghost.failover.test", RecordType::A), Ok(vec![]));
    assert_eq!(
        dns.lookup("app.failover.test", RecordType::Aaaa),
        Ok(vec![])
    );
}

#[test]
fn an_unknown_key_name_is_refused_as_badkey() {
    let knot = Knot::start();
    let stranger = Rfc2136Dns::new(
        "127.0.0.1",
        knot.port,
        "failover.test",
        "stranger",
        SECRET,
        "hmac-sha256",
        Duration::from_secs(2),
    )
    .expect("client");
    let err = stranger
        .set(
            &record("app.failover.test", RecordType::A, 30),
            "198.51.100.99",
        )
        .expect_err("unknown key");
    assert!(err.contains("BadKey"), "{err}");
}

#[test]
fn a_wrong_key_is_refused_and_changes_nothing() {
    let knot = Knot::start();
    let wrong = knot.client_with("d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=");
    let err = wrong
        .set(
            &record("app.failover.test", RecordType::A, 30),
            "198.51.100.99",
        )
        .expect_err("a forged update must fail");
    assert!(err.contains("app.failover.test"), "{err}");
    assert!(
        err.contains("refused our TSIG signature (Some(BadSig)"),
        "{err}"
    );
    assert_eq!(
        knot.client()
            .lookup("app.failover.test", RecordType::A)
            .expect("lookup"),
        vec![("192.0.2.10".to_owned(), 60)]
    );
}

#[test]
fn bad_values_and_names_outside_the_zone_are_refused_before_sending() {
    let knot = Knot::start();
    let dns = knot.client();
    let err = dns
        .set(&record("app.failover.test", RecordType::A, 30), "not-an-ip")
        .expect_err("bad value");
    assert!(err.contains("IPv4"), "{err}");
    let outside = DnsRecord::new(
        "other.test",
        "app.other.test",
        RecordType::A,
        "192.0.2.1",
        "192.0.2.2",
        60,
    )
    .expect("record");
    let err = dns
        .set(&outside, "192.0.2.2")
        .expect_err("outside the zone");
    assert!(err.contains("not in zone"), "{err}");
}

#[test]
fn an_unreachable_server_times_out_with_a_clear_error() {
    let port = free_udp_port();
    let dns = Rfc2136Dns::new(
        "127.0.0.1",
        port,
        "failover.test",
        "omnicloud-test",
        SECRET,
        "hmac-sha256",
        Duration::from_millis(200),
    )
    .expect("client");
    let started = Instant::now();
    let err = dns
        .set(
            &record("app.failover.test", RecordType::A, 30),
            "198.51.100.7",
        )
        .expect_err("nobody listens");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.contains("127.0.0.1"), "{err}");
}
