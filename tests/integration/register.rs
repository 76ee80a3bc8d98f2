//! `zkdns register` against a real ZooKeeper and a real `zkdns serve`: the name answers while
//! the process runs, goes at once on SIGTERM and after the session timeout on `kill -9`, comes
//! back after a forced session expiry, follows its health check, publishes SRV records, and
//! creates record sets as CONTAINER nodes that ZooKeeper reaps (keeping data someone else
//! wrote onto them).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use zookeeper_client::Client;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(30);
const ZONE: &str = "r.test";

/// `zkdns [--zk-session-timeout T] register ARGS…` against `connect` under `root`.
fn register_at(connect: &str, root: &str, session: Option<&str>, args: &[&str]) -> Daemon {
    let mut cmd = zkdns_cmd_at(connect, root);
    if let Some(t) = session {
        cmd.args(["--zk-session-timeout", t]);
    }
    cmd.arg("register").args(args);
    Daemon::spawn("zkdns register", cmd)
}

fn register(zk: &ZooKeeper, root: &str, args: &[&str]) -> Daemon {
    register_at(&zk.connect_string(), root, None, args)
}

/// A one-shot run of the binary: exit code and stderr.
fn run_once(zk_connect: &str, root: &str, args: &[&str]) -> (i32, String) {
    let out = zkdns_cmd_at(zk_connect, root)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run zkdns");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What most tests start from: a fresh root holding the zone [`ZONE`] on the shared
/// ZooKeeper, and a session to look at it with.
struct Fixture {
    zk: &'static ZooKeeper,
    root: String,
    c: Client,
}

impl Fixture {
    async fn new() -> Fixture {
        let zk = ZooKeeper::shared();
        let root = unique_root();
        let c = zk.client().await;
        put_zone(&c, &root, ZONE, "").await;
        Fixture { zk, root, c }
    }
}

fn member_path(root: &str, name: &str, id: &str) -> String {
    format!("{}/{id}", set_path(root, ZONE, name))
}

/// The member's data and ephemeral owner, if it exists.
async fn member(c: &Client, path: &str) -> Option<(String, i64)> {
    match c.get_data(path).await {
        Ok((data, stat)) => Some((String::from_utf8(data).unwrap(), stat.ephemeral_owner)),
        Err(zookeeper_client::Error::NoNode) => None,
        Err(e) => panic!("get {path}: {e}"),
    }
}

async fn exists(c: &Client, path: &str) -> bool {
    c.check_stat(path).await.expect("check_stat").is_some()
}

/// Polls an async condition until it holds; panics with `what` after [`DEADLINE`].
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + DEADLINE;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not hold within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn a_and_aaaa(server: SocketAddr, name: &str) -> Option<(ResponseCode, Vec<String>)> {
    let a = try_query(server, name, RecordType::A, QueryOptions::default())?;
    let aaaa = try_query(server, name, RecordType::AAAA, QueryOptions::default())?;
    let mut addrs = addresses(&a);
    addrs.extend(addresses(&aaaa));
    addrs.sort();
    Some((rcode(&a), addrs))
}

fn answered(addrs: &[&str]) -> Option<(ResponseCode, Vec<String>)> {
    Some((
        ResponseCode::NoError,
        addrs.iter().map(|s| s.to_string()).collect(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_name_answers_and_goes_at_once_on_sigterm() {
    let Fixture { zk, root, c } = Fixture::new().await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    // the longest session the test server allows: the member must go long before it ends
    let mut reg = register_at(
        &zk.connect_string(),
        &root,
        Some("4s"),
        &[
            "web.r.test",
            "--addr",
            "10.61.0.1",
            "--addr",
            "fd00::61",
            "--id",
            "inst-1",
        ],
    );
    let path = member_path(&root, "web", "inst-1");
    reg.expect_log(&format!("registered web.r.test as {path}"));
    let (data, owner) = member(&c, &path).await.expect("the member exists");
    assert_eq!(data, r#"{"A":["10.61.0.1"],"AAAA":["fd00::61"]}"#);
    assert_ne!(owner, 0, "the member is ephemeral");
    eventually_eq(
        "web.r.test through dig's server",
        DEADLINE,
        answered(&["10.61.0.1", "fd00::61"]),
        || a_and_aaaa(stub.addr(), "web.r.test"),
    );
    let out = dig(stub.addr(), &["web.r.test", "A", "+short"]);
    assert_eq!(out.trim(), "10.61.0.1", "dig said:\n{out}");

    // a member deleted by someone else (zkdns rm --force) is put back
    c.delete(&path, None).await.unwrap();
    until("the deleted member put back", || async {
        exists(&c, &path).await
    })
    .await;
    reg.expect_log("again: someone had deleted it");

    reg.terminate();
    // deleted before the process exited, not left to the session timeout
    assert!(
        !exists(&c, &path).await,
        "the member outlived the process:\n{}",
        reg.logs()
    );
    assert_eq!(reg.count("deregistered web.r.test"), 1, "{}", reg.logs());
    // the container record set stays until ZooKeeper reaps it: the name has no address now
    eventually_eq("web.r.test after SIGTERM", DEADLINE, answered(&[]), || {
        a_and_aaaa(stub.addr(), "web.r.test")
    });
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_register_goes_when_its_session_times_out() {
    let Fixture { zk, root, c } = Fixture::new().await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let mut reg = register_at(
        &zk.connect_string(),
        &root,
        Some("2s"),
        &["db.r.test", "--addr", "10.61.1.1", "--id", "db-1"],
    );
    let path = member_path(&root, "db", "db-1");
    reg.expect_log("registered db.r.test as");
    eventually_eq("db.r.test", DEADLINE, answered(&["10.61.1.1"]), || {
        a_and_aaaa(stub.addr(), "db.r.test")
    });
    reg.kill();
    // nothing deleted it: only the session's end does
    assert!(
        exists(&c, &path).await,
        "the member went before its session"
    );
    eventually_eq(
        "db.r.test after kill -9 and the session timeout",
        DEADLINE,
        answered(&[]),
        || a_and_aaaa(stub.addr(), "db.r.test"),
    );
    assert!(!exists(&c, &path).await);
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_registers_again() {
    // register reaches ZooKeeper through a proxy; the cut lasts until ZooKeeper itself has
    // expired the session (the member is gone), which is a real expiry, not a reconnect
    let Fixture { zk, root, c } = Fixture::new().await;
    let proxy = TcpProxy::start(zk.addr());
    let mut reg = register_at(
        &proxy.connect_string(),
        &root,
        Some("1s"),
        &["api.r.test", "--addr", "10.61.2.1", "--id", "api-1"],
    );
    let path = member_path(&root, "api", "api-1");
    reg.expect_log("registered api.r.test as");
    let (_, first_owner) = member(&c, &path).await.expect("registered");

    proxy.cut();
    until("the member going with the expired session", || async {
        !exists(&c, &path).await
    })
    .await;
    proxy.restore();
    until("the member coming back", || async {
        member(&c, &path)
            .await
            .is_some_and(|(_, owner)| owner != 0 && owner != first_owner)
    })
    .await;
    assert!(
        reg.wait_count("registered api.r.test as", 2, DEADLINE),
        "{}",
        reg.logs()
    );
    assert_eq!(reg.count("registering again with a new session"), 1);
    reg.assert_running();

    // and the new registration is deleted on SIGTERM like the first
    reg.terminate();
    assert!(!exists(&c, &path).await);
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_withdraws_and_restores() {
    let Fixture { zk, root, c } = Fixture::new().await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let dir = tempfile::tempdir().unwrap();
    let healthy = dir.path().join("healthy");
    let check = format!("test -e '{}'", healthy.display());
    let mut reg = register(
        zk,
        &root,
        &[
            "app.r.test",
            "--addr",
            "10.61.3.1",
            "--id",
            "app-1",
            "--check-cmd",
            &check,
            "--check-interval",
            "100ms",
            "--check-rise",
            "2",
            "--check-fall",
            "3",
        ],
    );
    let path = member_path(&root, "app", "app-1");
    // not published before the first passing check
    reg.expect_log("health check failing");
    assert!(
        !exists(&c, &path).await,
        "published before any check passed"
    );

    std::fs::write(&healthy, "").unwrap();
    reg.expect_log("publishing app.r.test");
    until("the member after the first pass", || async {
        exists(&c, &path).await
    })
    .await;
    eventually_eq("app.r.test", DEADLINE, answered(&["10.61.3.1"]), || {
        a_and_aaaa(stub.addr(), "app.r.test")
    });

    std::fs::remove_file(&healthy).unwrap();
    reg.expect_log("withdrawing app.r.test");
    until("the member withdrawn", || async {
        !exists(&c, &path).await
    })
    .await;
    eventually_eq("app.r.test withdrawn", DEADLINE, answered(&[]), || {
        a_and_aaaa(stub.addr(), "app.r.test")
    });
    reg.assert_running();

    std::fs::write(&healthy, "").unwrap();
    reg.expect_log("restoring app.r.test");
    until("the member restored", || async { exists(&c, &path).await }).await;
    eventually_eq(
        "app.r.test restored",
        DEADLINE,
        answered(&["10.61.3.1"]),
        || a_and_aaaa(stub.addr(), "app.r.test"),
    );
    // each transition was logged once
    for line in [
        "health check failing",
        "publishing app.r.test",
        "withdrawing app.r.test",
        "restoring app.r.test",
    ] {
        assert_eq!(reg.count(line), 1, "{line}:\n{}", reg.logs());
    }
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_and_srv_publish_srv_records() {
    let Fixture { zk, root, c } = Fixture::new().await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let a = register(
        zk,
        &root,
        &[
            "api.r.test",
            "--addr",
            "10.61.4.1",
            "--port",
            "8080",
            "--srv",
            "_http._tcp",
            "--id",
            "a1",
        ],
    );
    let b = register(
        zk,
        &root,
        &[
            "db.r.test",
            "--addr",
            "10.61.4.2",
            "--port",
            "5432",
            "--id",
            "b1",
        ],
    );
    a.expect_log("registered _http._tcp.api.r.test as");
    b.expect_log("registered db.r.test as");
    let srv_member = format!("{}/a1", set_path(&root, ZONE, "_http._tcp.api"));
    let (data, _) = member(&c, &srv_member).await.expect("SRV member");
    assert_eq!(
        data,
        r#"{"SRV":[{"priority":0,"weight":0,"port":8080,"target":"api.r.test."}]}"#
    );
    let srv = |name: &str| {
        let m = try_query(stub.addr(), name, RecordType::SRV, QueryOptions::default())?;
        Some(answers_of(&m, RecordType::SRV))
    };
    eventually_eq(
        "SRV at _http._tcp.api.r.test",
        DEADLINE,
        Some(vec!["0 0 8080 api.r.test.".to_string()]),
        || srv("_http._tcp.api.r.test"),
    );
    eventually_eq(
        "SRV at db.r.test",
        DEADLINE,
        Some(vec!["0 0 5432 db.r.test.".to_string()]),
        || srv("db.r.test"),
    );
    // with --srv the name itself carries only the address
    let m = query(stub.addr(), "api.r.test", RecordType::A).await;
    assert_eq!(addresses(&m), ["10.61.4.1"]);
    let m = query(stub.addr(), "api.r.test", RecordType::SRV).await;
    assert!(answers_of(&m, RecordType::SRV).is_empty());
    let out = dig(stub.addr(), &["_http._tcp.api.r.test", "SRV", "+short"]);
    assert_eq!(out.trim(), "0 0 8080 api.r.test.", "dig said:\n{out}");
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_sets_are_containers_and_written_data_is_kept() {
    // a server that reaps containers every 200 ms instead of every minute
    let zk = ZooKeeper::start_with_jvm_flags("-Dznode.container.checkIntervalMs=200");
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    let start = |name: &str| register(&zk, &root, &[name, "--addr", "10.61.5.1", "--id", "m1"]);
    let mut gone = start("gone.r.test");
    let mut kept = start("kept.r.test");
    let mut plain = start("plain.r.test");
    for (d, n) in [(&gone, "gone"), (&kept, "kept"), (&plain, "plain")] {
        d.expect_log(&format!("registered {n}.r.test as"));
    }
    // someone writes data onto two of the record sets register created: one it created as
    // a container (kept), one that an operator made persistent before (plain)
    let kept_set = set_path(&root, ZONE, "kept");
    c.set_data(&kept_set, br#"{"TXT":["v=1"]}"#, None)
        .await
        .unwrap();
    let plain_set = set_path(&root, ZONE, "plain");
    put_set(&c, &root, ZONE, "plain", r#"{"TXT":["p"]}"#).await;

    for d in [&mut gone, &mut kept, &mut plain] {
        d.terminate();
    }
    // the empty container is reaped…
    let gone_set = set_path(&root, ZONE, "gone");
    until("the empty container reaped", || async {
        !exists(&c, &gone_set).await
    })
    .await;
    // …and the reaper has run since: the sets with data are persistent now and still there
    for (path, want) in [
        (&kept_set, r#"{"TXT":["v=1"]}"#),
        (&plain_set, r#"{"TXT":["p"]}"#),
    ] {
        let (data, stat) = c.get_data(path).await.expect("set with data kept");
        assert_eq!(String::from_utf8(data).unwrap(), want);
        assert_eq!(stat.num_children, 0);
    }
    assert!(
        kept.count("kept its data as a persistent record set") == 1,
        "{}",
        kept.logs()
    );
    // one more reaper round for good measure: a fresh empty container goes, the others stay
    let mut again = start("again.r.test");
    again.expect_log("registered again.r.test as");
    again.terminate();
    let again_set = set_path(&root, ZONE, "again");
    until("the second empty container reaped", || async {
        !exists(&c, &again_set).await
    })
    .await;
    assert!(exists(&c, &kept_set).await && exists(&c, &plain_set).await);
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_id_waits_for_the_first() {
    let Fixture { zk, root, c } = Fixture::new().await;
    let path = member_path(&root, "dup", "same");
    let mut first = register(
        zk,
        &root,
        &["dup.r.test", "--addr", "10.61.6.1", "--id", "same"],
    );
    first.expect_log("registered dup.r.test as");
    let second = register(
        zk,
        &root,
        &["dup.r.test", "--addr", "10.61.6.2", "--id", "same"],
    );
    second.expect_log("belongs to another ZooKeeper session");
    let (data, _) = member(&c, &path).await.unwrap();
    assert!(
        data.contains("10.61.6.1"),
        "the first one's member was overwritten: {data}"
    );

    first.terminate();
    until("the second instance's member", || async {
        member(&c, &path)
            .await
            .is_some_and(|(data, _)| data.contains("10.61.6.2"))
    })
    .await;
    second.expect_log("registered dup.r.test as");
    close_session(c).await;
}

/// The source address of this host's default route, as `ip route get` reports it.
fn route_source() -> Option<String> {
    let out = Command::new("ip")
        .args(["-o", "route", "get", "192.0.2.1"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "src")?;
    words.next().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_address_is_the_primary_one() {
    let Fixture { zk, root, c } = Fixture::new().await;
    let reg = register(zk, &root, &["self.r.test", "--id", "me"]);
    reg.expect_log("registered self.r.test as");
    let (data, _) = member(&c, &member_path(&root, "self", "me"))
        .await
        .expect("registered");
    let json: serde_json::Value = serde_json::from_str(&data).unwrap();
    let addr = json["A"]
        .get(0)
        .or_else(|| json["AAAA"].get(0))
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no address in {data}"))
        .to_string();
    match route_source() {
        Some(src) => assert_eq!(addr, src, "the default route's source address"),
        None => {
            let ip: std::net::IpAddr = addr.parse().unwrap();
            assert!(!ip.is_loopback(), "{ip}");
        }
    }
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_exits_2_and_no_zookeeper_exits_1() {
    let Fixture { zk, root, c } = Fixture::new().await;
    let connect = zk.connect_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &["register", "web.elsewhere.test", "--addr", "10.0.0.1"],
            "no zone under",
        ),
        (
            &[
                "register",
                "web.r.test",
                "--addr",
                "10.0.0.1",
                "--zone",
                "x.test",
            ],
            "is not in the zone",
        ),
        (
            &["register", "*.r.test", "--addr", "10.0.0.1"],
            "not a valid name",
        ),
        (&["register", "web.r.test", "--addr", "nope"], "--addr"),
        (
            &[
                "register",
                "web.r.test",
                "--addr",
                "10.0.0.1",
                "--srv",
                "_http._tcp",
            ],
            "--port",
        ),
        (
            &[
                "register",
                "web.r.test",
                "--addr",
                "10.0.0.1",
                "--port",
                "80",
                "--srv",
                "http",
            ],
            "_SERVICE._PROTO",
        ),
        (
            &[
                "register",
                "web.r.test",
                "--addr",
                "10.0.0.1",
                "--id",
                "a/b",
            ],
            "--id",
        ),
        (
            &[
                "register",
                "web.r.test",
                "--addr",
                "10.0.0.1",
                "--check-tcp",
                "nohost",
            ],
            "HOST:PORT",
        ),
        (
            &[
                "register",
                "web.r.test",
                "--addr",
                "10.0.0.1",
                "--check-interval",
                "0s",
            ],
            "more than 0",
        ),
    ];
    for (args, says) in cases {
        let (code, stderr) = run_once(&connect, &root, args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(says),
            "{args:?} should say {says:?}: {stderr}"
        );
    }
    // nothing was registered by any of them
    let sets = c.list_children(&zone_path(&root, ZONE)).await.unwrap();
    assert!(sets.is_empty(), "{sets:?}");

    let dead = dead_addr().to_string();
    let (code, stderr) = run_once(
        &dead,
        &root,
        &[
            "--zk-session-timeout",
            "1s",
            "register",
            "web.r.test",
            "--addr",
            "10.0.0.1",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach ZooKeeper"), "{stderr}");
    close_session(c).await;
}
