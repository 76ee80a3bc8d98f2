//! Fleet scale (issue 15), small: a herd of a few stubs that lose their ZooKeeper connection
//! together spread their full re-reads over `--resync-jitter` while following the changes
//! made after the reconnect, serve their map throughout, and end equal to the tree; and a
//! stub whose server dies waits its random part of the reconnect spread, then tries the other
//! servers first.

use std::time::{Duration, Instant};

use crate::support::*;

const ZONE: &str = "fleet.test";
const JITTER: Duration = Duration::from_secs(8);
const DEADLINE: Duration = Duration::from_secs(30);

/// The last wait the stub logged before catching up (or a full read).
fn logged_wait(stub: &Zkdns) -> Option<Duration> {
    let logs = stub.logs();
    let line = logs.lines().rfind(|l| l.contains("(--resync-jitter)"))?;
    let ms = line.split("wait_ms=").nth(1)?.split_whitespace().next()?;
    Some(Duration::from_millis(ms.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_spreads_its_rereads_and_follows_changes_meanwhile() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let writer = zk.client().await;
    put_root(&writer, &root).await;
    put_zone(&writer, &root, ZONE, "{}").await;
    put_set(&writer, &root, ZONE, "web", r#"{"A": ["10.0.0.1"]}"#).await;
    put_set(&writer, &root, ZONE, "db", r#"{"A": ["10.0.0.5"]}"#).await;
    let proxy = TcpProxy::start(zk.addr());
    let jitter = format!("{}s", JITTER.as_secs());
    let stubs: Vec<Zkdns> = (0..5)
        .map(|_| {
            let stub = Zkdns::serve_at(
                &proxy.connect_string(),
                &root,
                &["--resync-jitter", &jitter, "--metrics", "127.0.0.1:0"],
            );
            stub.wait_synced();
            stub
        })
        .collect();
    for stub in &stubs {
        // the first read does not wait
        assert!(logged_wait(stub).is_none(), "{}", stub.logs());
        assert_eq!(stub.a_of("web.fleet.test").await, vec!["10.0.0.1"]);
    }

    // every stub loses its connection (not its session); a change falls in the gap
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let web = set_path(&root, ZONE, "web");
    writer
        .set_data(&web, br#"{"A": ["10.0.0.2"]}"#, None)
        .await
        .unwrap();
    proxy.restore();
    let mut waits = Vec::new();
    for stub in &stubs {
        let deadline = Instant::now() + DEADLINE;
        let wait = loop {
            if let Some(w) = logged_wait(stub) {
                break w;
            }
            assert!(
                Instant::now() < deadline,
                "no wait logged:\n{}",
                stub.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(wait <= JITTER, "{wait:?}");
        waits.push(wait);
    }
    let (longest, at) = waits
        .iter()
        .enumerate()
        .map(|(i, w)| (*w, i))
        .max()
        .unwrap();
    assert!(
        waits.iter().any(|w| *w != longest),
        "every stub waits the same: {waits:?}"
    );

    // a change after the reconnect is followed at once, even by a stub still waiting; the one
    // made in the gap waits for the full read, and meanwhile the map is marked stale
    let db = set_path(&root, ZONE, "db");
    writer
        .set_data(&db, br#"{"A": ["10.0.0.6"]}"#, None)
        .await
        .unwrap();
    let last = &stubs[at];
    if longest > JITTER / 2 {
        last.until_answers("db.fleet.test", &["10.0.0.6"], Duration::from_millis(1500))
            .await;
        assert_eq!(
            last.a_of("web.fleet.test").await,
            vec!["10.0.0.1"],
            "read before its time"
        );
        let metrics = scrape_metrics(metrics_address(last));
        assert_eq!(metrics.get("zkdns_stale"), Some(&1.0), "{metrics:?}");
    }
    // in the end every stub equals the tree, having read it once more
    for stub in &stubs {
        stub.until_answers("web.fleet.test", &["10.0.0.2"], JITTER + DEADLINE)
            .await;
        stub.until_answers("db.fleet.test", &["10.0.0.6"], DEADLINE)
            .await;
        let metrics = scrape_metrics(metrics_address(stub));
        assert_eq!(metrics.get("zkdns_stale"), Some(&0.0), "{metrics:?}");
        assert_eq!(
            metrics.get("zkdns_zookeeper_resyncs_total"),
            Some(&2.0),
            "{metrics:?}"
        );
    }
    close_session(writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_whose_server_dies_tries_the_others_first() {
    let mut ens = Ensemble::start();
    ens.wait_serving(Duration::from_secs(60)).unwrap();
    let root = unique_root();
    let writer = ens.client(Duration::from_secs(10)).await;
    put_root(&writer, &root).await;
    put_zone(&writer, &root, ZONE, "{}").await;
    put_set(&writer, &root, ZONE, "web", r#"{"A": ["10.0.0.1"]}"#).await;
    close_session(writer).await;
    let start = |_| {
        let mut cmd = serve_command(zkdns_cmd_at(&ens.connect_string(), &root), &[]);
        cmd.env("RUST_LOG", "info,zookeeper_client=debug");
        let stub = Zkdns::try_start(cmd).unwrap();
        stub.wait_synced();
        stub
    };
    let stubs: Vec<Zkdns> = (0..4).map(start).collect();
    let node_of = |stub: &Zkdns| {
        let logs = stub.logs();
        let session = logs
            .lines()
            .filter_map(|l| l.split("ZooKeeper session established session=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .next_back()
            .expect("a session")
            .to_string();
        ens.node_of_session(&session)
            .expect("a node holds the session")
    };
    // the server holding most of the stubs (a follower if it can be: no election in the way)
    let nodes: Vec<usize> = stubs.iter().map(node_of).collect();
    let doomed = (0..ens.len())
        .max_by_key(|&i| {
            (
                nodes.iter().filter(|&&n| n == i).count(),
                ens.leader() != Some(i),
            )
        })
        .unwrap();
    let moved: Vec<&Zkdns> = stubs
        .iter()
        .zip(&nodes)
        .filter(|(_, n)| **n == doomed)
        .map(|(s, _)| s)
        .collect();
    let marks: Vec<usize> = moved.iter().map(|s| s.logs().len()).collect();
    let dead = ens.addr(doomed);
    ens.kill(doomed);
    for (stub, mark) in moved.iter().zip(marks) {
        let deadline = Instant::now() + DEADLINE;
        let after = loop {
            let logs = stub.logs();
            let after = logs[mark..].to_string();
            if after.contains("succeeds to establish session to") {
                break after;
            }
            assert!(Instant::now() < deadline, "no new connection:\n{logs}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let first = after
            .lines()
            .find(|l| l.contains("connecting to "))
            .unwrap_or_default()
            .to_string();
        assert!(
            !first.contains(&dead.to_string()),
            "the first server tried was the one that died ({dead}):\n{after}"
        );
        // it waited its random part of a fifth of the session timeout (6 s) first
        let waited: u64 = after
            .lines()
            .find_map(|l| l.split("reconnecting in ").nth(1))
            .and_then(|rest| rest.split("ms").next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no reconnect spread logged:\n{after}"));
        assert!(waited <= 1200, "waited {waited} ms:\n{after}");
        assert_eq!(stub.a_of("web.fleet.test").await, vec!["10.0.0.1"]);
    }
}
