//! Least privilege (issue 18), against a real ZooKeeper with digest auth: an admin owns the
//! zones and record sets, a registrar granted a name may add and remove members there and
//! nothing else, `acl show` and `check` say who may do what, `revoke` leaves live members to
//! their session, and an open deployment moves to registrars with a stub answering throughout.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use zookeeper_client::{Client, Permission};

use crate::support::*;

const ZONE: &str = "acl.test";
const DEADLINE: Duration = Duration::from_secs(30);
/// A registrar no test has credentials for.
const OTHER: &str = "digest:other:AAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// Two identities: the admin and the registrar of `web`, with their passwords.
struct Identities {
    admin: String,
    web: String,
    secrets: [String; 2],
}

impl Identities {
    fn new() -> Identities {
        let (a, w) = (password(), password());
        Identities {
            admin: format!("zkdns-admin:{a}"),
            web: format!("web:{w}"),
            secrets: [a, w],
        }
    }

    fn assert_hidden(&self, outputs: &[String]) {
        for out in outputs {
            for secret in &self.secrets {
                assert!(!out.contains(secret), "a password leaked:\n{out}");
            }
        }
    }
}

/// Runs a one-shot command as `credentials` (`None`: anonymous).
fn zkdns(zk: &ZooKeeper, root: &str, credentials: Option<&str>, args: &[&str]) -> Run {
    let env: Vec<(&str, &str)> = credentials
        .map(|c| ("ZKDNS_ZK_AUTH", c))
        .into_iter()
        .collect();
    run(zkdns_cmd(zk, root), args, &env)
}

/// [`zkdns`], which must succeed.
fn must(zk: &ZooKeeper, root: &str, credentials: Option<&str>, args: &[&str]) -> Run {
    let r = zkdns(zk, root, credentials, args);
    assert_eq!(r.code, 0, "{}: {}", args.join(" "), r.text());
    r
}

/// Asserts that `r` printed `needle` on stdout.
fn says(r: &Run, needle: &str) {
    assert!(r.stdout.contains(needle), "no {needle:?} in:\n{}", r.text());
}

/// Asserts a refusal: exit 1, naming `node` and the missing `right`.
fn refused(what: &str, r: &Run, node: &str, right: &str) {
    assert_eq!(r.code, 1, "{what}: {}", r.text());
    let expected = format!("that takes the {right} right on {node},");
    assert!(
        r.stderr.contains("not authorized to") && r.stderr.contains(&expected),
        "{what}: no {expected:?} in:\n{}",
        r.stderr
    );
}

fn register(
    zk: &ZooKeeper,
    root: &str,
    credentials: Option<&str>,
    name: &str,
    id: &str,
    addr: &str,
) -> Daemon {
    let mut cmd: Command = zkdns_cmd(zk, root);
    cmd.args(["register", name, "--addr", addr, "--id", id])
        .env_remove("ZKDNS_ZK_AUTH")
        .env("RUST_LOG", "info");
    if let Some(c) = credentials {
        cmd.env("ZKDNS_ZK_AUTH", c);
    }
    Daemon::spawn(&format!("zkdns register {id}"), cmd)
}

/// A register that ZooKeeper refuses ends on its own with exit 1; its log.
fn refused_register(mut daemon: Daemon, node: &str, right: &str) -> String {
    let status = daemon.wait_exit(DEADLINE);
    let log = daemon.logs();
    let r = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: log.clone(),
    };
    refused("register", &r, node, right);
    assert!(log.contains("zkdns grant"), "no hint at grant:\n{log}");
    log
}

