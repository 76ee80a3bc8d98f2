//! Changes in ZooKeeper reach DNS answers by watch: record sets created, updated and deleted,
//! ephemeral members joining and leaving with their sessions, zones appearing after the start.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

/// Generous: a change shows up in milliseconds, the deadline only guards against hangs.
const DEADLINE: Duration = Duration::from_secs(15);

/// What a name answers right now: rcode and the sorted addresses of type `rtype`.
fn observe(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Option<(ResponseCode, Vec<String>)> {
    let m = try_query(server, name, rtype, QueryOptions::default())?;
    Some((rcode(&m), addresses(&m)))
}

/// Waits until `name`/`rtype` answers `code` with exactly the addresses `want`.
fn wait_answer(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    code: ResponseCode,
    want: &[&str],
) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually_eq(
        &format!("{name} {rtype}"),
        DEADLINE,
        Some((code, want)),
        || observe(server, name, rtype),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_set_create_update_delete_propagate() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, "svc.test", "").await;
    put_set(&c, &root, "svc.test", "other", r#"{"A": ["10.2.0.9"]}"#).await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let s = stub.addr();
    wait_answer(
        s,
        "web.svc.test",
        RecordType::A,
        ResponseCode::NXDomain,
        &[],
    );

    put_set(&c, &root, "svc.test", "web", r#"{"A": ["10.2.0.1"]}"#).await;
    wait_answer(
        s,
        "web.svc.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.2.0.1"],
    );

    put_set(
        &c,
        &root,
        "svc.test",
        "web",
        r#"{"A": ["10.2.0.2", "10.2.0.3"], "AAAA": ["fd00::2"]}"#,
    )
    .await;
    wait_answer(
        s,
        "web.svc.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.2.0.2", "10.2.0.3"],
    );
    wait_answer(
        s,
        "web.svc.test",
        RecordType::AAAA,
        ResponseCode::NoError,
        &["fd00::2"],
    );

    delete(&c, &set_path(&root, "svc.test", "web")).await;
    wait_answer(
        s,
        "web.svc.test",
        RecordType::A,
        ResponseCode::NXDomain,
        &[],
    );
    // the neighbour never moved
    wait_answer(
        s,
        "other.svc.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.2.0.9"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_members_join_and_leave_with_their_sessions() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, "svc.test", "").await;
    put_set(&c, &root, "svc.test", "api", "").await;
    put_set(&c, &root, "svc.test", "mixed", r#"{"A": ["10.3.1.1"]}"#).await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let s = stub.addr();
    // a record set without records and without members: the name exists, NODATA
    wait_answer(s, "api.svc.test", RecordType::A, ResponseCode::NoError, &[]);

    // two containers register, each in its own session
    let first = zk.client().await;
    add_member(
        &first,
        &root,
        "svc.test",
        "api",
        "m1",
        r#"{"A": ["10.3.0.1"]}"#,
    )
    .await;
    wait_answer(
        s,
        "api.svc.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.3.0.1"],
    );
    let second = zk.client().await;
    add_member(
        &second,
        &root,
        "svc.test",
        "api",
        "m2",
        r#"{"A": ["10.3.0.2"], "AAAA": ["fd00::3:2"]}"#,
    )
    .await;
    add_member(
        &second,
        &root,
        "svc.test",
        "mixed",
        "m2",
        r#"{"A": ["10.3.1.2"]}"#,
    )
    .await;
    wait_answer(
        s,
        "api.svc.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.3.0.1", "10.3.0.2"],
    );
    wait_answer(
        s,
        "api.svc.test",
        RecordType::AAAA,
        ResponseCode::NoError,
        &["fd00::3:2"],
    );
    // members join the set's own records
    wait_answer(
        s,
        "mixed.svc.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.3.1.1", "10.3.1.2"],
    );

    // the first container's session ends: its address goes, the other stays
    close_session(first).await;
    wait_answer(
        s,
        "api.svc.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.3.0.2"],
    );

    // the second goes too: the persistent set remains, with no records (NODATA)
    close_session(second).await;
    wait_answer(s, "api.svc.test", RecordType::A, ResponseCode::NoError, &[]);
    wait_answer(
        s,
        "api.svc.test",
        RecordType::AAAA,
        ResponseCode::NoError,
        &[],
    );
    wait_answer(
        s,
        "mixed.svc.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.3.1.1"],
    );
    let m = query_blocking(s, "api.svc.test", RecordType::A);
    assert_eq!(
        authority_soa(&m).len(),
        1,
        "NODATA carries the SOA: {}",
        summary(&m)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_created_after_start_are_served() {
    let zk = ZooKeeper::shared();
    // nothing under the root at all, not even <root>/zones
    let root = unique_root();
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let s = stub.addr();
    let m = query_blocking(s, "web.late.test", RecordType::A);
    assert_eq!(
        rcode(&m),
        ResponseCode::Refused,
        "not ours yet, no upstream: {}",
        summary(&m)
    );

    let c = zk.client().await;
    put_zone(&c, &root, "late.test", "").await;
    put_set(&c, &root, "late.test", "web", r#"{"A": ["10.4.0.1"]}"#).await;
    wait_answer(
        s,
        "web.late.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.4.0.1"],
    );
    let m = query_blocking(s, "nope.late.test", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::NXDomain, "{}", summary(&m));
    assert!(m.metadata.authoritative);

    // a second zone, written in one go with its record set
    put_set(&c, &root, "later.test", "api", r#"{"A": ["10.4.1.1"]}"#).await;
    wait_answer(
        s,
        "api.later.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.4.1.1"],
    );

    // deleting a zone makes its names someone else's again
    delete(&c, &zone_path(&root, "late.test")).await;
    wait_answer(
        s,
        "web.late.test",
        RecordType::A,
        ResponseCode::Refused,
        &[],
    );
    wait_answer(
        s,
        "api.later.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.4.1.1"],
    );
}

