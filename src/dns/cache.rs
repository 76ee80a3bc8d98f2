//! The cache of forwarded answers, read on the UDP fast path without a lock or an allocation:
//! up to 256 tables, each an immutable hash table published through `arc-swap`, which a
//! writer replaces whole (a copy of one small shard) when it adds an entry. Readers load the
//! current table of one shard, find the entry and write the client's reply from it: its own
//! ID, its question as it was asked (letter case included), TTLs counted down by the time
//! spent in the cache (RFC 2181 §8), RA set and AA clear, truncated to what the client takes.
//!
//! What is kept: positive answers for the smallest TTL of their records (capped), NXDOMAIN and
//! NODATA for the SOA's MINIMUM bounded by the SOA's own TTL (RFC 2308, capped), both past
//! their expiry for the stale limit, to be served when every upstream fails (RFC 8767); and for
//! a few seconds the failure of a question that had nothing to fall back on, so that a dead
//! upstream is not asked again for every query (RFC 2308 §7). Never kept: SERVFAIL, REFUSED
//! and other errors as answers, truncated replies, referrals and negative answers without a
//! SOA, answers with a TTL of 0 or with the top bit of a TTL set.
//!
//! Bounded in bytes: each shard holds at most its share; past it, the oldest entries not
//! used since the hand last passed them go first (a CLOCK: every hit sets its entry's flag,
//! the hand clears it).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;
use hashbrown::HashTable;

use crate::dns::wire::{self, EDE_STALE, EDNS_UDP, HEADER_LEN, OPT_LEN, Query, TYPE_OPT};
use crate::names::MAX_WIRE_NAME;

/// Most tables the cache is split into.
const MAX_SHARDS: usize = 256;
/// Least share of each table: an insert copies one table's pointers, so tables stay small,
/// but large enough for entries of a quarter of it (4 KiB).
const MIN_SHARD_BYTES: usize = 16 * 1024;

/// Tables for a cache of `max_bytes`: a power of two, each of at least [`MIN_SHARD_BYTES`]
/// (256 of 16 KiB for the default 4 MiB).
fn shard_count(max_bytes: usize) -> usize {
    let n = (max_bytes / MIN_SHARD_BYTES).clamp(1, MAX_SHARDS);
    1 << n.ilog2()
}
/// Longest key: a name, its type and class, and the flags byte.
pub const KEY_MAX: usize = MAX_WIRE_NAME + 5;
/// How long a question whose upstreams all failed, with nothing stale to answer, gets
/// SERVFAIL from the cache before the upstreams are asked again (RFC 2308 §7.1 allows 5 min).
const FAILURE_TTL: u32 = 5;
/// What an entry costs in a shard besides its allocations: its slot in the hash table (a
/// pointer and a tag byte) and in the CLOCK queue (hash and pointer).
const SLOT_BYTES: usize = 9 + 16;

/// The heap an allocation of `n` bytes takes from glibc's malloc: 8 bytes of header, rounded
/// up to 16, at least 32.
const fn chunk(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let c = (n + 8).div_ceil(16) * 16;
    if c < 32 { 32 } else { c }
}

const TYPE_SOA: u16 = 6;
const RCODE_NOERROR: u16 = 0;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_SERVFAIL: u16 = 2;

/// The cache's limits (`--cache-*` flags).
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Bytes the entries may take in all.
    pub max_bytes: usize,
    /// Cap on how long a positive answer is kept.
    pub max_ttl: u32,
    /// Cap on how long a negative answer is kept.
    pub max_negative_ttl: u32,
    /// How long past its expiry an entry may still be served when every upstream fails.
    pub stale_limit: u32,
    /// The TTL of a stale answer (RFC 8767 recommends 30 s).
    pub stale_ttl: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 4 << 20,
            max_ttl: 86_400,
            max_negative_ttl: 3_600,
            stale_limit: 86_400,
            stale_ttl: 30,
        }
    }
}

/// The lower-cased question name, type and class, and the DNSSEC OK and Checking Disabled
/// bits (they change what an upstream answers), written into `buf`.
pub fn key<'b>(q: &Query<'_>, buf: &'b mut [u8; KEY_MAX]) -> &'b [u8] {
    let n = q.qname.len();
    for (d, s) in buf[..n].iter_mut().zip(q.qname) {
        *d = s.to_ascii_lowercase();
    }
    buf[n..n + 2].copy_from_slice(&q.qtype.to_be_bytes());
    buf[n + 2..n + 4].copy_from_slice(&q.qclass.to_be_bytes());
    let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok);
    buf[n + 4] = u8::from(dnssec_ok) | u8::from(q.cd) << 1;
    &buf[..n + 5]
}

