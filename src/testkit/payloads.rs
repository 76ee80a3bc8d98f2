//! Generated znode payloads: good and bad names, addresses, TTLs and record data of every
//! kind, as JSON a znode might hold.

use rand::Rng;

use super::packets::pick;
use super::*;

/// Text a znode might hold where a name goes: good names, relative and absolute, and every
/// kind of bad one (spaces, control and non-LDH characters, labels over 63, names over 255,
/// misplaced wildcards and hyphens, empty labels).
pub(crate) fn random_name_text<R: Rng + ?Sized>(rng: &mut R) -> String {
    let long_label = "l".repeat(64);
    let long_name = vec!["n".repeat(60); 5].join(".");
    let bad = [
        "web",
        "web.fz.test.",
        "www.example.com.",
        "@",
        ".",
        "",
        "a b",
        "a\u{1}b",
        "tab\there",
        "new\nline",
        "ü.example.",
        "a$b",
        "a/b",
        "Web",
        "-web",
        "web-",
        "*",
        "*.x",
        "x.*",
        "a..b",
        "_srv._tcp",
        "0",
        &long_label,
        &long_name,
    ];
    if rng.random_bool(0.8) {
        return pick(rng, &bad).to_string();
    }
    let len = rng.random_range(0..80);
    (0..len)
        .map(|_| char::from(rng.random_range(0u8..128)))
        .collect()
}

/// A JSON value for `key` of a record set: usually the right type with good or bad contents,
/// sometimes the wrong type altogether.
fn random_value<R: Rng + ?Sized>(rng: &mut R, key: &str) -> serde_json::Value {
    use serde_json::{Value, json};
    let address = |rng: &mut R| -> Value {
        let v4 = format!(
            "10.{}.{}.{}",
            rng.random::<u8>(),
            rng.random::<u8>(),
            rng.random::<u8>()
        );
        let texts = [
            v4.as_str(),
            "fd00::1",
            "10.0.0.300",
            "10.0.0.1 ",
            " 10.0.0.1",
            "010.0.0.1",
            "10.0.0.1x",
            "10.0.0",
            "::ffff:10.0.0.1",
            "fd00::1%eth0",
            "",
            "localhost",
        ];
        if rng.random_bool(0.9) {
            json!(pick(rng, &texts))
        } else {
            json!(rng.random::<u32>())
        }
    };
    let txt_string = |rng: &mut R| -> Value {
        let any = rng.random_range(0..300);
        let len = *pick(rng, &[0usize, 1, 10, 255, 256, 1000, any]);
        let c = char::from(rng.random_range(0x20u8..0x7F));
        json!(c.to_string().repeat(len))
    };
    if rng.random_bool(0.1) {
        return pick(
            rng,
            &[
                json!(null),
                json!(true),
                json!(-1),
                json!(1.5),
                json!("x"),
                json!({}),
                json!([[]]),
                json!(4_294_967_296u64),
            ],
        )
        .clone();
    }
    let n = *pick(rng, &[0usize, 1, 2, 3, 20]);
    match key {
        "ttl" => json!(*pick(rng, &[0u64, 5, 300, 4_294_967_295, 4_294_967_296])),
        "A" | "AAAA" => Value::Array((0..n).map(|_| address(rng)).collect()),
        "CNAME" => json!(random_name_text(rng)),
        "PTR" => Value::Array((0..n).map(|_| json!(random_name_text(rng))).collect()),
        "TXT" => Value::Array(
            (0..n)
                .map(|_| {
                    if rng.random_bool(0.7) {
                        txt_string(rng)
                    } else {
                        // several strings in one record, sometimes more than RDLENGTH holds
                        let m = *pick(rng, &[0usize, 2, 5, 300]);
                        let c = char::from(rng.random_range(b'a'..=b'z'));
                        Value::Array((0..m).map(|_| json!(c.to_string().repeat(255))).collect())
                    }
                })
                .collect(),
        ),
        "SRV" | "MX" => Value::Array(
            (0..n)
                .map(|_| {
                    let number = |rng: &mut R| json!(*pick(rng, &[0i64, 1, 65535, 65536, -1]));
                    let mut o = serde_json::Map::new();
                    let fields: &[&str] = if key == "SRV" {
                        &["priority", "weight", "port", "target", "extra"]
                    } else {
                        &["preference", "exchange", "extra"]
                    };
                    for f in fields {
                        if rng.random_bool(0.8) {
                            let v = if matches!(*f, "target" | "exchange") {
                                json!(random_name_text(rng))
                            } else {
                                number(rng)
                            };
                            if *f != "extra" || rng.random_bool(0.2) {
                                o.insert(f.to_string(), v);
                            }
                        }
                    }
                    Value::Object(o)
                })
                .collect(),
        ),
        "ns" => Value::Array((0..n).map(|_| json!(random_name_text(rng))).collect()),
        "soa" => {
            let mut o = serde_json::Map::new();
            for f in [
                "mname", "rname", "serial", "refresh", "retry", "expire", "minimum", "extra",
            ] {
                if rng.random_bool(0.5) {
                    let v = if f.ends_with("name") {
                        json!(random_name_text(rng))
                    } else {
                        json!(*pick(rng, &[0i64, 60, 4_294_967_295, -1]))
                    };
                    o.insert(f.to_string(), v);
                }
            }
            Value::Object(o)
        }
        _ => json!(random_name_text(rng)),
    }
}

/// A payload for a record set (or member), or for a zone node when `zone`: random JSON with
/// known and unknown keys, good and bad values; a good payload mutated byte by byte; or
/// random bytes.
pub fn random_payload<R: Rng + ?Sized>(rng: &mut R, zone: bool) -> Vec<u8> {
    let keys: &[&str] = if zone {
        &["ttl", "soa", "ns", "TTL", "extra"]
    } else {
        &[
            "ttl", "A", "AAAA", "CNAME", "TXT", "SRV", "MX", "PTR", "AAA", "a", "txt", "hostname",
        ]
    };
    match rng.random_range(0..10) {
        0 => {
            let mut p = vec![0u8; rng.random_range(0..100)];
            rng.fill(&mut p[..]);
            p
        }
        1..=3 => {
            // the small ones: mutating the 77 KB of `huge` costs time and finds nothing new
            let small: Vec<&String> = test_nodes()
                .iter()
                .map(|(_, d)| d)
                .filter(|d| d.len() < 4096)
                .collect();
            let mut p = pick(rng, &small).as_bytes().to_vec();
            mutate(rng, &mut p);
            p
        }
        _ => {
            let mut o = serde_json::Map::new();
            for key in keys {
                let known = key.chars().any(|c| c.is_ascii_uppercase())
                    || matches!(*key, "ttl" | "soa" | "ns");
                if rng.random_bool(if known { 0.3 } else { 0.03 }) {
                    o.insert(key.to_string(), random_value(rng, key));
                }
            }
            serde_json::to_vec(&serde_json::Value::Object(o)).expect("JSON")
        }
    }
}
