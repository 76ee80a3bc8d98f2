//! The data a znode under `<root>/zones` holds: the JSON of a record set (or of one registered
//! member) and of a zone's settings, with validation. Pure; the watcher decodes with it, the
//! tooling encodes with it, and a payload that fails here never reaches an answer.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::names::{NameError, ZoneName, parse_target};

/// Largest payload accepted from a znode (ZooKeeper's own default jute.maxbuffer).
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// Longest TXT character-string (RFC 1035 §3.3).
pub const MAX_TXT_STRING: usize = 255;
/// Default TTL of records whose set and zone name none.
pub const DEFAULT_TTL: u32 = 5;

/// Why a payload was rejected.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD} byte limit")]
    TooLarge(usize),
    #[error("not valid JSON for this node: {0}")]
    Json(#[from] serde_json::Error),
    // the name's error in the message, not as a source: the log line and `zkdns set` print
    // this error alone, and "CNAME" by itself says nothing
    #[error("{field}: {error}")]
    Name {
        field: &'static str,
        error: NameError,
    },
    #[error("TXT string of {0} bytes is longer than 255")]
    TxtTooLong(usize),
    #[error("TXT record of {0} bytes is longer than 65535 (RDLENGTH is 16 bits)")]
    TxtRecordTooLong(usize),
    #[error("TXT record without a string (write [\"\"] for one empty string)")]
    TxtEmpty,
    #[error("CNAME cannot sit beside other records at the same name")]
    CnameAndOther,
    #[error("SOA {0} must be an absolute name ending in '.' or a name relative to the zone")]
    Soa(&'static str),
    #[error("{field} {value} is above 2147483647 (RFC 2181 §8)")]
    TtlTooLarge { field: &'static str, value: u32 },
}

/// Largest TTL a resolver honours (RFC 2181 §8: larger values are read as 0).
pub const MAX_TTL: u32 = i32::MAX as u32;

fn check_ttl(field: &'static str, value: Option<u32>) -> Result<(), DataError> {
    match value {
        Some(value) if value > MAX_TTL => Err(DataError::TtlTooLarge { field, value }),
        _ => Ok(()),
    }
}

/// One TXT record: one or several character-strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Txt {
    One(String),
    Many(Vec<String>),
}

impl Txt {
    pub fn strings(&self) -> Vec<&str> {
        match self {
            Txt::One(s) => vec![s.as_str()],
            Txt::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Srv {
    #[serde(default)]
    pub priority: u16,
    #[serde(default)]
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mx {
    pub preference: u16,
    pub exchange: String,
}

/// The JSON of a record set or a registered member, exactly as stored. Every key is optional;
/// unknown keys are rejected so that a typo (`"AAA"`) is reported instead of silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSetJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(rename = "A", default, skip_serializing_if = "Vec::is_empty")]
    pub a: Vec<Ipv4Addr>,
    #[serde(rename = "AAAA", default, skip_serializing_if = "Vec::is_empty")]
    pub aaaa: Vec<Ipv6Addr>,
    #[serde(rename = "CNAME", default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    #[serde(rename = "TXT", default, skip_serializing_if = "Vec::is_empty")]
    pub txt: Vec<Txt>,
    #[serde(rename = "SRV", default, skip_serializing_if = "Vec::is_empty")]
    pub srv: Vec<Srv>,
    #[serde(rename = "MX", default, skip_serializing_if = "Vec::is_empty")]
    pub mx: Vec<Mx>,
    #[serde(rename = "PTR", default, skip_serializing_if = "Vec::is_empty")]
    pub ptr: Vec<String>,
}

impl RecordSetJson {
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
            && self.aaaa.is_empty()
            && self.cname.is_none()
            && self.txt.is_empty()
            && self.srv.is_empty()
            && self.mx.is_empty()
            && self.ptr.is_empty()
    }

    /// The bytes stored in the znode (`""` for an empty set without TTL).
    pub fn to_payload(&self) -> Vec<u8> {
        if self.is_empty() && self.ttl.is_none() {
            return Vec::new();
        }
        serde_json::to_vec(self).expect("record set serialises")
    }

    /// The set as one line of JSON for people to read (`{}` when empty).
    pub fn to_text(&self) -> String {
        let payload = self.to_payload();
        if payload.is_empty() {
            "{}".to_string()
        } else {
            String::from_utf8_lossy(&payload).into_owned()
        }
    }

    /// Puts every list in a canonical order and drops duplicates, so that two sets with the
    /// same records compare equal.
    pub fn normalise(&mut self) {
        fn dedup<T: Ord>(v: &mut Vec<T>) {
            v.sort();
            v.dedup();
        }
        dedup(&mut self.a);
        dedup(&mut self.aaaa);
        dedup(&mut self.txt);
        dedup(&mut self.srv);
        dedup(&mut self.mx);
        dedup(&mut self.ptr);
    }
}

/// A validated record set: targets resolved against the zone and lower-cased, TXT split in
/// character-strings. This is what the snapshot is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordData {
    pub ttl: Option<u32>,
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
    pub cname: Option<Name>,
    pub txt: Vec<Vec<Box<[u8]>>>,
    pub srv: Vec<(u16, u16, u16, Name)>,
    pub mx: Vec<(u16, Name)>,
    pub ptr: Vec<Name>,
}

impl RecordData {
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
            && self.aaaa.is_empty()
            && self.cname.is_none()
            && self.txt.is_empty()
            && self.srv.is_empty()
            && self.mx.is_empty()
            && self.ptr.is_empty()
    }

    /// Adds the records of a registered member to this set.
    pub fn merge(&mut self, other: &RecordData) {
        self.a.extend(&other.a);
        self.aaaa.extend(&other.aaaa);
        if self.cname.is_none() {
            self.cname.clone_from(&other.cname);
        }
        self.txt.extend(other.txt.iter().cloned());
        self.srv.extend(other.srv.iter().cloned());
        self.mx.extend(other.mx.iter().cloned());
        self.ptr.extend(other.ptr.iter().cloned());
    }
}

impl From<&RecordData> for RecordSetJson {
    /// The JSON that [`validate`] turns back into the same data (names absolute).
    fn from(d: &RecordData) -> Self {
        let name = |n: &Name| n.to_ascii();
        let text = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
        Self {
            ttl: d.ttl,
            a: d.a.clone(),
            aaaa: d.aaaa.clone(),
            cname: d.cname.as_ref().map(name),
            txt: d
                .txt
                .iter()
                .map(|t| match &t[..] {
                    [one] => Txt::One(text(one)),
                    many => Txt::Many(many.iter().map(|s| text(s)).collect()),
                })
                .collect(),
            srv: d
                .srv
                .iter()
                .map(|(priority, weight, port, target)| Srv {
                    priority: *priority,
                    weight: *weight,
                    port: *port,
                    target: name(target),
                })
                .collect(),
            mx: d
                .mx
                .iter()
                .map(|(preference, exchange)| Mx {
                    preference: *preference,
                    exchange: name(exchange),
                })
                .collect(),
            ptr: d.ptr.iter().map(name).collect(),
        }
    }
}

/// Decodes and validates a record-set or member payload. An empty payload is an empty set.
pub fn decode_record_set(payload: &[u8], zone: &ZoneName) -> Result<RecordData, DataError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DataError::TooLarge(payload.len()));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(RecordData::default());
    }
    let json: RecordSetJson = serde_json::from_slice(payload)?;
    validate(&json, zone)
}

