//! The zone tooling against a real ZooKeeper, through the real binary: `import` of zone files,
//! hosts files and JSON maps, from files or a znode (idempotent, dry runs, bad lines, pruning,
//! batching, the progress bar), `export` round trips of every example in zones/, `set`, `rm`
//! and `ls`, and what `zkdns serve` answers after an import.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use zookeeper_client::{Acls, Client, CreateMode};

use crate::support::*;

const ZONE: &str = "cluster.test";

fn example_zone() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/cluster.test.zone")
}

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_cmd(mut cmd: Command, args: &[&str]) -> Run {
    let out = cmd
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run zkdns");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `zkdns ARGS…` against `zk` under `root`.
fn zkdns(zk: &ZooKeeper, root: &str, args: &[&str]) -> Run {
    run_cmd(zkdns_cmd(zk, root), args)
}

/// Runs it and insists on success.
/// A run refused for a bad input line: exit 2, `zkdns: error: FILE:LINE: ` and `reason` on
/// stderr, nothing on stdout.
fn assert_bad_line(r: &Run, name: &str, file: &Path, line: usize, reason: &str) {
    assert_eq!(r.code, 2, "{name}: {}{}", r.stdout, r.stderr);
    let want = format!("zkdns: error: {}:{line}: ", file.display());
    assert!(
        r.stderr.contains(&want),
        "{name}: want {want:?} in {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(reason),
        "{name}: want {reason:?} in {}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{name}: {}", r.stdout);
}

fn ok(zk: &ZooKeeper, root: &str, args: &[&str]) -> String {
    let r = zkdns(zk, root, args);
    assert_eq!(
        r.code, 0,
        "zkdns {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r.stdout
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A zone file in a temporary directory.
fn zone_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write zone file");
    path
}

/// Every node under `path`: data, data version, modification zxid, children version and
/// ephemeral owner; the way to tell that nothing was written.
type Nodes = BTreeMap<String, (Vec<u8>, i32, i64, i32, i64)>;

async fn nodes_under(client: &Client, path: &str) -> Nodes {
    let mut out = BTreeMap::new();
    let mut todo = vec![path.to_string()];
    while let Some(p) = todo.pop() {
        let Ok((data, stat)) = client.get_data(&p).await else {
            continue;
        };
        out.insert(
            p.clone(),
            (
                data,
                stat.version,
                stat.mzxid,
                stat.cversion,
                stat.ephemeral_owner,
            ),
        );
        if let Ok(children) = client.list_children(&p).await {
            todo.extend(children.into_iter().map(|c| format!("{p}/{c}")));
        }
    }
    out
}

/// The persistent data under a root, keyed by the path below `<root>/zones`.
async fn persistent_data(client: &Client, root: &str) -> BTreeMap<String, String> {
    let prefix = format!("{root}/zones");
    nodes_under(client, &prefix)
        .await
        .into_iter()
        .filter(|(_, n)| n.4 == 0)
        .map(|(p, n)| {
            (
                p[prefix.len()..].to_string(),
                String::from_utf8_lossy(&n.0).into_owned(),
            )
        })
        .collect()
}

fn short(addr: std::net::SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    let mut lines: Vec<String> = dig(addr, &[name, rtype, "+short"])
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The TTLs of the answer records of type `rtype`, as dig shows them.
fn ttls(addr: std::net::SocketAddr, name: &str, rtype: &str) -> Vec<u32> {
    dig(addr, &[name, rtype, "+noall", "+answer"])
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.get(3) == Some(&rtype)).then(|| fields[1].parse().expect("a TTL"))
        })
        .collect()
}

