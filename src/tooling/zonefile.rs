//! RFC 1035 zone files, both ways. [`ZoneBuilder`] reads files with hickory-proto's parser into
//! the record sets and zone settings that zkdns stores; [`render`] writes a zone back as text
//! that the builder reads to the same data. Pure: no ZooKeeper here.
//!
//! hickory's parser reports no line numbers, so a failing file is cut at entry boundaries and
//! the shortest failing prefix is found by binary search: its last entry is the bad line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordSet, RrKey};
use hickory_proto::serialize::txt::{Parser, parse_ttl};
use thiserror::Error;

use crate::names::{RelName, ZoneName, parse_target};
use crate::records::{
    DEFAULT_TTL, MAX_PAYLOAD, Mx, RecordSetJson, SoaJson, Srv, Txt, ZoneJson, ZoneSettings,
    validate,
};

/// A problem in a zone file, with the line it is on when one can be named.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}{reason}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ZoneFileError {
    pub line: Option<usize>,
    pub reason: String,
}

impl ZoneFileError {
    fn new(line: Option<usize>, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }

    /// The message as the CLI prints it: `FILE:LINE: reason`.
    pub fn at(&self, file: &str) -> String {
        match self.line {
            Some(line) => format!("{file}:{line}: {}", self.reason),
            None => format!("{file}: {}", self.reason),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entries: where hickory's lexer starts a new record, so that prefixes can be cut there.

/// One entry of a zone file as hickory's lexer splits them: one line, or more when parentheses
/// or a quoted string span lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// 1-based line the entry starts on.
    line: usize,
    /// Byte offset just past the entry's final newline (or the end of the text).
    end: usize,
    /// Whether the entry starts with a blank (it then belongs to the previous owner).
    blank_start: bool,
    /// Its tokens, comments and parentheses removed, quoted strings as one token (escapes
    /// left as written).
    tokens: Vec<String>,
}

/// A `\DDD` escape inside a quoted string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Escape {
    /// Byte range of the escape, backslash included.
    start: usize,
    end: usize,
    /// What follows the backslash (three digits when well formed).
    digits: String,
    line: usize,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    entries: Vec<Entry>,
    escapes: Vec<Escape>,
    /// An entry still open at the end of the text: its line and what is open.
    unterminated: Option<(usize, &'static str)>,
}

/// Splits `text` into entries and tokens the way hickory's lexer does (zone_lex.rs): quotes
/// start only at a token's start and not inside parentheses; `\` escapes only inside quotes;
/// `;` comments run to the end of the line, also inside parentheses.
fn scan(text: &str) -> Scan {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Between,
        Token,
        Quote,
        List,
        ListToken,
        Comment { list: bool },
    }
    let mut out = Scan::default();
    let mut state = S::Between;
    let mut line = 1;
    let mut entry = Entry {
        line: 1,
        end: 0,
        blank_start: false,
        tokens: Vec::new(),
    };
    let mut token = String::new();
    let mut at_start = true;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if at_start {
            entry.blank_start = c.is_whitespace() && c != '\n' && c != '\r';
            at_start = false;
        }
        let mut ends_entry = false;
        let mut ends_token = false;
        state = match (state, c) {
            (S::Between | S::Comment { list: false }, '\n') => {
                ends_entry = true;
                S::Between
            }
            (S::Token, '\n') => {
                ends_token = true;
                ends_entry = true;
                S::Between
            }
            (S::Between, '"') => S::Quote,
            (S::Between, '(') => S::List,
            (S::Between, ';') => S::Comment { list: false },
            (S::Between, c) if c.is_whitespace() => S::Between,
            (S::Between, c) => {
                token.push(c);
                S::Token
            }
            (S::Token, ';') => {
                ends_token = true;
                S::Comment { list: false }
            }
            (S::Token, c) if c.is_whitespace() => {
                ends_token = true;
                S::Between
            }
            (S::Quote, '"') => {
                ends_token = true;
                S::Between
            }
            (S::Quote, '\\') => {
                // an escape: one character, or three digits
                token.push(c);
                if let Some((j, e)) = chars.next() {
                    token.push(e);
                    if e == '\n' {
                        line += 1;
                    }
                    if e.is_ascii_digit() {
                        let mut digits = String::from(e);
                        let mut end = j + 1;
                        for _ in 0..2 {
                            let Some((k, d)) = chars.next() else { break };
                            token.push(d);
                            if d == '\n' {
                                line += 1;
                            }
                            end = k + d.len_utf8();
                            digits.push(d);
                        }
                        out.escapes.push(Escape {
                            start: i,
                            end,
                            digits,
                            line,
                        });
                    }
                }
                S::Quote
            }
            (S::List | S::ListToken, ')') => {
                ends_token = state == S::ListToken;
                S::Between
            }
            (S::List | S::ListToken, ';') => {
                ends_token = state == S::ListToken;
                S::Comment { list: true }
            }
            (S::List | S::ListToken, c) if c.is_whitespace() => {
                ends_token = state == S::ListToken;
                S::List
            }
            (S::Token | S::Quote | S::List | S::ListToken, c) => {
                token.push(c);
                if state == S::List {
                    S::ListToken
                } else {
                    state
                }
            }
            (S::Comment { list: true }, '\n') => S::List,
            (S::Comment { list }, _) => S::Comment { list },
        };
        if ends_token {
            entry.tokens.push(std::mem::take(&mut token));
        }
        if c == '\n' {
            line += 1;
        }
        if ends_entry {
            entry.end = i + 1;
            let next = Entry {
                line,
                end: 0,
                blank_start: false,
                tokens: Vec::new(),
            };
            out.entries.push(std::mem::replace(&mut entry, next));
            at_start = true;
        }
    }
    match state {
        S::Quote => out.unterminated = Some((entry.line, "unclosed quoted string")),
        S::List | S::ListToken | S::Comment { list: true } => {
            out.unterminated = Some((entry.line, "unclosed parenthesis"));
        }
        _ if !at_start => {
            if state == S::Token {
                entry.tokens.push(token);
            }
            entry.end = text.len();
            out.entries.push(entry);
        }
        _ => {}
    }
    out
}