/// Validates a record set already in JSON form.
pub fn validate(json: &RecordSetJson, zone: &ZoneName) -> Result<RecordData, DataError> {
    check_ttl("ttl", json.ttl)?;
    let target = |field: &'static str, text: &str| {
        parse_target(text, zone).map_err(|error| DataError::Name { field, error })
    };
    let cname = json
        .cname
        .as_deref()
        .map(|c| target("CNAME", c))
        .transpose()?;
    let mut txt = Vec::with_capacity(json.txt.len());
    for record in &json.txt {
        let mut strings = Vec::new();
        for s in record.strings() {
            if s.len() > MAX_TXT_STRING {
                return Err(DataError::TxtTooLong(s.len()));
            }
            strings.push(s.as_bytes().into());
        }
        // one record's strings, each with its length byte, are its RDATA: a payload under
        // MAX_PAYLOAD can hold more than RDLENGTH can say, and then it cannot be encoded
        let rdata: usize = record.strings().iter().map(|s| s.len() + 1).sum();
        if rdata > u16::MAX as usize {
            return Err(DataError::TxtRecordTooLong(rdata));
        }
        // RDATA of no strings (RDLENGTH 0) is not a TXT record: decoders refuse the message
        if strings.is_empty() {
            return Err(DataError::TxtEmpty);
        }
        txt.push(strings);
    }
    let srv = json
        .srv
        .iter()
        .map(|s| {
            Ok((
                s.priority,
                s.weight,
                s.port,
                target("SRV target", &s.target)?,
            ))
        })
        .collect::<Result<Vec<_>, DataError>>()?;
    let mx = json
        .mx
        .iter()
        .map(|m| Ok((m.preference, target("MX exchange", &m.exchange)?)))
        .collect::<Result<Vec<_>, DataError>>()?;
    let ptr = json
        .ptr
        .iter()
        .map(|p| target("PTR", p))
        .collect::<Result<Vec<_>, DataError>>()?;
    let data = RecordData {
        ttl: json.ttl,
        a: json.a.clone(),
        aaaa: json.aaaa.clone(),
        cname,
        txt,
        srv,
        mx,
        ptr,
    };
    if data.cname.is_some()
        && !(RecordData {
            cname: None,
            ..data.clone()
        })
        .is_empty()
    {
        return Err(DataError::CnameAndOther);
    }
    Ok(data)
}

