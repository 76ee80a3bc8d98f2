//! Domain names as zkdns stores them: validated zone and record-set names, and the lower-case
//! wire-format keys that the snapshot is indexed by (so the query path can look a name up
//! straight from packet bytes, without building a `Name`), and the addresses that reverse
//! names stand for (the PTR table's keys).

use std::fmt;

use hickory_proto::rr::Name;
use thiserror::Error;

/// Longest name in wire format, root label included (RFC 1035 §2.3.4).
pub const MAX_WIRE_NAME: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;

/// Why a name was not accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("empty label in {0:?}")]
    EmptyLabel(String),
    #[error("label {0:?} is longer than 63 bytes")]
    LabelTooLong(String),
    #[error("name {0:?} is longer than 255 bytes")]
    NameTooLong(String),
    #[error("label {0:?} has a character that is not a letter, digit, '-' or '_'")]
    BadCharacter(String),
    #[error("label {0:?} starts or ends with '-'")]
    BadHyphen(String),
    #[error("'*' is only allowed as the whole first label, in {0:?}")]
    BadWildcard(String),
    #[error("name {0:?} has upper-case letters; names are stored lower-case")]
    UpperCase(String),
}

/// Checks one label: letters, digits, '-' and '_' (service labels such as `_http`), at most 63
/// bytes, no leading or trailing hyphen.
fn check_label(label: &str, whole: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel(whole.to_string()));
    }
    if label.len() > MAX_LABEL {
        return Err(NameError::LabelTooLong(label.to_string()));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(NameError::BadCharacter(label.to_string()));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::BadHyphen(label.to_string()));
    }
    Ok(())
}

fn check_labels(text: &str, allow_wildcard: bool) -> Result<(), NameError> {
    if text.is_empty() {
        return Err(NameError::Empty);
    }
    for (i, label) in text.split('.').enumerate() {
        if label == "*" && i == 0 && allow_wildcard {
            continue;
        }
        if label.contains('*') {
            return Err(NameError::BadWildcard(text.to_string()));
        }
        check_label(label, text)?;
    }
    Ok(())
}

fn wire_len(text: &str) -> usize {
    // each label costs its length plus one length byte, plus the root label
    text.len() + 2
}

/// A zone served by zkdns: lower-case, no trailing dot, e.g. `cluster.local`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ZoneName(String);

impl ZoneName {
    /// Parses a zone as a user typed it (any case, optional trailing dot).
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let text = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        Self::from_znode(&text)
    }

    /// Accepts a zone as stored in ZooKeeper: it must already be lower-case.
    pub fn from_znode(text: &str) -> Result<Self, NameError> {
        check_labels(text, false)?;
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(NameError::UpperCase(text.to_string()));
        }
        if wire_len(text) > MAX_WIRE_NAME {
            return Err(NameError::NameTooLong(text.to_string()));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The zone as an absolute `Name`.
    pub fn to_name(&self) -> Name {
        Name::from_ascii(format!("{}.", self.0)).expect("validated zone name")
    }

    /// Whether `fqdn` (lower-case, no trailing dot) is this zone or below it.
    pub fn contains(&self, fqdn: &str) -> bool {
        fqdn == self.0
            || (fqdn.len() > self.0.len()
                && fqdn.ends_with(self.0.as_str())
                && fqdn.as_bytes()[fqdn.len() - self.0.len() - 1] == b'.')
    }

    /// Splits an absolute name into its record-set name relative to this zone.
    pub fn relative(&self, fqdn: &str) -> Option<RelName> {
        let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
        if fqdn == self.0 {
            return Some(RelName::apex());
        }
        if !self.contains(fqdn) {
            return None;
        }
        let rel = &fqdn[..fqdn.len() - self.0.len() - 1];
        RelName::from_znode(rel, self).ok()
    }
}

impl fmt::Display for ZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record-set name relative to its zone, as the znode under the zone is named:
/// `web`, `api.prod`, `@` for the apex, `*` or `*.prod` for wildcards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelName(String);

impl RelName {
    pub fn apex() -> Self {
        Self("@".to_string())
    }

