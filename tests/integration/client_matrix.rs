//! The client matrix: every resolver stack found in containers resolves through a resolv.conf
//! that names the stub (in a private mount namespace, as in serve_clients.rs), for the cases
//! that containers meet: a plain name, a short name through `search`, `ndots:5` with three
//! search domains, A and AAAA together, a missing name (a clean failure, and the queries it
//! cost the stub counted), a forwarded name, SRV, and a name with 40 instances (more than 512
//! bytes of A records: the stacks that retry a TC answer over TCP get all 40, the others the
//! part that fits, which the stub keeps in the TC answer since they use nothing else).
//!
//! The stacks: glibc (`getent ahosts`, Python's `socket.getaddrinfo`), musl 1.2.3 (a static
//! C program), Go's own resolver (`CGO_ENABLED=0`: LookupHost, LookupSRV), busybox
//! nslookup, the JVM (InetAddress.getAllByName, JNDI for SRV), and bind's dig, host and
//! nslookup. The client programs are in `tests/clients/`, built once per run
//! ([`client_programs`]).
//!
//! Also here: what the stub answers for each expansion of an outside name under `ndots:5`
//! and three search domains (two of them served zones), and how many of those reach the
//! upstream; the table in docs/dns.md of search-list answers comes from this test.
//!
//! Both need root (port 53 and a mount namespace); without root they skip with the reason
//! printed. A missing toolchain fails them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

const CLUSTER: &str = "cluster.test";
const SVC: &str = "svc.test";
/// The zones' SOA, so that a negative answer's SOA can be told to come from the map.
const CLUSTER_SETTINGS: &str = r#"{"soa": {"mname": "ns.cluster.test.",
    "rname": "hostmaster.cluster.test.", "minimum": 15}}"#;
const SVC_SETTINGS: &str = r#"{"soa": {"mname": "ns.svc.test.",
    "rname": "hostmaster.svc.test.", "minimum": 15}}"#;
/// Instances of `big.cluster.test`: 40 A records are 640 bytes, more than 512.
const BIG: usize = 40;
/// What an SRV lookup of `_http._tcp.web.cluster.test` must show, whitespace collapsed.
const SRV_TEXT: &str = "0 5 8080 web.cluster.test";

/// The resolv.conf lines beside the nameserver: one search domain, and the Kubernetes-like
/// `ndots:5` with three (the third outside the zones, served by the upstream). A short
/// timeout and two attempts, as container resolv.confs often have.
const SEARCH_ONE: &str = "search cluster.test\noptions timeout:2 attempts:2\n";
const SEARCH_THREE: &str =
    "search cluster.test svc.test upstream.test\noptions ndots:5 timeout:2 attempts:2\n";

/// A resolver stack, as an application in a container runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    Getent,
    Python,
    Musl,
    Go,
    Busybox,
    Jvm,
    Dig,
    Host,
    Nslookup,
}

const STACKS: [Stack; 9] = [
    Stack::Getent,
    Stack::Python,
    Stack::Musl,
    Stack::Go,
    Stack::Busybox,
    Stack::Jvm,
    Stack::Dig,
    Stack::Host,
    Stack::Nslookup,
];

/// What a client does with a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Its addresses, A and AAAA.
    Addresses,
    /// Its SRV records.
    Srv,
}

