//! A compact copy-on-write hash table from wire-format names to byte values. Entries live in
//! per-shard arenas (`[key length][key][value length][value]`, the value's length in LEB128,
//! one byte below 128), indexed by a hash table of arena offsets: a name with one address
//! costs some 50 bytes, not a handful of allocations.
//! Each shard sits behind an `Arc`, so cloning the table for a new snapshot costs one reference
//! count per shard, and a change copies only the shard it touches.

use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

const SHARDS: usize = 256;
/// A shard whose dead bytes pass half its arena (and this size) is compacted.
const COMPACT_MIN: usize = 4096;

#[derive(Debug, Clone, Default)]
struct Shard {
    index: HashTable<u32>,
    arena: Vec<u8>,
    garbage: usize,
}

/// Reads a LEB128 length at `at`: the length and the bytes it took.
fn leb128_at(b: &[u8], at: usize) -> (usize, usize) {
    let first = b[at];
    if first < 0x80 {
        return (first as usize, 1);
    }
    let mut len = 0usize;
    let mut i = 0;
    loop {
        let byte = b[at + i];
        len |= usize::from(byte & 0x7F) << (7 * i);
        i += 1;
        if byte < 0x80 {
            return (len, i);
        }
    }
}

fn push_leb128(out: &mut Vec<u8>, mut len: usize) {
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
}

/// The key of the entry at `off` in an arena (a free function, for closures that hold the
/// arena but not the shard).
fn key_in(arena: &[u8], off: u32) -> &[u8] {
    let at = off as usize;
    &arena[at + 1..at + 1 + arena[at] as usize]
}

impl Shard {
    fn key_at(&self, off: u32) -> &[u8] {
        key_in(&self.arena, off)
    }

    /// Offset and length of the value of the entry at `off`.
    fn value_span(&self, off: u32) -> (usize, usize) {
        let at = off as usize;
        let klen = self.arena[at] as usize;
        let (vlen, width) = leb128_at(&self.arena, at + 1 + klen);
        (at + 1 + klen + width, vlen)
    }

    fn entry_len(&self, off: u32) -> usize {
        let (start, len) = self.value_span(off);
        start + len - off as usize
    }

    fn value_at(&self, off: u32) -> &[u8] {
        let (start, len) = self.value_span(off);
        &self.arena[start..start + len]
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        self.index
            .find(hash, |&off| self.key_at(off) == key)
            .copied()
    }

    fn append(&mut self, key: &[u8], value: &[u8]) -> u32 {
        let off = u32::try_from(self.arena.len()).expect("a shard arena stays below 4 GiB");
        self.arena.push(key.len() as u8);
        self.arena.extend_from_slice(key);
        push_leb128(&mut self.arena, value.len());
        self.arena.extend_from_slice(value);
        off
    }

    /// Compacts once dead bytes pass half the arena (and [`COMPACT_MIN`]).
    fn compact_if_wasteful(&mut self, hasher: &FixedState) {
        if self.garbage > COMPACT_MIN && self.garbage * 2 > self.arena.len() {
            self.compact(hasher);
        }
    }

    /// Rewrites the arena with only the live entries.
    fn compact(&mut self, hasher: &FixedState) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        self.stage_live(&mut arena);
        *self = Shard::indexed(arena, self.index.len(), hasher);
    }

    /// Appends every live entry's bytes to `out`.
    fn stage_live(&self, out: &mut Vec<u8>) {
        for &off in self.index.iter() {
            let at = off as usize;
            out.extend_from_slice(&self.arena[at..at + self.entry_len(off)]);
        }
    }

    /// A shard over `arena`, entries back to back and no garbage, with its `count` entries
    /// indexed.
    fn indexed(arena: Vec<u8>, count: usize, hasher: &FixedState) -> Self {
        let mut shard = Shard {
            index: HashTable::with_capacity(count),
            arena,
            garbage: 0,
        };
        let mut off = 0;
        while off < shard.arena.len() {
            let o = off as u32;
            let arena = &shard.arena;
            shard
                .index
                .insert_unique(hasher.hash_one(key_in(arena, o)), o, |&x| {
                    hasher.hash_one(key_in(arena, x))
                });
            off += shard.entry_len(o);
        }
        shard
    }
}

