//! The two host-to-address inputs of `zkdns import`: hosts files (`/etc/hosts` syntax) and the
//! old system's single-znode JSON map `{"hostname": "ip", …}`. Both become A and AAAA record
//! sets of one zone, a [`ZoneContent`] that `import` plans and writes like a zone file's. Pure.
//!
//! Host names without a dot are relative to the zone (`web` is `web.<zone>`); names with a dot
//! are absolute (a trailing dot is allowed) and must be the zone or below it. Letter case is
//! folded. Every name a file gives is one record set holding all of its addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::names::{RelName, ZoneName};
use crate::records::{MAX_PAYLOAD, RecordSetJson};
use crate::tooling::zonefile::{ZoneContent, ZoneFileError};

/// The record-set name of a host name as hosts files and JSON maps give it (see the module
/// docs for relative and absolute names).
pub fn host_name(text: &str, zone: &ZoneName) -> Result<RelName, String> {
    let lower = text.to_ascii_lowercase();
    if lower.contains('*') {
        return Err(format!(
            "{text:?} is a wildcard; hosts files and JSON maps name hosts (use a zone file)"
        ));
    }
    let absolute = lower.strip_suffix('.');
    if absolute.is_none() && !lower.contains('.') {
        return RelName::from_znode(&lower, zone)
            .map_err(|e| format!("{text:?} is not a valid host name: {e}"));
    }
    let fqdn = absolute.unwrap_or(&lower);
    let checked =
        ZoneName::parse(fqdn).map_err(|e| format!("{text:?} is not a valid host name: {e}"))?;
    if !zone.contains(checked.as_str()) {
        return Err(format!(
            "{text:?} is outside the zone {zone} (names with a dot are absolute; \
             names without one are relative to the zone)"
        ));
    }
    zone.relative(checked.as_str())
        .ok_or_else(|| format!("{text:?} is not a valid host name"))
}

fn address(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| {
        let hint = if text.contains('%') {
            " (a zone index such as %eth0 cannot be served)"
        } else {
            ""
        };
        format!("{text:?} is not an IPv4 or IPv6 address{hint}")
    })
}

/// Host names and their addresses from one or more hosts files or JSON maps, for one zone.
#[derive(Debug, Clone)]
pub struct HostMap {
    zone: ZoneName,
    sets: BTreeMap<RelName, RecordSetJson>,
}

impl HostMap {
    pub fn new(zone: ZoneName) -> Self {
        Self {
            zone,
            sets: BTreeMap::new(),
        }
    }

    pub fn zone(&self) -> &ZoneName {
        &self.zone
    }

    fn add(&mut self, name: RelName, addr: IpAddr) {
        let set = self.sets.entry(name).or_default();
        match addr {
            IpAddr::V4(a) => set.a.push(a),
            IpAddr::V6(a) => set.aaaa.push(a),
        }
        set.normalise();
    }

