//! Bad data in a znode never stops the stub: the node is skipped with one warning naming its
//! path, and every other name keeps answering.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(15);
const WARNING: &str = "skipping bad znode";

fn a_records(stub: &Zkdns, name: &str) -> Option<(ResponseCode, Vec<String>)> {
    let m = try_query(stub.addr(), name, RecordType::A, QueryOptions::default())?;
    Some((rcode(&m), addresses(&m)))
}

fn answers(addrs: &[&str]) -> Option<(ResponseCode, Vec<String>)> {
    Some((
        ResponseCode::NoError,
        addrs.iter().map(|s| s.to_string()).collect(),
    ))
}

/// Lines warning about `path` (the log quotes it: `path="/…"`).
fn warnings_for(stub: &Zkdns, path: &str) -> usize {
    stub.count_lines(&[WARNING, &format!("path=\"{path}\"")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_znodes_are_skipped_with_one_warning_each() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let zone = "bad.test";
    let c = zk.client().await;
    put_zone(&c, &root, zone, "").await;
    put_set(&c, &root, zone, "web", r#"{"A": ["10.5.0.1"]}"#).await;
    put_set(&c, &root, zone, "api", r#"{"A": ["10.5.0.2"]}"#).await;
    let bad = [
        ("notjson", "{not json"),
        ("badaddr", r#"{"A": ["10.5.0.300"]}"#),
        ("typo", r#"{"AAA": ["10.5.0.3"]}"#),
        ("bad name", r#"{"A": ["10.5.0.4"]}"#),
        ("UPPER", r#"{"A": ["10.5.0.5"]}"#),
    ];
    for (name, json) in bad {
        put_set(&c, &root, zone, name, json).await;
    }
    // a member with bad data, beside a good one
    put_set(&c, &root, zone, "svc", "").await;
    add_member(&c, &root, zone, "svc", "good", r#"{"A": ["10.5.1.1"]}"#).await;
    add_member(&c, &root, zone, "svc", "broken", r#"{"A": "10.5.1.2"}"#).await;
    // a zone whose name is not valid
    put_set(&c, &root, "Bad Zone", "web", r#"{"A": ["10.5.2.1"]}"#).await;

    let stub = Zkdns::serve_ready(zk, &root, &[]);
    assert_eq!(a_records(&stub, "web.bad.test"), answers(&["10.5.0.1"]));
    assert_eq!(a_records(&stub, "api.bad.test"), answers(&["10.5.0.2"]));
    assert_eq!(a_records(&stub, "svc.bad.test"), answers(&["10.5.1.1"]));

    let mut bad_paths: Vec<String> = bad
        .iter()
        .map(|(name, _)| set_path(&root, zone, name))
        .collect();
    bad_paths.push(format!("{}/broken", set_path(&root, zone, "svc")));
    bad_paths.push(zone_path(&root, "Bad Zone"));
    for path in &bad_paths {
        assert_eq!(
            warnings_for(&stub, path),
            1,
            "one warning for {path}:\n{}",
            stub.logs()
        );
    }
    assert_eq!(
        stub.count_lines(&[WARNING]),
        bad_paths.len(),
        "warnings only for the bad nodes:\n{}",
        stub.logs()
    );

    // later events re-read nodes; the bad ones are not reported again
    put_set(&c, &root, zone, "api", r#"{"A": ["10.5.0.20"]}"#).await;
    eventually_eq(
        "api after update",
        DEADLINE,
        answers(&["10.5.0.20"]),
        || a_records(&stub, "api.bad.test"),
    );
    add_member(&c, &root, zone, "svc", "late", r#"{"A": ["10.5.1.3"]}"#).await;
    eventually_eq(
        "svc after a new member",
        DEADLINE,
        answers(&["10.5.1.1", "10.5.1.3"]),
        || a_records(&stub, "svc.bad.test"),
    );
    for path in &bad_paths {
        assert_eq!(warnings_for(&stub, path), 1, "{path}:\n{}", stub.logs());
    }

    // a good node turning bad is reported once; the others keep answering
    let web = set_path(&root, zone, "web");
    put_set(&c, &root, zone, "web", "[1, 2").await;
    assert!(
        stub.wait_log(&format!("path=\"{web}\""), DEADLINE),
        "no warning for {web}:\n{}",
        stub.logs()
    );
    assert_eq!(a_records(&stub, "api.bad.test"), answers(&["10.5.0.20"]));
    assert_eq!(
        a_records(&stub, "svc.bad.test"),
        answers(&["10.5.1.1", "10.5.1.3"])
    );
    assert_eq!(warnings_for(&stub, &web), 1, "{}", stub.logs());

    // a bad node that is fixed is served
    put_set(&c, &root, zone, "notjson", r#"{"A": ["10.5.0.9"]}"#).await;
    eventually_eq(
        "notjson after the fix",
        DEADLINE,
        answers(&["10.5.0.9"]),
        || a_records(&stub, "notjson.bad.test"),
    );
    close_session(c).await;
}
