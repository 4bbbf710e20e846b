//! Capability flags: libvirt's flag names as a typed enum, and a set of them.

mod table;

use table::FLAG_TABLE;
pub use table::{Flag, FLAG_COUNT};

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

impl Flag {
    /// libvirt's name for the flag, e.g. `"blockdev-reopen"`; this is the
    /// spelling of the cache file and of `<qemu:capabilities>`.
    pub fn name(self) -> &'static str {
        FLAG_TABLE[self.index()].1
    }

    /// Looks a flag up by libvirt's name.
    pub fn from_name(name: &str) -> Option<Flag> {
        static BY_NAME: OnceLock<HashMap<&'static str, Flag>> = OnceLock::new();
        BY_NAME
            .get_or_init(|| FLAG_TABLE.iter().map(|&(f, n)| (n, f)).collect())
            .get(name)
            .copied()
    }

    /// Position in libvirt's table (the order flags are written in).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The flag at a position of libvirt's table.
    pub fn from_index(index: usize) -> Option<Flag> {
        FLAG_TABLE.get(index).map(|&(f, _)| f)
    }

    /// All flags in libvirt's order.
    pub fn all() -> impl Iterator<Item = Flag> {
        FLAG_TABLE.iter().map(|&(f, _)| f)
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const WORDS: usize = FLAG_COUNT.div_ceil(64);

/// A set of [`Flag`]s. Iteration follows libvirt's table order.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct FlagSet {
    bits: [u64; WORDS],
}

impl FlagSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `flag` is in the set.
    pub fn has(&self, flag: Flag) -> bool {
        let i = flag.index();
        self.bits[i / 64] & (1u64 << (i % 64)) != 0
    }

    /// Adds `flag`.
    pub fn set(&mut self, flag: Flag) {
        let i = flag.index();
        self.bits[i / 64] |= 1u64 << (i % 64);
    }

    /// Removes `flag`.
    pub fn clear(&mut self, flag: Flag) {
        let i = flag.index();
        self.bits[i / 64] &= !(1u64 << (i % 64));
    }

    /// Number of flags in the set.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// The flags of the set in libvirt's order.
    pub fn iter(&self) -> impl Iterator<Item = Flag> + '_ {
        Flag::all().filter(|&f| self.has(f))
    }
}

impl fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Flag::name)).finish()
    }
}

impl FromIterator<Flag> for FlagSet {
    fn from_iter<I: IntoIterator<Item = Flag>>(iter: I) -> Self {
        let mut set = FlagSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<Flag> for FlagSet {
    fn extend<I: IntoIterator<Item = Flag>>(&mut self, iter: I) {
        for f in iter {
            self.set(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_for_every_flag() {
        for f in Flag::all() {
            assert_eq!(Flag::from_name(f.name()), Some(f));
            assert_eq!(Flag::from_index(f.index()), Some(f));
        }
        assert_eq!(Flag::all().count(), FLAG_COUNT);
    }

    #[test]
    fn table_matches_libvirt_positions() {
        assert_eq!(Flag::Kvm.index(), 12);
        assert_eq!(Flag::Kvm.name(), "kvm");
        assert_eq!(Flag::NetdevStream.name(), "netdev.stream");
        assert_eq!(FLAG_COUNT, 442);
        assert_eq!(Flag::from_name("no-such-flag"), None);
    }

    #[test]
    fn flag_set_set_clear_has() {
        let mut s = FlagSet::new();
        assert!(s.is_empty());
        s.set(Flag::Tcg);
        s.set(Flag::Kvm);
        s.set(Flag::Kvm);
        assert!(s.has(Flag::Kvm) && s.has(Flag::Tcg));
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![Flag::Kvm, Flag::Tcg]);
        s.clear(Flag::Kvm);
        assert!(!s.has(Flag::Kvm));
        assert_eq!(s.len(), 1);
    }
}