    /// Refuses a record set too large for one znode.
    fn check_sizes(&self, touched: &BTreeSet<RelName>) -> Result<(), ZoneFileError> {
        for name in touched {
            let size = self.sets[name].to_payload().len();
            if size > MAX_PAYLOAD {
                return Err(ZoneFileError {
                    line: None,
                    reason: format!(
                        "{}: its addresses take {size} bytes, over ZooKeeper's {MAX_PAYLOAD} byte limit",
                        name.fqdn(&self.zone)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Adds the lines of a hosts file: `ADDRESS NAME [ALIAS…]`, `#` comments, blank lines.
    /// On error (naming the line) nothing is added.
    pub fn add_hosts(&mut self, text: &str) -> Result<(), ZoneFileError> {
        let mut next = self.clone();
        let mut touched = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let at = |reason: String| ZoneFileError {
                line: Some(i + 1),
                reason,
            };
            let content = line.split('#').next().unwrap_or_default();
            let mut tokens = content.split_whitespace();
            let Some(first) = tokens.next() else {
                continue;
            };
            let addr = address(first).map_err(at)?;
            let mut any = false;
            for token in tokens {
                let name = host_name(token, &self.zone).map_err(at)?;
                next.add(name.clone(), addr);
                touched.insert(name);
                any = true;
            }
            if !any {
                return Err(at(format!("no host name after the address {first}")));
            }
        }
        next.check_sizes(&touched)?;
        *self = next;
        Ok(())
    }

    /// Adds a JSON map `{"hostname": "ip", …}`; a value may also be a list of addresses. On
    /// error (naming the key, and the line of its value) nothing is added.
    pub fn add_json_map(&mut self, text: &str) -> Result<(), ZoneFileError> {
        if text.trim().is_empty() {
            return Err(ZoneFileError {
                line: None,
                reason: "empty, not a JSON map {\"hostname\": \"ip\", …}".to_string(),
            });
        }
        let entries: Entries = serde_json::from_str(text).map_err(|e| ZoneFileError {
            line: Some(e.line()),
            reason: format!(
                "not a JSON map {{\"hostname\": \"ip\", …}}: {}",
                without_position(&e)
            ),
        })?;
        let mut next = self.clone();
        let mut touched = BTreeSet::new();
        for (key, value) in entries.0 {
            let offset = value.get().as_ptr() as usize - text.as_ptr() as usize;
            let line = text[..offset].matches('\n').count() + 1;
            let at = |reason: String| ZoneFileError {
                line: Some(line),
                reason: format!("{key:?}: {reason}"),
            };
            let name = host_name(&key, &self.zone).map_err(at)?;
            let addrs = match serde_json::from_str::<serde_json::Value>(value.get()) {
                Ok(serde_json::Value::String(one)) => vec![one],
                Ok(serde_json::Value::Array(list)) if !list.is_empty() => list
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => Ok(s),
                        other => Err(at(format!("{other} is not an address (a string)"))),
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(at(format!(
                        "the value must be an address or a list of addresses, not {}",
                        value.get()
                    )));
                }
            };
            for text in addrs {
                next.add(name.clone(), address(&text).map_err(at)?);
            }
            touched.insert(name);
        }
        next.check_sizes(&touched)?;
        *self = next;
        Ok(())
    }

    /// The zone's content: record sets without TTLs (they follow the zone's) and no zone
    /// settings (the zone keeps its own).
    pub fn finish(self) -> ZoneContent {
        ZoneContent {
            zone: self.zone,
            soa: None,
            ns: Vec::new(),
            sets: self.sets,
            warnings: Vec::new(),
        }
    }
}

/// serde_json's message without its " at line L column C" (the caller names the line).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_string(),
        None => text,
    }
}

/// A JSON object's entries in file order, each value kept as the text it was read from (so
/// its position, and so its line, is known).
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object mapping host names to addresses")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    out.push((key, value));
                }
                Ok(Entries(out))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::fixtures::{rel, zone};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn hosts(text: &str) -> Result<ZoneContent, ZoneFileError> {
        let mut m = HostMap::new(zone());
        m.add_hosts(text)?;
        Ok(m.finish())
    }

    fn json_map(text: &str) -> Result<ZoneContent, ZoneFileError> {
        let mut m = HostMap::new(zone());
        m.add_json_map(text)?;
        Ok(m.finish())
    }