/// The parts of a key: the name in wire format, type, class, DO, CD.
pub fn key_parts(key: &[u8]) -> (&[u8], u16, u16, bool, bool) {
    let n = key.len() - 5;
    let qtype = u16::from_be_bytes([key[n], key[n + 1]]);
    let qclass = u16::from_be_bytes([key[n + 2], key[n + 3]]);
    (
        &key[..n],
        qtype,
        qclass,
        key[n + 4] & 1 != 0,
        key[n + 4] & 2 != 0,
    )
}

/// Seconds on the cache's clock (1 at its creation, so that 0 can mean "never").
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn now(&self) -> u32 {
        u32::try_from(self.0.elapsed().as_secs())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1)
    }
}

/// Why an upstream's reply was not taken as an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadReply {
    /// It does not parse as a DNS message, or its records run past its end.
    Malformed,
    /// A TTL with the top bit set (RFC 2181 §8: taken as 0; the reply is relayed so, never
    /// cached).
    TtlTopBit,
}

impl BadReply {
    pub fn reason(self) -> &'static str {
        match self {
            BadReply::Malformed => "malformed",
            BadReply::TtlTopBit => "ttl_top_bit",
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An answer (positive or negative) kept for its lifetime, and then as stale data.
    Answer,
    /// A reply relayed but not kept (an error, truncated, TTL 0, …).
    Uncached,
    /// Every upstream failed and nothing stale was there: SERVFAIL for [`FAILURE_TTL`].
    Failure,
}

/// One reply, as the cache keeps it and as every client's reply is written from it.
#[derive(Debug)]
pub struct Entry {
    key: Box<[u8]>,
    /// Header and question of the upstream's reply, then its records without OPT; the TTLs
    /// in it are already capped at the entry's lifetime.
    msg: Box<[u8]>,
    question_end: usize,
    /// Ends of the records in `msg`, in order: answer, authority, additional.
    ends: Box<[u16]>,
    /// Where each record's TTL is in `msg`.
    ttl_at: Box<[u16]>,
    /// How many of `ends` belong to the answer and the authority section.
    answers: u16,
    authorities: u16,
    rcode: u16,
    /// The upstream's AD bit (RFC 6840: shown only to clients that asked with DO or AD).
    authentic: bool,
    kind: Kind,
    stored: u32,
    lifetime: u32,
    /// Set by every hit, cleared by eviction passes.
    used: AtomicBool,
    /// When a refresh of this entry last failed (0: never).
    refresh_failed: AtomicU32,
}

/// How fresh an entry is at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    Fresh,
    /// Expired, but may be served as stale data.
    Stale,
    /// Past its stale limit too, or a failure that is over: gone.
    Dead,
}

