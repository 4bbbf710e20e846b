//! State a plugin prepares in the supervisor (`confine`) and reads in the
//! forked QEMU child (`pre_exec`).
//!
//! Between `fork` and `exec` only async-signal-safe code may run: a lock that
//! another supervisor thread held at the moment of the fork stays locked
//! forever in the child. So the child never takes a lock here: each prepared
//! state sits behind an atomic pointer in a fixed table, and the token
//! handed to the supervisor names the slot and a generation (so a stale
//! token never reaches another domain's state). Insertions and removals,
//! which only happen in the supervisor, are serialized by a mutex.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use parking_lot::Mutex;

struct Entry<T> {
    generation: u32,
    value: T,
}

/// A fixed-size table of prepared states addressed by `u64` tokens.
pub struct Slots<T> {
    table: Box<[AtomicPtr<Entry<T>>]>,
    generation: AtomicU32,
    writers: Mutex<()>,
}

impl<T: Send + Sync> Slots<T> {
    /// A table with room for `capacity` domains being started or running.
    pub fn new(capacity: usize) -> Self {
        Slots {
            table: (0..capacity.max(1))
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            generation: AtomicU32::new(1),
            writers: Mutex::new(()),
        }
    }

    fn split(token: u64) -> (usize, u32) {
        ((token & 0xffff_ffff) as usize, (token >> 32) as u32)
    }

    /// Stores `value`; returns its token, or `None` when the table is full.
    pub fn insert(&self, value: T) -> Option<u64> {
        let _w = self.writers.lock();
        let index = self
            .table
            .iter()
            .position(|p| p.load(Ordering::Acquire).is_null())?;
        let mut generation = self.generation.fetch_add(1, Ordering::Relaxed);
        if generation == 0 {
            generation = self.generation.fetch_add(1, Ordering::Relaxed);
        }
        let entry = Box::into_raw(Box::new(Entry { generation, value }));
        self.table[index].store(entry, Ordering::Release);
        Some((u64::from(generation) << 32) | index as u64)
    }

    /// Removes and returns the state behind `token`.
    pub fn remove(&self, token: u64) -> Option<T> {
        let _w = self.writers.lock();
        let (index, generation) = Self::split(token);
        let slot = self.table.get(index)?;
        let ptr = slot.load(Ordering::Acquire);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: non-null pointers in the table come from Box::into_raw in
        // `insert` and are freed only here, under the writers lock we hold.
        if unsafe { (*ptr).generation } != generation {
            return None;
        }
        slot.store(std::ptr::null_mut(), Ordering::Release);
        // SAFETY: we just unpublished the pointer under the writers lock; no
        // other supervisor thread can reach it any more.
        Some(unsafe { Box::from_raw(ptr) }.value)
    }

    /// The state behind `token`, read without locking.
    ///
    /// # Safety
    /// Call only where no other thread can run [`Slots::remove`] for the
    /// duration of the borrow: in a forked child between `fork` and `exec`
    /// (the only thread there; the table is a private copy), or in tests.
    pub unsafe fn get_unlocked(&self, token: u64) -> Option<&T> {
        let (index, generation) = Self::split(token);
        let ptr = self.table.get(index)?.load(Ordering::Acquire);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: the caller guarantees nobody frees the entry meanwhile;
        // a published pointer always points to a live Entry.
        let entry = unsafe { &*ptr };
        (entry.generation == generation).then_some(&entry.value)
    }
}

impl<T> Drop for Slots<T> {
    fn drop(&mut self) {
        for slot in self.table.iter() {
            let ptr = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !ptr.is_null() {
                // SAFETY: published pointers come from Box::into_raw and are
                // unpublished exactly once (here or in `remove`).
                drop(unsafe { Box::from_raw(ptr) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_finds_its_own_state_only() {
        let s = Slots::new(2);
        let a = s.insert("a").unwrap();
        let b = s.insert("b").unwrap();
        // SAFETY: single-threaded test.
        unsafe {
            assert_eq!(s.get_unlocked(a), Some(&"a"));
            assert_eq!(s.get_unlocked(b), Some(&"b"));
        }
        assert_eq!(s.remove(a), Some("a"));
        // The slot is reused with a new generation: the old token is dead.
        let c = s.insert("c").unwrap();
        assert_ne!(a, c);
        // SAFETY: single-threaded test.
        unsafe {
            assert_eq!(s.get_unlocked(a), None);
            assert_eq!(s.get_unlocked(c), Some(&"c"));
        }
        assert_eq!(s.remove(a), None);
    }

    #[test]
    fn a_full_table_refuses_more() {
        let s = Slots::new(1);
        assert!(s.insert(1).is_some());
        assert!(s.insert(2).is_none());
    }

    #[test]
    fn made_up_tokens_find_nothing() {
        let s: Slots<u8> = Slots::new(4);
        // SAFETY: single-threaded test.
        unsafe {
            assert_eq!(s.get_unlocked(0), None);
            assert_eq!(s.get_unlocked(u64::MAX), None);
        }
    }
}
