//! Who holds each address, for PTR answers: per address, the sorted hashes of the keys (in the
//! name table) of the names holding it. Each shard is two sorted columns side by side,
//! addresses and hashes, copied on write like the name table's shards: 12 bytes a holder of
//! an IPv4 address and 24 of an IPv6 one, where an arena entry with its index slot took about
//! 20 and 32. A lookup is a binary search in one shard (a few hundred addresses at 100k names).

use std::sync::Arc;

use crate::names::AddrKey;

const SHARDS: usize = 256;

#[derive(Debug, Clone, Default)]
struct Column<const N: usize> {
    /// Sorted; an address held by several names appears once per name.
    addrs: Vec<[u8; N]>,
    /// The holder of the address beside it; sorted within each address.
    hashes: Vec<u64>,
}

impl<const N: usize> Column<N> {
    /// The range of rows holding `addr`.
    fn rows(&self, addr: &[u8; N]) -> std::ops::Range<usize> {
        let start = self.addrs.partition_point(|a| a < addr);
        let end = start + self.addrs[start..].partition_point(|a| a == addr);
        start..end
    }
}

/// An address family's shards.
#[derive(Debug, Clone)]
struct Family<const N: usize> {
    shards: Box<[Arc<Column<N>>]>,
}

impl<const N: usize> Default for Family<N> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::default()).collect(),
        }
    }
}

/// Spreads neighbouring addresses (a subnet's) over the shards.
fn shard_of(addr: &[u8]) -> usize {
    let folded = addr
        .chunks(8)
        .map(|c| c.iter().fold(0u64, |h, &b| h << 8 | u64::from(b)))
        .fold(0u64, |h, x| h ^ x);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % SHARDS
}

impl<const N: usize> Family<N> {
    fn get(&self, addr: &[u8; N]) -> &[u64] {
        let col = &self.shards[shard_of(addr)];
        &col.hashes[col.rows(addr)]
    }

    /// Adds one holder; returns whether the address is new.
    fn add(&mut self, addr: &[u8; N], hash: u64) -> bool {
        let col = Arc::make_mut(&mut self.shards[shard_of(addr)]);
        let rows = col.rows(addr);
        let fresh = rows.is_empty();
        let at = rows.start + col.hashes[rows].partition_point(|&h| h < hash);
        col.addrs.insert(at, *addr);
        col.hashes.insert(at, hash);
        fresh
    }

    /// Removes one copy of a holder, if there is one; returns whether that left the address
    /// held by no name.
    fn remove(&mut self, addr: &[u8; N], hash: u64) -> bool {
        let s = shard_of(addr);
        let rows = self.shards[s].rows(addr);
        let Ok(i) = self.shards[s].hashes[rows.clone()].binary_search(&hash) else {
            return false;
        };
        let col = Arc::make_mut(&mut self.shards[s]);
        col.addrs.remove(rows.start + i);
        col.hashes.remove(rows.start + i);
        rows.len() == 1
    }

    fn heap_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|c| c.addrs.capacity() * N + c.hashes.capacity() * 8)
            .sum()
    }

    /// Copies every column out and frees them (see [`Reverse::unload`]).
    fn unload(&mut self, staged: &mut Staged) {
        for col in self.shards.iter_mut() {
            staged.rows.push(col.addrs.len());
            staged.addrs.extend(col.addrs.iter().flatten());
            staged.hashes.extend_from_slice(&col.hashes);
            *col = Arc::default();
        }
    }

    fn reload(&mut self, staged: &Staged, at: &mut (usize, usize, usize)) {
        for col in self.shards.iter_mut() {
            let n = staged.rows[at.0];
            let addrs = staged.addrs[at.1..at.1 + n * N]
                .chunks_exact(N)
                .map(|c| c.try_into().expect("N octets"))
                .collect();
            let hashes = staged.hashes[at.2..at.2 + n].to_vec();
            *col = Arc::new(Column { addrs, hashes });
            *at = (at.0 + 1, at.1 + n * N, at.2 + n);
        }
    }
}

/// The reverse table; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Reverse {
    v4: Family<4>,
    v6: Family<16>,
    /// Addresses held by at least one name.
    len: usize,
}