impl Stack {
    fn label(self) -> &'static str {
        match self {
            Stack::Getent => "glibc getent",
            Stack::Python => "glibc python",
            Stack::Musl => "musl 1.2.3",
            Stack::Go => "Go",
            Stack::Busybox => "busybox",
            Stack::Jvm => "JVM",
            Stack::Dig => "dig",
            Stack::Host => "host",
            Stack::Nslookup => "nslookup",
        }
    }

    /// Whether the stack gets every address of the 40: glibc (and so Python and the JVM),
    /// host and nslookup ask again over TCP when the UDP answer has TC; Go (since 1.11) and
    /// dig ask with EDNS at 1232 bytes, where 40 fit, and would go to TCP too. musl before
    /// 1.2.4 and busybox's own resolver never do: they use the TC answer as it is, which
    /// holds the addresses that fit in 512 bytes.
    fn gets_every_address(self) -> bool {
        !matches!(self, Stack::Musl | Stack::Busybox)
    }

    /// Whether the stack applies the search list to a name with dots, below `ndots`.
    /// busybox nslookup applies it to names without a dot only, whatever `ndots` says.
    fn searches_dotted_names(self) -> bool {
        self != Stack::Busybox
    }

    /// The command line for `lookup` of `name`; `None` where the stack has no SRV lookup
    /// (getaddrinfo has none). `search`: the case relies on the search list, which dig uses
    /// only when asked (`+search`); every other stack uses it by itself.
    fn command(
        self,
        programs: &ClientPrograms,
        lookup: Lookup,
        name: &str,
        search: bool,
    ) -> Option<Vec<String>> {
        let path = |p: &PathBuf| p.display().to_string();
        let srv = lookup == Lookup::Srv;
        let argv: Vec<String> = match self {
            Stack::Getent if !srv => vec!["getent".into(), "ahosts".into(), name.into()],
            Stack::Python if !srv => vec!["python3".into(), path(&programs.python), name.into()],
            Stack::Musl if !srv => vec![path(&programs.musl), name.into()],
            Stack::Getent | Stack::Python | Stack::Musl => return None,
            Stack::Go => vec![
                path(&programs.go),
                if srv { "srv" } else { "host" }.into(),
                name.into(),
            ],
            Stack::Busybox => {
                let mut v = vec!["busybox".to_string(), "nslookup".to_string()];
                if srv {
                    v.push("-type=srv".into());
                }
                v.push(name.into());
                v
            }
            Stack::Jvm => vec![
                "java".into(),
                // no lookup cached in the JVM (each run is a new JVM anyway)
                "-Dsun.net.inetaddr.ttl=0".into(),
                "-Dsun.net.inetaddr.negative.ttl=0".into(),
                path(programs.java.as_ref().ok()?),
                if srv { "srv" } else { "host" }.into(),
                name.into(),
            ],
            Stack::Dig => {
                let mut v = vec!["dig".to_string()];
                if search {
                    v.push("+search".into());
                }
                if srv {
                    v.extend([name.to_string(), "SRV".into()]);
                } else {
                    v.extend([
                        name.to_string(),
                        "A".into(),
                        name.to_string(),
                        "AAAA".into(),
                    ]);
                }
                v
            }
            Stack::Host => {
                let mut v = vec!["host".to_string()];
                if srv {
                    v.extend(["-t".into(), "srv".into()]);
                }
                v.push(name.into());
                v
            }
            Stack::Nslookup => {
                let mut v = vec!["nslookup".to_string()];
                if srv {
                    v.push("-type=srv".into());
                }
                v.push(name.into());
                v
            }
        };
        Some(argv)
    }

    /// How many types an address lookup asks: A and AAAA, and host asks MX too.
    fn address_types(self) -> u64 {
        if self == Stack::Host { 3 } else { 2 }
    }

    /// The environment a run adds: Go's own resolver, whatever the binary was built with.
    fn env(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Stack::Go => vec![("GODEBUG", "netdns=go")],
            _ => Vec::new(),
        }
    }

    /// Whether the run is the stack's clean "this name does not exist".
    fn says_not_found(self, run: &ClientRun) -> bool {
        let out = format!("{}{}", run.stdout, run.stderr);
        match self {
            // the client programs and getent exit 2 for a name that does not exist
            Stack::Getent | Stack::Python | Stack::Musl | Stack::Go | Stack::Jvm => run.code == 2,
            Stack::Dig => {
                run.code == 0 && dig_statuses(&run.stdout).iter().all(|s| s == "NXDOMAIN")
            }
            Stack::Busybox | Stack::Host | Stack::Nslookup => {
                run.code != 0 && out.contains("NXDOMAIN")
            }
        }
    }

    /// Whether the run succeeded (for dig: every query answered NOERROR).
    fn succeeded(self, run: &ClientRun) -> bool {
        match self {
            Stack::Dig => {
                let statuses = dig_statuses(&run.stdout);
                run.code == 0 && !statuses.is_empty() && statuses.iter().all(|s| s == "NOERROR")
            }
            _ => run.code == 0,
        }
    }
}

