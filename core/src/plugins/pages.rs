//! Giving back the memory of a plugin that cannot work on this host.
//!
//! A library stays mapped once loaded: abi_stable never unloads one. When a
//! plugin's probe says it is unusable here, its code does not run again, yet
//! the pages that loading, the layout check and the probe touched stay in the
//! supervisor's resident set (about half a MiB per plugin, most of it the
//! plugin's own copy of std). Its clean file-backed mappings — code and
//! read-only data that were never written — can be dropped: should the code
//! run after all, the pages fault back in from the page cache. Mappings that
//! hold private copies (relocated data, `.data`, `.bss`) are left alone.

use std::path::Path;

/// Drops this process's clean, read-only mappings of the library at `lib`.
/// Returns how many resident bytes that released.
pub fn release_clean_pages(lib: &Path) -> std::io::Result<u64> {
    let lib = std::fs::canonicalize(lib)?;
    let lib = lib.to_string_lossy();
    release(|name| name == lib)
}

/// Drops every clean, read-only file mapping of this process: the code and
/// read-only data of the program and its libraries. Called once start-up is
/// over, it leaves resident only what the process touches from then on —
/// the start-up code (capability probing, configuration and plugin loading,
/// ABI checks) otherwise stays resident for the daemon's whole life.
pub fn release_clean_file_pages() -> std::io::Result<u64> {
    release(|name| name.starts_with('/') && !name.starts_with("/dev/"))
}

fn release(wanted: impl Fn(&str) -> bool) -> std::io::Result<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for m in clean_readonly_mappings(&smaps, wanted) {
        let Ok(len) = usize::try_from(m.end - m.start) else {
            continue;
        };
        // SAFETY: [start, end) is one whole mapping of `lib` that is not
        // writable and holds no private (anonymous) page, so every page in it
        // is a clean page-cache page: MADV_DONTNEED only unmaps them and the
        // next access maps the same bytes again. No Rust object lives there.
        let rc = unsafe { libc::madvise(m.start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += m.rss_kib * 1024;
        }
    }
    Ok(released)
}

/// One mapping of `/proc/self/smaps` worth dropping.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: u64,
    end: u64,
    rss_kib: u64,
}

/// The private mappings in `smaps` of files `wanted` accepts that are not
/// writable, have resident pages and no anonymous (copied-on-write) page.
fn clean_readonly_mappings(smaps: &str, wanted: impl Fn(&str) -> bool) -> Vec<Mapping> {
    let mut out = Vec::new();
    // (range, writable, is ours), then the Rss and Anonymous lines that follow.
    let mut current: Option<(u64, u64)> = None;
    let mut rss = 0;
    let mut flush = |current: &mut Option<(u64, u64)>, rss: u64, anon: Option<u64>| {
        if let (Some((start, end)), Some(0)) = (current.take(), anon) {
            if rss > 0 {
                out.push(Mapping {
                    start,
                    end,
                    rss_kib: rss,
                });
            }
        }
    };
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-') {
            // A mapping header: range perms offset dev inode [path].
            let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
            else {
                continue;
            };
            let perms = words.next().unwrap_or_default();
            let name = words.nth(3).unwrap_or_default();
            let private_readonly = perms.contains('p') && !perms.contains('w');
            current = (private_readonly && wanted(name)).then_some((start, end));
            rss = 0;
            continue;
        }
        if current.is_none() {
            continue;
        }
        let mut kib = || words.next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => rss = kib().unwrap_or(0),
            // Anonymous comes after Rss in every kernel's smaps.
            "Anonymous:" => {
                let anon = kib();
                flush(&mut current, rss, anon);
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f0000000000-7f0000010000 r--p 00000000 fd:01 42 /opt/p/libx.so
Size:                 64 kB
Rss:                  32 kB
Anonymous:             0 kB
7f0000010000-7f0000050000 r-xp 00010000 fd:01 42 /opt/p/libx.so
Size:                256 kB
Rss:                200 kB
Anonymous:             0 kB
7f0000050000-7f0000058000 r--p 00050000 fd:01 42 /opt/p/libx.so
Size:                 32 kB
Rss:                 32 kB
Anonymous:            28 kB
7f0000058000-7f000005a000 rw-p 00058000 fd:01 42 /opt/p/libx.so
Size:                  8 kB
Rss:                   8 kB
Anonymous:             8 kB
7f0000060000-7f0000070000 r-xp 00000000 fd:01 43 /opt/p/liby.so
Size:                 64 kB
Rss:                 64 kB
Anonymous:             0 kB
7f0000070000-7f0000080000 r--p 00000000 fd:01 42 /opt/p/libx.so
Size:                 64 kB
Rss:                  0 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_readonly_resident_mappings_of_the_library_are_chosen() {
        let got = clean_readonly_mappings(SMAPS, |n| n == "/opt/p/libx.so");
        assert_eq!(
            got,
            vec![
                Mapping {
                    start: 0x7f00_0000_0000,
                    end: 0x7f00_0001_0000,
                    rss_kib: 32
                },
                Mapping {
                    start: 0x7f00_0001_0000,
                    end: 0x7f00_0005_0000,
                    rss_kib: 200
                },
            ]
        );
    }

    #[test]
    fn releasing_a_mapped_library_lowers_its_resident_pages_and_it_still_works() {
        // libc is mapped in every test process; dropping its clean pages must
        // be harmless (they fault back in at the next call).
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let Some(libc_path) = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| p.contains("libc.so"))
            .map(str::to_string)
        else {
            eprintln!("SKIP: no libc.so mapping found in /proc/self/maps");
            return;
        };
        release_clean_pages(Path::new(&libc_path)).expect("release");
        assert!(!format!("{}", 42).is_empty());
        assert!(std::fs::metadata("/").is_ok());
    }
}
