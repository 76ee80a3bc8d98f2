//! Operations: `/metrics` counts what was asked and answered, `/healthz` follows the sync with
//! ZooKeeper, `/livez` the process, the log says once when an upstream goes down and comes
//! back, JSON logs are one object per line, SIGTERM finishes the answers under way and exits
//! 0 with the ZooKeeper session closed, and `zkdns check` exits 0/1/2.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(20);
const METRICS_LINE: &str = "serving metrics and health on http://";

/// The `--metrics` address zkdns logged.
fn metrics_addr(stub: &Zkdns) -> SocketAddr {
    assert!(
        stub.wait_log(METRICS_LINE, DEADLINE),
        "no metrics line:\n{}",
        stub.logs()
    );
    let logs = stub.logs();
    let rest = logs.split(METRICS_LINE).nth(1).unwrap();
    rest.split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the metrics address in {rest:?}"))
}

/// A plain HTTP/1.1 GET; returns (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the HTTP response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// One scrape, as `series → value` (`name{labels}` exactly as exposed). Checks the format on
/// the way: every sample belongs to a family with HELP and TYPE, and every value is a number.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let mut described = Vec::new();
    let mut samples = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            described.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("zkdns_"), "{line}");
        assert!(
            described.iter().any(|d| name == d
                || name
                    .strip_prefix(d.as_str())
                    .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))),
            "{name} has no HELP line"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    value(after, series) - value(before, series)
}

