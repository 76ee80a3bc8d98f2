//! The test tree: every kind of record set and bad node, built into a snapshot through the
//! watcher's own [`Tree`], and a znode payload applied to it as a watch event would be.

use std::sync::OnceLock;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use super::*;
use crate::names::ZoneName;
use crate::records::decode_record_set;
use crate::store::Snapshot;
use crate::zk::layout::Layout;
use crate::zk::tree::{Applied, NodeState, Tree};

/// The nodes of the test tree: (path below `<root>/zones`, data). Every kind of record,
/// CNAME chains, loops and exits, wildcards, empty non-terminals, a nested zone, members,
/// bad nodes, and sets too large for UDP (`big`) and for one TCP message (`huge`).
pub fn test_nodes() -> &'static [(String, String)] {
    static NODES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    NODES.get_or_init(build_test_nodes)
}

fn build_test_nodes() -> Vec<(String, String)> {
    let mut nodes: Vec<(String, String)> = [
        ("fz.test", r#"{"ttl": 30, "soa": {"minimum": 10}}"#),
        (
            "fz.test/@",
            r#"{"A": ["10.0.0.10"], "MX": [{"preference": 10, "exchange": "mail"}], "TXT": ["apex"]}"#,
        ),
        (
            "fz.test/web",
            r#"{"A": ["10.0.0.1", "10.0.0.2"], "AAAA": ["fd00::1"]}"#,
        ),
        ("fz.test/single", r#"{"A": ["10.0.0.3"], "ttl": 60}"#),
        ("fz.test/mail", r#"{"A": ["10.0.0.25"]}"#),
        ("fz.test/alias", r#"{"CNAME": "web"}"#),
        ("fz.test/loop1", r#"{"CNAME": "loop2"}"#),
        ("fz.test/loop2", r#"{"CNAME": "loop1"}"#),
        ("fz.test/self", r#"{"CNAME": "self"}"#),
        ("fz.test/out", r#"{"CNAME": "www.example.com."}"#),
        ("fz.test/into-sub", r#"{"CNAME": "x.sub.fz.test."}"#),
        ("fz.test/*.wild", r#"{"A": ["10.0.0.4"], "TXT": ["wild"]}"#),
        (
            "fz.test/_http._tcp.web",
            r#"{"SRV": [{"priority": 0, "weight": 5, "port": 80, "target": "web"},
                        {"port": 81, "target": "missing"}]}"#,
        ),
        ("fz.test/empty", ""),
        ("fz.test/deep.x.y", r#"{"A": ["10.0.0.5"]}"#),
        ("fz.test/ptr", r#"{"PTR": ["host.example."]}"#),
        ("fz.test/svc", ""),
        ("fz.test/svc/m1", r#"{"A": ["10.0.1.1"]}"#),
        (
            "fz.test/svc/m2",
            r#"{"A": ["10.0.1.2"], "SRV": [{"port": 8080, "target": "svc"}]}"#,
        ),
        ("fz.test/bad", "{not json"),
        ("fz.test/Bad Name", r#"{"A": ["10.0.0.99"]}"#),
        ("sub.fz.test", ""),
        ("sub.fz.test/x", r#"{"A": ["10.0.2.1"]}"#),
        ("other.test", r#"{"ns": ["ns1.other.test."]}"#),
        ("other.test/ns1", r#"{"A": ["10.0.3.53"]}"#),
    ]
    .iter()
    .map(|(p, d)| (p.to_string(), d.to_string()))
    .collect();
    let txt = format!(
        r#"{{"TXT": ["v=1", ["a", "b"], "{}", ""]}}"#,
        "x".repeat(255)
    );
    nodes.push(("fz.test/txt".into(), txt));
    // a chain longer than the answer follows
    for i in 0..14 {
        nodes.push((
            format!("fz.test/c{i}"),
            format!(r#"{{"CNAME": "c{}"}}"#, i + 1),
        ));
    }
    nodes.push(("fz.test/c14".into(), r#"{"A": ["10.0.0.14"]}"#.into()));
    let big: Vec<String> = (0..200).map(|i| format!("\"10.1.0.{i}\"")).collect();
    nodes.push((
        "fz.test/big".into(),
        format!(r#"{{"A": [{}]}}"#, big.join(",")),
    ));
    // 300 TXT records of 255 bytes: about 77 KB, more than one DNS message holds
    let huge: Vec<String> = (0..300)
        .map(|i| format!("\"{i:03}{}\"", "h".repeat(252)))
        .collect();
    nodes.push((
        "fz.test/huge".into(),
        format!(r#"{{"TXT": [{}]}}"#, huge.join(",")),
    ));
    nodes
}

pub(crate) fn state(data: &[u8]) -> NodeState {
    NodeState {
        data: data.to_vec(),
        mzxid: 1,
        mtime: 1_700_000_000_000,
    }
}

/// The test nodes without the two large sets, for the znode runs: rebuilding those after
/// every payload costs much and finds nothing the packet runs do not.
fn small_test_nodes() -> &'static [(String, String)] {
    static NODES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    NODES.get_or_init(|| {
        test_nodes()
            .iter()
            .filter(|(p, _)| p != "fz.test/big" && p != "fz.test/huge")
            .cloned()
            .collect()
    })
}

/// The test tree, read parents first as a full read does.
pub fn test_tree() -> Tree {
    tree_of(test_nodes())
}

fn tree_of(nodes: &[(String, String)]) -> Tree {
    read_into(Tree::new(None), ROOT, as_bytes(nodes))
}

fn as_bytes(nodes: &[(String, String)]) -> impl Iterator<Item = (&str, &[u8])> + Clone {
    nodes.iter().map(|(p, d)| (p.as_str(), d.as_bytes()))
}

/// A full read of `nodes` (paths below `<root>/zones`, and their data) into `tree`, parents
/// first, as the watcher does.
pub(crate) fn read_into<'a>(
    mut tree: Tree,
    root: &str,
    nodes: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Tree {
    let layout = Layout::new(root).expect("valid root");
    for depth in 0..3 {
        for (path, data) in nodes
            .clone()
            .filter(|(p, _)| p.matches('/').count() == depth)
        {
            tree.apply(&layout, &format!("{root}/zones/{path}"), Some(&state(data)));
        }
    }
    tree
}

/// The snapshot the fuzzers answer from (built once).
pub fn test_snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| test_tree().snapshot())
}

/// Applies one znode to a copy of the test tree, as a watch event would, and returns the
/// snapshot; where the tree asks for a full read (a zone appeared inside another), reads the
/// test nodes and this one again, as the watcher does. Never panics for any `path` and
/// `data`. `path` is below `<root>/zones`, e.g. `fz.test/web` or `fz.test/svc/m3`.
pub fn apply_znode(path: &str, data: &[u8]) -> Snapshot {
    static BASE: OnceLock<Tree> = OnceLock::new();
    let layout = Layout::new(ROOT).expect("valid root");
    let mut tree = BASE.get_or_init(|| tree_of(small_test_nodes())).clone();
    let full = format!("{ROOT}/zones/{path}");
    if tree.apply(&layout, &full, Some(&state(data))) == Applied::Resync {
        let others = as_bytes(small_test_nodes()).filter(|(p, _)| *p != path);
        tree = read_into(
            Tree::new(None),
            ROOT,
            others.chain(std::iter::once((path, data))),
        );
    }
    tree.snapshot()
}

/// Applies `data` at `path` ([`apply_znode`]) and checks what the stub then answers for the
/// name the node stands for: every reply passes [`check_reply`] over UDP and TCP for the
/// usual types; data that does not decode never reaches an answer (a record set answers
/// NODATA, a member adds nothing to its set), data that decodes answers exactly its
/// addresses; and `web.fz.test` still answers when the node is not about it. Returns whether
/// the payload decoded as a record set.
pub fn check_znode(path: &str, data: &[u8]) -> Result<bool, String> {
    let snap = apply_znode(path, data);
    let parts: Vec<&str> = path.split('/').collect();
    if !path.contains("web") {
        check_still_answers(&snap)?;
    }
    let name = match parts[..] {
        [zone] | [zone, "@"] | [zone, "@", _] => zone.to_string(),
        [zone, set] | [zone, set, _] => format!("{set}.{zone}"),
        _ => return Ok(false), // not a node of the layout: ignored
    };
    let zone = ZoneName::from_znode(parts[0]);
    let decoded = zone.as_ref().map(|z| decode_record_set(data, z));
    let valid_name = name.is_ascii() && name.len() < 250;
    let mut any = None;
    for qtype in [1u16, 28, 16, 33, 15, 12, 5, 255] {
        for tcp in [false, true] {
            if !valid_name {
                continue; // not a name a query can carry
            }
            let q = build_query(9, &name, qtype, 1, Some(1232));
            let mut out = Vec::new();
            let verdict = answer_packet(&snap, &q, CLIENT, tcp, &mut out);
            check_reply(MapState::Fresh, &snap, &q, tcp, verdict, &out)
                .map_err(|e| format!("{name} type {qtype} tcp={tcp}: {e}"))?;
            if verdict == Verdict::Reply && tcp && qtype == 255 {
                any = Message::from_vec(&out).ok();
            }
        }
    }
    let decoded_ok = matches!(decoded, Ok(Ok(_)));
    // the exact answer is known for a new set and a new member of `svc`
    let own = match path {
        "fz.test/zz" => Vec::new(),
        "fz.test/svc/m9" => vec!["10.0.1.1".to_string(), "10.0.1.2".to_string()],
        _ => return Ok(decoded_ok),
    };
    let Some(any) = any else {
        return Err(format!("no answer for {name} ANY"));
    };
    let mut want = own;
    match &decoded {
        // a CNAME is followed (and a member's CNAME takes its whole set over)
        Ok(Ok(d)) if d.cname.is_some() => return Ok(true),
        Ok(Ok(d)) => {
            want.extend(d.a.iter().map(|a| a.to_string()));
            want.extend(d.aaaa.iter().map(|a| a.to_string()));
        }
        _ => {}
    }
    want.sort();
    want.dedup();
    let mut have: Vec<String> = any
        .answers
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .map(|r| r.data.to_string())
        .collect();
    have.sort();
    have.dedup();
    if path == "fz.test/zz" && !decoded_ok && !any.answers.is_empty() {
        return Err(format!(
            "data that does not decode answered {:?}",
            any.answers
        ));
    }
    if !any.metadata.truncation && have != want {
        return Err(format!("{name} answered {have:?}, want {want:?}"));
    }
    Ok(decoded_ok)
}