/// Every `status:` in dig's output (one per query).
fn dig_statuses(out: &str) -> Vec<String> {
    out.split("status: ")
        .skip(1)
        .filter_map(|rest| rest.split(',').next())
        .map(|s| s.trim().to_string())
        .collect()
}

/// Every address in a client's output, but the nameserver's own (which nslookup prints).
fn addresses_in(out: &str, nameserver: Ipv4Addr) -> BTreeSet<IpAddr> {
    out.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '"'))
        .filter_map(|token| token.parse::<IpAddr>().ok())
        .filter(|ip| *ip != IpAddr::V4(nameserver))
        .collect()
}

/// A case of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Plain,
    Search,
    Ndots,
    Dual,
    Missing,
    Forwarded,
    Srv,
    Big,
}

const CASES: [Case; 8] = [
    Case::Plain,
    Case::Search,
    Case::Ndots,
    Case::Dual,
    Case::Missing,
    Case::Forwarded,
    Case::Srv,
    Case::Big,
];

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::Plain => "plain",
            Case::Search => "search",
            Case::Ndots => "ndots:5",
            Case::Dual => "A+AAAA",
            Case::Missing => "missing",
            Case::Forwarded => "forwarded",
            Case::Srv => "SRV",
            Case::Big => "40 inst.",
        }
    }

    /// The name asked, the lookup, and whether the case is about the search list.
    fn query(self) -> (&'static str, Lookup, bool) {
        match self {
            Case::Plain => ("web.cluster.test", Lookup::Addresses, false),
            Case::Search => ("web", Lookup::Addresses, true),
            // db.prod.cluster.test does not exist: found in the second search domain
            Case::Ndots => ("db.prod", Lookup::Addresses, true),
            Case::Dual => ("dual.cluster.test", Lookup::Addresses, false),
            Case::Missing => ("nope.cluster.test", Lookup::Addresses, false),
            Case::Forwarded => ("www.upstream.test", Lookup::Addresses, false),
            Case::Srv => ("_http._tcp.web.cluster.test", Lookup::Srv, false),
            Case::Big => ("big.cluster.test", Lookup::Addresses, false),
        }
    }

    /// The resolv.conf lines of the case.
    fn resolv(self) -> &'static str {
        match self {
            Case::Ndots => SEARCH_THREE,
            _ => SEARCH_ONE,
        }
    }
}

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn big_addresses() -> BTreeSet<IpAddr> {
    (1..=BIG)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 13, 0, i as u8)))
        .collect()
}

/// Checks one run against what the case needs; `Ok` with a short note for the table.
fn judge(
    stack: Stack,
    case: Case,
    run: &ClientRun,
    counted: QueryCounts,
    nameserver: Ipv4Addr,
) -> Result<String, String> {
    let out = format!("{}{}", run.stdout, run.stderr);
    let got = addresses_in(&run.stdout, nameserver);
    let want = match case {
        Case::Ndots if !stack.searches_dotted_names() => {
            // the name as it is, forwarded (the test's upstream refuses it): a failure,
            // and no search domain tried
            if stack.succeeded(run) || !got.is_empty() || counted.received > 2 * 2 {
                return Err("not a failure of the name as it is".into());
            }
            return Ok("as is".into());
        }
        Case::Plain | Case::Search => ips(&["10.11.0.1"]),
        Case::Ndots => ips(&["10.12.0.7"]),
        Case::Dual => ips(&["10.11.0.5", "fd00::5"]),
        Case::Forwarded => ips(&["192.0.2.80"]),
        Case::Missing => {
            if !stack.says_not_found(run) || !got.is_empty() {
                return Err("not a clean \"not found\"".into());
            }
            // at most the name as asked and with the one search domain, each type once and
            // perhaps once again: more would be a storm
            let bound = 2 * 2 * stack.address_types();
            if counted.received == 0 || counted.received > bound {
                return Err(format!(
                    "{} queries reached the stub (bound {bound})",
                    counted.received
                ));
            }
            return Ok(String::new());
        }
        Case::Srv => {
            let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
            if !stack.succeeded(run) || !flat.contains(SRV_TEXT) {
                return Err(format!("no \"{SRV_TEXT}\""));
            }
            return Ok(String::new());
        }
        Case::Big => {
            let all = big_addresses();
            if !stack.succeeded(run) || got.is_empty() || !got.is_subset(&all) {
                return Err(format!("{} addresses, not all of the set", got.len()));
            }
            if stack.gets_every_address() && got != all {
                return Err(format!("{} of {BIG} addresses", got.len()));
            }
            // the others take the TC answer: the whole A records that fit in 512 bytes
            // beside the header and the question
            let fit = (512 - 12 - ("big.cluster.test".len() + 2 + 4)) / 16;
            if !stack.gets_every_address() && got.len() != fit {
                return Err(format!(
                    "{} addresses from the TC answer, want {fit}",
                    got.len()
                ));
            }
            return Ok(format!("{}/{BIG}", got.len()));
        }
    };
    if !stack.succeeded(run) {
        return Err("failed".into());
    }
    if got != want {
        return Err(format!("addresses {got:?}, want {want:?}"));
    }
    Ok(String::new())
}

