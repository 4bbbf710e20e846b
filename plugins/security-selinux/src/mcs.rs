//! Unique MCS category pairs for running domains, libvirt's algorithm: draw
//! two categories at random within the configured range, discard equal
//! draws (a single category is a subset of every pair containing it), order
//! them `c1 < c2`, and draw again while the pair is in use by a running
//! domain or reserved by a static label.

use std::collections::BTreeSet;

/// A source of random numbers (injected in tests).
pub trait Random {
    /// A uniformly distributed number in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: u32) -> u32;
}

/// The kernel's random numbers.
pub struct KernelRandom;

impl Random for KernelRandom {
    fn below(&mut self, bound: u32) -> u32 {
        let mut b = [0u8; 8];
        // SAFETY: getrandom writes at most 8 bytes into `b`.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        let v = if n == 8 {
            u64::from_ne_bytes(b)
        } else {
            // Never expected; fall back to the clock rather than panicking.
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        };
        (v % u64::from(bound.max(1))) as u32
    }
}

/// `sens:cMIN.cMAX`: where categories are drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRange {
    /// `s0`.
    pub sensitivity: String,
    /// Lowest category.
    pub min: u32,
    /// Highest category.
    pub max: u32,
}

impl CategoryRange {
    /// Parses a range as libvirt accepts the process range: `s0`,
    /// `s0-s0`, `s0:c0.c1023`, `s0-s0:c0.c1023` (no categories = `c0.c1023`).
    pub fn parse(text: &str) -> Option<CategoryRange> {
        let (levels, cats) = match text.split_once(':') {
            Some((l, c)) => (l, Some(c)),
            None => (text, None),
        };
        let sensitivity = levels.split('-').next()?.trim().to_string();
        let valid = sensitivity
            .strip_prefix('s')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !valid {
            return None;
        }
        let (min, max) = match cats {
            None => (0, 1023),
            Some(c) => {
                let (a, b) = c.split_once('.')?;
                (
                    a.strip_prefix('c')?.parse().ok()?,
                    b.strip_prefix('c')?.parse().ok()?,
                )
            }
        };
        (min <= max).then_some(CategoryRange {
            sensitivity,
            min,
            max,
        })
    }
}

/// Why no pair could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McsError(pub String);

impl std::fmt::Display for McsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The pairs in use on this host.
#[derive(Debug, Default)]
pub struct Mcs {
    used: BTreeSet<String>,
}

/// How many draws before giving up (the range is then nearly exhausted).
const MAX_DRAWS: u32 = 1_000_000;

impl Mcs {
    /// Draws a free pair, marks it used and returns `sens:cX,cY`.
    pub fn allocate(
        &mut self,
        range: &CategoryRange,
        rng: &mut dyn Random,
    ) -> Result<String, McsError> {
        self.allocate_avoiding(range, rng, &BTreeSet::new())
    }

    /// [`Mcs::allocate`], also avoiding `taken` (pairs of running domains
    /// this instance did not allocate: adopted after a supervisor restart).
    pub fn allocate_avoiding(
        &mut self,
        range: &CategoryRange,
        rng: &mut dyn Random,
        taken: &BTreeSet<String>,
    ) -> Result<String, McsError> {
        let span = range.max - range.min + 1;
        if span < 8 {
            return Err(McsError(format!(
                "Category range c{}-c{} too small",
                range.min, range.max
            )));
        }
        for _ in 0..MAX_DRAWS {
            let (a, b) = (rng.below(span), rng.below(span));
            if a == b {
                continue;
            }
            let (lo, hi) = (a.min(b) + range.min, a.max(b) + range.min);
            let mcs = format!("{}:c{lo},c{hi}", range.sensitivity);
            if !taken.contains(&mcs) && self.used.insert(mcs.clone()) {
                return Ok(mcs);
            }
        }
        Err(McsError(format!(
            "no free MCS category pair in c{}-c{}",
            range.min, range.max
        )))
    }