/// The table; see the module docs.
#[derive(Debug, Clone)]
pub struct Table {
    hasher: FixedState,
    shards: Box<[Arc<Shard>]>,
    len: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            hasher: FixedState::with_seed(rand::random()),
            shards: (0..SHARDS).map(|_| Arc::new(Shard::default())).collect(),
            len: 0,
        }
    }
}

fn shard_of(hash: u64) -> usize {
    (hash >> 56) as usize % SHARDS
}

impl Table {
    fn locate(&self, key: &[u8]) -> (u64, usize) {
        let hash = self.hash_of(key);
        (hash, shard_of(hash))
    }

    /// The hash that places `key`. It stays the same for the life of this table and its
    /// clones, however entries move, so it can stand for the entry elsewhere.
    pub fn hash_of(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Every (key, value) whose key has exactly this hash: almost always one or none.
    pub fn with_hash(&self, hash: u64) -> impl Iterator<Item = (&[u8], &[u8])> {
        let shard = &self.shards[shard_of(hash)];
        shard
            .index
            .iter_hash(hash)
            .filter(move |&&off| self.hash_of(shard.key_at(off)) == hash)
            .map(move |&off| (shard.key_at(off), shard.value_at(off)))
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let (hash, s) = self.locate(key);
        let shard = &self.shards[s];
        shard.find(hash, key).map(|off| shard.value_at(off))
    }

    /// Inserts or replaces. Keys are wire names, at most 255 bytes.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        debug_assert!(key.len() <= 255);
        let (hash, s) = self.locate(key);
        let hasher = self.hasher.clone();
        let shard = Arc::make_mut(&mut self.shards[s]);
        let new = shard.append(key, value);
        let arena = &shard.arena;
        match shard.index.find_mut(hash, |&o| key_in(arena, o) == key) {
            Some(slot) => {
                let old = *slot;
                *slot = new;
                shard.garbage += shard.entry_len(old);
            }
            None => {
                shard
                    .index
                    .insert_unique(hash, new, |&o| hasher.hash_one(key_in(arena, o)));
                self.len += 1;
            }
        }
        shard.compact_if_wasteful(&hasher);
    }

