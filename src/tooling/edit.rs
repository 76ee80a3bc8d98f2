//! Edits of one record set by hand, as `zkdns set` and `rm` make them: the records of one
//! type replaced from their command-line form, or removed, and the result validated as the
//! stub will read it (and checked against ZooKeeper's size limit) before anything is written.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::anyhow;
use hickory_proto::serialize::txt::parse_ttl;

use crate::cli::RecordKind;
use crate::error::Failure;
use crate::names::{ZoneName, parse_target};
use crate::records::{DataError, MAX_PAYLOAD, Mx, RecordSetJson, Srv, Txt, validate};

/// Times an edit re-reads and retries when the node changed under it.
pub const ATTEMPTS: usize = 10;

/// The error for a record set whose stored data cannot be edited.
pub fn bad_data(fqdn: &str, e: impl std::fmt::Display) -> Failure {
    Failure::input(anyhow!(
        "the record set {fqdn} holds data that is not valid ({e}); fix it or `zkdns rm` it first"
    ))
}

/// Replaces the records of `kind` in `set` with `values` (see `zkdns set --help` for the
/// formats), then validates the result; on error `set` is left as it was. Targets are stored
/// absolute.
pub fn set_records(
    set: &mut RecordSetJson,
    kind: RecordKind,
    values: &[String],
    zone: &ZoneName,
) -> Result<(), String> {
    let mut next = set.clone();
    replace_records(&mut next, kind, values, zone)?;
    next.normalise();
    check(&next, zone)?;
    *set = next;
    Ok(())
}

fn replace_records(
    set: &mut RecordSetJson,
    kind: RecordKind,
    values: &[String],
    zone: &ZoneName,
) -> Result<(), String> {
    let target = |v: &str| {
        parse_target(v, zone)
            .map(|n| n.to_ascii())
            .map_err(|e| format!("{v:?}: {e}"))
    };
    let number = |v: &str, what: &str| {
        v.parse::<u16>()
            .map_err(|_| format!("{v:?} is not a {what} (0-65535)"))
    };
    let one = |what: &str| {
        if values.len() == 1 {
            Ok(values[0].as_str())
        } else {
            Err(format!(
                "{what} takes exactly one value, not {}",
                values.len()
            ))
        }
    };
    match kind {
        RecordKind::A => {
            set.a = values
                .iter()
                .map(|v| {
                    v.parse::<Ipv4Addr>()
                        .map_err(|_| format!("{v:?} is not an IPv4 address"))
                })
                .collect::<Result<_, _>>()?;
        }
        RecordKind::Aaaa => {
            set.aaaa = values
                .iter()
                .map(|v| {
                    v.parse::<Ipv6Addr>()
                        .map_err(|_| format!("{v:?} is not an IPv6 address"))
                })
                .collect::<Result<_, _>>()?;
        }
        RecordKind::Cname => set.cname = Some(target(one("CNAME")?)?),
        RecordKind::Txt => set.txt = values.iter().map(|v| Txt::One(v.clone())).collect(),
        RecordKind::Ptr => set.ptr = values.iter().map(|v| target(v)).collect::<Result<_, _>>()?,
        RecordKind::Mx => {
            set.mx = values
                .iter()
                .map(|v| match v.split_whitespace().collect::<Vec<_>>()[..] {
                    [pref, exchange] => Ok(Mx {
                        preference: number(pref, "preference")?,
                        exchange: target(exchange)?,
                    }),
                    _ => Err(format!(
                        "MX {v:?} is not \"PREFERENCE EXCHANGE\" (one quoted argument per record)"
                    )),
                })
                .collect::<Result<_, _>>()?;
        }
        RecordKind::Srv => {
            set.srv = values
                .iter()
                .map(|v| match v.split_whitespace().collect::<Vec<_>>()[..] {
                    [priority, weight, port, t] => Ok(Srv {
                        priority: number(priority, "priority")?,
                        weight: number(weight, "weight")?,
                        port: number(port, "port")?,
                        target: target(t)?,
                    }),
                    _ => Err(format!(
                        "SRV {v:?} is not \"PRIORITY WEIGHT PORT TARGET\" (one quoted argument per record)"
                    )),
                })
                .collect::<Result<_, _>>()?;
        }
        RecordKind::Ttl => {
            let v = one("TTL")?;
            set.ttl =
                Some(parse_ttl(v).map_err(|_| format!("TTL {v:?} is not a number of seconds"))?);
        }
    }
    Ok(())
}