async fn wait_node(client: &Client, path: &str, present: bool) {
    let deadline = Instant::now() + DEADLINE;
    while client.check_stat(path).await.unwrap().is_some() != present {
        assert!(
            Instant::now() < deadline,
            "{path} still {}",
            if present { "missing" } else { "there" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `digest:USER:HASH` that `acl id` prints for `credentials`.
fn id_of(zk: &ZooKeeper, root: &str, credentials: &str) -> String {
    let r = must(zk, root, Some(credentials), &["acl", "id"]);
    let id = r.stdout.trim().to_string();
    let user = credentials.split(':').next().unwrap();
    assert!(
        id.starts_with(&format!("digest:{user}:")) && id.len() == 8 + user.len() + 28,
        "{id}"
    );
    id
}

/// A zone of the admin's: `db` (10.0.0.5) imported from a hosts file.
fn admin_zone(zk: &ZooKeeper, root: &str, credentials: Option<&str>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "10.0.0.5 db\n").unwrap();
    let args = [
        "import",
        "--format",
        "hosts",
        "--zone",
        ZONE,
        hosts.to_str().unwrap(),
    ];
    must(zk, root, credentials, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registrar_registers_under_its_grant_and_nothing_else() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let who = Identities::new();
    let (admin, web) = (Some(who.admin.as_str()), Some(who.web.as_str()));
    let mut outputs = vec![admin_zone(zk, &root, admin).text()];
    let zone = zone_path(&root, ZONE);
    let (web_path, db_path) = (set_path(&root, ZONE, "web"), set_path(&root, ZONE, "db"));
    let anon = zk.client().await;

    // the admin makes `web` and grants it; a pattern grants the names that exist and match
    let web_id = id_of(zk, &root, &who.web);
    let r = must(
        zk,
        &root,
        admin,
        &["grant", "web.acl.test", "--registrar", &web_id],
    );
    assert!(
        r.stdout
            .contains("web.acl.test: made (no records of its own"),
        "{}",
        r.text()
    );
    says(&r, "granted to digest user web");
    outputs.push(r.text());
    let r = must(
        zk,
        &root,
        admin,
        &["grant", "w*.acl.test", "--registrar", &web_id],
    );
    says(
        &r,
        "web.acl.test: already granted to digest user web (unchanged)",
    );
    let (acl, stat) = anon.get_acl(&web_path).await.unwrap();
    assert_eq!(stat.ephemeral_owner, 0, "a grant's node is persistent");
    let rights: Vec<(String, Permission)> = acl
        .iter()
        .map(|a| {
            (
                a.id().split(':').next().unwrap().to_string(),
                a.permission(),
            )
        })
        .collect();
    assert_eq!(
        rights,
        vec![
            ("zkdns-admin".to_string(), Permission::ALL),
            ("anyone".to_string(), Permission::READ),
            ("web".to_string(), Permission::CREATE | Permission::DELETE),
        ]
    );

    // inspection, in words
    let r = must(zk, &root, None, &["acl", "show", "web.acl.test"]);
    for line in [
        format!("{web_path} (name web.acl.test)"),
        "digest user web (cd) [registrar]: register members, remove members".to_string(),
        "anyone (r): read".to_string(),
        "digest user zkdns-admin (cdrwa): read, change the record set, register members, remove members, change the ACL".to_string(),
    ] {
        assert!(r.stdout.contains(&line), "no {line:?} in:\n{}", r.stdout);
    }
    let r = zkdns(zk, &root, None, &["check", "--no-upstream"]);
    assert_eq!(r.code, 0, "{}", r.text());
    assert!(
        r.stdout
            .contains("WARN grant web.acl.test: digest user web has no member registered"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("OK   acls: no node of "), "{}", r.stdout);

    // the registrar registers and answers; serve needs no credentials to read it
    let mut w1 = register(zk, &root, web, "web.acl.test", "w1", "10.0.0.7");
    let member = format!("{web_path}/w1");
    wait_node(&anon, &member, true).await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let answer = |name: &'static str| {
        let addr = stub.addr();
        async move { addresses(&query(addr, name, RecordType::A).await) }
    };
    assert_eq!(answer("web.acl.test").await, vec!["10.0.0.7"]);
    assert_eq!(answer("db.acl.test").await, vec!["10.0.0.5"]);
    let r = zkdns(zk, &root, None, &["check", "--no-upstream"]);
    assert!(!r.stdout.contains("WARN"), "{}", r.stdout);

    // ... and nothing else, each refusal naming the node and the right it lacks
    let log = refused_register(
        register(zk, &root, web, "db.acl.test", "x1", "10.6.6.6"),
        &db_path,
        "create (c)",
    );
    outputs.push(log);
    let log = refused_register(
        register(zk, &root, web, "new.acl.test", "x2", "10.6.6.6"),
        &zone,
        "create (c)",
    );
    outputs.push(log);
    let cases: [(&[&str], &str, &str); 6] = [
        (
            &["set", "web.acl.test", "A", "10.6.6.6"],
            &web_path,
            "write (w)",
        ),
        (
            &["set", "db.acl.test", "A", "10.6.6.6"],
            &db_path,
            "write (w)",
        ),
        (
            &["set", "new.acl.test", "A", "10.6.6.6"],
            &zone,
            "create (c)",
        ),
        (&["rm", "db.acl.test"], &zone, "delete (d)"),
        (&["rm", "web.acl.test", "--force"], &zone, "delete (d)"),
        (
            &["grant", "web.acl.test", "--registrar", OTHER],
            &web_path,
            "admin (a)",
        ),
    ];
    for (args, node, right) in cases {
        let r = zkdns(zk, &root, web, args);
        refused(&args.join(" "), &r, node, right);
        outputs.push(r.text());
    }
    let r = zkdns(zk, &root, web, &["acl", "lock"]);
    assert_eq!(r.code, 0, "nothing is open to lock: {}", r.text());
    assert!(r.stdout.contains("nothing is open"), "{}", r.stdout);
    assert_eq!(
        answer("web.acl.test").await,
        vec!["10.0.0.7"],
        "the refusals changed nothing"
    );
    assert_eq!(answer("db.acl.test").await, vec!["10.0.0.5"]);

    // deregistering leaves the granted name, and registering again works
    w1.terminate();
    outputs.push(w1.logs());
    wait_node(&anon, &member, false).await;
    assert!(
        anon.check_stat(&web_path).await.unwrap().is_some(),
        "the grant outlives its members"
    );
    let mut w2 = register(zk, &root, web, "web.acl.test", "w2", "10.0.0.8");
    wait_node(&anon, &format!("{web_path}/w2"), true).await;

    // the admin can do all of it, and a record set re-made keeps its grant
    w2.terminate();
    wait_node(&anon, &format!("{web_path}/w2"), false).await;
    must(
        zk,
        &root,
        admin,
        &["set", "web.acl.test", "TXT", "web tier"],
    );
    let (acl, _) = anon.get_acl(&web_path).await.unwrap();
    assert!(
        acl.iter().any(|a| a.id().starts_with("web:")),
        "the re-made node lost its grant: {acl:?}"
    );
    let mut a1 = register(zk, &root, admin, "db.acl.test", "a1", "10.0.0.6");
    wait_node(&anon, &format!("{db_path}/a1"), true).await;
    a1.terminate();
    outputs.push(must(zk, &root, admin, &["rm", "db.acl.test"]).text());
    outputs.push(must(zk, &root, admin, &["rm", "web.acl.test"]).text());
    outputs.push(stub.logs());
    who.assert_hidden(&outputs);
    close_session(anon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_registrars_members_stay_until_their_session_ends() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let who = Identities::new();
    let (admin, web) = (Some(who.admin.as_str()), Some(who.web.as_str()));
    admin_zone(zk, &root, admin);
    let web_path = set_path(&root, ZONE, "web");
    let web_id = id_of(zk, &root, &who.web);
    must(
        zk,
        &root,
        admin,
        &["grant", "web.acl.test", "--registrar", &web_id],
    );
    let anon = zk.client().await;
    let mut w1 = register(zk, &root, web, "web.acl.test", "w1", "10.0.0.7");
    let member = format!("{web_path}/w1");
    wait_node(&anon, &member, true).await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);

    let r = must(
        zk,
        &root,
        admin,
        &["revoke", "web.acl.test", "--registrar", &web_id],
    );
    says(
        &r,
        "web.acl.test: revoked from digest user web; its 1 live member(s) stay until their session ends",
    );
    // the live member stays and answers; the next registration is refused
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(anon.check_stat(&member).await.unwrap().is_some());
    assert_eq!(
        addresses(&query(stub.addr(), "web.acl.test", RecordType::A).await),
        vec!["10.0.0.7"]
    );
    refused_register(
        register(zk, &root, web, "web.acl.test", "w2", "10.0.0.8"),
        &web_path,
        "create (c)",
    );
    // when its session ends, so does the member
    w1.signal(libc::SIGTERM);
    w1.wait_exit(DEADLINE);
    wait_node(&anon, &member, false).await;
    let r = zkdns(
        zk,
        &root,
        admin,
        &["revoke", "web.acl.test", "--registrar", &web_id],
    );
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(
        r.stderr
            .contains("is not granted to digest user web (it is granted to no registrar)"),
        "{}",
        r.stderr
    );
    // grant and revoke are the admin's
    let r = zkdns(
        zk,
        &root,
        None,
        &["grant", "web.acl.test", "--registrar", &web_id],
    );
    assert_eq!(r.code, 2, "{}", r.text());
    assert!(r.stderr.contains("runs as the admin"), "{}", r.stderr);
    close_session(anon).await;
}

/// Queries `names` (each expecting its one address) until stopped; counts answers and misses.
struct Probe {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Probe {
    fn start(
        server: std::net::SocketAddr,
        names: &'static [(&'static str, &'static str)],
    ) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let (s, a) = (stop.clone(), answered.clone());
        let thread = std::thread::spawn(move || {
            let mut misses = Vec::new();
            while !s.load(Ordering::Relaxed) {
                for (name, addr) in names {
                    match ask(server, name) {
                        Some(Ok(got)) if got == Answer::of(&[*addr]) => {
                            a.fetch_add(1, Ordering::Relaxed);
                        }
                        other => misses.push(format!("{name}: {other:?}")),
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            misses
        });
        Probe {
            stop,
            answered,
            thread,
        }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let misses = self.thread.join().unwrap();
        (self.answered.load(Ordering::Relaxed), misses)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_deployment_moves_to_registrars_with_a_stub_answering() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let who = Identities::new();
    let (admin, web) = (Some(who.admin.as_str()), Some(who.web.as_str()));
    let anon = zk.client().await;
    let web_path = set_path(&root, ZONE, "web");

    // before: one shared (here: no) credential, everything open
    admin_zone(zk, &root, None);
    let mut old = register(zk, &root, None, "web.acl.test", "old", "10.0.0.7");
    wait_node(&anon, &format!("{web_path}/old"), true).await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let probe = Probe::start(
        stub.addr(),
        &[("web.acl.test", "10.0.0.7"), ("db.acl.test", "10.0.0.5")],
    );
    let r = zkdns(zk, &root, None, &["check", "--no-upstream"]);
    assert!(r.stdout.contains("WARN acls: "), "{}", r.stdout);

    // 1. the registrar's IDs; 2. registrars start with their credentials, beside the old ones
    //    (an open name: they warn, and register)
    let web_id = id_of(zk, &root, &who.web);
    let new = register(zk, &root, web, "web.acl.test", "new", "10.0.0.7");
    wait_node(&anon, &format!("{web_path}/new"), true).await;
    assert!(
        new.wait_count("is open: anyone may change it", 1, DEADLINE),
        "{}",
        new.logs()
    );
    // 3. the admin grants each name to its registrar (locking it)
    let r = must(
        zk,
        &root,
        admin,
        &["grant", "web.acl.test", "--registrar", &web_id],
    );
    says(&r, "it was open to anyone, who may now only read it");
    // 4. the old registrations stop
    old.signal(libc::SIGTERM);
    old.wait_exit(DEADLINE);
    wait_node(&anon, &format!("{web_path}/old"), false).await;
    // 5. the admin locks what is still open
    let r = must(zk, &root, admin, &["acl", "lock", "--dry-run"]);
    assert!(
        r.stdout
            .contains(&format!("would lock {}", zone_path(&root, ZONE))),
        "{}",
        r.stdout
    );
    let r = must(zk, &root, admin, &["acl", "lock"]);
    assert!(
        r.stdout
            .contains(&format!("locked {root}: anyone cdrwa → r")),
        "{}",
        r.stdout
    );
    // 6. check finds nothing open
    let r = zkdns(zk, &root, None, &["check", "--no-upstream"]);
    assert_eq!(r.code, 0, "{}", r.text());
    assert!(!r.stdout.contains("WARN"), "{}", r.stdout);

    // after: anonymous writes are refused, the registrar still registers, nothing missed
    let r = zkdns(zk, &root, None, &["set", "db.acl.test", "A", "10.6.6.6"]);
    refused(
        "anonymous set",
        &r,
        &set_path(&root, ZONE, "db"),
        "write (w)",
    );
    let r = zkdns(zk, &root, web, &["set", "db.acl.test", "A", "10.6.6.6"]);
    refused(
        "registrar set",
        &r,
        &set_path(&root, ZONE, "db"),
        "write (w)",
    );
    let (answered, misses) = probe.finish();
    assert!(
        misses.is_empty(),
        "{} of {} lookups missed: {misses:?}",
        misses.len(),
        answered
    );
    assert!(answered > 20, "only {answered} lookups");
    drop(new);
    close_session(anon).await;
}
