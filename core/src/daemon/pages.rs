//! Giving back the code pages an idle daemon does not run.
//!
//! Loading the plugins (and their ABI checks), reading qemu.conf and the
//! capability cache, re-attaching to running guests: that code runs once,
//! yet the pages it touched (and the 64 KiB windows the kernel maps around
//! each fault) stay in the daemon's resident set for its whole life; so do
//! those of unusable plugins, since abi_stable never unloads a library.
//! Once start-up is over, and again after each burst of requests
//! ([`super::heap`]), the daemon drops its clean file-backed mappings —
//! code and read-only data that were never written — and what requests use
//! faults back in from the page cache. Mappings holding private copies
//! (relocated data, `.data`, `.bss`) are never touched.

/// Drops every clean, read-only file mapping of this process (the program's
/// and its libraries' code and read-only data). Returns how many resident
/// bytes that released.
pub fn release_clean_file_pages() -> std::io::Result<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let file_backed = |name: &str| name.starts_with('/') && !name.starts_with("/dev/");
    let mut released = 0;
    for m in clean_readonly_mappings(&smaps, file_backed) {
        let Ok(len) = usize::try_from(m.end - m.start) else {
            continue;
        };
        // SAFETY: [start, end) is one whole file mapping that is not
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
    // The candidate mapping being read, and its Rss so far.
    let mut current: Option<Mapping> = None;
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
            current = (private_readonly && wanted(name)).then_some(Mapping {
                start,
                end,
                rss_kib: 0,
            });
            continue;
        }
        let kib = words.next().and_then(|v| v.parse::<u64>().ok());
        match (first, current.as_mut()) {
            ("Rss:", Some(m)) => m.rss_kib = kib.unwrap_or(0),
            // Anonymous comes after Rss in every kernel's smaps.
            ("Anonymous:", Some(_)) => {
                if let Some(m) = current.take().filter(|m| kib == Some(0) && m.rss_kib > 0) {
                    out.push(m);
                }
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
        // libc (and this test's own code) are mapped in every test process;
        // dropping their clean pages must be harmless (they fault back in at
        // the next call).
        release_clean_file_pages().expect("release");
        assert!(!format!("{}", 42).is_empty());
        assert!(std::fs::metadata("/").is_ok());
    }
}
