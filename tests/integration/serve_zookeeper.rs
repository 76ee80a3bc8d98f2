//! ZooKeeper going away: the stub keeps answering from the last map (serve-stale), and once
//! ZooKeeper is back it converges again, both when its session survives the outage and when
//! the session expired and a new one has to be made. Each test runs its own ZooKeeper,
//! since it kills it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(20);
const ESTABLISHED: &str = "ZooKeeper session established session=";

fn a_records(server: SocketAddr, name: &str) -> Option<(ResponseCode, Vec<String>)> {
    let m = try_query(server, name, RecordType::A, QueryOptions::default())?;
    Some((rcode(&m), addresses(&m)))
}

fn answers(addrs: &[&str]) -> Option<(ResponseCode, Vec<String>)> {
    Some((
        ResponseCode::NoError,
        addrs.iter().map(|s| s.to_string()).collect(),
    ))
}

/// Queries `name` every 200 ms for `period`, asserting every answer is `want`.
fn assert_steady(stub: &Zkdns, name: &str, want: &[&str], period: Duration) {
    let until = Instant::now() + period;
    let mut n = 0;
    while Instant::now() < until {
        assert_eq!(
            a_records(stub.addr(), name),
            answers(want),
            "{name} after {n} steady answers while ZooKeeper is down"
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The session IDs zkdns logged as established, in order.
fn sessions(stub: &Zkdns) -> Vec<String> {
    stub.logs()
        .lines()
        .filter_map(|l| l.split(ESTABLISHED).nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A zone with `web` and `api`, written before zkdns starts.
async fn seed(zk: &ZooKeeper, root: &str, web: &str, api: &str) {
    let c = zk.client().await;
    put_zone(&c, root, "z.test", "").await;
    put_set(&c, root, "z.test", "web", &format!(r#"{{"A": ["{web}"]}}"#)).await;
    put_set(&c, root, "z.test", "api", &format!(r#"{{"A": ["{api}"]}}"#)).await;
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_killed_keeps_answering_and_reconnects() {
    let mut zk = ZooKeeper::start();
    let root = unique_root();
    seed(&zk, &root, "10.7.0.1", "10.7.0.2").await;
    let stub = Zkdns::serve_ready(&zk, &root, &[]);
    assert_eq!(a_records(stub.addr(), "web.z.test"), answers(&["10.7.0.1"]));

    zk.stop();
    assert!(
        stub.wait_log("connection lost", DEADLINE),
        "zkdns did not notice ZooKeeper going away:\n{}",
        stub.logs()
    );
    // the last map keeps answering, positive and negative
    assert_steady(&stub, "web.z.test", &["10.7.0.1"], Duration::from_secs(2));
    assert_eq!(
        a_records(stub.addr(), "nope.z.test"),
        Some((ResponseCode::NXDomain, vec![]))
    );

    // back within the session timeout: the same session goes on, with a full re-read
    zk.start_again();
    assert!(
        stub.wait_count("resynced", 2, DEADLINE),
        "no full read after the reconnect:\n{}",
        stub.logs()
    );
    assert_eq!(a_records(stub.addr(), "web.z.test"), answers(&["10.7.0.1"]));
    assert_eq!(a_records(stub.addr(), "api.z.test"), answers(&["10.7.0.2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_disconnected_are_read_after_the_reconnect() {
    // zkdns reaches ZooKeeper through a proxy; cutting it disconnects zkdns while the test
    // keeps writing to ZooKeeper directly. No watch event can carry these changes: only the
    // full re-read after the reconnect can.
    let zk = ZooKeeper::shared();
    let root = unique_root();
    seed(zk, &root, "10.7.1.1", "10.7.1.2").await;
    let proxy = TcpProxy::start(zk.addr());
    let stub = Zkdns::serve_at(&proxy.connect_string(), &root, &[]);
    stub.wait_synced();
    assert_eq!(a_records(stub.addr(), "web.z.test"), answers(&["10.7.1.1"]));

    let c = zk.client().await;
    proxy.cut();
    assert!(
        stub.wait_log("connection lost", DEADLINE),
        "zkdns did not notice the cut:\n{}",
        stub.logs()
    );
    put_set(&c, &root, "z.test", "web", r#"{"A": ["10.7.1.10"]}"#).await;
    delete(&c, &set_path(&root, "z.test", "api")).await;
    put_set(&c, &root, "z.test", "new", r#"{"A": ["10.7.1.3"]}"#).await;
    // the stale map answers meanwhile
    assert_eq!(a_records(stub.addr(), "web.z.test"), answers(&["10.7.1.1"]));
    // back well within the session timeout (4 s), so the session survives
    proxy.restore();
    eventually_eq(
        "web after the reconnect",
        DEADLINE,
        answers(&["10.7.1.10"]),
        || a_records(stub.addr(), "web.z.test"),
    );
    eventually_eq(
        "new after the reconnect",
        DEADLINE,
        answers(&["10.7.1.3"]),
        || a_records(stub.addr(), "new.z.test"),
    );
    eventually_eq(
        "api deleted while disconnected",
        DEADLINE,
        Some((ResponseCode::NXDomain, vec![])),
        || a_records(stub.addr(), "api.z.test"),
    );
    assert_eq!(
        sessions(&stub).len(),
        1,
        "the session should have survived:\n{}",
        stub.logs()
    );
    close_session(c).await;
}

/// An idle stub's session lives on its pings alone: with nothing asked and nothing changed for
/// three session timeouts, the session is the same one, the connection was never given up,
/// and the watch still carries a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stub_keeps_its_session_and_its_watch() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    seed(zk, &root, "10.7.4.1", "10.7.4.2").await;
    let stub = Zkdns::serve_ready(zk, &root, &["--zk-session-timeout", "2s"]);
    std::thread::sleep(Duration::from_secs(6));
    let c = zk.client().await;
    put_set(&c, &root, "z.test", "web", r#"{"A": ["10.7.4.10"]}"#).await;
    eventually_eq(
        "web after an idle spell",
        DEADLINE,
        answers(&["10.7.4.10"]),
        || a_records(stub.addr(), "web.z.test"),
    );
    assert_eq!(sessions(&stub).len(), 1, "{}", stub.logs());
    assert_eq!(stub.count_lines(&["connection lost"]), 0, "{}", stub.logs());
    close_session(c).await;
}

/// A server that hangs (its connection open, nothing coming back) is noticed only by the
/// client's own deadline: the stub gives the connection up within its connection timeout
/// (3/5 of the session timeout), answers from the last map meanwhile, and converges once a
/// server answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_given_up_and_the_map_kept() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    seed(zk, &root, "10.7.5.1", "10.7.5.2").await;
    let proxy = TcpProxy::start(zk.addr());
    let stub = Zkdns::serve_at(
        &proxy.connect_string(),
        &root,
        &["--zk-session-timeout", "4s"],
    );
    stub.wait_synced();
    proxy.silence();
    assert!(
        stub.wait_log("connection lost", DEADLINE),
        "zkdns did not give up a server that stopped answering:\n{}",
        stub.logs()
    );
    assert_eq!(a_records(stub.addr(), "web.z.test"), answers(&["10.7.5.1"]));
    let c = zk.client().await;
    put_set(&c, &root, "z.test", "web", r#"{"A": ["10.7.5.10"]}"#).await;
    proxy.restore();
    eventually_eq(
        "web once the server answers again",
        DEADLINE,
        answers(&["10.7.5.10"]),
        || a_records(stub.addr(), "web.z.test"),
    );
    close_session(c).await;
}

/// zookeeper-client 0.11.2 re-sends watches after a reconnect with
/// `index = index.max(index)` (src/session/watch.rs, `resend_watches`) where `index.max(i)` was
/// meant, so it sends SetWatches with only the data/exist/child lists and never the persistent
/// recursive one. The server forgets a connection's watches when the connection closes, so
/// after any reconnect that keeps the session, zkdns's watch is gone: the full re-read
/// happens, then no change reaches DNS until the session expires.
const LOST_WATCH: &str = "bug: after a reconnect that keeps the ZooKeeper session, the persistent \
                          watch is not re-registered and later changes never reach DNS";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_zookeeper_restart_reach_dns() {
    let mut zk = ZooKeeper::start();
    let root = unique_root();
    seed(&zk, &root, "10.7.2.1", "10.7.2.2").await;
    let stub = Zkdns::serve_ready(&zk, &root, &[]);
    zk.stop();
    assert!(
        stub.wait_log("connection lost", DEADLINE),
        "{}",
        stub.logs()
    );
    zk.start_again();
    assert!(stub.wait_count("resynced", 2, DEADLINE), "{}", stub.logs());
    // a change made once ZooKeeper is back
    let c = zk.client().await;
    put_set(&c, &root, "z.test", "web", r#"{"A": ["10.7.2.10"]}"#).await;
    put_set(&c, &root, "z.test", "new", r#"{"A": ["10.7.2.3"]}"#).await;
    eventually_eq(LOST_WATCH, DEADLINE, answers(&["10.7.2.10"]), || {
        a_records(stub.addr(), "web.z.test")
    });
    eventually_eq(LOST_WATCH, DEADLINE, answers(&["10.7.2.3"]), || {
        a_records(stub.addr(), "new.z.test")
    });
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_after_a_dropped_connection_reach_dns() {
    // the same bug without any server restart: one dropped TCP connection is enough
    let zk = ZooKeeper::shared();
    let root = unique_root();
    seed(zk, &root, "10.7.3.1", "10.7.3.2").await;
    let proxy = TcpProxy::start(zk.addr());
    let stub = Zkdns::serve_at(&proxy.connect_string(), &root, &[]);
    stub.wait_synced();
    proxy.cut();
    assert!(
        stub.wait_log("connection lost", DEADLINE),
        "{}",
        stub.logs()
    );
    proxy.restore();
    assert!(stub.wait_count("resynced", 2, DEADLINE), "{}", stub.logs());
    let c = zk.client().await;
    put_set(&c, &root, "z.test", "web", r#"{"A": ["10.7.3.10"]}"#).await;
    eventually_eq(LOST_WATCH, DEADLINE, answers(&["10.7.3.10"]), || {
        a_records(stub.addr(), "web.z.test")
    });
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_serves_stale_then_recovers_with_a_new_session() {
    let mut zk = ZooKeeper::start();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, "z.test", "").await;
    put_set(&c, &root, "z.test", "web", r#"{"A": ["10.8.0.1"]}"#).await;
    put_set(&c, &root, "z.test", "api", "").await;
    close_session(c).await;
    // a container registered with a short session: it cannot survive the outage either
    let member = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(1))
        .connect(&zk.connect_string())
        .await
        .expect("member session");
    add_member(
        &member,
        &root,
        "z.test",
        "api",
        "m1",
        r#"{"A": ["10.8.0.2"]}"#,
    )
    .await;

    let stub = Zkdns::serve_ready(&zk, &root, &["--zk-session-timeout", "2s"]);
    eventually_eq(
        "api with its member",
        DEADLINE,
        answers(&["10.8.0.2"]),
        || a_records(stub.addr(), "api.z.test"),
    );
    let first = sessions(&stub);
    assert_eq!(first.len(), 1, "{}", stub.logs());

    // down for three times the session timeout: the session expires, the map stays
    zk.stop();
    assert_steady(&stub, "web.z.test", &["10.8.0.1"], Duration::from_secs(3));
    assert!(
        stub.wait_log("session ended", DEADLINE),
        "zkdns did not see its session end:\n{}",
        stub.logs()
    );
    assert_steady(&stub, "api.z.test", &["10.8.0.2"], Duration::from_secs(3));

    zk.start_again();
    assert!(
        stub.wait_count(ESTABLISHED, 2, DEADLINE),
        "no new session after the restart:\n{}",
        stub.logs()
    );
    let all = sessions(&stub);
    assert_ne!(
        all[0],
        all[1],
        "the new session has the old ID:\n{}",
        stub.logs()
    );

    // the expired member's ephemeral node is deleted by the server: its address goes
    eventually_eq(
        "api without its expired member",
        DEADLINE,
        Some((ResponseCode::NoError, vec![])),
        || a_records(stub.addr(), "api.z.test"),
    );
    // data changed after the recovery appears
    let c = zk.client().await;
    put_set(&c, &root, "z.test", "web", r#"{"A": ["10.8.0.9"]}"#).await;
    add_member(&c, &root, "z.test", "api", "m2", r#"{"A": ["10.8.0.3"]}"#).await;
    eventually_eq(
        "web after the recovery",
        DEADLINE,
        answers(&["10.8.0.9"]),
        || a_records(stub.addr(), "web.z.test"),
    );
    eventually_eq("api's new member", DEADLINE, answers(&["10.8.0.3"]), || {
        a_records(stub.addr(), "api.z.test")
    });
    close_session(c).await;
    drop(member);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_host_connect_string_with_a_chroot() {
    // the first host is dead; the chroot holds the default root /zkdns
    let zk = ZooKeeper::shared();
    let chroot = unique_root();
    let c = zk.client().await;
    put_set(
        &c,
        &format!("{chroot}/zkdns"),
        "c.test",
        "web",
        r#"{"A": ["10.7.4.1"]}"#,
    )
    .await;
    let connect = format!("{},{}{chroot}", dead_addr(), zk.connect_string());
    let stub = Zkdns::serve_at(&connect, "/zkdns", &[]);
    stub.wait_synced();
    eventually_eq(
        "web through the chroot",
        DEADLINE,
        answers(&["10.7.4.1"]),
        || a_records(stub.addr(), "web.c.test"),
    );
    // events come through the chroot too
    put_set(
        &c,
        &format!("{chroot}/zkdns"),
        "c.test",
        "web",
        r#"{"A": ["10.7.4.2"]}"#,
    )
    .await;
    eventually_eq(
        "web updated through the chroot",
        DEADLINE,
        answers(&["10.7.4.2"]),
        || a_records(stub.addr(), "web.c.test"),
    );
    close_session(c).await;
}