/// The zones of the matrix, in a root of their own: `cluster.test` (web, dual, big with 40
/// registered members, an SRV set) and `svc.test` (db.prod). The members live as long as
/// the returned session.
async fn matrix_zones() -> (String, zookeeper_client::Client) {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, CLUSTER, CLUSTER_SETTINGS).await;
    put_zone(&c, &root, SVC, SVC_SETTINGS).await;
    put_set(&c, &root, CLUSTER, "web", r#"{"A": ["10.11.0.1"]}"#).await;
    put_set(
        &c,
        &root,
        CLUSTER,
        "dual",
        r#"{"A": ["10.11.0.5"], "AAAA": ["fd00::5"]}"#,
    )
    .await;
    put_set(
        &c,
        &root,
        CLUSTER,
        "_http._tcp.web",
        r#"{"SRV": [{"priority": 0, "weight": 5, "port": 8080, "target": "web"}]}"#,
    )
    .await;
    put_set(&c, &root, SVC, "db.prod", r#"{"A": ["10.12.0.7"]}"#).await;
    put_set(&c, &root, CLUSTER, "big", "").await;
    for i in 1..=BIG {
        let json = format!(r#"{{"A": ["10.13.0.{i}"]}}"#);
        add_member(&c, &root, CLUSTER, "big", &format!("m{i}"), &json).await;
    }
    (root, c)
}

/// The stub on port 53 of a free 127.53.x.y address, forwarding to `upstream`, with metrics.
fn stub_on_port_53(root: &str, upstream: SocketAddr) -> Option<(Zkdns, Ipv4Addr, SocketAddr)> {
    let listen = free_port_53()?;
    let stub = Zkdns::serve_ready(
        ZooKeeper::shared(),
        root,
        &[
            "--listen",
            &listen.to_string(),
            "--upstream",
            &upstream.to_string(),
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let SocketAddr::V4(v4) = listen else {
        unreachable!("an IPv4 loopback address")
    };
    let metrics = metrics_address(&stub);
    Some((stub, *v4.ip(), metrics))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stack_resolves_through_the_stub() {
    if !is_root() {
        eprintln!("skipped: needs root for port 53 and a mount namespace");
        return;
    }
    let started = Instant::now();
    let programs = tokio::task::spawn_blocking(client_programs)
        .await
        .expect("build the client programs");
    let built = started.elapsed();
    let upstream = Upstream::start();
    let (root, session) = matrix_zones().await;
    let Some((stub, ip, metrics)) = stub_on_port_53(&root, upstream.addr()) else {
        eprintln!("skipped: no 127.53.x.y address with port 53 free");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let resolv_confs: Vec<PathBuf> = CASES
        .iter()
        .enumerate()
        .map(|(i, case)| write_resolv_conf(dir.path(), &format!("case{i}"), ip, case.resolv()))
        .collect();

    let stacks: Vec<Stack> = STACKS
        .into_iter()
        .filter(|s| match (s, &programs.java) {
            (Stack::Jvm, Err(why)) => {
                eprintln!("JVM stack skipped: {why}");
                false
            }
            _ => true,
        })
        .collect();
    let mut table = String::new();
    let _ = write!(table, "{:<13}", "");
    for case in CASES {
        let _ = write!(table, " | {:<13}", case.label());
    }
    table.push('\n');
    let mut failures = Vec::new();
    for &stack in &stacks {
        let _ = write!(table, "{:<13}", stack.label());
        for (case, resolv_conf) in CASES.into_iter().zip(&resolv_confs) {
            let (name, lookup, search) = case.query();
            let Some(argv) = stack.command(programs, lookup, name, search) else {
                let _ = write!(table, " | {:<13}", "—");
                continue;
            };
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let before = QueryCounts::read(metrics);
            let run =
                tokio::task::block_in_place(|| in_resolv_ns(resolv_conf, &argv, &stack.env()));
            let counted = QueryCounts::read(metrics).since(before);
            let cell = match judge(stack, case, &run, counted, ip) {
                Ok(note) => format!("ok {note} {}q", counted.received),
                Err(why) => {
                    failures.push(format!(
                        "{} / {} ({argv:?}): {why}; {} queries to the stub\n{}",
                        stack.label(),
                        case.label(),
                        counted.received,
                        run.output()
                    ));
                    format!("FAIL {}q", counted.received)
                }
            };
            let _ = write!(table, " | {:<13}", cell.replace("  ", " "));
        }
        table.push('\n');
    }
    eprintln!(
        "client matrix (queries the stub received per lookup; clients built in {built:?}, \
         all in {:?}):\n{table}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of the matrix failed:\n{table}\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(stub);
    close_session(session).await;
}

/// One expansion of the search list, asked of the stub directly as a resolver asks it (UDP,
/// no EDNS, RD).
struct Expansion {
    name: String,
    rtype: RecordType,
    rcode: ResponseCode,
    aa: bool,
    /// The SOA in AUTHORITY: its owner and MNAME.
    soa: Option<(String, String)>,
    answers: Vec<String>,
    forwarded: u64,
    upstream_saw: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_list_expansions_of_an_outside_name() {
    if !is_root() {
        eprintln!("skipped: needs root for port 53 and a mount namespace");
        return;
    }
    let programs = tokio::task::spawn_blocking(client_programs)
        .await
        .expect("build the client programs");
    let upstream = Upstream::start();
    let relay = CountingRelay::start(upstream.addr());
    let (root, session) = matrix_zones().await;
    let Some((stub, ip, metrics)) = stub_on_port_53(&root, relay.addr()) else {
        eprintln!("skipped: no 127.53.x.y address with port 53 free");
        return;
    };
    let server = SocketAddr::from((ip, 53));
    const NAME: &str = "www.upstream.test";

    // each expansion, in the order a resolver tries them under ndots:5 (the name has two
    // dots, fewer than five: the search domains first, then the name as it is)
    let names: Vec<String> = ["cluster.test", "svc.test", "upstream.test"]
        .iter()
        .map(|domain| format!("{NAME}.{domain}"))
        .chain([NAME.to_string()])
        .collect();
    let plain = QueryOptions {
        edns: None,
        ..QueryOptions::default()
    };
    let mut expansions = Vec::new();
    for name in &names {
        for rtype in [RecordType::A, RecordType::AAAA] {
            relay.clear();
            let before = QueryCounts::read(metrics);
            let m = query_with(server, name, rtype, plain);
            let counted = QueryCounts::read(metrics).since(before);
            let soa = m.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some((r.name.to_string(), soa.mname.to_string())),
                _ => None,
            });
            expansions.push(Expansion {
                name: name.clone(),
                rtype,
                rcode: rcode(&m),
                aa: m.metadata.authoritative,
                soa,
                answers: answers_of(&m, rtype),
                forwarded: counted.forwarded,
                upstream_saw: relay.seen().len(),
            });
        }
    }
    let mut table = String::from("expansion | type | rcode | AA | SOA | answers | forwarded\n");
    for e in &expansions {
        let _ = writeln!(
            table,
            "{} | {} | {:?} | {} | {:?} | {:?} | {} (upstream saw {})",
            e.name, e.rtype, e.rcode, e.aa, e.soa, e.answers, e.forwarded, e.upstream_saw
        );
    }
    eprintln!("what the stub answers for each expansion of {NAME}:\n{table}");
    for e in &expansions {
        let zone = [CLUSTER, SVC]
            .into_iter()
            .find(|z| e.name.ends_with(&format!(".{z}")));
        match zone {
            // in a served zone: the map's NXDOMAIN, never the upstream's
            Some(zone) => {
                assert_eq!(e.rcode, ResponseCode::NXDomain, "{}\n{table}", e.name);
                assert!(e.aa, "{}: AA\n{table}", e.name);
                assert_eq!(
                    e.soa,
                    Some((format!("{zone}."), format!("ns.{zone}."))),
                    "{}: the zone's SOA\n{table}",
                    e.name
                );
                assert_eq!(
                    (e.forwarded, e.upstream_saw),
                    (0, 0),
                    "{}: forwarded\n{table}",
                    e.name
                );
            }
            // outside: one query upstream each, answered as the upstream answers
            None => {
                assert_eq!(
                    (e.forwarded, e.upstream_saw),
                    (1, 1),
                    "{}: forwarded once\n{table}",
                    e.name
                );
                let want = match (e.name.as_str(), e.rtype) {
                    (NAME, RecordType::A) => (ResponseCode::NoError, vec!["192.0.2.80".into()]),
                    (NAME, _) => (ResponseCode::NoError, vec![]),
                    _ => (ResponseCode::NXDomain, vec![]),
                };
                assert_eq!((e.rcode, e.answers.clone()), want, "{}\n{table}", e.name);
            }
        }
    }

    // the same through real resolvers: what one lookup of the outside name costs
    let dir = tempfile::tempdir().unwrap();
    let resolv = write_resolv_conf(dir.path(), "three", ip, SEARCH_THREE);
    let mut counts = String::new();
    for stack in [Stack::Getent, Stack::Musl, Stack::Go] {
        let argv = stack
            .command(programs, Lookup::Addresses, NAME, true)
            .expect("an address lookup");
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        relay.clear();
        let before = QueryCounts::read(metrics);
        let run = tokio::task::block_in_place(|| in_resolv_ns(&resolv, &argv, &stack.env()));
        let counted = QueryCounts::read(metrics).since(before);
        let seen = relay.seen();
        let _ = writeln!(
            counts,
            "{}: {} queries to the stub, {} forwarded, upstream saw {:?}",
            stack.label(),
            counted.received,
            counted.forwarded,
            seen.iter().map(|r| r.question.as_str()).collect::<Vec<_>>()
        );
        assert!(
            stack.succeeded(&run) && addresses_in(&run.stdout, ip) == ips(&["192.0.2.80"]),
            "{}: {NAME}\n{}",
            stack.label(),
            run.output()
        );
        assert!(
            seen.iter()
                .all(|r| !r.question.contains(".cluster.test.")
                    && !r.question.contains(".svc.test.")),
            "{}: an in-zone expansion reached the upstream: {seen:?}",
            stack.label()
        );
        // each of the four expansions asked once for A and once for AAAA, the last one
        // answered; no retries
        assert_eq!(counted.received, 4 * 2, "{}", stack.label());
        // the two expansions outside the zones were asked above, seconds ago: the cache
        // answers them (the negative ones for the upstream SOA's 30 s), so nothing of this
        // lookup reaches the upstream
        assert_eq!(counted.forwarded, 0, "{}: {seen:?}", stack.label());
        assert!(seen.is_empty(), "{}: {seen:?}", stack.label());
    }
    eprintln!("one lookup of {NAME} under ndots:5:\n{counts}");
    drop(stub);
    close_session(session).await;
}
