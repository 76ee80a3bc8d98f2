//! Security (issue 6, item 7), against real servers: ZooKeeper digest credentials and the ACLs
//! of the nodes that `import`, `set` and `register` create (anyone reads, only the owner
//! writes), the credentials never shown, TLS to ZooKeeper, the per-client query cap, and
//! upstream replies accepted only when address, port, ID and question match (RFC 5452).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use zookeeper_client::{Acl, AuthId, CreateMode, Permission};

use crate::support::*;

const ZONE: &str = "sec.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_lets_anyone_read_and_only_the_owner_write() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let secret = password();
    let credentials = format!("zkdns-owner:{secret}");
    let dir = tempfile::tempdir().unwrap();
    let file = auth_file(dir.path(), &credentials, 0o600);
    let file_arg = file.to_str().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "10.0.0.5 db\n").unwrap();
    let mut outputs = Vec::new();

    // import with the file, set with the environment variable, register with either
    let r = run(
        zkdns_cmd(zk, &root),
        &[
            "--zk-auth-file",
            file_arg,
            "import",
            "--format",
            "hosts",
            "--zone",
            ZONE,
            hosts.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "import: {}", r.text());
    outputs.push(r.text());
    let env_auth = [("ZKDNS_ZK_AUTH", credentials.as_str())];
    let r = run(
        zkdns_cmd(zk, &root),
        &["set", "api.sec.test", "A", "10.0.0.9"],
        &env_auth,
    );
    assert_eq!(r.code, 0, "set: {}", r.text());
    outputs.push(r.text());
    let log = dir.path().join("register.log");
    let mut cmd = zkdns_cmd(zk, &root);
    cmd.args([
        "register",
        "web.sec.test",
        "--addr",
        "10.0.0.7",
        "--id",
        "m1",
    ])
    .env("ZKDNS_ZK_AUTH", &credentials)
    .env("RUST_LOG", "debug")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap());
    let _register = Guarded::spawn("zkdns register", cmd);

    let anon = zk.client().await;
    let member = format!("{}/m1", set_path(&root, ZONE, "web"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while anon.check_stat(&member).await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "register made no member:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // the server's own digest of the credentials: an `auth` ACL is expanded to it
    let owner = client_with_auth(zk, &credentials).await;
    let probe = format!("{root}/probe");
    owner
        .create(
            &probe,
            b"",
            &CreateMode::Persistent.with_acls(zookeeper_client::Acls::creator_all()),
        )
        .await
        .unwrap();
    let (server_acl, _) = owner.get_acl(&probe).await.unwrap();
    assert_eq!(server_acl.len(), 1, "{server_acl:?}");
    let expected = vec![
        Acl::new(Permission::ALL, server_acl[0].auth_id().clone()),
        Acl::new(Permission::READ, AuthId::anyone()),
    ];
    assert_eq!(server_acl[0].scheme(), "digest");
    assert!(server_acl[0].id().starts_with("zkdns-owner:"));
    owner.delete(&probe, None).await.unwrap();

    let zone = zone_path(&root, ZONE);
    let nodes = [
        root.clone(),
        format!("{root}/zones"),
        zone.clone(),
        set_path(&root, ZONE, "db"),
        set_path(&root, ZONE, "api"),
        set_path(&root, ZONE, "web"),
    ];
    for node in &nodes {
        // (ZooKeeper shows a digest ACL's hash only to those with ADMIN on the node)
        let (acl, _) = owner.get_acl(node).await.unwrap();
        assert_eq!(acl, expected, "ACL of {node}");
        // anyone reads
        anon.get_data(node).await.unwrap();
    }
    // a member: its registrar may change it, not its ACL (it could open it to others)
    // (its hash hidden: no one holds ADMIN there)
    let (acl, _) = owner.get_acl(&member).await.unwrap();
    assert_eq!(acl.len(), 2, "ACL of {member}: {acl:?}");
    assert_eq!(acl[0].permission(), Permission::READ | Permission::WRITE);
    assert_eq!(acl[0].scheme(), "digest");
    assert!(acl[0].id().starts_with("zkdns-owner:"), "{acl:?}");
    assert_eq!(acl[1], Acl::new(Permission::READ, AuthId::anyone()));
    anon.get_data(&member).await.unwrap();
    // nobody else writes, creates or deletes
    let db = set_path(&root, ZONE, "db");
    let denied = |what: &str, r: Result<(), zookeeper_client::Error>| {
        assert!(
            matches!(r, Err(zookeeper_client::Error::NoAuth)),
            "{what} without credentials: {r:?}"
        );
    };
    denied("set_data", anon.set_data(&db, b"{}", None).await.map(drop));
    denied("delete", anon.delete(&db, None).await);
    denied("delete member", anon.delete(&member, None).await);
    let open = CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    denied(
        "create a set",
        anon.create(&format!("{zone}/evil"), b"{}", &open)
            .await
            .map(drop),
    );
    denied(
        "create a zone",
        anon.create(&format!("{root}/zones/evil.test"), b"", &open)
            .await
            .map(drop),
    );
    // nor does zkdns without the credentials, and it says why
    let r = run(
        zkdns_cmd(zk, &root),
        &["set", "db.sec.test", "A", "10.6.6.6"],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.text());
    assert!(r.stderr.contains("not authorized"), "{}", r.stderr);
    let r = run(zkdns_cmd(zk, &root), &["rm", "db.sec.test"], &[]);
    assert_eq!(r.code, 1, "{}", r.text());

    // serve without credentials reads everything
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    for (name, addr) in [
        ("db.sec.test", "10.0.0.5"),
        ("api.sec.test", "10.0.0.9"),
        ("web.sec.test", "10.0.0.7"),
    ] {
        let msg = query(stub.addr(), name, RecordType::A).await;
        assert_eq!(addresses(&msg), vec![addr.to_string()], "{name}");
    }

    // the owner writes and deletes
    owner
        .set_data(&db, br#"{"A": ["10.0.0.50"]}"#, None)
        .await
        .unwrap();
    let r = run(zkdns_cmd(zk, &root), &["rm", "api.sec.test"], &env_auth);
    assert_eq!(r.code, 0, "rm with credentials: {}", r.text());
    outputs.push(r.text());

    // the secret is in no output, not even at trace level (the client library's too)
    let r = run(
        zkdns_cmd(zk, &root),
        &["--zk-auth-file", file_arg, "ls", ZONE],
        &[("RUST_LOG", "trace")],
    );
    assert_eq!(r.code, 0, "{}", r.text());
    assert!(r.stderr.contains("zookeeper_client"), "trace logs expected");
    outputs.push(r.text());
    outputs.push(std::fs::read_to_string(&log).unwrap());
    outputs.push(stub.logs());
    for out in &outputs {
        assert!(!out.contains(&secret), "the password leaked:\n{out}");
    }
    close_session(owner).await;
    close_session(anon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_refuses_exposed_or_ambiguous_credentials() {
    // nothing listens here: a command that got past its configuration would exit 1, not 2
    let dead = dead_addr().to_string();
    let root = unique_root();
    let secret = password();
    let credentials = format!("zkdns:{secret}");
    let dir = tempfile::tempdir().unwrap();
    let exposed = auth_file(dir.path(), &credentials, 0o644);
    let private = auth_file(dir.path(), &credentials, 0o600);
    let hosts_in = dir.path().join("in.hosts");
    std::fs::write(&hosts_in, "10.0.0.5 db\n").unwrap();
    let hosts_out = dir.path().join("hosts");
    let commands: Vec<Vec<&str>> = vec![
        vec!["serve", "--listen", "127.0.0.1:0", "--no-upstream"],
        vec!["check", "--no-upstream"],
        vec!["hosts", "--once", "--file", hosts_out.to_str().unwrap()],
        vec!["register", "web.sec.test", "--addr", "10.0.0.7"],
        vec![
            "import",
            "--format",
            "hosts",
            "--zone",
            ZONE,
            hosts_in.to_str().unwrap(),
        ],
        vec!["set", "db.sec.test", "A", "10.0.0.5"],
        vec!["rm", "db.sec.test"],
        vec!["ls"],
        vec!["export", ZONE],
    ];
    let session = ["--zk-session-timeout", "1s"];
    for args in &commands {
        let mut cmd = zkdns_cmd_at(&dead, &root);
        cmd.args(session);
        let r = run(
            cmd,
            &[&["--zk-auth-file", exposed.to_str().unwrap()], &args[..]].concat(),
            &[],
        );
        assert_eq!(r.code, 2, "{args:?} with a 0644 file: {}", r.text());
        assert!(
            r.stderr.contains("chmod 600") && r.stderr.contains("mode 0644"),
            "{args:?}: {}",
            r.stderr
        );
        let mut cmd = zkdns_cmd_at(&dead, &root);
        cmd.args(session);
        let r = run(
            cmd,
            &[&["--zk-auth-file", private.to_str().unwrap()], &args[..]].concat(),
            &[("ZKDNS_ZK_AUTH", &credentials)],
        );
        assert_eq!(r.code, 2, "{args:?} with file and variable: {}", r.text());
        assert!(r.stderr.contains("exclude each other"), "{}", r.stderr);
        let mut cmd = zkdns_cmd_at(&dead, &root);
        cmd.args(session);
        let r = run(cmd, args, &[("ZKDNS_ZK_AUTH", &secret)]);
        assert_eq!(
            r.code,
            2,
            "{args:?} with a variable without ':': {}",
            r.text()
        );
        assert!(r.stderr.contains("ZKDNS_ZK_AUTH"), "{}", r.stderr);
        for out in [&r.stdout, &r.stderr] {
            assert!(!out.contains(&secret), "{args:?} shows the secret: {out}");
        }
    }
    // a missing file: exit 2, naming the flag, the path and the cause once
    let missing = dir.path().join("missing");
    let r = run(
        zkdns_cmd_at(&dead, &root),
        &["--zk-auth-file", missing.to_str().unwrap(), "ls"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.text());
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("zkdns: error:"))
        .unwrap_or_default();
    assert!(
        line.contains("--zk-auth-file") && line.contains(missing.to_str().unwrap()),
        "{line}"
    );
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{line}"
    );
    // --help names the variable but has no flag that takes the secret
    let r = run(zkdns_cmd_at(&dead, &root), &["serve", "--help"], &[]);
    assert!(r.stdout.contains("ZKDNS_ZK_AUTH"), "{}", r.stdout);
    assert!(!r.stdout.contains("--zk-auth "), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_zookeeper_with_a_client_certificate() {
    let (zk, tls) = start_tls_zookeeper();
    let root = unique_root();
    let secure = format!("127.0.0.1:{}", zk.secure_port());
    let ca = tls.path("ca.pem");
    let cert = tls.path("client.pem");
    let key = tls.path("client.key");
    let tls_args = [
        "--zk-tls-ca",
        ca.to_str().unwrap(),
        "--zk-tls-cert",
        cert.to_str().unwrap(),
        "--zk-tls-key",
        key.to_str().unwrap(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "10.0.0.5 db\n").unwrap();

    let mut cmd = zkdns_cmd_at(&secure, &root);
    cmd.args(tls_args);
    let r = run(
        cmd,
        &[
            "import",
            "--format",
            "hosts",
            "--zone",
            ZONE,
            hosts.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "import over TLS: {}", r.text());
    // it is there, seen through the plain port
    let plain = zk.client().await;
    assert!(
        plain
            .check_stat(&set_path(&root, ZONE, "db"))
            .await
            .unwrap()
            .is_some()
    );

    let stub = Zkdns::serve_at(&secure, &root, &tls_args);
    stub.wait_synced();
    let msg = query(stub.addr(), "db.sec.test", RecordType::A).await;
    assert_eq!(addresses(&msg), vec!["10.0.0.5"]);
    // and follows changes made elsewhere
    put_set(&plain, &root, ZONE, "web", r#"{"A": ["10.0.0.7"]}"#).await;
    let server = stub.addr();
    eventually(Duration::from_secs(10), || {
        let msg = try_query(
            server,
            "web.sec.test",
            RecordType::A,
            QueryOptions::default(),
        )?;
        (addresses(&msg) == ["10.0.0.7"]).then_some(())
    });
    close_session(plain).await;

    // a server whose certificate the CA did not sign is never trusted
    let other = tls.path("other-ca.pem");
    let mut cmd = zkdns_cmd_at(&secure, &root);
    cmd.args([
        "--zk-session-timeout",
        "2s",
        "--zk-tls-ca",
        other.to_str().unwrap(),
    ]);
    cmd.args(&tls_args[2..]);
    let r = run(cmd, &["ls"], &[]);
    assert_eq!(r.code, 1, "wrong CA: {}", r.text());
    assert!(r.stderr.contains("cannot reach ZooKeeper"), "{}", r.stderr);
    // without a client certificate, this server (ssl.clientAuth=need) refuses the handshake
    let mut cmd = zkdns_cmd_at(&secure, &root);
    cmd.args(["--zk-session-timeout", "2s"]);
    cmd.args(&tls_args[..2]);
    let r = run(cmd, &["ls"], &[]);
    assert_eq!(r.code, 1, "no client certificate: {}", r.text());
    // a key others can read is refused before anything is sent
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = zkdns_cmd_at(&secure, &root);
    cmd.args(tls_args);
    let r = run(cmd, &["ls"], &[]);
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(r.stderr.contains("--zk-tls-key"), "{}", r.stderr);
}

/// Queries `name` A `n` times from `socket`, 20 at a time every 5 ms (4000/s, far over the
/// caps here, but no loss in socket buffers), reading replies as they come and for `wait`
/// after the last; returns how many queries were answered.
fn burst(socket: &UdpSocket, server: SocketAddr, name: &str, n: u16, wait: Duration) -> usize {
    let mut query = build_query(name, RecordType::A, QueryOptions::default())
        .to_vec()
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut buf = [0u8; 4096];
    let mut drain = |seen: &mut std::collections::HashSet<u16>, until: Instant| {
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            if let Ok((len, _)) = socket.recv_from(&mut buf) {
                if len >= 2 {
                    seen.insert(u16::from_be_bytes([buf[0], buf[1]]));
                }
            }
        }
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(20) {
        for &id in chunk {
            query[..2].copy_from_slice(&id.to_be_bytes());
            socket.send_to(&query, server).unwrap();
        }
        drain(&mut seen, Instant::now() + Duration::from_millis(5));
    }
    drain(&mut seen, Instant::now() + wait);
    seen.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_query_cap_is_dropped_and_loopback_is_not() {
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(reason) => {
            eprintln!("skipped: cannot create a network namespace: {reason}");
            return;
        }
    };
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.0.0.7"]}"#).await;
    close_session(c).await;
    let listen = format!("{}:0,127.0.0.1:0", ns.host_ip());
    let stub = Zkdns::serve_ready(
        zk,
        &root,
        &[
            "--listen",
            &listen,
            "--allow",
            &ns.subnet(),
            "--max-qps-per-client",
            "50",
        ],
    );
    let outside = stub.addr();
    assert_eq!(outside.ip(), ns.host_ip());
    let loopback: SocketAddr = stub
        .logs()
        .lines()
        .filter_map(|l| l.split("listening for UDP on ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .find(|a: &SocketAddr| a.ip().is_loopback())
        .expect("the loopback listener");

    let socket = ns.run_inside(|| UdpSocket::bind((ns.ns_ip(), 0)).unwrap());
    // 400 in about 0.1 s: a burst of 50, and 50/s after that
    let answered = burst(
        &socket,
        outside,
        "web.sec.test",
        400,
        Duration::from_millis(500),
    );
    assert!(
        (50..=100).contains(&answered),
        "{answered} of 400 answered with a cap of 50/s"
    );
    assert!(
        stub.wait_log(
            "sends more than --max-qps-per-client 50",
            Duration::from_secs(5)
        ),
        "{}",
        stub.logs()
    );
    // a second burst right away: the log line is not repeated
    burst(
        &socket,
        outside,
        "web.sec.test",
        400,
        Duration::from_millis(500),
    );
    assert_eq!(
        stub.count_lines(&["--max-qps-per-client"]),
        1,
        "{}",
        stub.logs()
    );
    // once the client slows down, it is answered again
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        burst(
            &socket,
            outside,
            "web.sec.test",
            10,
            Duration::from_millis(500)
        ),
        10
    );
    // loopback (the stub's own container) is never capped
    let local = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let answered = burst(
        &local,
        loopback,
        "web.sec.test",
        400,
        Duration::from_millis(500),
    );
    assert_eq!(answered, 400, "loopback must not be capped");
}

/// The end of the question section of a query (one question).
fn question_end(packet: &[u8]) -> usize {
    let mut at = 12;
    while packet[at] != 0 {
        at += 1 + packet[at] as usize;
    }
    at + 1 + 4
}

/// A reply with `id`, the question as given, and one A record `addr`.
fn reply(id: u16, question: &[u8], addr: [u8; 4], response: bool) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&[
        if response { 0x81 } else { 0x01 },
        0x80,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        0,
    ]);
    out.extend_from_slice(question);
    out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    out.extend_from_slice(&addr);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_upstream_replies_are_ignored() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    // the spoofers: another port on the same address, the same port on another address
    let other_port = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other_addr = UdpSocket::bind(("127.0.0.2", up_addr.port())).ok();
    let rounds = 5;
    let fake = std::thread::spawn(move || {
        upstream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 4096];
        for _ in 0..rounds {
            let Ok((len, stub)) = upstream.recv_from(&mut buf) else {
                return;
            };
            let q = &buf[..len];
            let id = u16::from_be_bytes([q[0], q[1]]);
            let question = q[12..question_end(q)].to_vec();
            let mut wrong_question = question.clone();
            wrong_question[1] ^= 0x01; // another first letter: another name
            let spoofs = [
                reply(id.wrapping_add(1), &question, [192, 0, 2, 66], true),
                reply(id, &wrong_question, [192, 0, 2, 67], true),
                reply(id, &question, [192, 0, 2, 68], false),
            ];
            for s in &spoofs {
                upstream.send_to(s, stub).unwrap();
            }
            let right = reply(id, &question, [192, 0, 2, 69], true);
            other_port.send_to(&right, stub).unwrap();
            if let Some(sock) = &other_addr {
                sock.send_to(&right, stub).unwrap();
            }
            // the real answer comes last, after every spoof has arrived
            std::thread::sleep(Duration::from_millis(50));
            upstream
                .send_to(&reply(id, &question, [192, 0, 2, 80], true), stub)
                .unwrap();
        }
    });
    let root = unique_root();
    let stub = Zkdns::serve(
        ZooKeeper::shared(),
        &root,
        &["--upstream", &up_addr.to_string()],
    );
    for i in 0..rounds {
        let name = format!("host{i}.example.org");
        let msg = query(stub.addr(), &name, RecordType::A).await;
        assert_eq!(
            addresses(&msg),
            vec!["192.0.2.80"],
            "{name}: a spoofed reply got through: {}",
            summary(&msg)
        );
    }
    fake.join().unwrap();
}
