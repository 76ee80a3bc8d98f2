//! Knot DNS (`knotd` from the Debian package) as a reference authoritative server and as the
//! upstream resolver for forwarding tests. Each instance has its own config, rundir and
//! storage in a temp dir, listens on a free loopback port, and is killed on Drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use super::dns::{QueryOptions, try_query};
use super::process::{Guarded, free_dns_port};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Knot {
    dir: TempDir,
    addr: SocketAddr,
    process: Guarded,
}

impl Knot {
    /// Starts knotd serving `zones`: (zone name without trailing dot, RFC 1035 zone file text).
    /// Returns once every zone answers its SOA.
    pub fn start(zones: &[(&str, &str)]) -> Knot {
        let dir = tempfile::Builder::new()
            .prefix("zkdns-test-knot-")
            .tempdir()
            .expect("temp dir for knotd");
        for sub in ["run", "storage", "zones"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("knotd dirs");
        }
        for (zone, text) in zones {
            std::fs::write(dir.path().join("zones").join(format!("{zone}.zone")), text)
                .expect("write zone file");
        }
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_dns_port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            write_config(&dir, port, zones);
            let mut cmd = Command::new("knotd");
            cmd.arg("-c")
                .arg(dir.path().join("knot.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.path().join("knotd.log")).expect("knotd log file"),
                );
            let mut process = Guarded::spawn("knotd", cmd);
            match wait_ready(&mut process, addr, zones) {
                Ok(()) => return Knot { dir, addr, process },
                Err(e) => {
                    process.kill();
                    last_error = format!(
                        "{e}\n{}",
                        std::fs::read_to_string(dir.path().join("knotd.log")).unwrap_or_default()
                    );
                }
            }
        }
        panic!("knotd did not start: {last_error}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// knotd's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

fn write_config(dir: &TempDir, port: u16, zones: &[(&str, &str)]) {
    let root = dir.path().display();
    let mut conf = format!(
        "server:\n    rundir: \"{root}/run\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    \
         tcp-workers: 1\n    background-workers: 1\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n    storage: \"{root}/storage\"\n\
         template:\n  - id: default\n    storage: \"{root}/zones\"\n    zonefile-sync: -1\n    \
         zonefile-load: whole\n    journal-content: none\n    semantic-checks: off\n\
         zone:\n"
    );
    for (zone, _) in zones {
        conf.push_str(&format!("  - domain: {zone}.\n    file: \"{zone}.zone\"\n"));
    }
    std::fs::write(dir.path().join("knot.conf"), conf).expect("write knot.conf");
}

fn wait_ready(
    process: &mut Guarded,
    addr: SocketAddr,
    zones: &[(&str, &str)],
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let opts = QueryOptions {
        edns: None,
        ..QueryOptions::default()
    };
    let mut pending: Vec<&str> = zones.iter().map(|(z, _)| *z).collect();
    while !pending.is_empty() {
        if let Some(status) = process.try_wait() {
            return Err(format!("knotd exited with {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "zones {pending:?} not served within {START_TIMEOUT:?}"
            ));
        }
        pending.retain(|zone| {
            !try_query(addr, zone, RecordType::SOA, opts).is_some_and(|m| {
                m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty()
            })
        });
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// A second DNS server on loopback for forwarding tests: knotd serving `upstream.test.` with
/// `www.upstream.test. A 192.0.2.80`, a TXT at `txt.upstream.test.`, and 40 A records at
/// `big.upstream.test.` (too many for 512 bytes).
pub struct Upstream {
    knot: Knot,
}

/// The upstream's zone file.
pub const UPSTREAM_ZONE: &str = "\
$ORIGIN upstream.test.
$TTL 60
@    IN SOA ns.upstream.test. hostmaster.upstream.test. 7 3600 600 86400 30
@    IN NS  ns
ns   IN A   192.0.2.53
www  IN A   192.0.2.80
txt  IN TXT \"from upstream\"
";

impl Upstream {
    pub fn start() -> Upstream {
        let mut zone = UPSTREAM_ZONE.to_string();
        for i in 1..=40 {
            zone.push_str(&format!("big  IN A   198.51.100.{i}\n"));
        }
        Upstream {
            knot: Knot::start(&[("upstream.test", &zone)]),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.knot.addr()
    }

    pub fn knot(&self) -> &Knot {
        &self.knot
    }
}
