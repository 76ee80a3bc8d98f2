//! `serve --snapshot`: the last good map is saved once changes settle, a restart while
//! ZooKeeper is down answers from it (stale), ZooKeeper coming back replaces it, and a corrupt
//! or foreign file is ignored with a warning.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(30);
const ZONE: &str = "snap.test";
const EDE_STALE: [u8; 6] = [0, 15, 0, 2, 0, 3];

fn ask(stub: &Zkdns, name: &str) -> Option<Vec<u8>> {
    query_raw(
        stub.addr(),
        &format!("{name}.{ZONE}"),
        RecordType::A,
        QueryOptions::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_zookeeper_answers_from_the_snapshot() {
    let mut zk = ZooKeeper::start();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.40.0.1"]}"#).await;
    put_set(&c, &root, ZONE, "db", r#"{"A": ["10.40.0.2"]}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("map.snapshot");
    let path = file.to_str().unwrap();
    let args = ["--snapshot", path, "--zk-session-timeout", "2s"];

    let first = Zkdns::serve_ready(&zk, &root, &args);
    eventually(DEADLINE, || file.exists().then_some(()));
    // a change is saved too, once it settles
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.40.0.9"]}"#).await;
    eventually(DEADLINE, || {
        let text = std::fs::read_to_string(&file).ok()?;
        text.contains("10.40.0.9").then_some(())
    });
    close_session(c).await;
    drop(first);
    zk.stop();

    let second = Zkdns::serve(&zk, &root, &args);
    assert!(
        second.wait_log("restored 2 names", DEADLINE),
        "{}",
        second.logs()
    );
    let reply = ask(&second, "web").expect("answer from the snapshot");
    let msg = decode(&reply);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&msg), vec!["10.40.0.9".to_string()]);
    assert!(reply.ends_with(&EDE_STALE), "marked stale");
    assert_eq!(
        rcode(&decode(&ask(&second, "nope").unwrap())),
        ResponseCode::NXDomain
    );

    zk.start_again();
    let c = zk.client().await;
    put_set(&c, &root, ZONE, "db", r#"{"A": ["10.40.0.7"]}"#).await;
    eventually(DEADLINE, || {
        let reply = ask(&second, "db")?;
        (addresses(&decode(&reply)) == ["10.40.0.7"] && !reply.ends_with(&EDE_STALE)).then_some(())
    });
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_foreign_snapshots_are_ignored() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.40.1.1"]}"#).await;
    close_session(c).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("map.snapshot");
    let path = file.to_str().unwrap();
    let stub = Zkdns::serve_ready(zk, &root, &["--snapshot", path]);
    eventually(DEADLINE, || file.exists().then_some(()));
    drop(stub);
    let good = std::fs::read(&file).unwrap();
    let dead = "127.0.0.1:9"; // nothing listens: the stub only has its snapshot

    // one flipped byte
    let mut bad = good.clone();
    bad[40] ^= 0x20;
    std::fs::write(&file, &bad).unwrap();
    let stub = Zkdns::serve_at(dead, &root, &["--snapshot", path]);
    assert!(
        stub.wait_log("ignoring the snapshot", DEADLINE),
        "{}",
        stub.logs()
    );
    assert!(stub.logs().contains("checksum"));
    let reply = decode(&ask(&stub, "web").unwrap());
    assert_ne!(addresses(&reply), vec!["10.40.1.1".to_string()]);
    drop(stub);

    // the intact file, but for another root
    std::fs::write(&file, &good).unwrap();
    let stub = Zkdns::serve_at(dead, "/another-root", &["--snapshot", path]);
    assert!(
        stub.wait_log("ignoring the snapshot", DEADLINE),
        "{}",
        stub.logs()
    );
    assert!(stub.logs().contains("made for"));
    drop(stub);

    // and for the right root it is used
    let stub = Zkdns::serve_at(dead, &root, &["--snapshot", path]);
    assert!(
        stub.wait_log("restored 1 names", DEADLINE),
        "{}",
        stub.logs()
    );
    assert_eq!(
        addresses(&decode(&ask(&stub, "web").unwrap())),
        vec!["10.40.1.1".to_string()]
    );
}
