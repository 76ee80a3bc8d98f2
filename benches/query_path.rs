//! The query path without the network: snapshot lookups (exact, wildcard, NXDOMAIN) and whole
//! answers (`parse_query` + `answer` into a reused buffer) over a 10k-name snapshot, and the
//! cost of a change: applying one changed record set at 100k names (and taking the snapshot
//! that would be published) against building all 100k from scratch.
//!
//! `cargo bench --bench query_path`; bench/run.sh runs it as its `criterion` part.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use zkdns::dns::answer::{AnswerOptions, Outcome, answer};
use zkdns::dns::wire::parse_query;
use zkdns::names::wire_key_str;
use zkdns::store::Snapshot;
use zkdns::zk::Layout;
use zkdns::zk::tree::{NodeState, Tree};

const ZONE: &str = "bench.test";
/// Keys are visited in this many-long cycles, so a lookup does not always hit the same line.
const KEYS: usize = 1024;

fn node(data: String, mzxid: i64) -> NodeState {
    NodeState {
        data: data.into_bytes(),
        mzxid,
        mtime: 0,
    }
}

fn label(i: usize) -> String {
    // spread like the whole-server benchmark's names (bench/gen.py)
    format!(
        "svc{i:06}-{:06x}",
        (i as u64).wrapping_mul(2_654_435_761) & 0xFF_FFFF
    )
}

fn address(i: usize, salt: usize) -> String {
    let v = i + 1 + salt;
    format!(
        "{{\"A\": [\"10.{}.{}.{}\"]}}",
        (v >> 16) & 255,
        (v >> 8) & 255,
        v & 255
    )
}

/// The nodes of a zone of `n` A records, plus a wildcard, as ZooKeeper would hand them over.
fn nodes(n: usize) -> Vec<(String, NodeState)> {
    let base = format!("/b/zones/{ZONE}");
    let mut out = vec![(base.clone(), node(String::new(), 1))];
    out.push((
        format!("{base}/*.wild"),
        node(r#"{"A": ["10.255.0.1"]}"#.into(), 1),
    ));
    out.extend((0..n).map(|i| (format!("{base}/{}", label(i)), node(address(i, 0), 1))));
    out
}

fn build(layout: &Layout, nodes: &[(String, NodeState)]) -> Tree {
    let mut tree = Tree::new(None);
    for (path, state) in nodes {
        tree.apply(layout, path, Some(state));
    }
    tree
}

fn keys(name: impl Fn(usize) -> String) -> Vec<Box<[u8]>> {
    (0..KEYS).map(|k| wire_key_str(&name(k * 9 + 7))).collect()
}

/// A query packet (ID, RD, one question, EDNS OPT with 1232 bytes) for `name` and `qtype`.
fn query_type(name: &str, qtype: u16) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for l in name.split('.') {
        p.push(l.len() as u8);
        p.extend_from_slice(l.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    p
}

fn lookups(c: &mut Criterion, snap: &Snapshot) {
    let mut g = c.benchmark_group("lookup_10k");
    let mut scratch = [0u8; 257];
    for (what, keys) in [
        ("exact", keys(|i| format!("{}.{ZONE}", label(i)))),
        ("wildcard", keys(|i| format!("host{i}.wild.{ZONE}"))),
        ("nxdomain", keys(|i| format!("nope{i}.{ZONE}"))),
    ] {
        let mut i = 0;
        g.bench_function(what, |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                let found = snap.lookup(black_box(&keys[i]), &mut scratch);
                black_box(matches!(found, zkdns::store::Lookup::Found { .. }))
            })
        });
    }
    g.finish();
}