async fn root_with_zone() -> String {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, "obs.test", "").await;
    put_set(&c, &root, "obs.test", "web", r#"{"A": ["10.20.0.1"]}"#).await;
    close_session(c).await;
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_queries_exactly() {
    let upstream = Upstream::start();
    let root = root_with_zone().await;
    let up = upstream.addr().to_string();
    let stub = Zkdns::serve_ready(
        ZooKeeper::shared(),
        &root,
        &["--metrics", "127.0.0.1:0", "--upstream", &up],
    );
    let http = metrics_addr(&stub);
    let before = scrape(http);

    for _ in 0..3 {
        let m = query_blocking(stub.addr(), "web.obs.test", RecordType::A);
        assert_eq!(addresses(&m), vec!["10.20.0.1"]);
    }
    for name in ["nope1.obs.test", "nope2.obs.test"] {
        let m = query_blocking(stub.addr(), name, RecordType::AAAA);
        assert_eq!(rcode(&m), ResponseCode::NXDomain);
    }
    let m = query_blocking(stub.addr(), "txt.upstream.test", RecordType::TXT);
    assert_eq!(answers_of(&m, RecordType::TXT), vec!["\"from upstream\""]);

    let after = scrape(http);
    let d = |series: &str| delta(&before, &after, series);
    assert_eq!(d(r#"zkdns_queries_total{type="A"}"#), 3.0);
    assert_eq!(d(r#"zkdns_queries_total{type="AAAA"}"#), 2.0);
    assert_eq!(d(r#"zkdns_queries_total{type="TXT"}"#), 1.0);
    assert_eq!(d(r#"zkdns_queries_total{type="MX"}"#), 0.0);
    assert_eq!(d(r#"zkdns_responses_total{rcode="NOERROR"}"#), 4.0);
    assert_eq!(d(r#"zkdns_responses_total{rcode="NXDOMAIN"}"#), 2.0);
    assert_eq!(d(r#"zkdns_responses_total{rcode="SERVFAIL"}"#), 0.0);
    assert_eq!(d("zkdns_forwarded_queries_total"), 1.0);
    assert_eq!(d("zkdns_upstream_errors_total"), 0.0);
    assert_eq!(d("zkdns_upstream_timeouts_total"), 0.0);
    // the five answered from the map at least (UDP forwards are not timed)
    assert!(d("zkdns_answer_duration_seconds_count") >= 5.0);
    assert_eq!(
        value(&after, r#"zkdns_answer_duration_seconds_bucket{le="+Inf"}"#),
        value(&after, "zkdns_answer_duration_seconds_count")
    );
    assert_eq!(
        value(&after, &format!(r#"zkdns_upstream_up{{upstream="{up}"}}"#)),
        1.0
    );

    // the map and the session
    assert_eq!(value(&after, "zkdns_zones"), 1.0);
    assert_eq!(value(&after, "zkdns_names"), 1.0);
    assert!(value(&after, "zkdns_records") >= 3.0, "A, SOA and NS");
    assert_eq!(value(&after, "zkdns_ready"), 1.0);
    assert_eq!(value(&after, "zkdns_stale"), 0.0);
    assert_eq!(value(&after, "zkdns_since_last_sync_seconds"), 0.0);
    assert_eq!(value(&after, "zkdns_zookeeper_connected"), 1.0);
    assert_eq!(value(&after, "zkdns_zookeeper_sessions_total"), 1.0);
    assert_eq!(value(&after, "zkdns_zookeeper_resyncs_total"), 1.0);
    assert_eq!(value(&after, "zkdns_bad_znodes"), 0.0);

    // a bad znode is counted
    let c = ZooKeeper::shared().client().await;
    put_set(&c, &root, "obs.test", "broken", "not json").await;
    close_session(c).await;
    eventually_eq("bad znodes", DEADLINE, 1.0, || {
        value(&scrape(http), "zkdns_bad_znodes")
    });

    assert_eq!(http_get(http, "/livez"), (200, "ok\n".to_string()));
    assert_eq!(http_get(http, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(http, "/nope").0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_the_sync_with_zookeeper() {
    let mut zk = ZooKeeper::start();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, "obs.test", "").await;
    put_set(&c, &root, "obs.test", "web", r#"{"A": ["10.20.0.1"]}"#).await;
    close_session(c).await;
    zk.stop();

    // ZooKeeper is down from the start: alive, not ready
    let stub = Zkdns::serve(&zk, &root, &["--metrics", "127.0.0.1:0"]);
    let http = metrics_addr(&stub);
    assert_eq!(http_get(http, "/livez"), (200, "ok\n".to_string()));
    assert_eq!(
        http_get(http, "/healthz"),
        (503, "not synced yet\n".to_string())
    );
    let m = scrape(http);
    assert_eq!(value(&m, "zkdns_ready"), 0.0);
    assert_eq!(value(&m, "zkdns_stale"), 1.0);
    assert_eq!(value(&m, "zkdns_zookeeper_connected"), 0.0);

    // ZooKeeper comes up: ready after the first full read
    zk.start_again();
    eventually_eq("healthz after the sync", DEADLINE, 200, || {
        http_get(http, "/healthz").0
    });
    assert_eq!(
        addresses(&query_blocking(stub.addr(), "web.obs.test", RecordType::A)),
        vec!["10.20.0.1"]
    );
    let m = scrape(http);
    assert_eq!(value(&m, "zkdns_zookeeper_connected"), 1.0);
    assert_eq!(value(&m, "zkdns_names"), 1.0);

    // ZooKeeper is killed: stale, with the reason, and still answering
    zk.stop();
    let body = eventually(DEADLINE, || {
        let (status, body) = http_get(http, "/healthz");
        (status == 503).then_some(body)
    });
    assert!(
        body.starts_with("stale: ZooKeeper disconnected for ") && body.ends_with(" s\n"),
        "{body:?}"
    );
    let m = scrape(http);
    assert_eq!(value(&m, "zkdns_stale"), 1.0);
    assert_eq!(value(&m, "zkdns_ready"), 1.0);
    assert_eq!(value(&m, "zkdns_zookeeper_connected"), 0.0);
    assert_eq!(
        addresses(&query_blocking(stub.addr(), "web.obs.test", RecordType::A)),
        vec!["10.20.0.1"]
    );
    eventually(DEADLINE, || {
        (value(&scrape(http), "zkdns_since_last_sync_seconds") >= 1.0).then_some(())
    });
    assert_eq!(http_get(http, "/livez").0, 200);
}

/// A UDP upstream whose answers a test switches on and off: it echoes the query back as a
/// NOERROR response, or stays silent.
struct ToggledUpstream {
    addr: SocketAddr,
    answering: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl ToggledUpstream {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let answering = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (on, stopped) = (answering.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if on.load(Ordering::Relaxed) && n >= 12 {
                    let mut reply = buf[..n].to_vec();
                    reply[2] |= 0x80; // QR
                    reply[3] = 0x80; // RA, NOERROR
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Self {
            addr,
            answering,
            stop,
        }
    }
}

impl Drop for ToggledUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_and_up_is_logged_once_each() {
    let upstream = ToggledUpstream::start();
    let root = root_with_zone().await;
    let up = upstream.addr.to_string();
    let stub = Zkdns::serve_ready(
        ZooKeeper::shared(),
        &root,
        &[
            "--upstream",
            &up,
            "--upstream-timeout",
            "300ms",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let http = metrics_addr(&stub);
    let up_series = format!(r#"zkdns_upstream_up{{upstream="{up}"}}"#);
    let ask = |name: &str| {
        query_raw(stub.addr(), name, RecordType::A, QueryOptions::default())
            .map(|r| rcode(&decode(&r)))
    };

    for i in 0..3 {
        assert_eq!(ask(&format!("q{i}.example")), Some(ResponseCode::ServFail));
    }
    let failing = format!("upstream {up} is failing");
    assert!(stub.wait_log(&failing, DEADLINE), "{}", stub.logs());
    let m = scrape(http);
    assert_eq!(value(&m, &up_series), 0.0);
    assert_eq!(value(&m, "zkdns_upstream_timeouts_total"), 3.0);
    assert_eq!(value(&m, "zkdns_forwarded_queries_total"), 3.0);

    upstream.answering.store(true, Ordering::Relaxed);
    for i in 0..3 {
        assert_eq!(ask(&format!("r{i}.example")), Some(ResponseCode::NoError));
    }
    let back = format!("upstream {up} answers again");
    assert!(stub.wait_log(&back, DEADLINE), "{}", stub.logs());
    assert_eq!(value(&scrape(http), &up_series), 1.0);
    // one line per change of state, not one per query
    assert_eq!(stub.count_lines(&[&failing]), 1, "{}", stub.logs());
    assert_eq!(stub.count_lines(&[&back]), 1, "{}", stub.logs());
    assert!(stub.count_lines(&["WARN", &failing]) == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_quiet_per_query() {
    let root = root_with_zone().await;
    let stub = Zkdns::serve_ready(ZooKeeper::shared(), &root, &["--log-format", "json"]);
    let lines_before = stub.logs().lines().count();
    for _ in 0..20 {
        query_blocking(stub.addr(), "web.obs.test", RecordType::A);
        query_blocking(stub.addr(), "nope.obs.test", RecordType::A);
    }
    std::thread::sleep(Duration::from_millis(300));
    let logs = stub.logs();
    assert_eq!(
        logs.lines().count(),
        lines_before,
        "queries must not log at info:\n{logs}"
    );
    let mut resynced = false;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(v.is_object(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        let message = v["fields"]["message"].as_str().unwrap_or("");
        if message.starts_with("resynced 1 names in ") {
            resynced = true;
            assert_eq!(v["fields"]["names"], 1, "{line}");
        }
    }
    assert!(resynced, "no resynced line:\n{logs}");
}

fn sigterm(stub: &Zkdns) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    let r = unsafe { libc::kill(stub.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0, "kill SIGTERM");
}

/// The session IDs in ZooKeeper's session tracker (four-letter `dump`).
fn live_sessions(zk: &ZooKeeper) -> String {
    zk.four_letter("dump")
        .split("ephemeral nodes dump")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_answers_under_way_and_exits_0() {
    let zk = ZooKeeper::shared();
    let root = root_with_zone().await;
    let silent = SilentServer::start();
    let mut stub = Zkdns::serve_ready(
        zk,
        &root,
        &[
            "--upstream",
            &silent.addr().to_string(),
            "--upstream-timeout",
            "1s",
        ],
    );
    let session = stub
        .logs()
        .split("ZooKeeper session established session=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("session id in the log")
        .to_string();
    assert!(live_sessions(zk).contains(&session));

    // an idle TCP connection, and one whose query waits on an upstream that never answers
    let mut idle = TcpStream::connect(stub.addr()).unwrap();
    let query = build_query("slow.example", RecordType::A, QueryOptions::default())
        .to_vec()
        .unwrap();
    let server = stub.addr();
    let in_flight =
        std::thread::spawn(move || exchange_tcp(server, &query, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300)); // the query is with the upstream now

    let signalled = Instant::now();
    sigterm(&stub);
    let status = stub
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM:\n{}", stub.logs()));
    assert_eq!(status.code(), Some(0), "{}", stub.logs());
    assert!(signalled.elapsed() < Duration::from_secs(4));

    // the forwarded query was answered (SERVFAIL after the upstream timeout), not cut
    let reply = in_flight
        .join()
        .unwrap()
        .expect("a reply to the query in flight");
    assert_eq!(rcode(&decode(&reply)), ResponseCode::ServFail);
    // the idle connection was closed
    idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2];
    assert_eq!(idle.read(&mut buf).ok(), Some(0), "closed by zkdns");

    let logs = stub.logs();
    for line in [
        "SIGTERM received; shutting down",
        "stopped taking queries",
        "ZooKeeper session closed",
        "stopped",
    ] {
        assert!(logs.contains(line), "no {line:?} in:\n{logs}");
    }
    // closed, not left to expire
    assert!(
        !live_sessions(zk).contains(&session),
        "session {session} still open:\n{}",
        live_sessions(zk)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_zookeeper_is_unreachable_exits_0() {
    let mut stub = Zkdns::serve_at(
        &format!("127.0.0.1:{}", free_tcp_port()),
        "/zkdns",
        &["--metrics", "127.0.0.1:0"],
    );
    metrics_addr(&stub);
    sigterm(&stub);
    let status = stub
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM:\n{}", stub.logs()));
    assert_eq!(status.code(), Some(0), "{}", stub.logs());
}

/// Runs `zkdns check` with `args`; returns (exit code, stdout).
fn check(connect: &str, root: &str, args: &[&str]) -> (i32, String) {
    let out = zkdns_cmd_at(connect, root)
        .arg("check")
        .args(args)
        .env_remove("ZKDNS_UPSTREAM")
        .env_remove("ZKDNS_ZONE")
        .output()
        .expect("run zkdns check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().expect("exit code"),
        format!("{stdout}{stderr}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exit_codes() {
    let upstream = Upstream::start();
    let zk = ZooKeeper::shared();
    let root = root_with_zone().await;
    let up = upstream.addr().to_string();
    let connect = zk.connect_string();

    // all good
    let (code, out) = check(&connect, &root, &["--upstream", &up, "--zone", "obs.test"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    for line in [
        "OK   configuration: ",
        &format!("OK   zookeeper {connect}: session "),
        &format!("OK   zones: {root}/zones has 1 zones (obs.test)"),
        "OK   zone obs.test: 1 record sets",
        &format!("OK   upstream {up}: answered '. NS' with "),
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    // the same configuration from the environment
    let out = zkdns_cmd(zk, &root)
        .arg("check")
        .env("ZKDNS_UPSTREAM", &up)
        .env("ZKDNS_ZONE", "obs.test")
        // a switch turned off from the environment does not clash with --upstream
        .env("ZKDNS_NO_UPSTREAM", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("OK   upstream {up}")));

    // an upstream that does not answer, a zone that is not there
    let dead = dead_addr().to_string();
    let (code, out) = check(
        &connect,
        &root,
        &["--upstream", &dead, "--upstream-timeout", "500ms"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("FAIL upstream {dead}: ")), "{out}");
    let (code, out) = check(
        &connect,
        &root,
        &["--no-upstream", "--zone", "missing.test"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL zone missing.test: "), "{out}");
    let (code, out) = check(&connect, "/no-such-root", &["--no-upstream"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL zones: /no-such-root/zones does not exist"),
        "{out}"
    );

    // ZooKeeper unreachable
    let nowhere = format!("127.0.0.1:{}", free_tcp_port());
    let started = Instant::now();
    let (code, out) = check(
        &nowhere,
        &root,
        &["--no-upstream", "--zk-session-timeout", "1s"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL zookeeper {nowhere}: ")),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // bad configuration
    for (root, args) in [
        ("relative", vec!["--no-upstream"]),
        ("/zkdns", vec!["--upstream", "not-an-address"]),
        ("/zkdns", vec!["--upstream-timeout", "soon"]),
        ("/zkdns", vec!["--no-upstream", "--upstream", "192.0.2.1"]),
        (
            "/zkdns",
            vec!["--listen", "127.0.0.1:5300", "--upstream", "127.0.0.1:5300"],
        ),
    ] {
        let (code, out) = check(&connect, root, &args);
        assert_eq!(code, 2, "{args:?}: {out}");
    }
    let (code, out) = check("", "/zkdns", &["--no-upstream"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL configuration: --zk"), "{out}");
}

#[test]
fn version_and_help() {
    let bin = env!("CARGO_BIN_EXE_zkdns");
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("zkdns {}", env!("CARGO_PKG_VERSION"))
    );
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    // every command has examples in its own --help
    let commands: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(commands.len() >= 7, "{commands:?}");
    for command in &commands {
        let out = std::process::Command::new(bin)
            .args([command, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Examples:"),
            "`zkdns {command} --help` has no examples:\n{text}"
        );
        // every flag can come from the environment
        // option lines are indented ("  -x, --flag" or "      --flag"); prose is not
        let options = text
            .lines()
            .filter(|l| l.starts_with("      --") || (l.starts_with("  -") && l.contains(", --")));
        for line in options {
            let flag = line
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .unwrap();
            if ["--help", "--version"].contains(&flag) {
                continue;
            }
            let described = text
                .split(line)
                .nth(1)
                .and_then(|rest| rest.split("\n  -").next())
                .unwrap_or("");
            assert!(
                line.contains("[env: ZKDNS_") || described.contains("[env: ZKDNS_"),
                "`zkdns {command}` {flag} has no ZKDNS_ variable:\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_mode_serves_metrics_and_counts_its_writes() {
    let zk = ZooKeeper::shared();
    let root = root_with_zone().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, "127.0.0.1 localhost\n").unwrap();
    let mut cmd = zkdns_cmd(zk, &root);
    cmd.args(["hosts", "--metrics", "127.0.0.1:0", "--file"])
        .arg(&file);
    let hosts = Daemon::spawn("zkdns hosts", cmd);
    hosts.expect_log(METRICS_LINE);
    let logs = hosts.logs();
    let http: SocketAddr = logs
        .split(METRICS_LINE)
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("metrics address in the log");
    hosts.expect_log("wrote ");
    let writes = eventually(DEADLINE, || {
        let v = value(&scrape(http), "zkdns_hosts_writes_total");
        (v >= 1.0).then_some(v)
    });
    assert_eq!(writes, hosts.count("wrote ") as f64);
    assert_eq!(http_get(http, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(value(&scrape(http), "zkdns_ready"), 1.0);
}
