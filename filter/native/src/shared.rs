//! What the wasm glue keeps in Envoy's shared data (rate-limit buckets,
//! ended sessions, upstream sessions opened on first use), kept here in the
//! process's own memory: one map for every worker, behind a mutex.
//!
//! proxy-wasm's shared data is per Envoy process too, so the reach is the
//! same; the semantics are the same get / compare-and-swap: a read returns
//! the value with its version, a write names the version it read and fails
//! if another worker wrote since. One thing is stricter: writing a key that
//! was absent when read fails if it has appeared since (Envoy's shared data
//! writes unconditionally when no version is given), so two workers
//! creating the same bucket cannot both win. Keys are bounded by the
//! core's rings (`ratelimit::Slot`, `revocation::Slot`, `opened::Slot`),
//! so the map is too. Unlike Envoy's shared data, the map survives no
//! reload of the module: it lives as long as the loaded `.so` (Envoy keeps
//! a module loaded while any configuration uses it).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// A value and its version.
pub type Versioned = (Vec<u8>, u32);

/// Another worker wrote the key since it was read.
#[derive(Debug, PartialEq, Eq)]
pub struct CasMismatch;

/// Keys to versioned values, shared by every thread.
#[derive(Debug, Default)]
pub struct SharedMap {
    entries: Mutex<HashMap<String, Versioned>>,
}

impl SharedMap {
    pub fn new() -> SharedMap {
        SharedMap::default()
    }

    /// The value of `key` and its version, if it has one.
    pub fn get(&self, key: &str) -> Option<Versioned> {
        // A thread that panicked while holding the lock cannot have left a
        // map half-written (each operation is one insert): use it as it is.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Writes `value` if `key` is still at version `read` (`None`: still
    /// absent), and gives it the next version.
    pub fn set(&self, key: &str, value: &[u8], read: Option<u32>) -> Result<(), CasMismatch> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let current = entries.get(key).map(|(_, version)| *version);
        if current != read {
            return Err(CasMismatch);
        }
        let next = current.map_or(1, |v| v.wrapping_add(1).max(1));
        entries.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The process's one map.
pub fn process() -> &'static SharedMap {
    static MAP: std::sync::OnceLock<SharedMap> = std::sync::OnceLock::new();
    MAP.get_or_init(SharedMap::new)
}

/// Reads `key`, lets `next` decide what to write from what is there, and
/// writes it back with compare-and-swap, reading again when another worker
/// wrote first (at most `attempts` times). `next` returns `None` to write
/// nothing. Returns whether a write landed.
pub fn update(map: &SharedMap, key: &str, attempts: usize, mut next: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>) -> bool {
    for _ in 0..attempts {
        let stored = map.get(key);
        let Some(value) = next(stored.as_ref().map(|(v, _)| v.as_slice())) else { return false };
        if map.set(key, &value, stored.map(|(_, version)| version)).is_ok() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_write_names_the_version_it_read() {
        let map = SharedMap::new();
        assert_eq!(map.get("k"), None);
        map.set("k", b"a", None).unwrap();
        let (value, v1) = map.get("k").unwrap();
        assert_eq!(value, b"a");
        // Absent no longer: a second creation fails.
        assert_eq!(map.set("k", b"b", None), Err(CasMismatch));
        map.set("k", b"b", Some(v1)).unwrap();
        // The version read first is stale now.
        assert_eq!(map.set("k", b"c", Some(v1)), Err(CasMismatch));
        let (value, v2) = map.get("k").unwrap();
        assert_eq!((value.as_slice(), v2 > v1), (&b"b"[..], true));
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        // A counter incremented from several threads through `update`: each
        // increment lands exactly once, as a rate-limit bucket's tokens must.
        let map = Arc::new(SharedMap::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let map = Arc::clone(&map);
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let landed = update(&map, "n", usize::MAX, |stored| {
                            let n: u64 = stored.and_then(|s| std::str::from_utf8(s).ok()?.parse().ok()).unwrap_or(0);
                            Some((n + 1).to_string().into_bytes())
                        });
                        assert!(landed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(map.get("n").unwrap().0, b"2000");
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn an_update_may_decline_to_write() {
        let map = SharedMap::new();
        assert!(!update(&map, "k", 8, |_| None));
        assert!(map.is_empty());
        assert!(update(&map, "k", 8, |_| Some(b"x".to_vec())));
        assert_eq!(map.get("k").unwrap().0, b"x");
    }
}