impl Entry {
    /// The memory the entry takes, as the cache counts it against `--cache-size`: every
    /// allocation as malloc rounds it, and its slots in the shard's table.
    fn size(&self) -> usize {
        // the Arc's allocation: two counters and the struct
        chunk(16 + std::mem::size_of::<Entry>())
            + chunk(self.key.len())
            + chunk(self.msg.len())
            + chunk(2 * self.ends.len())
            + chunk(2 * self.ttl_at.len())
            + SLOT_BYTES
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Whether the cache keeps this entry (as opposed to relaying it once).
    pub fn is_kept(&self) -> bool {
        self.kind != Kind::Uncached
    }

    pub fn age(&self, now: u32, config: &CacheConfig) -> Age {
        let age = now.saturating_sub(self.stored);
        match self.kind {
            _ if age < self.lifetime => Age::Fresh,
            Kind::Answer if age < self.lifetime.saturating_add(config.stale_limit) => Age::Stale,
            _ => Age::Dead,
        }
    }

    /// Whether a refresh failed less than `recheck` seconds ago: serve stale, do not ask again
    /// yet. (RFC 8767's failure recheck timer; the cache uses the stale TTL, 30 s by default,
    /// so that clients told to come back in that time find the upstreams asked again.)
    pub fn failed_recently(&self, now: u32, recheck: u32) -> bool {
        let at = self.refresh_failed.load(Ordering::Relaxed);
        at != 0 && now.saturating_sub(at) < recheck
    }

    pub fn mark_refresh_failed(&self, now: u32) {
        self.refresh_failed.store(now, Ordering::Relaxed);
    }

    /// The entry for a question whose upstreams all failed: SERVFAIL for a few seconds.
    pub fn failure(key: &[u8], now: u32) -> Entry {
        let (name, qtype, qclass, _, _) = key_parts(key);
        let mut msg = vec![0u8; HEADER_LEN];
        msg[5] = 1;
        msg.extend_from_slice(name);
        msg.extend_from_slice(&qtype.to_be_bytes());
        msg.extend_from_slice(&qclass.to_be_bytes());
        Entry {
            key: key.into(),
            question_end: msg.len(),
            msg: msg.into(),
            ends: Box::new([]),
            ttl_at: Box::new([]),
            answers: 0,
            authorities: 0,
            rcode: RCODE_SERVFAIL,
            authentic: false,
            kind: Kind::Failure,
            stored: now,
            lifetime: FAILURE_TTL,
            used: AtomicBool::new(false),
            refresh_failed: AtomicU32::new(0),
        }
    }

    /// Takes an upstream's `reply` to the question `key` (its ID and question already
    /// checked). The entry is kept when the reply is an answer worth keeping; otherwise it is
    /// only relayed. `Err` for a reply that must not be relayed at all.
    pub fn from_reply(
        key: &[u8],
        reply: &[u8],
        config: &CacheConfig,
        now: u32,
    ) -> Result<(Entry, Option<BadReply>), BadReply> {
        if hickory_proto::op::Message::from_vec(reply).is_err() {
            return Err(BadReply::Malformed);
        }
        let scan = Scan::of(reply).ok_or(BadReply::Malformed)?;
        let truncated = reply[2] & 0x02 != 0;
        let rcode = u16::from(reply[3] & 0x0F) | u16::from(scan.ext_rcode) << 4;
        let top_bit = scan.min_ttl >= 0x8000_0000;
        let positive = rcode == RCODE_NOERROR && scan.answers > 0;
        let negative = rcode == RCODE_NXDOMAIN || (rcode == RCODE_NOERROR && scan.answers == 0);
        let lifetime = if top_bit || truncated {
            0
        } else if positive {
            scan.min_ttl.min(config.max_ttl)
        } else if negative {
            // RFC 2308 §5: the SOA's MINIMUM, bounded by its own TTL; no SOA, no caching
            scan.soa_minimum
                .map_or(0, |min| min.min(scan.min_ttl).min(config.max_negative_ttl))
        } else {
            0
        };
        let mut msg = reply[..scan.kept_end].to_vec();
        msg[..2].copy_from_slice(&[0, 0]);
        let kept = scan.ends.len() - usize::from(scan.answers) - usize::from(scan.authorities);
        msg[10..12].copy_from_slice(&(kept as u16).to_be_bytes());
        // TTLs above the lifetime (or with the top bit set) never reach a client
        for &at in &scan.ttl_at {
            let ttl = u32::from_be_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
            let ttl = if ttl >= 0x8000_0000 {
                0
            } else {
                ttl.min(lifetime)
            };
            msg[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
        let entry = Entry {
            key: key.into(),
            msg: msg.into(),
            question_end: scan.question_end,
            ends: scan.ends.iter().map(|&e| e as u16).collect(),
            ttl_at: scan.ttl_at.iter().map(|&e| e as u16).collect(),
            answers: scan.answers,
            authorities: scan.authorities,
            rcode,
            authentic: reply[3] & 0x20 != 0,
            kind: if lifetime > 0 {
                Kind::Answer
            } else {
                Kind::Uncached
            },
            stored: now,
            lifetime,
            used: AtomicBool::new(false),
            refresh_failed: AtomicU32::new(0),
        };
        Ok((entry, top_bit.then_some(BadReply::TtlTopBit)))
    }

    /// Writes the reply to the client's query `q` (in `packet`) into `out`: the client's ID,
    /// question and RD/CD bits, RA set and AA clear, TTLs counted down (or `stale_ttl` for a
    /// stale answer, with Extended DNS Error 3 for EDNS clients), at most `limit` bytes (TC
    /// with the whole records that fit, the additional section dropped first). Returns the
    /// RCODE.
    pub fn write_reply(
        &self,
        packet: &[u8],
        q: &Query<'_>,
        limit: usize,
        now: u32,
        stale_ttl: Option<u32>,
        out: &mut Vec<u8>,
    ) -> u16 {
        out.clear();
        out.extend_from_slice(&packet[..q.question_end]);
        let show_ad =
            self.authentic && (q.edns.is_some_and(|e| e.dnssec_ok) || packet[3] & 0x20 != 0);
        let flags: u16 = 0x8000
            | if q.rd { 0x0100 } else { 0 }
            | 0x0080
            | if show_ad { 0x0020 } else { 0 }
            | if q.cd { 0x0010 } else { 0 }
            | (self.rcode & 0x0F);
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        let options: &[u8] = if stale_ttl.is_some() { &EDE_STALE } else { &[] };
        let opt = if q.edns.is_some() {
            OPT_LEN + options.len()
        } else {
            0
        };
        let budget = limit.saturating_sub(opt);
        let ends = &self.ends;
        let (answers, authorities) = (usize::from(self.answers), usize::from(self.authorities));
        let end_of = |n: usize| {
            if n == 0 {
                self.question_end
            } else {
                usize::from(ends[n - 1])
            }
        };
        // all of it; or without the additional section; or the whole records that fit
        let mut keep = ends.len();
        let mut truncated = false;
        if end_of(keep) > budget {
            keep = answers + authorities;
            if end_of(keep) > budget {
                truncated = true;
                while keep > 0 && end_of(keep) > budget {
                    keep -= 1;
                }
            }
        }
        out.extend_from_slice(&self.msg[self.question_end..end_of(keep)]);
        let counts = [
            keep.min(answers),
            keep.saturating_sub(answers).min(authorities),
            keep.saturating_sub(answers + authorities),
        ];
        for (i, c) in counts.iter().enumerate() {
            let at = 6 + 2 * i;
            out[at..at + 2].copy_from_slice(&(*c as u16).to_be_bytes());
        }
        if truncated {
            out[2] |= 0x02;
        }
        // every record's TTL, counted down (stale data: the stale TTL)
        let age = now.saturating_sub(self.stored);
        for &at in &self.ttl_at[..keep] {
            let at = usize::from(at);
            let ttl = match stale_ttl {
                Some(ttl) => ttl,
                None => {
                    let t = &out[at..at + 4];
                    u32::from_be_bytes([t[0], t[1], t[2], t[3]]).saturating_sub(age)
                }
            };
            out[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
        let mut ar = counts[2] as u16;
        if let Some(e) = q.edns {
            push_opt(out, self.rcode, e.dnssec_ok, options);
            ar += 1;
        }
        out[10..12].copy_from_slice(&ar.to_be_bytes());
        self.rcode
    }
}

/// Appends our OPT record: our UDP size, the extended RCODE, DO echoed, `options`.
fn push_opt(out: &mut Vec<u8>, rcode: u16, dnssec_ok: bool, options: &[u8]) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_UDP.to_be_bytes());
    out.push((rcode >> 4) as u8);
    out.push(0);
    out.extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(options.len() as u16).to_be_bytes());
    out.extend_from_slice(options);
}

/// What a reply holds, found by walking its records once.
struct Scan {
    question_end: usize,
    /// Where the kept records end: before the OPT record (and anything after it).
    kept_end: usize,
    ends: Vec<usize>,
    ttl_at: Vec<usize>,
    answers: u16,
    authorities: u16,
    min_ttl: u32,
    soa_minimum: Option<u32>,
    ext_rcode: u8,
}

impl Scan {
    fn of(reply: &[u8]) -> Option<Scan> {
        let count = |at: usize| u16::from_be_bytes([reply[at], reply[at + 1]]);
        if reply.len() < HEADER_LEN || count(4) != 1 {
            return None;
        }
        let (an, ns, ar) = (count(6), count(8), count(10));
        let mut at = wire::skip_name(reply, HEADER_LEN)? + 4;
        if at > reply.len() {
            return None;
        }
        let mut scan = Scan {
            question_end: at,
            kept_end: at,
            ends: Vec::new(),
            ttl_at: Vec::new(),
            answers: an,
            authorities: ns,
            min_ttl: u32::MAX,
            soa_minimum: None,
            ext_rcode: 0,
        };
        let mut opt_seen = false;
        for i in 0..usize::from(an) + usize::from(ns) + usize::from(ar) {
            let fixed = wire::skip_name(reply, at)?;
            let field = |o: usize| {
                reply
                    .get(fixed + o..fixed + o + 2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
            };
            let rtype = field(0)?;
            let ttl = u32::from(field(4)?) << 16 | u32::from(field(6)?);
            let end = fixed + 10 + usize::from(field(8)?);
            if end > reply.len() {
                return None;
            }
            if rtype == TYPE_OPT {
                if i < usize::from(an) + usize::from(ns) || opt_seen {
                    return None;
                }
                opt_seen = true;
                scan.ext_rcode = reply[fixed + 4];
            } else if !opt_seen {
                if rtype == TYPE_SOA && i >= usize::from(an) && i < usize::from(an + ns) {
                    if end - fixed < 10 + 22 {
                        return None;
                    }
                    let m = &reply[end - 4..end];
                    scan.soa_minimum = Some(u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
                }
                scan.min_ttl = scan.min_ttl.min(ttl);
                scan.ttl_at.push(fixed + 4);
                scan.ends.push(end);
                scan.kept_end = end;
            }
            at = end;
        }
        // nothing may follow the last record
        (at == reply.len()).then_some(scan)
    }
}

/// One shard: its current table, and the lock its writers take (readers never do).
#[derive(Debug, Default)]
struct Shard {
    table: ArcSwap<Table>,
    writer: Mutex<()>,
}

#[derive(Debug, Clone, Default)]
struct Table {
    entries: HashTable<Arc<Entry>>,
    /// The same entries with their hashes, in the order the CLOCK hand meets them: the next
    /// candidate first.
    order: VecDeque<(u64, Arc<Entry>)>,
    bytes: usize,
}

/// What the cache did, for the metrics (the hits are counted per query thread).
#[derive(Debug, Default)]
pub struct CacheCounters {
    pub misses: AtomicU64,
    pub inserts: AtomicU64,
    pub evictions: AtomicU64,
}

/// What a lookup found.
pub enum Found {
    /// The reply is written: from a fresh entry (`stale` false) or a stale one.
    Answered { rcode: u16, stale: bool },
    /// Nothing to answer with: ask the upstreams.
    Miss,
}

/// The cache: see the module documentation.
#[derive(Debug)]
pub struct Cache {
    shards: Box<[Shard]>,
    hasher: RandomState,
    config: CacheConfig,
    clock: Clock,
    pub counters: CacheCounters,
}

impl Cache {
    pub fn new(config: CacheConfig) -> Self {
        Self {
            shards: (0..shard_count(config.max_bytes))
                .map(|_| Shard::default())
                .collect(),
            hasher: RandomState::default(),
            config,
            clock: Clock(Instant::now()),
            counters: CacheCounters::default(),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub fn now(&self) -> u32 {
        self.clock.now()
    }

    fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    /// The shard of `hash`: bits the shard's own table does not use (hashbrown takes the low
    /// bits for the bucket and the top seven for the tag).
    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 32) as usize & (self.shards.len() - 1)]
    }

    /// The entry for `key`, whatever its age.
    pub fn get(&self, key: &[u8]) -> Option<Arc<Entry>> {
        let hash = self.hash(key);
        let table = self.shard(hash).table.load();
        table.entries.find(hash, |e| *e.key == *key).cloned()
    }

    /// Answers `q` from the cache when it can without asking an upstream: a fresh entry, a
    /// stale one whose refresh failed a moment ago, or a recent failure. On the fast path: one
    /// atomic load, one probe, no allocation (the reply goes into `out`).
    pub fn answer(
        &self,
        key: &[u8],
        packet: &[u8],
        q: &Query<'_>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Found {
        let hash = self.hash(key);
        let table = self.shard(hash).table.load();
        let Some(entry) = table.entries.find(hash, |e| *e.key == *key) else {
            return Found::Miss;
        };
        let now = self.now();
        let stale = match entry.age(now, &self.config) {
            Age::Fresh => false,
            Age::Stale if entry.failed_recently(now, self.config.stale_ttl) => true,
            _ => return Found::Miss,
        };
        if !entry.used.load(Ordering::Relaxed) {
            entry.used.store(true, Ordering::Relaxed);
        }
        let stale_ttl = stale.then_some(self.config.stale_ttl);
        let rcode = entry.write_reply(packet, q, limit, now, stale_ttl, out);
        Found::Answered { rcode, stale }
    }

    /// Keeps `entry` (replacing what `key` had), making room by evicting entries in its
    /// shard. An entry larger than a quarter of a shard's share is not kept (with the default
    /// 4 MiB, one of 4 KiB: some 200 addresses).
    pub fn insert(&self, entry: Arc<Entry>) {
        let per_shard = self.config.max_bytes / self.shards.len();
        if !entry.is_kept() || entry.size() > per_shard / 4 {
            return;
        }
        let hash = self.hash(&entry.key);
        let shard = self.shard(hash);
        let _writer = shard.writer.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now();
        // a copy of the shard's table: the entries are shared, only the pointers are copied
        let mut next = Table::clone(&shard.table.load());
        if let Ok(old) = next.entries.find_entry(hash, |e| *e.key == *entry.key) {
            let (old, _) = old.remove();
            next.bytes -= old.size();
            next.order.retain(|(_, e)| !Arc::ptr_eq(e, &old));
        }
        next.bytes += entry.size();
        let mut evicted = 0;
        // CLOCK: an entry used since the hand last passed it loses its flag and goes round
        // again; one that was not (or is past its stale limit) is evicted. After a whole round
        // every flag is clear.
        let mut spared = 0;
        let round = next.order.len();
        while next.bytes > per_shard {
            let Some((h, e)) = next.order.pop_front() else {
                break;
            };
            let alive = e.age(now, &self.config) != Age::Dead;
            if alive && spared < round && e.used.swap(false, Ordering::Relaxed) {
                spared += 1;
                next.order.push_back((h, e));
                continue;
            }
            if let Ok(found) = next.entries.find_entry(h, |x| Arc::ptr_eq(x, &e)) {
                found.remove();
            }
            next.bytes -= e.size();
            evicted += 1;
        }
        next.entries
            .insert_unique(hash, entry.clone(), |e| self.hash(&e.key));
        next.order.push_back((hash, entry));
        shard.table.store(Arc::new(next));
        self.counters.inserts.fetch_add(1, Ordering::Relaxed);
        self.counters
            .evictions
            .fetch_add(evicted, Ordering::Relaxed);
    }

    /// Entries and the bytes they take, summed over the shards (for the metrics).
    pub fn usage(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), s| {
            let t = s.table.load();
            (n + t.entries.len(), b + t.bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::answer::tests::query;
    use crate::dns::wire::parse_query;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    /// An upstream's reply to `name A`: `addrs` with `ttl`, or with none a negative answer
    /// (`soa`: its TTL and MINIMUM).
    fn reply(
        name: &str,
        rcode: ResponseCode,
        addrs: &[[u8; 4]],
        ttl: u32,
        soa: Option<(u32, u32)>,
    ) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.metadata.authoritative = true;
        m.metadata.response_code = rcode;
        let owner = Name::from_ascii(name).unwrap();
        m.add_query(HQuery::query(owner.clone(), RecordType::A));
        for a in addrs {
            m.add_answer(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::A(A::from(std::net::Ipv4Addr::from(*a))),
            ));
        }
        if let Some((soa_ttl, minimum)) = soa {
            let zone = Name::from_ascii("example.").unwrap();
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86400, minimum);
            m.add_authority(Record::from_rdata(zone, soa_ttl, RData::SOA(soa)));
        }
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
        m.to_vec().unwrap()
    }

    fn entry(packet: &[u8], reply: &[u8], config: &CacheConfig, now: u32) -> Entry {
        let q = parse_query(packet).unwrap();
        let mut buf = [0u8; KEY_MAX];
        let k = key(&q, &mut buf).to_vec();
        Entry::from_reply(&k, reply, config, now).unwrap().0
    }

    fn render(e: &Entry, packet: &[u8], now: u32, stale: Option<u32>) -> Message {
        let q = parse_query(packet).unwrap();
        let mut out = Vec::new();
        e.write_reply(packet, &q, q.udp_limit(), now, stale, &mut out);
        Message::from_vec(&out).unwrap()
    }

    #[test]
    fn keys_ignore_case_and_keep_do_and_cd() {
        let a = query("WWW.Example.", RecordType::A, None);
        let b = query("www.example.", RecordType::A, None);
        let (qa, qb) = (parse_query(&a).unwrap(), parse_query(&b).unwrap());
        let (mut ka, mut kb) = ([0u8; KEY_MAX], [0u8; KEY_MAX]);
        assert_eq!(key(&qa, &mut ka), key(&qb, &mut kb));
        let mut cd = qb;
        cd.cd = true;
        let kcd = key(&cd, &mut ka).to_vec();
        assert_ne!(kcd, key(&qb, &mut kb));
        let (name, qtype, qclass, dnssec_ok, checking_disabled) = key_parts(&kcd);
        assert_eq!(name, b"\x03www\x07example\x00");
        assert_eq!(
            (qtype, qclass, dnssec_ok, checking_disabled),
            (1, 1, false, true)
        );
    }

    #[test]
    fn a_positive_answer_lives_for_its_smallest_ttl_and_counts_down() {
        let config = CacheConfig::default();
        let packet = query("WwW.example.", RecordType::A, None);
        let e = entry(
            &packet,
            &reply(
                "www.example.",
                ResponseCode::NoError,
                &[[192, 0, 2, 1], [192, 0, 2, 2]],
                300,
                None,
            ),
            &config,
            100,
        );
        assert!(e.is_kept());
        assert_eq!(e.lifetime, 300);
        assert_eq!(e.age(399, &config), Age::Fresh);
        assert_eq!(e.age(400, &config), Age::Stale);
        assert_eq!(e.age(400 + config.stale_limit, &config), Age::Dead);
        let m = render(&e, &packet, 160, None);
        assert_eq!(m.metadata.id, 0x4242);
        assert!(m.metadata.recursion_available && !m.metadata.authoritative);
        assert_eq!(
            m.queries[0].name().to_ascii(),
            "WwW.example.",
            "0x20 case kept"
        );
        assert_eq!(m.answers.len(), 2);
        assert!(m.answers.iter().all(|r| r.ttl == 240), "{:?}", m.answers);
        assert!(m.edns.is_none(), "no OPT for a client without EDNS");
    }

    #[test]
    fn ttls_are_capped_and_the_top_bit_counts_as_zero() {
        let config = CacheConfig {
            max_ttl: 60,
            ..CacheConfig::default()
        };
        let packet = query("www.example.", RecordType::A, Some(1232));
        let e = entry(
            &packet,
            &reply(
                "www.example.",
                ResponseCode::NoError,
                &[[192, 0, 2, 1]],
                86_400,
                None,
            ),
            &config,
            1,
        );
        assert_eq!(e.lifetime, 60);
        let m = render(&e, &packet, 1, None);
        assert_eq!(m.answers[0].ttl, 60);
        assert!(m.edns.is_some());
        let q = parse_query(&packet).unwrap();
        let mut buf = [0u8; KEY_MAX];
        let k = key(&q, &mut buf).to_vec();
        let top = reply(
            "www.example.",
            ResponseCode::NoError,
            &[[192, 0, 2, 1]],
            0x8000_0005,
            None,
        );
        let (e, note) = Entry::from_reply(&k, &top, &config, 1).unwrap();
        assert_eq!(note, Some(BadReply::TtlTopBit));
        assert!(!e.is_kept());
        assert_eq!(render(&e, &packet, 1, None).answers[0].ttl, 0);
        let zero = reply(
            "www.example.",
            ResponseCode::NoError,
            &[[192, 0, 2, 1]],
            0,
            None,
        );
        assert!(
            !Entry::from_reply(&k, &zero, &config, 1)
                .unwrap()
                .0
                .is_kept()
        );
    }

    #[test]
    fn negative_answers_live_for_the_soa_minimum_bounded_by_its_ttl() {
        let config = CacheConfig::default();
        let packet = query("nope.example.", RecordType::A, None);
        let nx = entry(
            &packet,
            &reply(
                "nope.example.",
                ResponseCode::NXDomain,
                &[],
                0,
                Some((3600, 30)),
            ),
            &config,
            1,
        );
        assert_eq!((nx.lifetime, nx.is_kept()), (30, true));
        let m = render(&nx, &packet, 11, None);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].ttl, 20, "the SOA counts down too");
        let nodata = entry(
            &packet,
            &reply(
                "nope.example.",
                ResponseCode::NoError,
                &[],
                0,
                Some((10, 600)),
            ),
            &config,
            1,
        );
        assert_eq!(nodata.lifetime, 10);
        // without a SOA, a negative answer is relayed but not kept (RFC 2308 §5)
        let bare = entry(
            &packet,
            &reply("nope.example.", ResponseCode::NXDomain, &[], 0, None),
            &config,
            1,
        );
        assert!(!bare.is_kept());
        let capped = CacheConfig {
            max_negative_ttl: 5,
            ..config
        };
        let nx = entry(
            &packet,
            &reply(
                "nope.example.",
                ResponseCode::NXDomain,
                &[],
                0,
                Some((3600, 900)),
            ),
            &capped,
            1,
        );
        assert_eq!(nx.lifetime, 5);
    }