/// The apex SOA as (TTL, serial, minimum).
fn soa(server: SocketAddr, zone: &str) -> Option<(u32, u32, u32)> {
    let m = try_query(server, zone, RecordType::SOA, QueryOptions::default())?;
    m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some((r.ttl, soa.serial, soa.minimum)),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_settings_and_the_default_serial_follow_changes() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, "svc.test", "").await;
    put_set(&c, &root, "svc.test", "web", r#"{"A": ["10.2.1.1"]}"#).await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let s = stub.addr();
    let (ttl, serial, _) = soa(s, "svc.test").expect("apex SOA");
    assert_eq!(ttl, 5, "default zone TTL");

    // without an explicit serial, it comes from the time of the zone's last change: a change
    // a second later must raise it
    std::thread::sleep(Duration::from_millis(1100));
    put_set(&c, &root, "svc.test", "web", r#"{"A": ["10.2.1.2"]}"#).await;
    wait_answer(
        s,
        "web.svc.test",
        RecordType::A,
        ResponseCode::NoError,
        &["10.2.1.2"],
    );
    let (_, later, _) = soa(s, "svc.test").expect("apex SOA");
    assert!(
        later > serial,
        "serial {serial} did not grow after a change ({later})"
    );

    // settings written later take effect: TTL, SOA fields, the records' default TTL
    put_zone(
        &c,
        &root,
        "svc.test",
        r#"{"ttl": 120, "soa": {"serial": 77, "minimum": 30}}"#,
    )
    .await;
    eventually_eq(
        "SOA after new settings",
        DEADLINE,
        Some((120, 77, 30)),
        || soa(s, "svc.test"),
    );
    let m = query_blocking(s, "web.svc.test", RecordType::A);
    assert_eq!(
        canonical(&m.answers),
        vec!["web.svc.test. 120 IN A 10.2.1.2"]
    );
    let m = query_blocking(s, "nope.svc.test", RecordType::A);
    assert_eq!(
        authority_soa(&m)
            .first()
            .and_then(|s| s.split_whitespace().nth(1).map(str::to_string)),
        Some("30".to_string()),
        "negative TTL = min(ttl, minimum): {}",
        summary(&m)
    );
    close_session(c).await;
}