    #[test]
    fn host_names_are_relative_without_a_dot() {
        let z = zone();
        assert_eq!(host_name("Web", &z).unwrap(), rel("web"));
        assert_eq!(host_name("web.cluster.test", &z).unwrap(), rel("web"));
        assert_eq!(
            host_name("db.prod.cluster.test.", &z).unwrap(),
            rel("db.prod")
        );
        assert_eq!(host_name("CLUSTER.test", &z).unwrap(), RelName::apex());
        for (bad, needle) in [
            ("db.prod", "outside the zone"),
            ("www.example.org", "outside the zone"),
            ("web.", "outside the zone"),
            ("xcluster.test", "outside the zone"),
            ("we_b!", "not a valid host name"),
            ("-web", "not a valid host name"),
            ("a..cluster.test", "not a valid host name"),
            ("*", "wildcard"),
            ("*.dev.cluster.test", "wildcard"),
            (&"a".repeat(64), "not a valid host name"),
        ] {
            let e = host_name(bad, &z).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn hosts_lines_merge_per_name() {
        let c = hosts(
            "# a hosts file\r\n\n10.0.0.5  web web.cluster.test api  # two names\n\
             10.0.0.6\tweb\nfd00::5 web\n  10.0.0.5 web\n127.0.0.1 localhost\n",
        )
        .unwrap();
        let web = &c.sets[&rel("web")];
        assert_eq!(
            web.a,
            [Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6)]
        );
        assert_eq!(web.aaaa, ["fd00::5".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(web.ttl, None, "follows the zone's TTL");
        assert_eq!(c.sets[&rel("api")].a, [Ipv4Addr::new(10, 0, 0, 5)]);
        assert_eq!(c.sets.len(), 3);
        assert!(!c.has_settings());
        assert!(hosts("").unwrap().sets.is_empty());
    }

    #[test]
    fn bad_hosts_lines_are_named() {
        for (text, line, needle) in [
            (
                "10.0.0.1 a\n10.0.0.300 b\n",
                2,
                "not an IPv4 or IPv6 address",
            ),
            ("10.0.0.1 a\n\n# c\n10.0.0.2\n", 4, "no host name"),
            ("10.0.0.1 a www.example.org\n", 1, "outside the zone"),
            ("10.0.0.1 a\nfe80::1%eth0 b\n", 2, "zone index"),
            ("10.0.0.1 bad_name!\n", 1, "not a valid host name"),
            ("web 10.0.0.1\n", 1, "not an IPv4"),
        ] {
            let e = hosts(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text:?}: {e}");
            assert!(e.reason.contains(needle), "{text:?}: {e}");
        }
        // a failing file adds nothing
        let mut m = HostMap::new(zone());
        m.add_hosts("10.0.0.1 a\n").unwrap();
        m.add_hosts("10.0.0.2 b\nbad c\n").unwrap_err();
        assert_eq!(m.finish().sets.len(), 1);
    }

    #[test]
    fn json_maps_take_addresses_and_lists() {
        let c = json_map(
            r#"{"web": "10.0.0.5", "Web.cluster.test": ["10.0.0.6", "fd00::5"], "db.prod.cluster.test": "10.0.2.1"}"#,
        )
        .unwrap();
        let web = &c.sets[&rel("web")];
        assert_eq!(web.a.len(), 2);
        assert_eq!(web.aaaa.len(), 1);
        assert_eq!(c.sets[&rel("db.prod")].a, [Ipv4Addr::new(10, 0, 2, 1)]);
        assert!(json_map("{}").unwrap().sets.is_empty());
    }

    #[test]
    fn bad_json_maps_name_the_key_and_line() {
        for (text, line, needle) in [
            (
                "{\n \"web\": \"10.0.0.5\",\n \"db\": \"10.0.0.300\"\n}",
                3,
                "\"db\": \"10.0.0.300\" is not an IPv4",
            ),
            (
                "{\"a\": \"10.0.0.1\",\n\"www.example.org\": \"10.0.0.2\"}",
                2,
                "outside the zone",
            ),
            ("{\"a\": 5}", 1, "\"a\": the value must be an address"),
            ("{\"a\": []}", 1, "\"a\": the value must be"),
            ("{\"a\": [\"10.0.0.1\", 7]}", 1, "7 is not an address"),
            ("{\"a\": null}", 1, "not null"),
            ("[\"10.0.0.1\"]", 1, "not a JSON map"),
            ("\n", 0, "empty"),
            ("{\"a\": \"10.0.0.1\",\n\"b\" 1}", 2, "expected `:`"),
            ("{\"a\": \"10.0.0.1\"} trailing", 1, "trailing characters"),
        ] {
            let e = json_map(text).unwrap_err();
            assert_eq!(e.line, Some(line).filter(|l| *l > 0), "{text:?}: {e}");
            assert!(e.reason.contains(needle), "{text:?}: {e}");
            assert!(!e.reason.contains(" at line "), "{text:?}: {e}");
        }
    }
}