/// Removes the records of `kind` from `set`; false when it had none.
pub fn remove_records(set: &mut RecordSetJson, kind: RecordKind) -> bool {
    fn clear<T>(v: &mut Vec<T>) -> bool {
        let had = !v.is_empty();
        v.clear();
        had
    }
    match kind {
        RecordKind::A => clear(&mut set.a),
        RecordKind::Aaaa => clear(&mut set.aaaa),
        RecordKind::Cname => set.cname.take().is_some(),
        RecordKind::Txt => clear(&mut set.txt),
        RecordKind::Srv => clear(&mut set.srv),
        RecordKind::Mx => clear(&mut set.mx),
        RecordKind::Ptr => clear(&mut set.ptr),
        RecordKind::Ttl => set.ttl.take().is_some(),
    }
}

fn check(set: &RecordSetJson, zone: &ZoneName) -> Result<(), String> {
    validate(set, zone).map_err(|e: DataError| e.to_string())?;
    let size = set.to_payload().len();
    if size > MAX_PAYLOAD {
        return Err(format!(
            "the record set would take {size} bytes, over ZooKeeper's {MAX_PAYLOAD} byte limit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::fixtures::zone;

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_replaces_one_type() {
        let z = zone();
        let mut set = RecordSetJson::default();
        set_records(
            &mut set,
            RecordKind::A,
            &values(&["10.0.0.2", "10.0.0.1"]),
            &z,
        )
        .unwrap();
        set_records(&mut set, RecordKind::Txt, &values(&["-all", "a b"]), &z).unwrap();
        set_records(&mut set, RecordKind::A, &values(&["10.0.0.3"]), &z).unwrap();
        assert_eq!(set.a, vec![Ipv4Addr::new(10, 0, 0, 3)]);
        assert_eq!(set.txt.len(), 2);
        set_records(&mut set, RecordKind::Srv, &values(&["0 5 8080 web"]), &z).unwrap();
        assert_eq!(set.srv[0].target, "web.cluster.test.");
        set_records(&mut set, RecordKind::Mx, &values(&["10 mx.example."]), &z).unwrap();
        assert_eq!(set.mx[0].exchange, "mx.example.");
        set_records(&mut set, RecordKind::Ttl, &values(&["1m"]), &z).unwrap();
        assert_eq!(set.ttl, Some(60));
        assert!(remove_records(&mut set, RecordKind::Ttl));
        assert!(!remove_records(&mut set, RecordKind::Ttl));
        assert!(remove_records(&mut set, RecordKind::A));
        assert!(set.a.is_empty());
    }

    #[test]
    fn set_rejects_bad_values() {
        let z = zone();
        let mut set = RecordSetJson::default();
        for (kind, v) in [
            (RecordKind::A, vec!["10.0.0.300"]),
            (RecordKind::Aaaa, vec!["10.0.0.1"]),
            (RecordKind::Cname, vec!["a", "b"]),
            (RecordKind::Cname, vec!["bad name"]),
            (RecordKind::Srv, vec!["0 5 web"]),
            (RecordKind::Srv, vec!["0 5 70000 web"]),
            (RecordKind::Mx, vec!["ten mx"]),
            (RecordKind::Ttl, vec!["soon"]),
        ] {
            assert!(
                set_records(&mut set, kind, &values(&v), &z).is_err(),
                "{kind:?} {v:?}"
            );
        }
        let long = "x".repeat(256);
        assert!(set_records(&mut set, RecordKind::Txt, &values(&[&long]), &z).is_err());
        // a CNAME beside other data is refused by validation
        set_records(&mut set, RecordKind::A, &values(&["10.0.0.1"]), &z).unwrap();
        let e = set_records(&mut set, RecordKind::Cname, &values(&["web"]), &z).unwrap_err();
        assert!(e.contains("CNAME"), "{e}");
    }
}
