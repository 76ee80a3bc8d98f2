//! A hash map split in shards that are each behind an `Arc`: cloning the whole map costs one
//! reference count per shard, and changing a key copies only its shard if a published
//! snapshot still shares it. Lookups are one hash and one probe of a plain `HashMap`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use foldhash::fast::{FixedState, RandomState};

const SHARDS: usize = 64;

type Shard<V> = Arc<HashMap<Arc<[u8]>, Arc<V>, RandomState>>;

/// A copy-on-write sharded map from wire-format keys to shared values.
#[derive(Debug, Clone)]
pub struct ShardedMap<V> {
    /// Picks the shard; fixed so that every clone agrees.
    router: FixedState,
    shards: Box<[Shard<V>]>,
}

impl<V> Default for ShardedMap<V> {
    fn default() -> Self {
        Self {
            router: FixedState::with_seed(0x7a6b_646e_7321),
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::default())).collect(),
        }
    }
}

impl<V> ShardedMap<V> {
    fn shard_of<K: Hash + ?Sized>(&self, key: &K) -> usize {
        (self.router.hash_one(key) >> 58) as usize % SHARDS
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.shards[self.shard_of(key)].get(key).map(|v| &**v)
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.shards[self.shard_of(key)].contains_key(key)
    }

    pub fn insert(&mut self, key: &[u8], value: V) {
        let shard = self.shard_of(key);
        let map = Arc::make_mut(&mut self.shards[shard]);
        map.insert(Arc::from(key), Arc::new(value));
    }

    pub fn remove(&mut self, key: &[u8]) -> bool {
        let shard = self.shard_of(key);
        if !self.shards[shard].contains_key(key) {
            return false;
        }
        Arc::make_mut(&mut self.shards[shard]).remove(key).is_some()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (&**k, &**v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_until_written() {
        let mut a: ShardedMap<u32> = ShardedMap::default();
        for i in 0..1000u32 {
            a.insert(&i.to_be_bytes(), i);
        }
        let b = a.clone();
        a.insert(&5u32.to_be_bytes(), 55);
        assert!(a.remove(&6u32.to_be_bytes()));
        assert_eq!(a.get(&5u32.to_be_bytes()), Some(&55));
        assert_eq!(b.get(&5u32.to_be_bytes()), Some(&5));
        assert_eq!(b.get(&6u32.to_be_bytes()), Some(&6));
        assert_eq!(a.len(), 999);
        assert_eq!(b.len(), 1000);
        let shared = a
            .shards
            .iter()
            .zip(b.shards.iter())
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= SHARDS - 2, "only written shards are copied");
    }
}
