//! Catching up after a reconnect (issue 15): a stub that loses its connection, not its
//! session, reads only what changed meanwhile. With nothing changed (a leader killed under a
//! few stubs on a 3-node ensemble) it reads no node's data at all; with names made, changed,
//! deleted, registered and expired while it was cut off it reads those and ends equal to the
//! tree; and a plain ZooKeeper client's change is picked up, at the latest by the periodic
//! full read. (A zone without a change mark is read in full: fleet.rs.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

const ZONE: &str = "catch.test";
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `zkdns ARGS…` once against `connect`; panics unless it succeeds.
fn zkdns_ok(connect: &str, root: &str, args: &[&str]) {
    let r = run(zkdns_cmd_at(connect, root), args, &[]);
    assert_eq!(r.code, 0, "zkdns {args:?}: {}", r.text());
}

/// `zkdns [--zk-session-timeout T] register FQDN --addr A --id ID`, running.
fn register(connect: &str, root: &str, session: &str, fqdn: &str, addr: &str, id: &str) -> Daemon {
    let mut cmd = zkdns_cmd_at(connect, root);
    cmd.args(["--zk-session-timeout", session, "register", fqdn])
        .args(["--addr", addr, "--id", id]);
    Daemon::spawn("zkdns register", cmd)
}

fn metrics(stub: &Zkdns) -> BTreeMap<String, f64> {
    scrape_metrics(metrics_address(stub))
}

fn metric(stub: &Zkdns, name: &str) -> f64 {
    metrics(stub).get(name).copied().unwrap_or(-1.0)
}