/// How many RDATA tokens a record type takes, for the types whose count is fixed.
fn rdata_tokens(rtype: &str) -> Option<usize> {
    match rtype {
        "A" | "AAAA" | "CNAME" | "PTR" | "NS" => Some(1),
        "MX" => Some(2),
        "SRV" => Some(4),
        "SOA" => Some(7),
        _ => None,
    }
}

/// hickory's parser ignores what follows the RDATA it needs (`A 10.0.0.1 10.0.0.2` is one
/// record): reject that instead of dropping data silently.
fn check_extra_tokens(scan: &Scan) -> Result<(), ZoneFileError> {
    for entry in &scan.entries {
        let mut tokens = entry.tokens.iter();
        match entry.tokens.first() {
            None => continue,
            Some(t) if t.starts_with('$') => continue,
            Some(_) if !entry.blank_start => {
                tokens.next(); // the owner
            }
            Some(_) => {}
        }
        let rtype = tokens.find(|t| {
            parse_ttl(t).is_err() && DNSClass::from_str(&t.to_ascii_uppercase()).is_err()
        });
        let Some(rtype) = rtype.map(|t| t.to_ascii_uppercase()) else {
            continue;
        };
        let rest: Vec<&String> = tokens.collect();
        if let Some(want) = rdata_tokens(&rtype) {
            if rest.len() > want {
                return Err(ZoneFileError::new(
                    Some(entry.line),
                    format!(
                        "unexpected {:?} after the {rtype} record's data (one record per line)",
                        rest[want]
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// hickory's lexer decodes `\DDD` in quoted strings wrongly (as `(D1 << 16) + (D2 << 8) + D3`,
/// so `\065` becomes U+0605, not `A`). Rewrites each run of such escapes as the UTF-8 text it
/// stands for, escaping `"` and `\` again; bytes that are not UTF-8 text, or control
/// characters, are refused since zkdns keeps TXT strings as text. `None`: nothing to rewrite.
/// Lines stay where they are.
fn decode_escapes(text: &str, scan: &Scan) -> Result<Option<String>, ZoneFileError> {
    let well_formed =
        |e: &&Escape| e.digits.len() == 3 && e.digits.bytes().all(|b| b.is_ascii_digit());
    let escapes: Vec<&Escape> = scan.escapes.iter().filter(well_formed).collect();
    if escapes.is_empty() {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut i = 0;
    while i < escapes.len() {
        let first = escapes[i];
        let mut bytes = Vec::new();
        let mut end = first.start;
        while i < escapes.len() && escapes[i].start == end {
            let value: u32 = escapes[i].digits.parse().expect("three digits");
            let byte = u8::try_from(value).map_err(|_| {
                ZoneFileError::new(
                    Some(first.line),
                    format!("\\{} is not a byte", escapes[i].digits),
                )
            })?;
            bytes.push(byte);
            end = escapes[i].end;
            i += 1;
        }
        let decoded = String::from_utf8(bytes)
            .ok()
            .filter(|t| !t.chars().any(char::is_control))
            .ok_or_else(|| {
                ZoneFileError::new(
                    Some(first.line),
                    format!(
                        "{:?} is not printable UTF-8 text; zkdns keeps TXT strings as text",
                        &text[first.start..end]
                    ),
                )
            })?;
        out.push_str(&text[at..first.start]);
        for c in decoded.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(Some(out))
}

/// The first line at which `fails` holds for the text up to and including that line's entry,
/// with `fails`'s reason. `fails` must be monotonic: once a prefix fails, every longer one does.
fn locate(
    text: &str,
    scan: &Scan,
    fails: impl Fn(&str) -> Option<String>,
) -> Option<ZoneFileError> {
    let (mut lo, mut hi) = (0, scan.entries.len());
    let mut found = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match fails(&text[..scan.entries[mid].end]) {
            Some(reason) => {
                found = Some(ZoneFileError::new(Some(scan.entries[mid].line), reason));
                hi = mid;
            }
            None => lo = mid + 1,
        }
    }
    found
}

/// The first `$ORIGIN` of the file, if any.
fn first_origin(scan: &Scan) -> Result<Option<(Name, usize)>, ZoneFileError> {
    let Some(entry) = scan
        .entries
        .iter()
        .find(|e| !e.blank_start && e.tokens.first().is_some_and(|t| t == "$ORIGIN"))
    else {
        return Ok(None);
    };
    let Some(origin) = entry.tokens.get(1) else {
        return Err(ZoneFileError::new(
            Some(entry.line),
            "$ORIGIN without a name",
        ));
    };
    let name = Name::parse(origin, None).map_err(|e| {
        ZoneFileError::new(Some(entry.line), format!("bad $ORIGIN {origin:?}: {e}"))
    })?;
    Ok(Some((name, entry.line)))
}

type Parsed = BTreeMap<RrKey, RecordSet>;

fn parse(text: &str, path: Option<&Path>, origin: &Name) -> Result<Parsed, String> {
    Parser::new(text, path.map(PathBuf::from), Some(origin.clone()))
        .parse()
        .map(|(_, records)| records)
        .map_err(|e| e.to_string())
}

/// Parses `text`, naming the line of the first syntax error.
fn parse_located(
    text: &str,
    path: Option<&Path>,
    origin: &Name,
    scan: &Scan,
) -> Result<Parsed, ZoneFileError> {
    parse(text, path, origin).map_err(|whole| {
        locate(text, scan, |prefix| parse(prefix, path, origin).err())
            .or_else(|| {
                scan.unterminated
                    .map(|(line, what)| ZoneFileError::new(Some(line), what))
            })
            .unwrap_or_else(|| ZoneFileError::new(None, whole))
    })
}

/// The zone a file describes: the owner of its SOA, else its first `$ORIGIN`.
pub fn detect_zone(text: &str, path: Option<&Path>) -> Result<ZoneName, ZoneFileError> {
    let mut scan = scan(text);
    let decoded = decode_escapes(text, &scan)?;
    if let Some(decoded) = &decoded {
        scan = self::scan(decoded);
    }
    let text = decoded.as_deref().unwrap_or(text);
    let Some((origin, origin_line)) = first_origin(&scan)? else {
        return Err(ZoneFileError::new(
            None,
            "no $ORIGIN and no SOA to tell the zone from; pass --zone",
        ));
    };
    let records = parse_located(text, path, &origin, &scan)?;
    let soa_owner = records
        .values()
        .find(|rs| rs.record_type() == hickory_proto::rr::RecordType::SOA)
        .map(|rs| rs.name().clone());
    let (name, line) = match soa_owner {
        Some(owner) => {
            let line = locate(text, &scan, |prefix| {
                parse(prefix, path, &origin)
                    .ok()
                    .filter(|r| {
                        r.values()
                            .any(|rs| rs.record_type() == hickory_proto::rr::RecordType::SOA)
                    })
                    .map(|_| String::new())
            })
            .and_then(|e| e.line);
            (owner, line)
        }
        None => (origin, Some(origin_line)),
    };
    ZoneName::parse(&name.to_ascii()).map_err(|e| {
        ZoneFileError::new(line, format!("zone {name} is not a name zkdns serves: {e}"))
    })
}

// ---------------------------------------------------------------------------------------------
// Records to record sets.

/// The record sets and zone settings of a zone, as read from its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneContent {
    pub zone: ZoneName,
    /// The files' SOA: its TTL and fields (serial 0 becomes `None`, zkdns's derived serial).
    pub soa: Option<(u32, SoaJson)>,
    /// The files' apex NS targets, absolute (empty: the files have none).
    pub ns: Vec<String>,
    /// Normalised record sets, each with the lowest TTL of its records.
    pub sets: BTreeMap<RelName, RecordSetJson>,
    /// Things worth saying that do not stop the import.
    pub warnings: Vec<String>,
}

impl ZoneContent {
    /// The zone's settings once the files are loaded over `current`: their SOA replaces the
    /// zone's TTL and SOA (both left out when they are zkdns's defaults, as in the export of a
    /// zone without settings), their NS records its NS list (left out when it is just the SOA's
    /// mname, the default); what the files lack stays as it was.
    pub fn settings(&self, current: &ZoneJson) -> ZoneJson {
        let mut settings = current.clone();
        if let Some((ttl, soa)) = &self.soa {
            if (*ttl, soa) == (DEFAULT_TTL, &default_soa(&self.zone)) {
                settings.ttl = None;
                settings.soa = None;
            } else {
                settings.ttl = Some(*ttl);
                settings.soa = Some(soa.clone());
            }
        }
        if !self.ns.is_empty() {
            let default_ns = settings
                .soa
                .as_ref()
                .and_then(|s| s.mname.clone())
                .unwrap_or_else(|| format!("ns.{}.", self.zone));
            settings.ns = if self.ns == [default_ns] {
                Vec::new()
            } else {
                self.ns.clone()
            };
        }
        settings
    }

    /// Whether the files set any zone settings.
    pub fn has_settings(&self) -> bool {
        self.soa.is_some() || !self.ns.is_empty()
    }

    /// The record sets as stored under a zone with `settings`: a set's TTL is left out when it
    /// equals the zone's, so that it follows the zone's TTL.
    pub fn sets_for(&self, settings: &ZoneJson) -> BTreeMap<RelName, RecordSetJson> {
        let zone_ttl = settings.ttl.unwrap_or(DEFAULT_TTL);
        let mut sets = self.sets.clone();
        for set in sets.values_mut() {
            if set.ttl == Some(zone_ttl) {
                set.ttl = None;
            }
        }
        sets
    }
}

/// The SOA of a zone without settings, as a file gives it (serial 0: derived).
fn default_soa(zone: &ZoneName) -> SoaJson {
    let d = ZoneSettings::defaults(zone);
    SoaJson {
        mname: Some(absolute(&d.mname)),
        rname: Some(absolute(&d.rname)),
        serial: d.serial,
        refresh: Some(d.refresh),
        retry: Some(d.retry),
        expire: Some(d.expire),
        minimum: Some(d.minimum),
    }
}

/// Collects one zone's records from one or more zone files.
#[derive(Debug, Clone)]
pub struct ZoneBuilder {
    zone: ZoneName,
    origin: Name,
    soa: Option<(SOA, u32)>,
    ns: Vec<String>,
    sets: BTreeMap<RelName, RecordSetJson>,
    ttls: BTreeMap<RelName, BTreeSet<u32>>,
}

const SUPPORTED: &str =
    "zkdns stores A, AAAA, CNAME, TXT, SRV, MX and PTR records, and SOA and NS at the zone apex";

/// An absolute name as stored in JSON: lower-case, with the trailing dot.
fn absolute(name: &Name) -> String {
    let mut text = name.to_ascii().to_ascii_lowercase();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

impl ZoneBuilder {
    pub fn new(zone: ZoneName) -> Self {
        Self {
            origin: zone.to_name(),
            zone,
            soa: None,
            ns: Vec::new(),
            sets: BTreeMap::new(),
            ttls: BTreeMap::new(),
        }
    }

    pub fn zone(&self) -> &ZoneName {
        &self.zone
    }

    /// Adds the records of one zone file (`path` resolves `$INCLUDE`s). Names before the first
    /// `$ORIGIN` are relative to the zone. On error nothing is added.
    pub fn add_file(&mut self, text: &str, path: Option<&Path>) -> Result<(), ZoneFileError> {
        let mut scan = scan(text);
        let decoded = decode_escapes(text, &scan)?;
        if let Some(decoded) = &decoded {
            scan = self::scan(decoded);
        }
        let text = decoded.as_deref().unwrap_or(text);
        let records = parse_located(text, path, &self.origin, &scan)?;
        check_extra_tokens(&scan)?;
        let mut next = self.clone();
        if let Err(whole) = next.absorb(&records) {
            let located = locate(text, &scan, |prefix| {
                let records = match parse(prefix, path, &self.origin) {
                    Ok(r) => r,
                    Err(e) => return Some(e),
                };
                self.clone().absorb(&records).err()
            });
            return Err(located.unwrap_or_else(|| ZoneFileError::new(None, whole)));
        }
        *self = next;
        Ok(())
    }

    /// Adds parsed records; the error names the record at fault.
    fn absorb(&mut self, records: &Parsed) -> Result<(), String> {
        let mut touched = BTreeSet::new();
        for rs in records.values() {
            for record in rs.records_without_rrsigs() {
                if let Some(name) = self.absorb_record(record)? {
                    touched.insert(name);
                }
            }
        }
        for name in touched {
            let set = &self.sets[&name];
            let fqdn = name.fqdn(&self.zone);
            validate(set, &self.zone).map_err(|e| format!("{fqdn}: {e}"))?;
            let size = set.to_payload().len();
            if size > MAX_PAYLOAD {
                return Err(format!(
                    "{fqdn}: its records take {size} bytes, over ZooKeeper's {MAX_PAYLOAD} byte limit"
                ));
            }
        }
        Ok(())
    }

    /// Adds one record; returns the record set it went into, if any.
    fn absorb_record(&mut self, record: &Record) -> Result<Option<RelName>, String> {
        let fqdn = absolute(&record.name);
        let fqdn = fqdn.strip_suffix('.').unwrap_or(&fqdn);
        let rtype = record.record_type();
        if record.dns_class != DNSClass::IN {
            return Err(format!(
                "{fqdn}: class {} is not supported, only IN",
                record.dns_class
            ));
        }
        if !self.zone.contains(fqdn) {
            return Err(format!("{fqdn} {rtype} is outside the zone {}", self.zone));
        }
        let name = match self.zone.relative(fqdn) {
            Some(n) => n,
            None => {
                let rel = &fqdn[..fqdn.len() - self.zone.as_str().len() - 1];
                let err = RelName::from_znode(rel, &self.zone)
                    .err()
                    .map_or_else(|| "not a valid name".to_string(), |e| e.to_string());
                return Err(format!("{fqdn}: {err}"));
            }
        };
        let ttl = record.ttl;
        match &record.data {
            RData::SOA(soa) => {
                if !name.is_apex() {
                    return Err(format!(
                        "{fqdn}: SOA must be at the zone apex {}",
                        self.zone
                    ));
                }
                if self.soa.is_some() {
                    return Err(format!("{fqdn}: a second SOA for the zone"));
                }
                self.soa = Some((soa.clone(), record.ttl));
                return Ok(None);
            }
            RData::NS(ns) => {
                if !name.is_apex() {
                    return Err(format!(
                        "{fqdn}: NS below the zone apex (a delegation) is not supported"
                    ));
                }
                let target = absolute(&ns.0);
                if !self.ns.contains(&target) {
                    self.ns.push(target);
                }
                return Ok(None);
            }
            RData::A(a) => self.set_mut(&name, ttl).a.push(a.0),
            RData::AAAA(a) => self.set_mut(&name, ttl).aaaa.push(a.0),
            RData::CNAME(c) => {
                if name.is_apex() {
                    return Err(format!(
                        "{fqdn}: a CNAME cannot be at the zone apex, which has SOA and NS records"
                    ));
                }
                let target = absolute(&c.0);
                let set = self.set_mut(&name, ttl);
                match &set.cname {
                    Some(existing) if *existing != target => {
                        return Err(format!("{fqdn}: a second CNAME ({existing} and {target})"));
                    }
                    _ => set.cname = Some(target),
                }
            }
            RData::TXT(txt) => {
                let mut strings = Vec::new();
                for s in txt.txt_data.iter() {
                    strings.push(
                        String::from_utf8(s.to_vec())
                            .map_err(|_| format!("{fqdn}: TXT string is not UTF-8"))?,
                    );
                }
                let txt = if strings.len() == 1 {
                    Txt::One(strings.remove(0))
                } else {
                    Txt::Many(strings)
                };
                self.set_mut(&name, ttl).txt.push(txt);
            }
            RData::SRV(srv) => self.set_mut(&name, ttl).srv.push(Srv {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: absolute(&srv.target),
            }),
            RData::MX(mx) => self.set_mut(&name, ttl).mx.push(Mx {
                preference: mx.preference,
                exchange: absolute(&mx.exchange),
            }),
            RData::PTR(ptr) => self.set_mut(&name, ttl).ptr.push(absolute(&ptr.0)),
            _ => {
                return Err(format!(
                    "{fqdn}: {rtype} records are not supported ({SUPPORTED})"
                ));
            }
        }
        Ok(Some(name))
    }

    /// The record set `name`, noting a record's TTL for it.
    fn set_mut(&mut self, name: &RelName, ttl: u32) -> &mut RecordSetJson {
        self.ttls.entry(name.clone()).or_default().insert(ttl);
        self.sets.entry(name.clone()).or_default()
    }

    /// The zone's content. A set's TTL is the lowest of its records' (with a warning when
    /// they differ).
    pub fn finish(self) -> ZoneContent {
        let mut warnings = Vec::new();
        let mut sets = self.sets;
        for (name, set) in &mut sets {
            let ttls = &self.ttls[name];
            let min = *ttls.first().expect("a set has records");
            if ttls.len() > 1 {
                let list: Vec<String> = ttls.iter().map(u32::to_string).collect();
                warnings.push(format!(
                    "{}: records with different TTLs ({}); the record set gets the lowest, {min}",
                    name.fqdn(&self.zone),
                    list.join(", ")
                ));
            }
            set.ttl = Some(min);
            set.normalise();
        }
        let soa = self.soa.map(|(soa, ttl)| {
            let json = SoaJson {
                mname: Some(absolute(&soa.mname)),
                rname: Some(absolute(&soa.rname)),
                // serial 0 stands for zkdns's default: derived from the time of the last change
                serial: (soa.serial != 0).then_some(soa.serial),
                refresh: Some(soa.refresh as u32),
                retry: Some(soa.retry as u32),
                expire: Some(soa.expire as u32),
                minimum: Some(soa.minimum),
            };
            (ttl, json)
        });
        ZoneContent {
            zone: self.zone,
            soa,
            ns: self.ns,
            sets,
            warnings,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Record sets to text.

/// A TXT character-string in zone-file quotes: only `"` and `\` need escaping for hickory's
/// lexer (which reads any other character inside quotes as itself).
pub fn quote_txt(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A target as an absolute name with trailing dot (relative ones resolved against the zone).
fn target(text: &str, zone: &ZoneName) -> String {
    match parse_target(text, zone) {
        Ok(name) => name.to_ascii(),
        Err(_) => text.to_string(), // validated data never gets here
    }
}

/// The records of a set as (type, RDATA text) pairs, in a fixed order.
pub fn rdata_lines(set: &RecordSetJson, zone: &ZoneName) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    out.extend(set.a.iter().map(|a| ("A", a.to_string())));
    out.extend(set.aaaa.iter().map(|a| ("AAAA", a.to_string())));
    out.extend(set.cname.iter().map(|c| ("CNAME", target(c, zone))));
    out.extend(set.mx.iter().map(|m| {
        (
            "MX",
            format!("{} {}", m.preference, target(&m.exchange, zone)),
        )
    }));
    out.extend(set.srv.iter().map(|s| {
        (
            "SRV",
            format!(
                "{} {} {} {}",
                s.priority,
                s.weight,
                s.port,
                target(&s.target, zone)
            ),
        )
    }));
    out.extend(set.txt.iter().map(|t| {
        let strings: Vec<String> = t.strings().into_iter().map(quote_txt).collect();
        ("TXT", strings.join(" "))
    }));
    out.extend(set.ptr.iter().map(|p| ("PTR", target(p, zone))));
    out
}

/// One record set to export.
#[derive(Debug, Clone)]
pub struct ExportSet {
    pub name: RelName,
    pub data: RecordSetJson,
    /// Comment lines written after the set's records (live members, …).
    pub comments: Vec<String>,
}

/// Writes a zone as an RFC 1035 zone file: `$ORIGIN`, `$TTL` (the zone's TTL), the SOA and NS
/// records from its settings, then every record set with names relative to the zone. Records
/// of a set without its own TTL take `$TTL`; the SOA serial is 0 when zkdns derives it.
pub fn render(
    zone: &ZoneName,
    settings: &ZoneSettings,
    sets: &[ExportSet],
    header: &[String],
) -> String {
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "; {line}");
    }
    let _ = writeln!(out, "$ORIGIN {zone}.");
    let _ = writeln!(out, "$TTL {}", settings.ttl);
    let width = sets
        .iter()
        .map(|s| s.name.as_str().len())
        .max()
        .unwrap_or(1)
        .max(1);
    let ttl_width = sets
        .iter()
        .filter_map(|s| s.data.ttl)
        .map(|t| t.to_string().len())
        .max()
        .unwrap_or(0);
    let record = |out: &mut String, name: &str, ttl: Option<u32>, rtype: &str, rdata: &str| {
        let ttl = ttl.map(|t| t.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{name:<width$} {ttl:>ttl_width$} IN {rtype:<5} {rdata}"
        );
    };
    let soa = format!(
        "{} {} {} {} {} {} {}",
        settings.mname.to_ascii(),
        settings.rname.to_ascii(),
        settings.serial.unwrap_or(0),
        settings.refresh,
        settings.retry,
        settings.expire,
        settings.minimum
    );
    record(&mut out, "@", None, "SOA", &soa);
    for ns in &settings.ns {
        record(&mut out, "@", None, "NS", &ns.to_ascii());
    }
    for set in sets {
        let lines = rdata_lines(&set.data, zone);
        if lines.is_empty() && set.comments.is_empty() {
            // RFC 1035 has no way to write a name without records
            let _ = writeln!(
                out,
                "; {} has no records (it answers NODATA); a zone file cannot hold it",
                set.name
            );
        } else if lines.is_empty() {
            let _ = writeln!(out, "; {} has no records of its own", set.name);
        }
        for (rtype, rdata) in lines {
            record(&mut out, set.name.as_str(), set.data.ttl, rtype, &rdata);
        }
        for comment in &set.comments {
            let _ = writeln!(out, "; {comment}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::fixtures::{rel, zone};
    use crate::records::decode_zone;

    fn load(text: &str) -> Result<ZoneContent, ZoneFileError> {
        let mut b = ZoneBuilder::new(zone());
        b.add_file(text, None)?;
        Ok(b.finish())
    }

    const EXAMPLE: &str = r#"; an example
$ORIGIN cluster.test.
$TTL 300
@       IN SOA ns1 hostmaster (
                2024010101 ; serial
                3600 600 86400 30 )
        IN NS  ns1
        IN NS  ns2.example.
ns1     IN A   10.0.0.1
web     IN A   10.0.0.5
        IN A   10.0.0.6
web  60 IN AAAA fd00::5
api     IN CNAME web
*.dev   IN A   10.0.1.1
txt     IN TXT "v=spf1 -all" "second; string" plain
_http._tcp IN SRV 0 5 8080 web
mail    IN MX  10 mx.example.
$ORIGIN prod.cluster.test.
db      IN A   10.0.2.1
"#;

    #[test]
    fn reads_origin_ttl_relative_names_and_multi_string_txt() {
        let c = load(EXAMPLE).unwrap();
        let s = |n: &str| &c.sets[&rel(n)];
        assert_eq!(
            s("web").a,
            vec![
                "10.0.0.5".parse::<std::net::Ipv4Addr>().unwrap(),
                "10.0.0.6".parse().unwrap()
            ]
        );
        assert_eq!(s("web").ttl, Some(60), "lowest TTL of the set");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("web.cluster.test"));
        assert_eq!(s("ns1").ttl, Some(300));
        let (settings, sets) = stored(&c);
        assert_eq!(
            sets[&rel("ns1")].ttl,
            None,
            "equal to the SOA's TTL: follows the zone"
        );
        assert_eq!(sets[&rel("web")].ttl, Some(60));
        assert_eq!(s("api").cname.as_deref(), Some("web.cluster.test."));
        assert_eq!(s("*.dev").a.len(), 1);
        assert_eq!(
            s("txt").txt,
            vec![Txt::Many(vec![
                "v=spf1 -all".into(),
                "second; string".into(),
                "plain".into()
            ])]
        );
        assert_eq!(s("_http._tcp").srv[0].target, "web.cluster.test.");
        assert_eq!(s("_http._tcp").srv[0].port, 8080);
        assert_eq!(s("mail").mx[0].exchange, "mx.example.");
        assert_eq!(s("db.prod").a.len(), 1, "second $ORIGIN");
        let z = settings;
        assert_eq!(z.ttl, Some(300));
        let soa = z.soa.unwrap();
        assert_eq!(soa.mname.as_deref(), Some("ns1.cluster.test."));
        assert_eq!(soa.serial, Some(2024010101));
        assert_eq!(soa.minimum, Some(30));
        assert_eq!(z.ns, vec!["ns1.cluster.test.", "ns2.example."]);
    }

    #[test]
    fn detects_the_zone() {
        assert_eq!(detect_zone(EXAMPLE, None).unwrap().as_str(), "cluster.test");
        let soa_first = "$ORIGIN test.\ncluster 60 IN SOA ns hm 1 2 3 4 5\n$ORIGIN cluster.test.\nweb 60 IN A 10.0.0.1\n";
        assert_eq!(
            detect_zone(soa_first, None).unwrap().as_str(),
            "cluster.test"
        );
        let no_origin = "web 60 IN A 10.0.0.1\n";
        assert!(
            detect_zone(no_origin, None)
                .unwrap_err()
                .reason
                .contains("--zone")
        );
        // no $ORIGIN is fine when the zone is given
        let c = load("$TTL 60\nweb IN A 10.0.0.1\n").unwrap();
        assert_eq!(c.sets[&rel("web")].ttl, Some(60));
        assert!(!c.has_settings());
    }

    #[test]
    fn scan_splits_entries_like_the_lexer() {
        let text = "a IN A 1.2.3.4\n@ IN SOA a b (\n 1 2 ; c ) (\n 3 4 5 )\nt IN TXT \"x\ny\"\n; c\n\nlast";
        let s = scan(text);
        let lines: Vec<usize> = s.entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 5, 7, 8, 9]);
        let tokens: Vec<Vec<&str>> = s
            .entries
            .iter()
            .map(|e| e.tokens.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            tokens[1],
            vec!["@", "IN", "SOA", "a", "b", "1", "2", "3", "4", "5"]
        );
        assert_eq!(tokens[2], vec!["t", "IN", "TXT", "x\ny"]);
        assert_eq!(tokens[5], vec!["last"]);
        assert!(scan(" IN A 1.2.3.4\n").entries[0].blank_start);
        assert_eq!(s.entries.last().unwrap().end, text.len());
        assert_eq!(s.unterminated, None);
        assert_eq!(
            scan("a\nb (\n1\n").unterminated,
            Some((2, "unclosed parenthesis"))
        );
        assert_eq!(
            scan("a\nb \"x\\\"\n").unterminated,
            Some((2, "unclosed quoted string"))
        );
        // a quote inside a token or inside parentheses does not open a string
        assert_eq!(scan("a\"b c\nd ( \"e )\nf\n").entries.len(), 3);
    }

    fn error_of(text: &str) -> ZoneFileError {
        load(text).unwrap_err()
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let head = "$ORIGIN cluster.test.\n$TTL 60\nweb IN A 10.0.0.1\n";
        let e = error_of(&format!("{head}bad IN A 10.0.0.300\nok IN A 10.0.0.2\n"));
        assert_eq!(e.line, Some(4), "{e}");
        let e = error_of(&format!("{head}x IN BOGUS 1\n"));
        assert_eq!(e.line, Some(4), "{e}");
        let e = error_of(&format!("{head}x IN A (\n 10.0.0.1\n"));
        assert_eq!(
            (e.line, e.reason.as_str()),
            (Some(4), "unclosed parenthesis")
        );
        let e = error_of(&format!(
            "{head}; fine\n@ IN SOA a b (\n 1 2 3\n 4 x )\nz IN A 10.0.0.9\n"
        ));
        assert_eq!(
            e.line,
            Some(5),
            "a multi-line entry is named by its first line: {e}"
        );
        let e = error_of(&format!("{head}t IN TXT \"open\n"));
        assert_eq!(
            (e.line, e.reason.as_str()),
            (Some(4), "unclosed quoted string")
        );
    }

    #[test]
    fn content_errors_name_their_line() {
        let head = "$ORIGIN cluster.test.\n$TTL 60\nweb IN A 10.0.0.1\n";
        for (bad, needle) in [
            (
                "x IN CAA 0 issue \"ca.example\"\n",
                "CAA records are not supported",
            ),
            ("other.example. IN A 10.0.0.1\n", "outside the zone"),
            ("sub IN NS ns.example.\n", "delegation"),
            ("web IN CNAME api\n", "CNAME"),
            ("@ IN CNAME web\n", "zone apex"),
            ("sub IN SOA a b 1 2 3 4 5\n", "apex"),
            ("x CH A 10.0.0.1\n", "class"),
            ("x 60 IN A 10.0.0.1 10.0.0.2\n", "after the A record"),
            ("  IN MX 10 mx.example. extra\n", "extra"),
            (&format!("t IN TXT \"{}\"\n", "x".repeat(256)), "255"),
        ] {
            let e = error_of(&format!(
                "{head}ok IN A 10.0.0.2\n{bad}more IN A 10.0.0.3\n"
            ));
            assert_eq!(e.line, Some(5), "{bad}: {e}");
            assert!(e.reason.contains(needle), "{bad}: {e}");
        }
        assert!(load(&format!("{head}x IN SRV 0 5 80 web ; a comment\n")).is_ok());
        // the CNAME first and the other data later: the later line is named
        let e = error_of(&format!("{head}a IN CNAME web\n\na IN TXT x\n"));
        assert_eq!(e.line, Some(6), "{e}");
        assert_eq!(e.at("z.zone"), format!("z.zone:6: {}", e.reason));
    }

    #[test]
    fn decimal_escapes_are_decoded_right() {
        let c = load("$TTL 5\nx IN TXT \"a\\065b\" \"\\195\\169\\034\" \"q\\\"\\\\\"\n").unwrap();
        assert_eq!(
            c.sets[&rel("x")].txt,
            vec![Txt::Many(vec!["aAb".into(), "é\"".into(), "q\"\\".into()])]
        );
        let e = error_of("$TTL 5\nok IN A 10.0.0.1\nx IN TXT \"\\255\"\n");
        assert_eq!(e.line, Some(3), "{e}");
        let e = error_of("$TTL 5\nx IN TXT \"\\009\"\n");
        assert!(e.reason.contains("printable"), "{e}");
        // a broken escape is still hickory's to report, on its line
        let e = error_of("$TTL 5\n\nx IN TXT \"\\0x1\"\n");
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn second_file_adds_and_conflicts() {
        let mut b = ZoneBuilder::new(zone());
        b.add_file("$TTL 60\nweb IN A 10.0.0.1\n", None).unwrap();
        b.add_file("$TTL 60\nweb IN A 10.0.0.2\n", None).unwrap();
        let e = b
            .add_file("$TTL 60\n\nweb IN CNAME api\n", None)
            .unwrap_err();
        assert_eq!(e.line, Some(3));
        let c = b.finish();
        assert_eq!(c.sets[&rel("web")].a.len(), 2, "a failed file adds nothing");
    }

    #[test]
    fn serial_zero_means_derived_and_default_ns_is_dropped() {
        let c = load("$TTL 5\n@ IN SOA ns1 hostmaster 0 3600 600 86400 5\n@ IN NS ns1\n").unwrap();
        let (z, _) = stored(&c);
        assert_eq!(z.soa.unwrap().serial, None);
        assert!(z.ns.is_empty());
    }

    #[test]
    fn the_default_soa_is_no_settings() {
        let c = load(
            "$TTL 5\n@ IN SOA ns hostmaster 0 3600 600 86400 5\n@ IN NS ns\nweb IN A 10.0.0.1\n",
        )
        .unwrap();
        let current = ZoneJson {
            ttl: Some(5),
            soa: Some(SoaJson {
                refresh: Some(3600),
                ..Default::default()
            }),
            ns: vec!["a.example.".into()],
        };
        assert_eq!(c.settings(&current), ZoneJson::default());
        // a zone without settings exports to a file that imports as a zone without settings
        let text = export(&(ZoneJson::default(), c.sets_for(&ZoneJson::default())));
        assert!(
            text.contains("IN SOA   ns.cluster.test. hostmaster.cluster.test. 0 "),
            "{text}"
        );
        assert_eq!(stored(&load(&text).unwrap()).0, ZoneJson::default());
        // anything else is kept whole
        let c = load("$TTL 5\n@ IN SOA ns hostmaster 0 3600 600 86400 6\n").unwrap();
        assert_eq!(stored(&c).0.soa.unwrap().refresh, Some(3600));
        let c = load("$TTL 6\n@ IN SOA ns hostmaster 0 3600 600 86400 5\n").unwrap();
        assert_eq!(stored(&c).0.ttl, Some(6));
    }

    #[test]
    fn files_change_only_the_settings_they_have() {
        let current = ZoneJson {
            ttl: Some(30),
            soa: Some(SoaJson {
                serial: Some(7),
                ..Default::default()
            }),
            ns: vec!["a.example.".into()],
        };
        let ns_only = load(
            "$TTL 30
@ IN NS b.example.
web IN A 10.0.0.1
",
        )
        .unwrap();
        let merged = ns_only.settings(&current);
        assert_eq!(merged.soa, current.soa);
        assert_eq!(merged.ns, vec!["b.example."]);
        // the zone's TTL, 30, is the set's: left out
        assert_eq!(ns_only.sets_for(&merged)[&rel("web")].ttl, None);
        let nothing = load(
            "$TTL 5
web IN A 10.0.0.1
",
        )
        .unwrap();
        assert_eq!(nothing.settings(&current), current);
        assert_eq!(nothing.sets_for(&current)[&rel("web")].ttl, Some(5));
        // a new zone's TTL is the default, 5
        assert_eq!(
            nothing.sets_for(&ZoneJson::default())[&rel("web")].ttl,
            None
        );
    }

    type Stored = (ZoneJson, BTreeMap<RelName, RecordSetJson>);

    /// What an import into a new zone stores.
    fn stored(c: &ZoneContent) -> Stored {
        let settings = c.settings(&ZoneJson::default());
        let sets = c.sets_for(&settings);
        (settings, sets)
    }

    fn export((settings, sets): &Stored) -> String {
        let settings = decode_zone(&settings.to_payload(), &zone()).unwrap();
        let sets: Vec<ExportSet> = sets
            .iter()
            .map(|(name, data)| ExportSet {
                name: name.clone(),
                data: data.clone(),
                comments: vec![],
            })
            .collect();
        render(&zone(), &settings, &sets, &["exported".to_string()])
    }

    #[test]
    fn export_reads_back_identically() {
        let original = stored(&load(EXAMPLE).unwrap());
        let text = export(&original);
        assert!(
            text.starts_with("; exported\n$ORIGIN cluster.test.\n$TTL 300\n"),
            "{text}"
        );
        assert!(
            text.contains("\nweb        60 IN A     10.0.0.5\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"txt           IN TXT   "v=spf1 -all" "second; string" "plain""#),
            "{text}"
        );
        let back = stored(&load(&text).unwrap());
        assert_eq!(back, original, "{text}");
        // and a second time: a fixed point
        assert_eq!(export(&back), text);
    }

    #[test]
    fn export_quotes_what_needs_it() {
        let mut set = RecordSetJson {
            txt: vec![
                Txt::One(r#"say "hi" \o/ ; not a comment"#.into()),
                Txt::One(String::new()),
                Txt::One("ünï".into()),
            ],
            ttl: Some(7),
            ..Default::default()
        };
        set.normalise();
        let settings = ZoneJson {
            ttl: Some(30),
            ..Default::default()
        };
        let sets: BTreeMap<RelName, RecordSetJson> = [(rel("q"), set)].into();
        let back = load(&export(&(settings, sets.clone()))).unwrap();
        assert_eq!(back.sets, sets);
    }
}