    pub fn remove(&mut self, key: &[u8]) -> bool {
        let (hash, s) = self.locate(key);
        if self.shards[s].find(hash, key).is_none() {
            return false;
        }
        let hasher = self.hasher.clone();
        let shard = Arc::make_mut(&mut self.shards[s]);
        let arena = &shard.arena;
        let Ok(entry) = shard.index.find_entry(hash, |&o| key_in(arena, o) == key) else {
            return false;
        };
        let (off, _) = entry.remove();
        shard.garbage += shard.entry_len(off);
        self.len -= 1;
        shard.compact_if_wasteful(&hasher);
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every (key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.shards
            .iter()
            .flat_map(|s| s.index.iter().map(|&off| (s.key_at(off), s.value_at(off))))
    }

    /// Rewrites every shard at its exact size, after a full build, when no further growth is
    /// expected soon. The live entries are staged in one buffer, every arena and index is
    /// freed, and only then is each allocated again, in turn: freed together, the buffers a
    /// build grew through leave long free stretches that the exact allocations fill one after
    /// another. Shrinking each in place instead left a partly used page beside each of a
    /// thousand arenas and indexes, some 2 MB at 100k names that the allocator could not give
    /// back.
    pub fn pack(&mut self) {
        let live: usize = self.shards.iter().map(|s| s.arena.len() - s.garbage).sum();
        let mut staged = Vec::with_capacity(live);
        let mut spans = Vec::with_capacity(SHARDS);
        for shard in self.shards.iter_mut() {
            let start = staged.len();
            shard.stage_live(&mut staged);
            spans.push((start, staged.len(), shard.index.len()));
            // frees it, unless an older snapshot still holds it
            *shard = Arc::default();
        }
        let hasher = self.hasher.clone();
        for (shard, (start, end, count)) in self.shards.iter_mut().zip(spans) {
            *shard = Arc::new(Shard::indexed(staged[start..end].to_vec(), count, &hasher));
        }
    }

    /// Bytes held by the arenas and indexes (for tests and memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.arena.capacity() + s.index.capacity() * 5)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replace_remove_and_share() {
        let mut a = Table::default();
        for i in 0..5000u32 {
            a.insert(&i.to_be_bytes(), &i.to_le_bytes());
        }
        let b = a.clone();
        a.insert(&5u32.to_be_bytes(), b"five");
        assert!(a.remove(&6u32.to_be_bytes()));
        assert!(!a.remove(&6u32.to_be_bytes()));
        assert_eq!(a.get(&5u32.to_be_bytes()), Some(&b"five"[..]));
        assert_eq!(b.get(&5u32.to_be_bytes()), Some(&5u32.to_le_bytes()[..]));
        assert_eq!(b.get(&6u32.to_be_bytes()), Some(&6u32.to_le_bytes()[..]));
        assert_eq!((a.len(), b.len()), (4999, 5000));
        assert_eq!(a.iter().count(), 4999);
        let five = a.hash_of(&5u32.to_be_bytes());
        let found: Vec<_> = a.with_hash(five).collect();
        assert_eq!(found, [(&5u32.to_be_bytes()[..], &b"five"[..])]);
        assert_eq!(a.with_hash(a.hash_of(&6u32.to_be_bytes())).count(), 0);
        let shared = a
            .shards
            .iter()
            .zip(b.shards.iter())
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= SHARDS - 2, "only written shards are copied");
    }

    #[test]
    fn value_lengths_round_trip() {
        let mut t = Table::default();
        let sizes = [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000];
        for (i, &n) in sizes.iter().enumerate() {
            t.insert(&[i as u8], &vec![i as u8; n]);
        }
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(t.get(&[i as u8]), Some(&vec![i as u8; n][..]), "{n} bytes");
        }
        let mut one = Vec::new();
        push_leb128(&mut one, 127);
        assert_eq!(one, [127]);
        one.clear();
        push_leb128(&mut one, 300);
        assert_eq!(
            (one.as_slice(), leb128_at(&one, 0)),
            (&[0xAC, 0x02][..], (300, 2))
        );
    }

    #[test]
    fn packing_keeps_every_entry_at_its_exact_size() {
        let mut a = Table::default();
        let mut b = Table::default();
        for i in 0..3000u32 {
            a.insert(&i.to_be_bytes(), &[i as u8; 7]);
            b.insert(&i.to_le_bytes(), &i.to_be_bytes());
        }
        for i in 0..1000u32 {
            a.insert(&i.to_be_bytes(), b"rewritten"); // leaves garbage behind
            assert!(b.remove(&(i * 3).to_le_bytes()));
        }
        let before = a.clone();
        a.pack();
        b.pack();
        assert_eq!((a.len(), b.len()), (3000, 2000));
        for i in 0..3000u32 {
            let want: &[u8] = if i < 1000 {
                b"rewritten"
            } else {
                &[i as u8; 7]
            };
            assert_eq!(a.get(&i.to_be_bytes()), Some(want));
            let kept = b.get(&i.to_le_bytes());
            assert_eq!(kept.is_some(), i % 3 != 0, "{i}");
        }
        for shard in a.shards.iter().chain(b.shards.iter()) {
            assert_eq!(shard.garbage, 0);
            assert_eq!(shard.arena.len(), shard.arena.capacity());
        }
        assert_eq!(before.get(&5u32.to_be_bytes()), Some(&b"rewritten"[..]));
        a.insert(&5u32.to_be_bytes(), b"after");
        assert_eq!(a.get(&5u32.to_be_bytes()), Some(&b"after"[..]));
        assert_eq!(before.get(&5u32.to_be_bytes()), Some(&b"rewritten"[..]));
    }

    #[test]
    fn rewrites_compact_the_arena() {
        let mut t = Table::default();
        for round in 0..200u32 {
            for i in 0..50u32 {
                t.insert(&i.to_be_bytes(), &[round as u8; 100]);
            }
        }
        assert_eq!(t.len(), 50);
        for i in 0..50u32 {
            assert_eq!(t.get(&i.to_be_bytes()), Some(&[199u8; 100][..]));
        }
        // 50 live entries of ~110 bytes rewritten 200 times (1.1 MB written): each shard
        // keeps at most about COMPACT_MIN of dead bytes
        let arena: usize = t.shards.iter().map(|s| s.arena.len()).sum();
        assert!(arena < 50 * (2 * COMPACT_MIN + 220), "arena {arena} bytes");
    }
}
