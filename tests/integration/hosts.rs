//! `zkdns hosts` against a real ZooKeeper: the block follows the map while every other byte of
//! the file stays as it was, `--once` writes and exits, bad markers are refused, a bind-mounted
//! file (as Docker mounts /etc/hosts) is rewritten in place, a burst of 1000 changes makes a
//! handful of writes, and the block stays while ZooKeeper is away.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures_util::future::join_all;
use zookeeper_client::{Acls, CreateMode};

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(30);
const ZONE: &str = "h.test";
const WROTE: &str = "wrote ";

fn follow(zk: &ZooKeeper, root: &str, file: &Path) -> Daemon {
    Daemon::spawn(
        "zkdns hosts",
        hosts_cmd(&zk.connect_string(), root, file, &[]),
    )
}

fn read(path: &Path) -> String {
    String::from_utf8(std::fs::read(path).expect("read hosts file")).expect("utf-8")
}

fn block(lines: &[&str]) -> String {
    let mut b = String::from("# BEGIN zkdns\n");
    for l in lines {
        b.push_str(l);
        b.push('\n');
    }
    b.push_str("# END zkdns");
    b
}

fn temp_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// User text around the block: CRLF lines, tabs, a blank line, no newline at the end.
const PRE: &str = "127.0.0.1\tlocalhost\r\n# user comment\t \n\n::1 ip6-localhost ip6-loopback\n";
const POST: &str = "\n10.9.9.9   after-block\r\n   # trailing, no newline";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_follows_the_map_and_user_lines_stay_byte_for_byte() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_set(
        &c,
        &root,
        ZONE,
        "web",
        r#"{"A": ["10.62.0.2", "10.62.0.1"]}"#,
    )
    .await;
    put_set(&c, &root, ZONE, "v6", r#"{"AAAA": ["fd00::62"]}"#).await;
    put_set(&c, &root, ZONE, "txt", r#"{"TXT": ["no address"]}"#).await;
    put_set(&c, &root, ZONE, "*", r#"{"A": ["10.62.0.9"]}"#).await;
    // a znode name that is not a host name never reaches the file
    put_set(&c, &root, ZONE, "evil 10.6.6.6", r#"{"A": ["10.62.0.66"]}"#).await;
    add_member(&c, &root, ZONE, "web", "m1", r#"{"A": ["10.62.0.3"]}"#).await;

    let dir = tempfile::tempdir().unwrap();
    let stale = block(&["1.2.3.4\tstale.example"]);
    let path = temp_file(&dir, "hosts", &format!("{PRE}{stale}{POST}"));
    let hosts = follow(zk, &root, &path);
    hosts.expect_log(WROTE);
    let want = block(&[
        "fd00::62\tv6.h.test",
        "10.62.0.1\tweb.h.test",
        "10.62.0.2\tweb.h.test",
        "10.62.0.3\tweb.h.test",
    ]);
    assert_eq!(read(&path), format!("{PRE}{want}{POST}"));

    // changes: one name goes, one comes, a member leaves
    delete(&c, &set_path(&root, ZONE, "v6")).await;
    put_set(&c, &root, ZONE, "api", r#"{"A": ["10.62.0.4"]}"#).await;
    delete(&c, &format!("{}/m1", set_path(&root, ZONE, "web"))).await;
    let want = block(&[
        "10.62.0.4\tapi.h.test",
        "10.62.0.1\tweb.h.test",
        "10.62.0.2\tweb.h.test",
    ]);
    let want = format!("{PRE}{want}{POST}");
    eventually_eq("the file after the changes", DEADLINE, want.clone(), || {
        read(&path)
    });

    // a user edit outside the block is kept by the next write
    let edited = want.replace("# user comment", "# user comment, edited");
    std::fs::write(&path, &edited).unwrap();
    put_set(&c, &root, ZONE, "api", r#"{"A": ["10.62.0.5"]}"#).await;
    eventually_eq(
        "the file after a user edit and a change",
        DEADLINE,
        edited.replace("10.62.0.4\tapi", "10.62.0.5\tapi"),
        || read(&path),
    );
    assert!(!read(&path).contains("10.6.6.6"));
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_writes_keeps_mode_and_owner_and_exits() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.62.1.1"]}"#).await;
    put_set(&c, &root, "other.test", "x", r#"{"A": ["10.62.1.2"]}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "hosts", "127.0.0.1 localhost");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&path, Some(4321), Some(4322)).unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();

    let (code, stderr) = hosts_once(&zk.connect_string(), &root, &path, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        read(&path),
        format!(
            "127.0.0.1 localhost\n{}\n",
            block(&["10.62.1.1\tweb.h.test", "10.62.1.2\tx.other.test"])
        )
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_ne!(meta.ino(), inode, "written by a rename");
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (4321, 4322));
    // nothing left behind in the directory
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // --zone limits the names; a second run that changes nothing leaves the file alone
    let (code, stderr) = hosts_once(&zk.connect_string(), &root, &path, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), meta.ino());
    let out = hosts_cmd(&zk.connect_string(), &root, &path, &[])
        .args(["--once", "--zone", ZONE])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        read(&path),
        format!(
            "127.0.0.1 localhost\n{}\n",
            block(&["10.62.1.1\tweb.h.test"])
        )
    );

    // ZooKeeper unreachable: exit 1, file untouched
    let before = read(&path);
    let (code, stderr) = hosts_once(
        &dead_addr().to_string(),
        &root,
        &path,
        &["--zk-session-timeout", "1s"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach ZooKeeper"), "{stderr}");
    assert_eq!(read(&path), before);
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_markers_are_refused_and_nothing_is_written() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        ("a\n# BEGIN zkdns\n10.0.0.1 x\n", "line 2"),
        ("# BEGIN zkdns\n# BEGIN zkdns\n# END zkdns\n", "line 2"),
        ("x\n# END zkdns\n", "line 2"),
    ] {
        let path = temp_file(&dir, "hosts", text);
        let (code, stderr) = hosts_once(&zk.connect_string(), &root, &path, &[]);
        assert_eq!(code, 2, "{text:?}: {stderr}");
        assert!(
            stderr.contains(says) && stderr.contains("nothing was written"),
            "{stderr}"
        );
        assert_eq!(
            stderr.matches(says).count(),
            1,
            "the problem once: {stderr}"
        );
        assert_eq!(read(&path), text);
        // the daemon refuses too, before it touches ZooKeeper
        let out = hosts_cmd(&zk.connect_string(), &root, &path, &[])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(read(&path), text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mounted_file_is_rewritten_in_place() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.62.2.1"]}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let source = temp_file(&dir, "source-hosts", "127.0.0.1 localhost\n");
    let target = temp_file(&dir, "target-hosts", "the mount point\n");
    // a private mount namespace: `source` is mounted over `target` only for zkdns, the way
    // Docker mounts a file over a container's /etc/hosts
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$1\" \"$2\" && shift 2 && exec \"$@\"")
        .arg("sh")
        .arg(&source)
        .arg(&target)
        .arg(env!("CARGO_BIN_EXE_zkdns"))
        .args([
            "--zk",
            &zk.connect_string(),
            "--root",
            &root,
            "hosts",
            "--file",
        ])
        .arg(&target)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info,zkdns=debug")
        .env_remove("ZKDNS_ZK")
        .env_remove("ZKDNS_ROOT");
    let inode = std::fs::metadata(&source).unwrap().ino();
    let hosts = Daemon::spawn("zkdns hosts (bind mount)", cmd);
    hosts.expect_log("rewritten in place");
    // written through the mount into the mounted file itself
    let want = |lines: &[&str]| format!("127.0.0.1 localhost\n{}\n", block(lines));
    assert_eq!(read(&source), want(&["10.62.2.1\tweb.h.test"]));
    assert_eq!(std::fs::metadata(&source).unwrap().ino(), inode);
    assert_eq!(read(&target), "the mount point\n", "outside the namespace");

    put_set(&c, &root, ZONE, "api", r#"{"A": ["10.62.2.2"]}"#).await;
    eventually_eq(
        "the mounted file after a change",
        DEADLINE,
        want(&["10.62.2.2\tapi.h.test", "10.62.2.1\tweb.h.test"]),
        || read(&source),
    );
    // shorter than before: cut to length
    delete(&c, &set_path(&root, ZONE, "api")).await;
    delete(&c, &set_path(&root, ZONE, "web")).await;
    eventually_eq("the mounted file emptied", DEADLINE, want(&[]), || {
        read(&source)
    });
    assert_eq!(hosts.count("renamed into place"), 0, "{}", hosts.logs());
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_1000_changes_makes_a_handful_of_writes() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "hosts", "127.0.0.1 localhost\n");
    let hosts = follow(zk, &root, &path);
    hosts.expect_log(WROTE);
    let before = hosts.count(WROTE);

    // 1000 creates, pipelined on one session: well within a second
    let paths: Vec<String> = (0..1000)
        .map(|i| set_path(&root, ZONE, &format!("n{i}")))
        .collect();
    let payloads: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"A": ["10.63.{}.{}"]}}"#, i / 250, i % 250 + 1))
        .collect();
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let creates = paths
        .iter()
        .zip(&payloads)
        .map(|(p, d)| c.create(p, d.as_bytes(), &opts));
    for r in join_all(creates).await {
        r.expect("create");
    }
    let lines = |text: &str| text.lines().filter(|l| l.starts_with("10.63.")).count();
    eventually_eq("all 1000 names in the file", DEADLINE, 1000, || {
        lines(&read(&path))
    });
    let text = read(&path);
    assert!(text.contains("10.63.3.250\tn999.h.test\n"));
    assert!(text.starts_with("127.0.0.1 localhost\n# BEGIN zkdns\n"));
    // let any write still pending land before counting
    std::thread::sleep(Duration::from_secs(1));
    let writes = hosts.count(WROTE) - before;
    eprintln!("{writes} writes for 1000 changes");
    assert!(
        (1..=10).contains(&writes),
        "{writes} writes for 1000 changes:\n{}",
        hosts.logs()
    );
    close_session(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_is_kept_while_zookeeper_is_away() {
    let mut zk = ZooKeeper::start();
    let root = unique_root();
    let c = zk.client().await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.62.4.1"]}"#).await;
    close_session(c).await;
    let dir = tempfile::tempdir().unwrap();
    let path = temp_file(&dir, "hosts", "127.0.0.1 localhost\n");
    let hosts = Daemon::spawn(
        "zkdns hosts",
        hosts_cmd(
            &zk.connect_string(),
            &root,
            &path,
            &["--zk-session-timeout", "2s"],
        ),
    );
    hosts.expect_log(WROTE);
    let written = read(&path);
    assert!(written.contains("10.62.4.1\tweb.h.test"));

    zk.stop();
    hosts.expect_log("connection lost");
    // past the session's end on the client's side too: still the last block
    hosts.expect_log("session ended");
    assert!(
        hosts.wait_count("unreachable", 1, DEADLINE),
        "{}",
        hosts.logs()
    );
    assert_eq!(read(&path), written);
    assert_eq!(hosts.count(WROTE), 1);

    // back: the data is still there, the file follows changes again
    zk.start_again();
    let c = zk.client().await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.62.4.2"]}"#).await;
    eventually_eq(
        "the file after ZooKeeper came back",
        DEADLINE,
        written.replace("10.62.4.1", "10.62.4.2"),
        || read(&path),
    );
    close_session(c).await;
}