/// Waits until the stub has caught up `n` times in all.
fn until_caught_up(stub: &Zkdns, n: f64) {
    let deadline = Instant::now() + DEADLINE;
    while metric(stub, "zkdns_zookeeper_catchups_total") < n {
        assert!(
            Instant::now() < deadline,
            "no catch-up:\n{:?}\n{}",
            metrics(stub),
            stub.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `path` has exactly `n` children.
async fn until_children(client: &zookeeper_client::Client, path: &str, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = client
            .list_children(path)
            .await
            .map(|c| c.len())
            .unwrap_or(0);
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} has {got} children, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_election_with_nothing_changed_reads_no_data() {
    let mut ens = Ensemble::start();
    ens.wait_serving(Duration::from_secs(60)).unwrap();
    let connect = ens.connect_string();
    let root = unique_root();
    for (name, addr) in [
        ("web", "10.0.0.1"),
        ("db", "10.0.0.2"),
        ("mail", "10.0.0.3"),
    ] {
        let fqdn = format!("{name}.{ZONE}");
        zkdns_ok(&connect, &root, &["set", &fqdn, "A", addr, "--zone", ZONE]);
    }
    // a long session: the election must not expire anyone's
    let _member = register(&connect, &root, "30s", "api.catch.test", "10.0.1.1", "m1");
    let stubs: Vec<Zkdns> = (0..3)
        .map(|_| {
            let stub = Zkdns::serve_at(
                &connect,
                &root,
                &["--zk-session-timeout", "30s", "--metrics", "127.0.0.1:0"],
            );
            stub.wait_synced();
            stub
        })
        .collect();
    for stub in &stubs {
        stub.until_answers("api.catch.test", &["10.0.1.1"], DEADLINE)
            .await;
    }

    let leader = ens.leader().expect("a leader");
    ens.kill(leader);
    // every stub's server left the quorum or died: each lost its connection and caught up,
    // answering throughout
    for stub in &stubs {
        let deadline = Instant::now() + DEADLINE;
        while metric(stub, "zkdns_zookeeper_catchups_total") < 1.0 {
            assert_eq!(stub.a_of("web.catch.test").await, ["10.0.0.1"]);
            assert_eq!(stub.a_of("api.catch.test").await, ["10.0.1.1"]);
            assert!(
                Instant::now() < deadline,
                "no catch-up:\n{:?}\n{}",
                metrics(stub),
                stub.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let m = metrics(stub);
        assert_eq!(m.get("zkdns_zookeeper_resyncs_total"), Some(&1.0), "{m:?}");
        assert_eq!(
            m.get("zkdns_zookeeper_catchup_data_reads_total"),
            Some(&0.0),
            "{m:?}"
        );
        assert_eq!(m.get("zkdns_stale"), Some(&0.0), "{m:?}");
        assert_eq!(stub.a_of("mail.catch.test").await, ["10.0.0.3"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_cut_off_reads_only_what_changed_and_ends_equal_to_the_tree() {
    let zk = ZooKeeper::shared();
    let direct = zk.connect_string();
    let root = unique_root();
    for (name, addr) in [("web", "10.0.0.1"), ("db", "10.0.0.2"), ("old", "10.0.0.3")] {
        let fqdn = format!("{name}.{ZONE}");
        zkdns_ok(&direct, &root, &["set", &fqdn, "A", addr, "--zone", ZONE]);
    }
    let _m1 = register(&direct, &root, "6s", "api.catch.test", "10.0.1.1", "m1");
    let mut doomed = register(&direct, &root, "1s", "gone.catch.test", "10.0.2.1", "g1");
    let proxy = TcpProxy::start(zk.addr());
    let stub = Zkdns::serve_at(
        &proxy.connect_string(),
        &root,
        &["--metrics", "127.0.0.1:0"],
    );
    stub.wait_synced();
    stub.until_answers("api.catch.test", &["10.0.1.1"], DEADLINE)
        .await;
    stub.until_answers("gone.catch.test", &["10.0.2.1"], DEADLINE)
        .await;

    // cut off, it misses: a new name and a deleted one (the tools: the zone's mark says
    // which), a second member, an expiry, and a first member under a name that had none
    proxy.cut();
    let c = zk.client().await;
    zkdns_ok(&direct, &root, &["set", "new.catch.test", "A", "10.0.0.9"]);
    zkdns_ok(&direct, &root, &["rm", "old.catch.test"]);
    let _m2 = register(&direct, &root, "6s", "api.catch.test", "10.0.1.2", "m2");
    let _w1 = register(&direct, &root, "6s", "web.catch.test", "10.0.0.77", "w1");
    doomed.kill();
    until_children(&c, &set_path(&root, ZONE, "api"), 2).await;
    until_children(&c, &set_path(&root, ZONE, "web"), 1).await;
    until_children(&c, &set_path(&root, ZONE, "gone"), 0).await;
    proxy.restore();

    until_caught_up(&stub, 1.0);
    stub.until_answers("new.catch.test", &["10.0.0.9"], DEADLINE)
        .await;
    stub.until_answers("api.catch.test", &["10.0.1.1", "10.0.1.2"], DEADLINE)
        .await;
    stub.until_answers("web.catch.test", &["10.0.0.1", "10.0.0.77"], DEADLINE)
        .await;
    assert_eq!(stub.a_of("gone.catch.test").await, Vec::<String>::new());
    let old = query(stub.addr(), "old.catch.test", RecordType::A).await;
    assert_eq!(rcode(&old), ResponseCode::NXDomain, "{}", summary(&old));
    let m = metrics(&stub);
    assert_eq!(m.get("zkdns_zookeeper_resyncs_total"), Some(&1.0), "{m:?}");
    // the mark, new and old (gone), api's two members, web's one: nothing else
    assert_eq!(
        m.get("zkdns_zookeeper_catchup_data_reads_total"),
        Some(&6.0),
        "{m:?}"
    );
    assert_eq!(stub.a_of("db.catch.test").await, ["10.0.0.2"]);

    // a record set's data changed by the tools: the mark names it
    proxy.cut();
    zkdns_ok(&direct, &root, &["set", "db.catch.test", "A", "10.0.0.6"]);
    proxy.restore();
    until_caught_up(&stub, 2.0);
    stub.until_answers("db.catch.test", &["10.0.0.6"], DEADLINE)
        .await;
    let m = metrics(&stub);
    assert_eq!(m.get("zkdns_zookeeper_resyncs_total"), Some(&1.0), "{m:?}");
    // the mark and db
    assert_eq!(
        m.get("zkdns_zookeeper_catchup_data_reads_total"),
        Some(&8.0),
        "{m:?}"
    );
    stub.until_answers("web.catch.test", &["10.0.0.1", "10.0.0.77"], DEADLINE)
        .await;
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_clients_changes_during_an_outage_are_picked_up() {
    let zk = ZooKeeper::shared();
    let direct = zk.connect_string();
    let root = unique_root();
    zkdns_ok(
        &direct,
        &root,
        &["set", "web.catch.test", "A", "10.0.0.1", "--zone", ZONE],
    );
    let proxy = TcpProxy::start(zk.addr());
    let stub = Zkdns::serve_at(
        &proxy.connect_string(),
        &root,
        &["--metrics", "127.0.0.1:0", "--full-read-every", "6s"],
    );
    stub.wait_synced();
    stub.until_answers("web.catch.test", &["10.0.0.1"], DEADLINE)
        .await;

    // a plain client, not zkdns: a new name shows in the zone's stats at once; a record set's
    // data set without the zone's change mark, at the next periodic full read
    proxy.cut();
    let c = zk.client().await;
    put_set(&c, &root, ZONE, "fresh", r#"{"A": ["10.0.0.5"]}"#).await;
    c.set_data(
        &set_path(&root, ZONE, "web"),
        br#"{"A": ["10.0.0.2"]}"#,
        None,
    )
    .await
    .unwrap();
    proxy.restore();
    until_caught_up(&stub, 1.0);
    stub.until_answers("fresh.catch.test", &["10.0.0.5"], DEADLINE)
        .await;
    stub.until_answers("web.catch.test", &["10.0.0.2"], DEADLINE)
        .await;
    assert!(metric(&stub, "zkdns_zookeeper_resyncs_total") >= 2.0);
    close_session(c).await;
}