/// What most tests start from: the shared ZooKeeper, a fresh root on it, and a session.
async fn fresh_root() -> (&'static ZooKeeper, String, Client) {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    (zk, root, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_example_zone_is_served_and_a_second_import_writes_nothing() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let file = example_zone();
    let out = ok(zk, &root, &["import", path_str(&file)]);
    assert_eq!(out, "cluster.test: 10 created, 0 updated, 0 deleted\n");

    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let s = stub.addr();
    assert_eq!(short(s, "web.cluster.test", "A"), ["10.0.0.5", "10.0.0.6"]);
    assert_eq!(short(s, "web.cluster.test", "AAAA"), ["fd00::5"]);
    assert_eq!(
        short(s, "api.cluster.test", "A"),
        ["10.0.0.5", "10.0.0.6", "web.cluster.test."]
    );
    assert_eq!(
        short(s, "_http._tcp.web.cluster.test", "SRV"),
        ["0 5 8080 web.cluster.test."]
    );
    assert_eq!(
        short(s, "info.cluster.test", "TXT"),
        ["\"zkdns example zone\" \"served from ZooKeeper\""]
    );
    assert_eq!(short(s, "cluster.test", "MX"), ["10 mail.cluster.test."]);
    assert_eq!(short(s, "db.prod.cluster.test", "A"), ["10.0.2.1"]);
    assert_eq!(short(s, "anything.dev.cluster.test", "A"), ["10.0.1.1"]);
    let soa = short(s, "cluster.test", "SOA");
    assert_eq!(soa.len(), 1);
    assert!(
        soa[0].starts_with("ns1.cluster.test. hostmaster.cluster.test. "),
        "{soa:?}"
    );
    assert!(soa[0].ends_with(" 3600 600 86400 5"), "{soa:?}");
    assert_eq!(
        ttls(s, "web.cluster.test", "A"),
        [30, 30],
        "the zone's $TTL"
    );
    assert_eq!(
        ttls(s, "_http._tcp.web.cluster.test", "SRV"),
        [60],
        "the record's own TTL"
    );

    // the same import again: nothing written, and it says so
    let c = zk.client().await;
    let before = nodes_under(&c, &root).await;
    let out = ok(zk, &root, &["import", path_str(&file)]);
    assert_eq!(
        out,
        "cluster.test: 0 created, 0 updated, 0 deleted (unchanged)\n"
    );
    assert_eq!(nodes_under(&c, &root).await, before);

    // and an edit by hand reaches the stub
    ok(zk, &root, &["set", "web.cluster.test", "A", "10.0.0.99"]);
    eventually(Duration::from_secs(10), || {
        (short(s, "web.cluster.test", "A") == ["10.0.0.99"]).then_some(())
    });
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_diff_and_writes_nothing() {
    let (zk, root, c) = fresh_root().await;
    let file = example_zone();
    let out = ok(zk, &root, &["import", path_str(&file), "--dry-run"]);
    assert!(
        out.contains("+ web {\"A\":[\"10.0.0.5\",\"10.0.0.6\"],\"AAAA\":[\"fd00::5\"]}\n"),
        "{out}"
    );
    assert!(out.contains("+ [zone settings] {\"ttl\":30,"), "{out}");
    assert!(
        out.ends_with(
            "cluster.test: 10 created, 0 updated, 0 deleted (dry run: nothing written)\n"
        ),
        "{out}"
    );
    assert!(
        c.check_stat(&root).await.unwrap().is_none(),
        "a dry run creates nothing, not even the root"
    );

    ok(zk, &root, &["import", path_str(&file)]);
    let before = nodes_under(&c, &root).await;
    let dir = tempfile::tempdir().unwrap();
    let changed = zone_file(
        &dir,
        "changed.zone",
        "$ORIGIN cluster.test.\n$TTL 30\nweb IN A 10.0.0.7\nnew IN TXT hello\n",
    );
    let out = ok(
        zk,
        &root,
        &["import", path_str(&changed), "--prune", "--dry-run"],
    );
    assert!(
        out.contains("~ web {\"A\":[\"10.0.0.5\",\"10.0.0.6\"],\"AAAA\":[\"fd00::5\"]} -> {\"A\":[\"10.0.0.7\"]}\n"),
        "{out}"
    );
    assert!(out.contains("+ new {\"TXT\":[\"hello\"]}\n"), "{out}");
    assert!(
        out.contains("- api\n") && out.contains("- db.prod\n"),
        "{out}"
    );
    assert!(
        out.ends_with("cluster.test: 1 created, 1 updated, 8 deleted (dry run: nothing written)\n"),
        "{out}"
    );
    assert_eq!(nodes_under(&c, &root).await, before);
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_exits_2_naming_file_and_line_and_writes_nothing() {
    let (zk, root, c) = fresh_root().await;
    ok(zk, &root, &["import", path_str(&example_zone())]);
    let before = nodes_under(&c, &root).await;

    let dir = tempfile::tempdir().unwrap();
    let good = "$ORIGIN cluster.test.\n$TTL 30\nweb IN A 10.0.0.8\n; a comment\n";
    let cases = [
        ("syntax.zone", "broken IN A 10.0.0.300\n", "invalid IPv4"),
        (
            "type.zone",
            "hw IN HINFO \"pc\" \"linux\"\n",
            "HINFO records are not supported",
        ),
        (
            "outside.zone",
            "www.example.org. IN A 10.0.0.1\n",
            "outside the zone",
        ),
        (
            "delegation.zone",
            "sub IN NS ns.example.org.\n",
            "delegation",
        ),
        ("cname.zone", "web IN CNAME api\n", "CNAME"),
        (
            "paren.zone",
            "x IN A (\n  10.0.0.1\n",
            "unclosed parenthesis",
        ),
    ];
    for (name, bad, reason) in cases {
        let file = zone_file(&dir, name, &format!("{good}{bad}later IN A 10.0.0.9\n"));
        let r = zkdns(zk, &root, &["import", path_str(&file)]);
        assert_bad_line(&r, name, &file, 5, reason);
    }
    // two files, the second bad: the first is not written either
    let first = zone_file(
        &dir,
        "first.zone",
        "$ORIGIN cluster.test.\n$TTL 30\nfresh IN A 10.0.0.1\n",
    );
    let second = zone_file(&dir, "second.zone", &format!("{good}oops IN BOGUS 1\n"));
    let r = zkdns(zk, &root, &["import", path_str(&first), path_str(&second)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{}:5:", second.display())),
        "{}",
        r.stderr
    );
    assert_eq!(nodes_under(&c, &root).await, before);

    // bad input is reported before ZooKeeper is even asked
    let r = run_cmd(
        zkdns_cmd_at(&dead_addr().to_string(), &root),
        &["import", path_str(&second)],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_gives_identical_data() {
    let zk = ZooKeeper::shared();
    let (a, b) = (unique_root(), unique_root());
    let c = zk.client().await;
    ok(zk, &a, &["import", path_str(&example_zone())]);
    // hand edits and a live member on top of the imported zone
    ok(
        zk,
        &a,
        &[
            "set",
            "hand.cluster.test",
            "TXT",
            "quote \" and \\ back",
            "second",
        ],
    );
    ok(zk, &a, &["set", "hand.cluster.test", "TTL", "7"]);
    ok(zk, &a, &["set", "alias.cluster.test", "CNAME", "web"]);
    let member = zk.client().await;
    add_member(&member, &a, ZONE, "web", "m1", r#"{"A": ["10.0.9.9"]}"#).await;

    let exported = ok(zk, &a, &["export", "--zone", ZONE]);
    assert!(
        exported.contains("$ORIGIN cluster.test.\n$TTL 30\n"),
        "{exported}"
    );
    assert!(
        exported.contains("; live member m1 of web (not exported): A 10.0.9.9"),
        "{exported}"
    );
    assert!(
        !exported
            .lines()
            .any(|l| !l.starts_with(';') && l.contains("10.0.9.9")),
        "members are comments only: {exported}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = zone_file(&dir, "exported.zone", &exported);
    ok(zk, &b, &["import", path_str(&file)]);
    assert_eq!(
        persistent_data(&c, &b).await,
        persistent_data(&c, &a).await,
        "export:\n{exported}"
    );
    // exporting the copy gives the same text, but for the header and the member
    let again = ok(zk, &b, &["export", "--zone", ZONE]);
    let body = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with(';'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(body(&again), body(&exported));
    // and importing the export over the original changes nothing
    let r = ok(zk, &a, &["import", path_str(&file)]);
    assert!(r.ends_with("(unchanged)\n"), "{r}");
    close_session(member).await;
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_rm_and_ls_edit_and_show_record_sets() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    ok(zk, &root, &["import", path_str(&example_zone())]);

    assert_eq!(
        ok(zk, &root, &["ls"]),
        "ZONE          SETS\ncluster.test  9\n"
    );
    let zones: Value = serde_json::from_str(&ok(zk, &root, &["ls", "--json"])).unwrap();
    assert_eq!(
        zones,
        serde_json::json!([{"zone": "cluster.test", "sets": 9}])
    );

    let out = ok(
        zk,
        &root,
        &["set", "New.Cluster.Test.", "A", "10.1.0.2", "10.1.0.1"],
    );
    assert_eq!(
        out,
        "new.cluster.test: {\"A\":[\"10.1.0.1\",\"10.1.0.2\"]}\n"
    );
    ok(
        zk,
        &root,
        &[
            "set",
            "new.cluster.test",
            "srv",
            "0 5 80 web",
            "1 5 81 web.cluster.test.",
        ],
    );
    ok(zk, &root, &["set", "new.cluster.test", "MX", "10 mail"]);
    ok(zk, &root, &["set", "new.cluster.test", "TXT", "--", "-all"]);
    let out = ok(zk, &root, &["set", "new.cluster.test", "TXT", "--", "-all"]);
    assert!(out.ends_with("(unchanged)\n"), "{out}");

    let member = zk.client().await;
    add_member(&member, &root, ZONE, "web", "m1", r#"{"A": ["10.0.9.9"]}"#).await;
    let table = ok(zk, &root, &["ls", ZONE]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].ends_with("MEMBER"),
        "{table}"
    );
    assert!(lines[1].starts_with("@   "), "the apex first: {table}");
    let row = |name: &str, rtype: &str, value: &str| {
        lines.iter().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.first() == Some(&name) && cells.get(1) == Some(&rtype) && l.contains(value)
        })
    };
    assert!(row("new", "A", "10.1.0.1"), "{table}");
    assert!(row("new", "SRV", "1 5 81 web.cluster.test."), "{table}");
    assert!(row("new", "MX", "10 mail.cluster.test."), "{table}");
    assert!(row("new", "TXT", "\"-all\""), "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("web ") && l.contains("10.0.9.9") && l.ends_with("m1")),
        "the member's records, marked: {table}"
    );
    let listing: Value = serde_json::from_str(&ok(zk, &root, &["ls", ZONE, "--json"])).unwrap();
    assert_eq!(listing["zone"], "cluster.test");
    assert_eq!(listing["settings"]["ttl"], 30);
    let sets = listing["sets"].as_array().unwrap();
    let web = sets.iter().find(|s| s["name"] == "web").unwrap();
    assert_eq!(web["members"][0]["id"], "m1");
    assert_eq!(web["members"][0]["data"]["A"][0], "10.0.9.9");
    let new = sets.iter().find(|s| s["name"] == "new").unwrap();
    assert_eq!(new["data"]["MX"][0]["exchange"], "mail.cluster.test.");

    // rm one type, then the whole set
    let out = ok(zk, &root, &["rm", "new.cluster.test", "SRV"]);
    assert!(!out.contains("SRV"), "{out}");
    let r = zkdns(zk, &root, &["rm", "new.cluster.test", "SRV"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("has no SRV"), "{}", r.stderr);
    assert_eq!(
        ok(zk, &root, &["rm", "new.cluster.test"]),
        "new.cluster.test: deleted\n"
    );
    let r = zkdns(zk, &root, &["rm", "new.cluster.test"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no record set new.cluster.test"),
        "{}",
        r.stderr
    );

    // a set with live members is kept unless forced
    let r = zkdns(zk, &root, &["rm", "web.cluster.test"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("live member"), "{}", r.stderr);
    ok(zk, &root, &["rm", "web.cluster.test", "--force"]);
    assert!(
        !ok(zk, &root, &["ls", ZONE])
            .lines()
            .any(|l| l.starts_with("web "))
    );

    // usage errors
    for (args, needle) in [
        (
            vec!["set", "x.elsewhere.test", "A", "10.0.0.1"],
            "no zone under",
        ),
        (
            vec!["set", "x.cluster.test", "A", "10.0.0.300"],
            "not an IPv4 address",
        ),
        (
            vec!["set", "x.cluster.test", "CNAME", "a", "b"],
            "exactly one value",
        ),
        (
            vec!["set", "api.cluster.test", "A", "10.0.0.1"],
            "CNAME cannot sit beside",
        ),
        (
            vec!["set", "cluster.test", "CNAME", "web"],
            "cannot be at the zone apex",
        ),
        (vec!["set", "x.cluster.test", "HINFO", "a"], "invalid value"),
        (
            vec!["set", "bad name.cluster.test", "A", "10.0.0.1"],
            "not a valid name",
        ),
        (vec!["ls", "nope.test"], "no zone nope.test"),
        (vec!["export", "--zone", "nope.test"], "no zone nope.test"),
    ] {
        let r = zkdns(zk, &root, &args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{args:?}: want {needle:?} in {}",
            r.stderr
        );
    }
    // a zone given with --zone is created when missing
    ok(
        zk,
        &root,
        &[
            "set",
            "www.fresh.test",
            "A",
            "10.3.0.1",
            "--zone",
            "fresh.test",
        ],
    );
    assert!(ok(zk, &root, &["ls"]).contains("fresh.test    1\n"));
    close_session(member).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sets_on_one_name_lose_nothing() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    ok(zk, &root, &["import", path_str(&example_zone())]);
    let edits: [&[&str]; 6] = [
        &["A", "10.4.0.1"],
        &["AAAA", "fd00::4"],
        &["TXT", "t"],
        &["MX", "10 mail"],
        &["SRV", "0 0 80 web"],
        &["TTL", "9"],
    ];
    let children: Vec<_> = edits
        .iter()
        .map(|edit| {
            let mut cmd = zkdns_cmd(zk, &root);
            cmd.args(["set", "busy.cluster.test"])
                .args(*edit)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null());
            cmd.spawn().expect("spawn zkdns set")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let listing: Value = serde_json::from_str(&ok(zk, &root, &["ls", ZONE, "--json"])).unwrap();
    let busy = &listing["sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "busy")
        .unwrap()["data"];
    for key in ["A", "AAAA", "TXT", "MX", "SRV", "ttl"] {
        assert!(!busy[key].is_null(), "{key} lost: {busy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_imports_are_batched_and_prune_keeps_members() {
    let (zk, root, c) = fresh_root().await;
    let dir = tempfile::tempdir().unwrap();
    // 1200 names: more operations than one transaction takes
    let mut text = String::from("$ORIGIN big.test.\n$TTL 60\n");
    for i in 0..1200 {
        text.push_str(&format!("h{i} IN A 10.5.{}.{}\n", i / 250, i % 250));
    }
    // four sets of ~250 KB each: more bytes than one transaction takes
    let long = "x".repeat(240);
    for s in 0..4 {
        for i in 0..1000 {
            text.push_str(&format!("fat{s} IN TXT \"{i:04}{long}\"\n"));
        }
    }
    let file = zone_file(&dir, "big.zone", &text);
    let out = ok(zk, &root, &["import", path_str(&file)]);
    assert_eq!(out, "big.test: 1205 created, 0 updated, 0 deleted\n");
    let zones: Value = serde_json::from_str(&ok(zk, &root, &["ls", "--json"])).unwrap();
    assert_eq!(zones[0]["sets"], 1204);
    let (fat, _) = c
        .get_data(&set_path(&root, "big.test", "fat3"))
        .await
        .unwrap();
    assert!(fat.len() > 240_000, "{}", fat.len());

    // prune with half the names left; one of the others has a live member and stays
    let member = zk.client().await;
    add_member(
        &member,
        &root,
        "big.test",
        "h1100",
        "m",
        r#"{"A": ["10.6.0.1"]}"#,
    )
    .await;
    let half: String = text
        .lines()
        .take(2 + 600)
        .map(|l| format!("{l}\n"))
        .collect();
    let file = zone_file(&dir, "half.zone", &half);
    let r = zkdns(zk, &root, &["import", path_str(&file), "--prune"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "big.test: 0 created, 0 updated, 603 deleted\n");
    assert!(
        r.stderr
            .contains("h1100: not in the files but kept: 1 live member"),
        "{}",
        r.stderr
    );
    let zones: Value = serde_json::from_str(&ok(zk, &root, &["ls", "--json"])).unwrap();
    assert_eq!(zones[0]["sets"], 601);
    close_session(member).await;
    close_session(c).await;
}

/// `register` makes missing record sets as CONTAINER nodes, which ZooKeeper removes once their
/// last member is gone. Clients cannot see that a node is a container, so sets whose members
/// all left are re-created as persistent nodes when imported or set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_sets_whose_members_left_are_recreated_persistent() {
    let (zk, root, c) = fresh_root().await;
    put_zone(&c, &root, ZONE, "").await;
    let container = CreateMode::Container.with_acls(Acls::anyone_all());
    for name in ["web", "api", "db"] {
        c.create(&set_path(&root, ZONE, name), b"", &container)
            .await
            .unwrap();
    }
    let left = zk.client().await;
    add_member(&left, &root, ZONE, "web", "m1", r#"{"A": ["10.7.0.1"]}"#).await;
    add_member(&left, &root, ZONE, "db", "m1", r#"{"A": ["10.7.0.3"]}"#).await;
    close_session(left).await;
    let stays = zk.client().await;
    add_member(&stays, &root, ZONE, "api", "m1", r#"{"A": ["10.7.0.2"]}"#).await;
    let cversion = |name: &'static str| {
        let (c, path) = (&c, set_path(&root, ZONE, name));
        async move { c.get_data(&path).await.map(|(_, s)| s.cversion) }
    };

    let dir = tempfile::tempdir().unwrap();
    let file = zone_file(
        &dir,
        "c.zone",
        "$ORIGIN cluster.test.\n$TTL 30\nweb IN A 10.7.0.9\napi IN TXT hi\n",
    );
    let r = zkdns(zk, &root, &["import", path_str(&file)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // ZooKeeper's container sweep (every 60 s) may have removed `web` already
    assert!(
        [
            "cluster.test: 0 created, 2 updated, 0 deleted\n",
            "cluster.test: 1 created, 1 updated, 0 deleted\n"
        ]
        .contains(&r.stdout.as_str()),
        "{}",
        r.stdout
    );
    // a node made anew has never had children; the one with a live member keeps it
    assert_eq!(cversion("web").await, Ok(0));
    assert!(cversion("api").await.unwrap() > 0);
    let r = ok(zk, &root, &["import", path_str(&file)]);
    assert!(r.ends_with("(unchanged)\n"), "{r}");
    // `set` does the same
    ok(zk, &root, &["set", "db.cluster.test", "A", "10.7.0.4"]);
    assert_eq!(cversion("db").await, Ok(0));
    close_session(stays).await;
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_zookeeper_exits_1() {
    let root = unique_root();
    let dead = dead_addr().to_string();
    for args in [
        vec!["ls"],
        vec!["import", path_str(&example_zone())],
        vec!["export", "--zone", ZONE],
        vec!["set", "web.cluster.test", "A", "10.0.0.1"],
        vec!["rm", "web.cluster.test"],
    ] {
        let mut cmd = zkdns_cmd_at(&dead, &root);
        cmd.args(["--zk-session-timeout", "1s"]);
        let r = run_cmd(cmd, &args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("zkdns: error: cannot reach ZooKeeper at"),
            "{args:?}: {}",
            r.stderr
        );
    }
}

/// The examples in zones/, each with the import flags its format needs: `<zone>.zone`,
/// `<zone>.hosts` and `<zone>.json` (the old JSON map).
fn examples() -> Vec<(PathBuf, String, Vec<String>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("zones/") {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let (zone, ext) = file
            .rsplit_once('.')
            .expect("zones/ files have an extension");
        let flags: Vec<String> = match ext {
            "zone" => vec![],
            "hosts" => vec![
                "--format".into(),
                "hosts".into(),
                "--zone".into(),
                zone.into(),
            ],
            "json" => vec![
                "--format".into(),
                "json-map".into(),
                "--zone".into(),
                zone.into(),
            ],
            other => panic!("zones/{file}: no test knows the format of .{other} files"),
        };
        out.push((path.clone(), zone.to_string(), flags));
    }
    out.sort();
    out
}

fn with_flags<'a>(first: &[&'a str], flags: &'a [String]) -> Vec<&'a str> {
    first
        .iter()
        .copied()
        .chain(flags.iter().map(String::as_str))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_in_zones_imports_idempotently_and_round_trips_through_export() {
    let zk = ZooKeeper::shared();
    let c = zk.client().await;
    let dir = tempfile::tempdir().unwrap();
    let examples = examples();
    let formats: Vec<&str> = examples
        .iter()
        .map(|(p, _, _)| p.extension().unwrap().to_str().unwrap())
        .collect();
    for want in ["zone", "hosts", "json"] {
        assert!(formats.contains(&want), "zones/ has no .{want} example");
    }
    for (path, zone, flags) in &examples {
        let (a, b) = (unique_root(), unique_root());
        let file = path_str(path);
        let out = ok(zk, &a, &with_flags(&["import", file], flags));
        assert!(
            out.starts_with(&format!("{zone}: ")) && !out.contains(" 0 created"),
            "{file}: {out}"
        );
        // a second run writes nothing, and says so
        let before = nodes_under(&c, &a).await;
        let out = ok(zk, &a, &with_flags(&["import", file], flags));
        assert_eq!(
            out,
            format!("{zone}: 0 created, 0 updated, 0 deleted (unchanged)\n"),
            "{file}"
        );
        assert_eq!(nodes_under(&c, &a).await, before, "{file}");

        // export, import the export elsewhere: the same data
        let exported = ok(zk, &a, &["export", zone]);
        let copy = zone_file(&dir, &format!("{zone}.exported.zone"), &exported);
        ok(zk, &b, &["import", path_str(&copy)]);
        assert_eq!(
            persistent_data(&c, &b).await,
            persistent_data(&c, &a).await,
            "{file} exported as:\n{exported}"
        );
        // and over the original: unchanged
        let out = ok(zk, &a, &["import", path_str(&copy)]);
        assert!(out.ends_with("(unchanged)\n"), "{file}: {out}\n{exported}");
        assert_eq!(nodes_under(&c, &a).await, before, "{file}");
    }
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_file_is_served_and_merges_lines_per_name() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let dir = tempfile::tempdir().unwrap();
    let hosts = zone_file(
        &dir,
        "hosts",
        "# hosts\n\n10.0.0.5 web web.cluster.test www   # aliases\r\n\
         10.0.0.6\tWEB\nfd00::5 web\n10.0.2.1 db.prod.cluster.test\n10.0.0.9 cluster.test.\n",
    );
    let args = [
        "import",
        "--format",
        "hosts",
        "--zone",
        ZONE,
        path_str(&hosts),
    ];
    let out = ok(zk, &root, &args);
    assert_eq!(out, "cluster.test: 5 created, 0 updated, 0 deleted\n");
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let s = stub.addr();
    assert_eq!(short(s, "web.cluster.test", "A"), ["10.0.0.5", "10.0.0.6"]);
    assert_eq!(short(s, "web.cluster.test", "AAAA"), ["fd00::5"]);
    assert_eq!(short(s, "www.cluster.test", "A"), ["10.0.0.5"]);
    assert_eq!(short(s, "db.prod.cluster.test", "A"), ["10.0.2.1"]);
    assert_eq!(short(s, "cluster.test", "A"), ["10.0.0.9"]);
    assert_eq!(ttls(s, "www.cluster.test", "A"), [5], "the zone's TTL");
    let out = ok(zk, &root, &args);
    assert!(out.ends_with("(unchanged)\n"), "{out}");

    // a changed file: a dry run shows the diff, --prune removes what the file lost
    let changed = zone_file(&dir, "hosts2", "10.0.0.7 web\n10.0.0.5 www\n");
    let mut prune = vec!["import", "--format", "hosts", "--zone", ZONE];
    prune.extend([path_str(&changed), "--prune"]);
    let out = ok(zk, &root, &[&prune[..], &["--dry-run"]].concat());
    assert!(
        out.contains("~ web {\"A\":[\"10.0.0.5\",\"10.0.0.6\"],\"AAAA\":[\"fd00::5\"]} -> {\"A\":[\"10.0.0.7\"]}\n"),
        "{out}"
    );
    assert!(
        out.contains("- db.prod\n") && out.contains("- @\n"),
        "{out}"
    );
    let out = ok(zk, &root, &prune);
    assert_eq!(out, "cluster.test: 0 created, 1 updated, 2 deleted\n");
    eventually(Duration::from_secs(10), || {
        (short(s, "web.cluster.test", "A") == ["10.0.0.7"]).then_some(())
    });
    assert!(short(s, "db.prod.cluster.test", "A").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_in_hosts_files_and_json_maps_exit_2_and_write_nothing() {
    let (zk, root, c) = fresh_root().await;
    ok(zk, &root, &["import", path_str(&example_zone())]);
    let before = nodes_under(&c, &root).await;
    let dir = tempfile::tempdir().unwrap();
    let hosts_good = "# fine\n10.0.0.8 web\n\n10.0.0.9 api2 # fine too\n";
    let json_good = "{\n  \"web\": \"10.0.0.8\",\n  \"api2\": [\"10.0.0.9\"],\n";
    let cases = [
        (
            "hosts",
            "bad-ip.hosts",
            format!("{hosts_good}10.0.0.300 x\n"),
            5,
            "\"10.0.0.300\" is not an IPv4 or IPv6 address",
        ),
        (
            "hosts",
            "bad-name.hosts",
            format!("{hosts_good}10.0.0.1 x_y!\n"),
            5,
            "not a valid host name",
        ),
        (
            "hosts",
            "outside.hosts",
            format!("{hosts_good}10.0.0.1 www.example.org\n"),
            5,
            "outside the zone cluster.test",
        ),
        (
            "hosts",
            "no-name.hosts",
            format!("{hosts_good}10.0.0.1\n"),
            5,
            "no host name",
        ),
        (
            "json-map",
            "bad-ip.json",
            format!("{json_good}  \"x\": \"10.0.0.300\"\n}}\n"),
            4,
            "\"x\": \"10.0.0.300\" is not an IPv4",
        ),
        (
            "json-map",
            "bad-name.json",
            format!("{json_good}  \"x_y!\": \"10.0.0.1\"\n}}\n"),
            4,
            "\"x_y!\": \"x_y!\" is not a valid host name",
        ),
        (
            "json-map",
            "outside.json",
            format!("{json_good}  \"www.example.org\": \"10.0.0.1\"\n}}\n"),
            4,
            "outside the zone",
        ),
        (
            "json-map",
            "bad-value.json",
            format!("{json_good}  \"x\": 7\n}}\n"),
            4,
            "\"x\": the value must be an address",
        ),
        (
            "json-map",
            "syntax.json",
            format!("{json_good}  \"x\" \"10.0.0.1\"\n}}\n"),
            4,
            "not a JSON map",
        ),
    ];
    for (format, name, text, line, reason) in &cases {
        let file = zone_file(&dir, name, text);
        let r = zkdns(
            zk,
            &root,
            &[
                "import",
                "--format",
                format,
                "--zone",
                ZONE,
                path_str(&file),
            ],
        );
        assert_bad_line(&r, name, &file, *line, reason);
    }
    // two hosts files, the second bad: the first is not written either
    let first = zone_file(&dir, "first.hosts", "10.0.0.1 fresh\n");
    let second = zone_file(&dir, "second.hosts", "10.0.0.2 other\nbad line\n");
    let r = zkdns(
        zk,
        &root,
        &[
            "import",
            "--format",
            "hosts",
            "--zone",
            ZONE,
            path_str(&first),
            path_str(&second),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{}:2:", second.display())),
        "{}",
        r.stderr
    );
    // the same from a znode
    let old = format!("{root}-old/hosts");
    put_node(
        &c,
        &old,
        b"{\"web\": \"10.0.0.8\",\n \"db\": \"10.0.0.300\"}",
    )
    .await;
    let r = zkdns(zk, &root, &["import", "--from-znode", &old, "--zone", ZONE]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "zkdns: error: znode {old}:2: \"db\": \"10.0.0.300\" is not"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(nodes_under(&c, &root).await, before);

    // usage: hosts files and JSON maps need --zone; a missing znode is named
    let r = zkdns(
        zk,
        &root,
        &["import", "--format", "hosts", path_str(&first)],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--format hosts needs --zone"),
        "{}",
        r.stderr
    );
    let r = zkdns(
        zk,
        &root,
        &["import", "--from-znode", "/no/such/znode", "--zone", ZONE],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("/no/such/znode: there is no such znode"),
        "{}",
        r.stderr
    );
    // a hosts file read as a zone file gets a hint
    let r = zkdns(zk, &root, &["import", path_str(&first)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("pass --format hosts"), "{}", r.stderr);
    assert_eq!(nodes_under(&c, &root).await, before);
    close_session(c).await;
}

/// The old system kept every name in one znode, `{"hostname": "ip", …}`. `import
/// --from-znode` reads it where it is (a path in the client's chroot, not under --root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_map_in_a_znode_migrates_and_is_served() {
    let zk = ZooKeeper::shared();
    let chroot = unique_root();
    let c = zk.client().await;
    let old = format!("{chroot}/services/hosts");
    put_node(
        &c,
        &old,
        br#"{"web": "10.0.0.5", "db": "10.0.0.6", "cache.cluster.test": ["10.0.0.7", "fd00::7"]}"#,
    )
    .await;
    let connect = format!("{}{chroot}", zk.connect_string());
    let import = |args: &[&str]| {
        run_cmd(
            zkdns_cmd_at(&connect, "/zkdns"),
            &[
                &["import", "--from-znode", "/services/hosts", "--zone", ZONE],
                args,
            ]
            .concat(),
        )
    };
    let r = import(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "cluster.test: 4 created, 0 updated, 0 deleted\n");
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let r = import(&[]);
    assert_eq!(
        r.stdout,
        "cluster.test: 0 created, 0 updated, 0 deleted (unchanged)\n"
    );
    // the source is left as it was; the data went under the chroot's /zkdns
    let (data, _) = c.get_data(&old).await.unwrap();
    assert!(data.starts_with(b"{\"web\""));
    assert!(
        c.check_stat(&set_path(&format!("{chroot}/zkdns"), ZONE, "web"))
            .await
            .unwrap()
            .is_some()
    );

    let stub = Zkdns::serve_at(&connect, "/zkdns", &[]);
    stub.wait_synced();
    let s = stub.addr();
    assert_eq!(short(s, "web.cluster.test", "A"), ["10.0.0.5"]);
    assert_eq!(short(s, "db.cluster.test", "A"), ["10.0.0.6"]);
    assert_eq!(short(s, "cache.cluster.test", "AAAA"), ["fd00::7"]);

    // the old system keeps writing until the cut-over: import again picks up the changes
    put_node(
        &c,
        &old,
        br#"{"web": ["10.0.0.5", "10.0.0.15"], "db": "10.0.0.6", "new": "10.0.0.8"}"#,
    )
    .await;
    let r = import(&["--prune"]);
    assert_eq!(
        r.stdout, "cluster.test: 1 created, 1 updated, 1 deleted\n",
        "{}",
        r.stderr
    );
    eventually(Duration::from_secs(10), || {
        (short(s, "web.cluster.test", "A") == ["10.0.0.15", "10.0.0.5"]).then_some(())
    });
    assert_eq!(short(s, "new.cluster.test", "A"), ["10.0.0.8"]);
    assert!(short(s, "cache.cluster.test", "A").is_empty());
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_bar_is_drawn_only_on_a_terminal() {
    let zk = ZooKeeper::shared();
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..1500)
        .map(|i| format!("10.8.{}.{} h{i}\n", i / 250, i % 250))
        .collect();
    let file = zone_file(&dir, "big.hosts", &text);
    let args = [
        "import",
        "--format",
        "hosts",
        "--zone",
        "big.test",
        path_str(&file),
    ];
    // stderr a pipe: nothing but the summary on stdout
    let r = zkdns(zk, &unique_root(), &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "big.test: 1501 created, 0 updated, 0 deleted\n");
    assert_eq!(r.stderr, "", "no progress bar into a pipe");

    // on a terminal (script(1) gives the command a pty): the bar, then the summary
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let root = unique_root();
    let line: Vec<String> = [
        env!("CARGO_BIN_EXE_zkdns"),
        "--zk",
        &zk.connect_string(),
        "--root",
        &root,
    ]
    .iter()
    .chain(args.iter())
    .map(|a| quote(a))
    .collect();
    let out = Command::new("script")
        .args(["-qec", &line.join(" "), "/dev/null"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run script(1)");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("big.test: ["),
        "no progress bar on a terminal: {shown:?}"
    );
    assert!(shown.contains("/1503 writes"), "{shown:?}");
    assert!(
        shown.contains("big.test: 1501 created, 0 updated, 0 deleted"),
        "{shown:?}"
    );
}