/// SOA fields of a zone's settings; missing fields take defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<u32>,
}

/// The JSON of a zone node: `{"ttl": 5, "soa": {...}, "ns": ["ns1.example."]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soa: Option<SoaJson>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ns: Vec<String>,
}

impl ZoneJson {
    pub fn to_payload(&self) -> Vec<u8> {
        if *self == ZoneJson::default() {
            return Vec::new();
        }
        serde_json::to_vec(self).expect("zone settings serialise")
    }
}

/// Validated zone settings with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSettings {
    /// TTL of records whose set names none, and of the SOA and NS records.
    pub ttl: u32,
    pub mname: Name,
    pub rname: Name,
    /// `None`: derived from the time of the zone's last change.
    pub serial: Option<u32>,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
    pub ns: Vec<Name>,
}

impl ZoneSettings {
    pub fn defaults(zone: &ZoneName) -> Self {
        let mname = parse_target("ns", zone).expect("ns label is valid");
        Self {
            ttl: DEFAULT_TTL,
            rname: parse_target("hostmaster", zone).expect("hostmaster label is valid"),
            ns: vec![mname.clone()],
            mname,
            serial: None,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: DEFAULT_TTL,
        }
    }
}

impl From<&ZoneSettings> for ZoneJson {
    /// The JSON that [`decode_zone`] turns back into the same settings (names absolute).
    fn from(s: &ZoneSettings) -> Self {
        Self {
            ttl: Some(s.ttl),
            soa: Some(SoaJson {
                mname: Some(s.mname.to_ascii()),
                rname: Some(s.rname.to_ascii()),
                serial: s.serial,
                refresh: Some(s.refresh),
                retry: Some(s.retry),
                expire: Some(s.expire),
                minimum: Some(s.minimum),
            }),
            ns: s.ns.iter().map(Name::to_ascii).collect(),
        }
    }
}

/// Decodes a zone node's payload (empty: all defaults).
pub fn decode_zone(payload: &[u8], zone: &ZoneName) -> Result<ZoneSettings, DataError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DataError::TooLarge(payload.len()));
    }
    let mut settings = ZoneSettings::defaults(zone);
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(settings);
    }
    let json: ZoneJson = serde_json::from_slice(payload)?;
    check_ttl("ttl", json.ttl)?;
    check_ttl("SOA minimum", json.soa.as_ref().and_then(|s| s.minimum))?;
    if let Some(ttl) = json.ttl {
        settings.ttl = ttl;
    }
    if let Some(soa) = json.soa {
        if let Some(m) = soa.mname {
            settings.mname = parse_target(&m, zone).map_err(|_| DataError::Soa("mname"))?;
            settings.ns = vec![settings.mname.clone()];
        }
        if let Some(r) = soa.rname {
            settings.rname = parse_target(&r, zone).map_err(|_| DataError::Soa("rname"))?;
        }
        settings.serial = soa.serial;
        settings.refresh = soa.refresh.unwrap_or(settings.refresh);
        settings.retry = soa.retry.unwrap_or(settings.retry);
        settings.expire = soa.expire.unwrap_or(settings.expire);
        settings.minimum = soa.minimum.unwrap_or(settings.minimum);
    }
    if !json.ns.is_empty() {
        settings.ns = json
            .ns
            .iter()
            .map(|n| parse_target(n, zone).map_err(|error| DataError::Name { field: "ns", error }))
            .collect::<Result<_, _>>()?;
    }
    Ok(settings)
}

/// A record set's JSON as stored, not yet validated (an empty payload is an empty set).
pub fn decode_set(payload: &[u8]) -> Result<RecordSetJson, serde_json::Error> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(RecordSetJson::default());
    }
    serde_json::from_slice(payload)
}