/// A reverse table's rows while its memory is handed back ([`Reverse::unload`]).
#[derive(Debug, Default)]
pub struct Staged {
    rows: Vec<usize>,
    addrs: Vec<u8>,
    hashes: Vec<u64>,
}

/// An address in the form its family's columns keep.
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    fn of(key: AddrKey) -> Option<Self> {
        let b = key.as_bytes();
        match b.try_into() {
            Ok(v4) => Some(Addr::V4(v4)),
            Err(_) => b.try_into().ok().map(Addr::V6),
        }
    }
}

impl Reverse {
    /// The sorted hashes of the names holding `addr` (a hash repeats for each name that has
    /// it); empty when no name does.
    pub fn get(&self, addr: AddrKey) -> &[u64] {
        match Addr::of(addr) {
            Some(Addr::V4(a)) => self.v4.get(&a),
            Some(Addr::V6(a)) => self.v6.get(&a),
            None => &[],
        }
    }

    /// Adds `hash` as one more holder of `addr`.
    pub fn add(&mut self, addr: AddrKey, hash: u64) {
        let fresh = match Addr::of(addr) {
            Some(Addr::V4(a)) => self.v4.add(&a, hash),
            Some(Addr::V6(a)) => self.v6.add(&a, hash),
            None => false,
        };
        self.len += usize::from(fresh);
    }

    /// Removes one holder `hash` of `addr`, if there is one.
    pub fn remove(&mut self, addr: AddrKey, hash: u64) {
        let emptied = match Addr::of(addr) {
            Some(Addr::V4(a)) => self.v4.remove(&a, hash),
            Some(Addr::V6(a)) => self.v6.remove(&a, hash),
            None => false,
        };
        self.len -= usize::from(emptied);
    }

    /// Addresses held by at least one name.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }

    /// Copies every row into one buffer and frees the columns, so that a full build's memory
    /// can be handed back before [`Reverse::reload`] allocates each column at its exact size
    /// (see `Table::pack`).
    pub fn unload(&mut self) -> Staged {
        let mut staged = Staged::default();
        self.v4.unload(&mut staged);
        self.v6.unload(&mut staged);
        staged
    }

    /// Puts back what [`Reverse::unload`] took out.
    pub fn reload(&mut self, staged: Staged) {
        let mut at = (0, 0, 0);
        self.v4.reload(&staged, &mut at);
        self.v6.reload(&staged, &mut at);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn key(ip: &str) -> AddrKey {
        AddrKey::from(ip.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn holders_are_kept_sorted_per_address_and_counted_once_each() {
        let mut r = Reverse::default();
        for (ip, hash) in [
            ("10.0.0.1", 9),
            ("10.0.0.1", 3),
            ("10.0.0.2", 5),
            ("fd00::1", 7),
            ("10.0.0.1", 3), // a second name with the same hash
        ] {
            r.add(key(ip), hash);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(key("10.0.0.1")), [3, 3, 9]);
        assert_eq!(r.get(key("fd00::1")), [7]);
        assert!(r.get(key("10.0.0.3")).is_empty());
        let before = r.clone();
        r.remove(key("10.0.0.1"), 3);
        r.remove(key("10.0.0.1"), 4); // not a holder: nothing
        assert_eq!(r.get(key("10.0.0.1")), [3, 9]);
        r.remove(key("10.0.0.2"), 5);
        assert_eq!((r.len(), r.get(key("10.0.0.2"))), (2, &[][..]));
        assert_eq!(before.get(key("10.0.0.1")), [3, 3, 9], "copied on write");
        let staged = r.unload();
        assert!(r.get(key("10.0.0.1")).is_empty());
        r.reload(staged);
        assert_eq!(r.get(key("10.0.0.1")), [3, 9]);
        assert_eq!(r.get(key("fd00::1")), [7]);
        assert_eq!(r.heap_bytes(), 2 * 12 + 24, "exact after a reload");
    }

    #[test]
    fn a_subnet_spreads_over_the_shards() {
        let used: std::collections::HashSet<usize> =
            (0..=255u8).map(|i| shard_of(&[10, 0, 0, i])).collect();
        assert!(used.len() > 128, "{} shards for a /24", used.len());
    }
}