    /// Marks `mcs` used (a static label, or a domain found running);
    /// `false` when it already was.
    pub fn reserve(&mut self, mcs: &str) -> bool {
        self.used.insert(mcs.to_string())
    }

    /// Frees `mcs`.
    pub fn release(&mut self, mcs: &str) {
        self.used.remove(mcs);
    }

    /// Whether `mcs` is in use.
    pub fn in_use(&self, mcs: &str) -> bool {
        self.used.contains(mcs)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Replays a fixed sequence of draws.
    pub struct Script(pub Vec<u32>);

    impl Random for Script {
        fn below(&mut self, bound: u32) -> u32 {
            assert!(!self.0.is_empty(), "the test ran out of random numbers");
            self.0.remove(0) % bound
        }
    }

    fn range() -> CategoryRange {
        CategoryRange::parse("s0:c0.c1023").unwrap()
    }

    #[test]
    fn pairs_are_ordered() {
        let mut m = Mcs::default();
        assert_eq!(
            m.allocate(&range(), &mut Script(vec![9, 4])).unwrap(),
            "s0:c4,c9"
        );
    }

    #[test]
    fn equal_draws_are_discarded() {
        let mut m = Mcs::default();
        assert_eq!(
            m.allocate(&range(), &mut Script(vec![7, 7, 1, 2])).unwrap(),
            "s0:c1,c2"
        );
    }

    #[test]
    fn a_pair_in_use_is_drawn_again() {
        let mut m = Mcs::default();
        let first = m.allocate(&range(), &mut Script(vec![3, 5])).unwrap();
        // The RNG offers the same pair (in the other order) first.
        let second = m.allocate(&range(), &mut Script(vec![5, 3, 6, 8])).unwrap();
        assert_eq!(first, "s0:c3,c5");
        assert_eq!(second, "s0:c6,c8");
        m.release(&first);
        assert_eq!(
            m.allocate(&range(), &mut Script(vec![3, 5])).unwrap(),
            "s0:c3,c5"
        );
    }

    #[test]
    fn a_pair_reserved_by_a_static_label_is_skipped() {
        let mut m = Mcs::default();
        assert!(m.reserve("s0:c10,c20"));
        let got = m
            .allocate(&range(), &mut Script(vec![10, 20, 11, 20]))
            .unwrap();
        assert_eq!(got, "s0:c11,c20");
    }

    #[test]
    fn pairs_of_adopted_domains_are_avoided() {
        let mut m = Mcs::default();
        let taken: BTreeSet<String> = ["s0:c1,c2".to_string()].into();
        let got = m
            .allocate_avoiding(&range(), &mut Script(vec![2, 1, 3, 4]), &taken)
            .unwrap();
        assert_eq!(got, "s0:c3,c4");
    }

    #[test]
    fn categories_stay_within_the_configured_range() {
        let mut m = Mcs::default();
        let r = CategoryRange::parse("s0-s0:c100.c107").unwrap();
        let got = m.allocate(&r, &mut Script(vec![0, 7])).unwrap();
        assert_eq!(got, "s0:c100,c107");
        let e = m
            .allocate(
                &CategoryRange::parse("s0:c0.c6").unwrap(),
                &mut Script(vec![]),
            )
            .unwrap_err();
        assert_eq!(e.0, "Category range c0-c6 too small");
    }

    #[test]
    fn ranges_parse_like_libvirt() {
        assert_eq!(CategoryRange::parse("s0").unwrap().max, 1023);
        assert_eq!(CategoryRange::parse("s0-s0:c0.c255").unwrap().max, 255);
        assert!(CategoryRange::parse("s0:c9.c1").is_none());
    }

    #[test]
    fn the_kernel_random_source_stays_below_its_bound() {
        let mut r = KernelRandom;
        assert!((0..100).all(|_| r.below(10) < 10));
    }
}
