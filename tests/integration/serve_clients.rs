//! Real clients in real setups: the system resolver (glibc, `getent`) with a resolv.conf that
//! names the stub, and clients outside loopback, which are refused unless `--allow` names
//! their network. Both need root (port 53, mount and network namespaces); without it they
//! skip with the reason printed.

use std::net::SocketAddr;

use crate::support::*;

const ZONE: &str = "cluster.test";

async fn root_with_zone() -> String {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.11.0.1"]}"#).await;
    put_set(
        &c,
        &root,
        ZONE,
        "api",
        r#"{"A": ["10.11.0.2", "10.11.0.3"]}"#,
    )
    .await;
    put_set(&c, &root, ZONE, "www", r#"{"CNAME": "web"}"#).await;
    close_session(c).await;
    root
}

/// The address column of getent's output, sorted and deduplicated.
fn getent_addresses(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_resolver_reaches_the_stub_through_resolv_conf() {
    if !is_root() {
        eprintln!("skipped: needs root for port 53 and a mount namespace");
        return;
    }
    let Some(listen) = free_port_53() else {
        eprintln!("skipped: no 127.53.x.y address with port 53 free");
        return;
    };
    let upstream = Upstream::start();
    let root = root_with_zone().await;
    let stub = Zkdns::serve_ready(
        ZooKeeper::shared(),
        &root,
        &[
            "--listen",
            &listen.to_string(),
            "--upstream",
            &upstream.addr().to_string(),
        ],
    );
    assert_eq!(stub.addr(), listen);
    let dir = tempfile::tempdir().unwrap();
    let SocketAddr::V4(v4) = listen else {
        unreachable!()
    };
    let ip = *v4.ip();

    let (code, out) = getent(dir.path(), ip, "hosts web.cluster.test");
    assert_eq!(code, 0, "getent hosts web.cluster.test:\n{out}");
    assert!(
        out.starts_with("10.11.0.1") && out.contains("web.cluster.test"),
        "{out}"
    );
    let (code, out) = getent(dir.path(), ip, "ahostsv4 api.cluster.test");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        getent_addresses(&out),
        vec!["10.11.0.2", "10.11.0.3"],
        "{out}"
    );
    // a CNAME: glibc follows it and reports the alias
    let (code, out) = getent(dir.path(), ip, "hosts www.cluster.test");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("10.11.0.1"), "{out}");
    // NXDOMAIN: getent's "not found" (exit 2)
    let (code, out) = getent(dir.path(), ip, "hosts nope.cluster.test");
    assert_eq!(code, 2, "nope.cluster.test should not resolve:\n{out}");
    // a name outside the zone, forwarded to the upstream
    let (code, out) = getent(dir.path(), ip, "hosts www.upstream.test");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("192.0.2.80"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_loopback_are_refused_unless_allowed() {
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(reason) => {
            eprintln!("skipped: cannot create a network namespace: {reason}");
            return;
        }
    };
    let root = root_with_zone().await;
    let listen = format!("{}:0", ns.host_ip());
    let dig_from_ns = |server: SocketAddr, extra: &[&str]| {
        let mut args = vec![
            "dig".to_string(),
            format!("@{}", server.ip()),
            "-p".to_string(),
            server.port().to_string(),
            "+time=2".to_string(),
            "+tries=1".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        String::from_utf8_lossy(&ns.exec(&args).stdout).into_owned()
    };

    // without --allow: refused, over UDP and TCP
    let stub = Zkdns::serve_ready(ZooKeeper::shared(), &root, &["--listen", &listen]);
    for extra in [&["web.cluster.test"][..], &["+tcp", "web.cluster.test"]] {
        let out = dig_from_ns(stub.addr(), extra);
        assert_eq!(
            dig_status(&out).as_deref(),
            Some("REFUSED"),
            "{extra:?}:\n{out}"
        );
        assert!(!out.contains("10.11.0.1"), "{out}");
    }
    // names outside the zones too (nothing is forwarded for them)
    let out = dig_from_ns(stub.addr(), &["example.com"]);
    assert_eq!(dig_status(&out).as_deref(), Some("REFUSED"), "{out}");
    drop(stub);

    // with --allow for the namespace's network: answered
    let subnet = ns.subnet();
    let stub = Zkdns::serve_ready(
        ZooKeeper::shared(),
        &root,
        &["--listen", &listen, "--allow", &subnet],
    );
    for extra in [&["web.cluster.test"][..], &["+tcp", "web.cluster.test"]] {
        let out = dig_from_ns(stub.addr(), extra);
        assert_eq!(
            dig_status(&out).as_deref(),
            Some("NOERROR"),
            "{extra:?}:\n{out}"
        );
        assert!(out.contains("10.11.0.1"), "{out}");
    }
    // an --allow for some other network does not let the namespace in
    drop(stub);
    let stub = Zkdns::serve_ready(
        ZooKeeper::shared(),
        &root,
        &["--listen", &listen, "--allow", "192.0.2.0/24"],
    );
    let out = dig_from_ns(stub.addr(), &["web.cluster.test"]);
    assert_eq!(dig_status(&out).as_deref(), Some("REFUSED"), "{out}");
}