fn answers(c: &mut Criterion, snap: &Snapshot) {
    let mut g = c.benchmark_group("answer_10k");
    let mut out = Vec::with_capacity(1232);
    for (what, qtype, name) in [
        (
            "a_record",
            1,
            Box::new(|i: usize| format!("{}.{ZONE}", label(i))) as Box<dyn Fn(usize) -> String>,
        ),
        (
            "nxdomain",
            1,
            Box::new(|i: usize| format!("nope{i}.{ZONE}")),
        ),
        (
            "ptr",
            12,
            // the reverse name of label(i)'s address (see `address`)
            Box::new(|i: usize| {
                let v = i + 1;
                let octet = |shift: usize| (v >> shift) & 255;
                format!("{}.{}.{}.10.in-addr.arpa", octet(0), octet(8), octet(16))
            }),
        ),
    ] {
        let packets: Vec<Vec<u8>> = (0..KEYS)
            .map(|k| query_type(&name(k * 9 + 7), qtype))
            .collect();
        for packet in &packets {
            let q = parse_query(packet).expect("a valid query");
            answer(snap, packet, &q, 1232, AnswerOptions::default(), &mut out);
            let answers = u16::from_be_bytes([out[6], out[7]]);
            assert_eq!(answers > 0, what != "nxdomain", "{what}: {answers} answers");
        }
        let mut i = 0;
        g.bench_function(what, |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                let packet = black_box(&packets[i][..]);
                let q = parse_query(packet).expect("a valid query");
                let done = answer(snap, packet, &q, 1232, AnswerOptions::default(), &mut out);
                assert_eq!(done, Outcome::Reply);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn changes(c: &mut Criterion) {
    let layout = Layout::new("/b").expect("a valid root");
    let all = nodes(100_000);
    let mut g = c.benchmark_group("build_100k");
    g.sample_size(10);
    g.bench_function("full", |b| {
        b.iter(|| black_box(build(&layout, &all).snapshot().names))
    });
    let mut tree = build(&layout, &all);
    let heap = tree.snapshot().heap_bytes();
    // not a timing, but what the memory target turns on
    eprintln!(
        "snapshot tables at 100k names: {:.1} MiB ({} bytes per name)",
        heap as f64 / (1 << 20) as f64,
        heap / all.len()
    );
    let path = format!("/b/zones/{ZONE}/{}", label(50_000));
    let mut version = 1;
    g.bench_function("incremental_one_set", |b| {
        b.iter_batched(
            || {
                version += 1;
                node(address(50_000, version as usize), version)
            },
            |state| {
                tree.apply(&layout, &path, Some(&state));
                black_box(tree.snapshot().names)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// One member of a set with 10,000 members changing its address: the set is encoded again
/// (once per batch of events; here every event is its own batch).
fn members(c: &mut Criterion) {
    const MEMBERS: usize = 10_000;
    let layout = Layout::new("/b").expect("a valid root");
    let base = format!("/b/zones/{ZONE}");
    let mut all = vec![
        (base.clone(), node(String::new(), 1)),
        (format!("{base}/svc"), node(String::new(), 1)),
    ];
    all.extend((0..MEMBERS).map(|i| (format!("{base}/svc/m{i}"), node(address(i, 0), 1))));
    let mut tree = build(&layout, &all);
    let path = format!("{base}/svc/m{}", MEMBERS / 2);
    let mut version = 1;
    let mut g = c.benchmark_group("members_10k");
    g.sample_size(20);
    g.bench_function("one_member_event", |b| {
        b.iter_batched(
            || {
                version += 1;
                node(address(MEMBERS + version as usize, 0), version)
            },
            |state| {
                tree.apply(&layout, &path, Some(&state));
                black_box(tree.snapshot().names)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// What the query path adds per query for its metrics: a count by type, a count by RCODE, and
/// its share of a batch's latency sample (one per batch of `BATCH` answers).
fn metrics(c: &mut Criterion) {
    const BATCH: u64 = 8;
    let m = zkdns::metrics::Metrics::new(1);
    let shard = m.shard(1);
    let mut g = c.benchmark_group("metrics");
    g.bench_function("per_query", |b| {
        let mut i = 0u64;
        b.iter(|| {
            shard.query(std::hint::black_box(1));
            shard.response(std::hint::black_box(0));
            i += 1;
            if i % BATCH == 0 {
                shard.latency(std::time::Duration::from_micros(40), BATCH);
            }
        })
    });
    g.finish();
}

fn query_path(c: &mut Criterion) {
    let layout = Layout::new("/b").expect("a valid root");
    let snap = build(&layout, &nodes(10_000)).snapshot();
    lookups(c, &snap);
    answers(c, &snap);
    changes(c);
    members(c);
    metrics(c);
}

criterion_group!(benches, query_path);
criterion_main!(benches);
