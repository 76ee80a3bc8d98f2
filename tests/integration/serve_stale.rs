//! Serve-stale (RFC 8767): while ZooKeeper is away the stub answers from its last map with
//! TTLs capped by `--stale-ttl` and, for EDNS clients, Extended DNS Error 3 "Stale Answer"
//! (RFC 8914); past `--max-stale` it answers SERVFAIL with EDE 22 "No Reachable Authority";
//! once ZooKeeper is back, answers are fresh again.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(30);
const ZONE: &str = "stale.test";
/// OPT RDATA of an Extended DNS Error option with INFO-CODE 3 (Stale Answer), no text.
const EDE_STALE: [u8; 6] = [0, 15, 0, 2, 0, 3];
const EDE_NO_AUTHORITY: [u8; 6] = [0, 15, 0, 2, 0, 22];

fn ask(stub: &Zkdns, edns: bool) -> Option<Vec<u8>> {
    query_raw(
        stub.addr(),
        &format!("web.{ZONE}"),
        RecordType::A,
        QueryOptions {
            edns: edns.then_some(1232),
            ..QueryOptions::default()
        },
    )
}

fn ttls(reply: &[u8]) -> Vec<u32> {
    decode(reply).answers.iter().map(|r| r.ttl).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_are_marked_capped_and_bounded() {
    let mut zk = ZooKeeper::start();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    put_set(
        &c,
        &root,
        ZONE,
        "web",
        r#"{"ttl": 300, "A": ["10.30.0.1"]}"#,
    )
    .await;
    close_session(c).await;
    let stub = Zkdns::serve_ready(
        &zk,
        &root,
        &[
            "--stale-ttl",
            "7s",
            "--max-stale",
            "8s",
            "--zk-session-timeout",
            "2s",
        ],
    );

    let fresh = ask(&stub, true).expect("fresh answer");
    assert_eq!(ttls(&fresh), vec![300]);
    assert!(
        !fresh.ends_with(&EDE_STALE),
        "a fresh answer is not marked stale"
    );

    zk.stop();
    let stale = eventually(DEADLINE, || {
        let reply = ask(&stub, true)?;
        reply.ends_with(&EDE_STALE).then_some(reply)
    });
    let msg = decode(&stale);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&msg), vec!["10.30.0.1".to_string()]);
    assert_eq!(ttls(&stale), vec![7], "stale TTL is capped by --stale-ttl");
    // without EDNS there is no OPT to carry the EDE, but the TTL is still capped
    let plain = ask(&stub, false).expect("stale answer without EDNS");
    assert_eq!(ttls(&plain), vec![7]);
    assert!(decode(&plain).edns.is_none());
    assert!(stub.logs().contains("serving the last map (stale)"));

    // past --max-stale: SERVFAIL, EDE 22
    let too_old = eventually(DEADLINE, || {
        let reply = ask(&stub, true)?;
        (decode(&reply).metadata.response_code == ResponseCode::ServFail).then_some(reply)
    });
    assert!(too_old.ends_with(&EDE_NO_AUTHORITY), "{too_old:?}");

    zk.start_again();
    let back = eventually(DEADLINE, || {
        let reply = ask(&stub, true)?;
        (ttls(&reply) == [300]).then_some(reply)
    });
    assert!(!back.ends_with(&EDE_STALE));
}