    #[test]
    fn errors_and_truncated_replies_are_not_kept() {
        let config = CacheConfig::default();
        let packet = query("www.example.", RecordType::A, None);
        for rcode in [
            ResponseCode::ServFail,
            ResponseCode::Refused,
            ResponseCode::FormErr,
        ] {
            let e = entry(
                &packet,
                &reply("www.example.", rcode, &[], 0, Some((60, 60))),
                &config,
                1,
            );
            assert!(!e.is_kept(), "{rcode:?}");
            assert_eq!(render(&e, &packet, 1, None).metadata.response_code, rcode);
        }
        let mut tc = reply(
            "www.example.",
            ResponseCode::NoError,
            &[[192, 0, 2, 1]],
            300,
            None,
        );
        tc[2] |= 0x02;
        assert!(!entry(&packet, &tc, &config, 1).is_kept());
    }

    #[test]
    fn malformed_replies_are_refused() {
        let config = CacheConfig::default();
        let packet = query("www.example.", RecordType::A, None);
        let q = parse_query(&packet).unwrap();
        let mut buf = [0u8; KEY_MAX];
        let k = key(&q, &mut buf).to_vec();
        let good = reply(
            "www.example.",
            ResponseCode::NoError,
            &[[192, 0, 2, 1]],
            300,
            None,
        );
        for bad in [
            good[..good.len() - 3].to_vec(),
            [good.as_slice(), &[0, 0, 0]].concat(),
            {
                let mut b = good.clone();
                b[7] = 9; // nine answers claimed
                b
            },
        ] {
            assert_eq!(
                Entry::from_reply(&k, &bad, &config, 1).err(),
                Some(BadReply::Malformed)
            );
        }
    }