    /// Accepts a record-set znode name under `zone`; it must be lower-case and fit in 255 bytes
    /// once the zone is appended.
    pub fn from_znode(text: &str, zone: &ZoneName) -> Result<Self, NameError> {
        if text == "@" {
            return Ok(Self::apex());
        }
        check_labels(text, true)?;
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(NameError::UpperCase(text.to_string()));
        }
        let full = format!("{text}.{zone}");
        if wire_len(&full) > MAX_WIRE_NAME {
            return Err(NameError::NameTooLong(full));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_apex(&self) -> bool {
        self.0 == "@"
    }

    /// The absolute name, lower-case, without trailing dot.
    pub fn fqdn(&self, zone: &ZoneName) -> String {
        if self.is_apex() {
            zone.as_str().to_string()
        } else {
            format!("{}.{}", self.0, zone)
        }
    }

    /// The absolute name as a `Name`.
    pub fn to_name(&self, zone: &ZoneName) -> Name {
        Name::from_ascii(format!("{}.", self.fqdn(zone))).expect("validated record-set name")
    }
}

impl fmt::Display for RelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a domain name that appears as data (a CNAME, SRV or MX target): absolute with a
/// trailing dot, otherwise relative to `zone`. `@` is the zone itself. Returns it lower-case.
pub fn parse_target(text: &str, zone: &ZoneName) -> Result<Name, NameError> {
    let absolute = if text == "@" {
        zone.as_str().to_string()
    } else if let Some(abs) = text.strip_suffix('.') {
        if abs.is_empty() {
            return Ok(Name::root());
        }
        abs.to_ascii_lowercase()
    } else {
        format!("{}.{}", text.to_ascii_lowercase(), zone)
    };
    check_labels(&absolute, false)?;
    if wire_len(&absolute) > MAX_WIRE_NAME {
        return Err(NameError::NameTooLong(absolute));
    }
    Ok(Name::from_ascii(format!("{absolute}.")).expect("validated target name"))
}

/// Appends the lower-case wire form of `name` (absolute) to `out`.
pub fn push_wire_lower(name: &Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
}

/// The lower-case wire form of `name`: the key the snapshot indexes names by.
pub fn wire_key(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    push_wire_lower(name, &mut out);
    out.into_boxed_slice()
}

/// Wire key of a lower-case dotted name without trailing dot (`""` is the root).
pub fn wire_key_str(fqdn: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(fqdn.len() + 2);
    if !fqdn.is_empty() {
        for label in fqdn.split('.') {
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    out.into_boxed_slice()
}

/// An address as the reverse table keys it: its octets (4 for IPv4, 16 for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrKey {
    octets: [u8; 16],
    len: u8,
}

impl AddrKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.octets[..self.len as usize]
    }
}

impl From<std::net::IpAddr> for AddrKey {
    fn from(ip: std::net::IpAddr) -> Self {
        let mut octets = [0u8; 16];
        let len = match ip {
            std::net::IpAddr::V4(v4) => {
                octets[..4].copy_from_slice(&v4.octets());
                4
            }
            std::net::IpAddr::V6(v6) => {
                octets = v6.octets();
                16
            }
        };
        Self { octets, len }
    }
}

/// The address a lower-case wire name is the reverse name of, in exactly the form that
/// names it (`4.3.2.1.in-addr.arpa`, no leading zeros; 32 lower-case nibbles then
/// `ip6.arpa`); `None` for any other name, so a lookup by address answers the same names
/// a lookup by the reverse name would.
pub fn reverse_addr(wire: &[u8]) -> Option<AddrKey> {
    const V4_TAIL: &[u8] = b"\x07in-addr\x04arpa\x00";
    const V6_TAIL: &[u8] = b"\x03ip6\x04arpa\x00";
    let mut key = AddrKey {
        octets: [0; 16],
        len: 0,
    };
    if wire.len() == 64 + V6_TAIL.len() && wire.ends_with(V6_TAIL) {
        for (i, label) in wire[..64].chunks_exact(2).enumerate() {
            let nibble = match label {
                [1, d @ b'0'..=b'9'] => d - b'0',
                [1, d @ b'a'..=b'f'] => d - b'a' + 10,
                _ => return None,
            };
            // the first label is the low nibble of the last octet
            let octet = 15 - i / 2;
            key.octets[octet] |= if i % 2 == 0 { nibble } else { nibble << 4 };
        }
        key.len = 16;
        return Some(key);
    }
    let labels = wire.strip_suffix(V4_TAIL)?;
    let mut at = 0;
    for octet in (0..4).rev() {
        let len = *labels.get(at)? as usize;
        let digits = labels.get(at + 1..at + 1 + len)?;
        if !(1..=3).contains(&len)
            || !digits.iter().all(u8::is_ascii_digit)
            || (len > 1 && digits[0] == b'0')
        {
            return None;
        }
        let value = digits
            .iter()
            .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
        key.octets[octet] = u8::try_from(value).ok()?;
        at += 1 + len;
    }
    if at != labels.len() {
        return None;
    }
    key.len = 4;
    Some(key)
}

/// Offsets at which each suffix of a wire name starts, longest first (the name itself at 0,
/// the root last). Stops early at a malformed label.
pub fn label_offsets(wire: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut pos = Some(0usize);
    std::iter::from_fn(move || {
        let at = pos?;
        let len = *wire.get(at)? as usize;
        pos = if len == 0 { None } else { Some(at + 1 + len) };
        Some(at)
    })
}