/// A record set's or member's payload, decoded and validated, for showing it (`ls`, `export`).
pub fn valid_set(payload: &[u8], zone: &ZoneName) -> Result<RecordSetJson, String> {
    let set = decode_set(payload).map_err(|e| e.to_string())?;
    validate(&set, zone).map_err(|e| e.to_string())?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneName {
        ZoneName::parse("cluster.local").unwrap()
    }

    #[test]
    fn decodes_every_key() {
        let p = br#"{"ttl": 30, "A": ["10.0.0.5"], "AAAA": ["fd00::5"], "TXT": ["v=1", ["a", "b"]],
            "SRV": [{"priority": 0, "weight": 5, "port": 8080, "target": "web"}],
            "MX": [{"preference": 10, "exchange": "mail.example."}]}"#;
        let d = decode_record_set(p, &zone()).unwrap();
        assert_eq!(d.ttl, Some(30));
        assert_eq!(d.a, vec![Ipv4Addr::new(10, 0, 0, 5)]);
        assert_eq!(d.txt.len(), 2);
        assert_eq!(d.txt[1].len(), 2);
        assert_eq!(d.srv[0].3.to_ascii(), "web.cluster.local.");
        assert_eq!(d.mx[0].1.to_ascii(), "mail.example.");
    }

    #[test]
    fn empty_payload_is_empty_set() {
        assert!(decode_record_set(b"", &zone()).unwrap().is_empty());
        assert!(decode_record_set(b"  \n", &zone()).unwrap().is_empty());
        assert!(decode_record_set(b"{}", &zone()).unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_payloads() {
        let z = zone();
        for bad in [
            &b"not json"[..],
            br#"{"A": ["10.0.0.5x"]}"#,
            br#"{"A": ["10.0.0.5 "]}"#,
            br#"{"A": ["010.0.0.5"]}"#,
            br#"{"A": "10.0.0.5"}"#,
            br#"{"AAA": ["10.0.0.5"]}"#,
            br#"{"ttl": "5"}"#,
            br#"{"ttl": -1}"#,
            br#"{"ttl": 2147483648}"#,
            br#"{"CNAME": "bad name."}"#,
            br#"{"CNAME": "x.", "A": ["10.0.0.1"]}"#,
            br#"{"SRV": [{"port": 70000, "target": "x"}]}"#,
            br#"{"A": ["10.0.0.1"]} trailing"#,
        ] {
            assert!(
                decode_record_set(bad, &z).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(r#"{{"TXT": ["{}"]}}"#, "x".repeat(256));
        assert!(matches!(
            decode_record_set(long.as_bytes(), &z),
            Err(DataError::TxtTooLong(256))
        ));
        assert!(matches!(
            decode_record_set(br#"{"TXT": [[]]}"#, &z),
            Err(DataError::TxtEmpty)
        ));
        assert!(decode_record_set(br#"{"TXT": [[""], ""]}"#, &z).is_ok());
        // 300 strings of 255 bytes in one record: 76,800 bytes of RDATA
        let strings = vec![format!("\"{}\"", "x".repeat(255)); 300].join(",");
        let long = format!(r#"{{"TXT": [[{strings}]]}}"#);
        assert!(matches!(
            decode_record_set(long.as_bytes(), &z),
            Err(DataError::TxtRecordTooLong(76_800))
        ));
        let huge = vec![b' '; MAX_PAYLOAD + 1];
        assert!(matches!(
            decode_record_set(&huge, &z),
            Err(DataError::TooLarge(_))
        ));
    }

    #[test]
    fn zone_settings() {
        let z = zone();
        let d = decode_zone(b"", &z).unwrap();
        assert_eq!(d.mname.to_ascii(), "ns.cluster.local.");
        assert_eq!(d.ttl, DEFAULT_TTL);
        let d = decode_zone(
            br#"{"ttl": 60, "soa": {"mname": "a.example.", "serial": 7, "minimum": 30}}"#,
            &z,
        )
        .unwrap();
        assert_eq!(d.ttl, 60);
        assert_eq!(d.serial, Some(7));
        assert_eq!(d.minimum, 30);
        assert_eq!(d.ns[0].to_ascii(), "a.example.");
        assert!(decode_zone(br#"{"soa": {"mname": 5}}"#, &z).is_err());
    }

    #[test]
    fn round_trips_json() {
        let mut j = RecordSetJson {
            a: vec!["10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap()],
            ..Default::default()
        };
        j.normalise();
        let back: RecordSetJson = serde_json::from_slice(&j.to_payload()).unwrap();
        assert_eq!(back, j);
        assert_eq!(RecordSetJson::default().to_payload(), b"");
    }
}