    #[test]
    fn a_reply_too_big_for_the_client_keeps_the_records_that_fit() {
        let config = CacheConfig::default();
        let addrs: Vec<[u8; 4]> = (1..=40).map(|i| [198, 51, 100, i]).collect();
        let packet = query("big.example.", RecordType::A, None);
        let e = entry(
            &packet,
            &reply(
                "big.example.",
                ResponseCode::NoError,
                &addrs,
                60,
                Some((60, 60)),
            ),
            &config,
            1,
        );
        let m = render(&e, &packet, 1, None);
        assert!(m.metadata.truncation);
        assert!(m.authorities.is_empty());
        assert_eq!(m.answers.len(), (512 - 12 - 17) / 16);
        let big = query("big.example.", RecordType::A, Some(1232));
        let m = render(&e, &big, 1, None);
        assert!(!m.metadata.truncation);
        assert_eq!((m.answers.len(), m.authorities.len()), (40, 1));
    }

    #[test]
    fn stale_answers_carry_the_stale_ttl_and_ede_3() {
        let config = CacheConfig::default();
        let packet = query("www.example.", RecordType::A, Some(1232));
        let e = entry(
            &packet,
            &reply(
                "www.example.",
                ResponseCode::NoError,
                &[[192, 0, 2, 1]],
                300,
                None,
            ),
            &config,
            1,
        );
        let m = render(&e, &packet, 1_000, Some(30));
        assert_eq!(m.answers[0].ttl, 30);
        let edns = m.edns.expect("OPT");
        let options = format!("{:?}", edns.options());
        assert!(options.contains("15"), "EDE in {options}");
        assert!(!e.failed_recently(1_000, 30));
        e.mark_refresh_failed(1_000);
        assert!(e.failed_recently(1_029, 30) && !e.failed_recently(1_030, 30));
    }