/// Names (or anything shown) as messages list them: `a, b, c`, or `none`.
pub fn list<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The dotted text of a wire name (for logs and messages).
pub fn wire_to_string(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        if len == 0 {
            break;
        }
        let label = wire.get(at + 1..at + 1 + len as usize).unwrap_or_default();
        out.push_str(&String::from_utf8_lossy(label));
        out.push('.');
        at += 1 + len as usize;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// The zone and names the unit tests of the zone tooling are written against.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{RelName, ZoneName};

    /// `cluster.test`.
    pub fn zone() -> ZoneName {
        ZoneName::parse("cluster.test").unwrap()
    }

    /// `name` as a record-set name in [`zone`].
    pub fn rel(name: &str) -> RelName {
        RelName::from_znode(name, &zone()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneName {
        ZoneName::parse("Cluster.Local.").unwrap()
    }

    #[test]
    fn reverse_names_map_to_their_addresses_and_nothing_else_does() {
        use std::net::IpAddr;
        let ips = [
            "10.0.0.3",
            "0.0.0.0",
            "255.255.255.255",
            "192.168.100.9",
            "::",
            "::1",
            "2001:db8::abcd:ef01",
            "fe80::1:2:3:4",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        for ip in ips {
            let ip: IpAddr = ip.parse().unwrap();
            let wire = wire_key(&hickory_proto::rr::Name::from(ip));
            assert_eq!(reverse_addr(&wire), Some(AddrKey::from(ip)), "{ip}");
        }
        let v6 = |nibbles: &str| wire_key_str(&format!("{nibbles}.ip6.arpa"));
        let ones = vec!["1"; 32].join(".");
        assert_eq!(
            reverse_addr(&v6(&ones)).map(|k| k.as_bytes().to_vec()),
            Some(vec![0x11; 16])
        );
        for name in [
            "3.0.0.in-addr.arpa", // a network, not an address
            "4.3.0.0.10.in-addr.arpa",
            "03.0.0.10.in-addr.arpa", // not the canonical name of 10.0.0.3
            "256.0.0.10.in-addr.arpa",
            "1000.0.0.10.in-addr.arpa",
            "x.0.0.10.in-addr.arpa",
            "3..0.10.in-addr.arpa",
            "3.0.0.10.in-addr.arpa.example",
            "3.0.0.10.ip6.arpa",
            "in-addr.arpa",
            "arpa",
            "web.cluster.test",
            "",
        ] {
            assert_eq!(reverse_addr(&wire_key_str(name)), None, "{name}");
        }
        let short = vec!["1"; 31].join(".");
        let wide = format!("{}.10", vec!["1"; 31].join("."));
        let not_hex = format!("g.{}", vec!["1"; 31].join("."));
        for nibbles in [short, wide, not_hex] {
            assert_eq!(reverse_addr(&v6(&nibbles)), None, "{nibbles}");
        }
    }

    #[test]
    fn zone_names_are_normalised() {
        assert_eq!(zone().as_str(), "cluster.local");
        assert!(ZoneName::parse("bad zone").is_err());
        assert!(ZoneName::from_znode("Cluster.local").is_err());
        assert!(ZoneName::parse("a..b").is_err());
        assert!(ZoneName::parse("*.a").is_err());
    }

    #[test]
    fn record_set_names() {
        let z = zone();
        for ok in [
            "web",
            "api.prod",
            "*",
            "*.prod",
            "_http._tcp.web",
            "@",
            "a-b",
            "0",
        ] {
            assert!(RelName::from_znode(ok, &z).is_ok(), "{ok}");
        }
        for bad in [
            "", "we b", "web.", ".web", "-web", "web-", "a*", "prod.*", "Web", "ü", "a\nb",
        ] {
            assert!(RelName::from_znode(bad, &z).is_err(), "{bad:?}");
        }
        assert!(matches!(
            RelName::from_znode(&"a".repeat(64), &z),
            Err(NameError::LabelTooLong(_))
        ));
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(matches!(
            RelName::from_znode(&long, &z),
            Err(NameError::NameTooLong(_))
        ));
    }

    #[test]
    fn relative_and_contains() {
        let z = zone();
        assert_eq!(z.relative("web.cluster.local.").unwrap().as_str(), "web");
        assert_eq!(z.relative("cluster.local").unwrap().as_str(), "@");
        assert!(z.relative("xcluster.local").is_none());
        assert!(z.contains("a.b.cluster.local"));
        assert!(!z.contains("local"));
    }

    #[test]
    fn targets() {
        let z = zone();
        assert_eq!(
            parse_target("web", &z).unwrap().to_ascii(),
            "web.cluster.local."
        );
        assert_eq!(
            parse_target("Example.COM.", &z).unwrap().to_ascii(),
            "example.com."
        );
        assert_eq!(parse_target("@", &z).unwrap().to_ascii(), "cluster.local.");
        assert!(parse_target("bad name.", &z).is_err());
    }

    #[test]
    fn wire_keys_and_offsets() {
        let key = wire_key(&Name::from_ascii("WeB.Cluster.local.").unwrap());
        assert_eq!(&*key, b"\x03web\x07cluster\x05local\x00");
        assert_eq!(key, wire_key_str("web.cluster.local"));
        let offs: Vec<_> = label_offsets(&key).collect();
        assert_eq!(offs, vec![0, 4, 12, 18]);
        assert_eq!(wire_to_string(&key[4..]), "cluster.local.");
        assert_eq!(&*wire_key_str(""), b"\x00");
    }
}