    #[test]
    fn hits_are_answered_and_a_flood_of_new_names_stays_within_the_size() {
        let config = CacheConfig {
            max_bytes: 256 * 1024,
            ..CacheConfig::default()
        };
        let cache = Cache::new(config);
        let now = cache.now();
        let hot = query("hot.example.", RecordType::A, None);
        cache.insert(Arc::new(entry(
            &hot,
            &reply(
                "hot.example.",
                ResponseCode::NoError,
                &[[192, 0, 2, 1]],
                300,
                None,
            ),
            &config,
            now,
        )));
        let q = parse_query(&hot).unwrap();
        let mut buf = [0u8; KEY_MAX];
        let k = key(&q, &mut buf).to_vec();
        let mut out = Vec::new();
        for i in 0..5_000 {
            // the hot name is asked between the new ones (more often than its shard fills)
            assert!(
                matches!(
                    cache.answer(&k, &hot, &q, 512, &mut out),
                    Found::Answered {
                        rcode: 0,
                        stale: false
                    }
                ),
                "the hot entry went at {i}"
            );
            let name = format!("n{i}.example.");
            let p = query(&name, RecordType::A, None);
            cache.insert(Arc::new(entry(
                &p,
                &reply(&name, ResponseCode::NoError, &[[192, 0, 2, 9]], 300, None),
                &config,
                now,
            )));
            let (_, bytes) = cache.usage();
            assert!(bytes <= config.max_bytes, "{bytes} bytes after {i} names");
        }
        assert!(cache.counters.evictions.load(Ordering::Relaxed) > 2_000);
        let (entries, _) = cache.usage();
        assert!(entries > 100, "{entries} entries kept");
        let cold = query("n1.example.", RecordType::A, None);
        let cq = parse_query(&cold).unwrap();
        let ck = key(&cq, &mut buf).to_vec();
        assert!(matches!(
            cache.answer(&ck, &cold, &cq, 512, &mut out),
            Found::Miss
        ));
    }

    #[test]
    fn a_failure_is_answered_for_a_few_seconds_and_never_as_stale() {
        let config = CacheConfig::default();
        let packet = query("down.example.", RecordType::A, None);
        let q = parse_query(&packet).unwrap();
        let mut buf = [0u8; KEY_MAX];
        let k = key(&q, &mut buf).to_vec();
        let failure = Entry::failure(&k, 10);
        assert_eq!(failure.age(14, &config), Age::Fresh);
        assert_eq!(failure.age(15, &config), Age::Dead);
        let m = render(&failure, &packet, 10, None);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(m.metadata.recursion_available);
        assert_eq!(m.queries[0].name().to_ascii(), "down.example.");
    }
}
