//! Returning memory to the kernel once a burst of requests is over.
//!
//! The daemon's work comes in bursts (a client parses a capabilities
//! document, defines or starts domains) that allocate and free many small
//! objects. glibc's malloc gives memory back only from the top of each
//! arena, so after a burst the freed pages in the middle stay resident: with
//! 20 guests started from a cached capabilities document that was about 4 MB
//! of the daemon's RSS (16 MB instead of 20 MB with the pages returned).
//! `malloc_trim(0)` hands every free page of every arena back
//! (`MADV_DONTNEED`), so the daemon calls it when a burst is over: after the
//! driver has loaded its domains, and [`QUIET`] after the last call or
//! client disconnect of a burst (on any connection: a long-lived client's
//! calls count too). Trimming at every disconnect instead made each
//! one-shot client pay for it twice: the trim itself, then the page faults
//! of the next call refilling the pages just given back.
//!
//! The same quiet moment also drops the code pages the burst faulted in
//! ([`super::pages::release_clean_file_pages`]): a burst of `virsh`
//! commands touches code (its RPC procedures, XML formatting, the domain
//! start path) that an idle daemon does not run, and without this the idle
//! resident set only grew with each kind of request served (the bench's
//! idle figure, sampled after its `virsh` sections: 12.4 MiB before, 6.4 MiB
//! with this). The price is paid
//! once per burst: the next one faults back what it uses from the page
//! cache, about 125 minor faults for a start or a destroy, and the release
//! reads `/proc/self/smaps` (0.3 ms). Measured on a domain started and
//! destroyed with 400 ms between commands, so that every command is a burst
//! of its own: 1.3–2 ms more supervisor CPU per command (here, under nested
//! KVM, where a page fault is dear). Commands that follow each other within
//! [`QUIET`] pay nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long after the last request the trim runs.
pub const QUIET: Duration = Duration::from_millis(200);

/// Asks for [`release_idle_memory`] once no further request came for
/// [`QUIET`]: a burst of requests costs one trim, and only its first
/// request wakes the trimming thread (a wake-up per request cost more than
/// the trim). Runs it at once when the trimming thread cannot start.
pub fn release_idle_memory_soon() {
    let trimmer = TRIMMER.get_or_init(Trimmer::start);
    match trimmer {
        Some(t) => t.request(),
        None => release_idle_memory(),
    }
}

/// Returns the heap's free pages and drops the clean code pages (see the
/// module documentation): what an idle daemon does not need resident.
pub fn release_idle_memory() {
    release_free_memory();
    match super::pages::release_clean_file_pages() {
        Ok(bytes) => tracing::trace!("released {} KiB of code pages", bytes / 1024),
        Err(e) => tracing::debug!("cannot release code pages: {e}"),
    }
}

/// Set once, by the first request; the trimming thread reads it after that
/// request woke it.
static TRIMMER: OnceLock<Option<Trimmer>> = OnceLock::new();

/// The thread that trims once a burst is over.
struct Trimmer {
    epoch: Instant,
    /// When the last request came, in milliseconds since `epoch`.
    last: AtomicU64,
    /// A trim is scheduled: later requests only move `last`.
    pending: AtomicBool,
    wake: Sender<()>,
}

impl Trimmer {
    fn start() -> Option<Trimmer> {
        let (tx, rx) = channel::<()>();
        std::thread::Builder::new()
            .name("heap-trim".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                while rx.recv().is_ok() {
                    let Some(Some(t)) = TRIMMER.get() else {
                        return;
                    };
                    t.wait_for_quiet();
                    release_idle_memory();
                }
            })
            .ok()?;
        Some(Trimmer {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            pending: AtomicBool::new(false),
            wake: tx,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn request(&self) {
        self.last.store(self.now_ms(), Ordering::Release);
        // Only the first request of a burst wakes the thread.
        if !self.pending.swap(true, Ordering::AcqRel) && self.wake.send(()).is_err() {
            self.pending.store(false, Ordering::Release);
            release_idle_memory();
        }
    }

    /// Sleeps until no request came for [`QUIET`], then clears `pending`
    /// (a request from then on schedules the next trim).
    fn wait_for_quiet(&self) {
        let quiet = u64::try_from(QUIET.as_millis()).unwrap_or(u64::MAX);
        loop {
            let since = self
                .now_ms()
                .saturating_sub(self.last.load(Ordering::Acquire));
            if since >= quiet {
                break;
            }
            std::thread::sleep(Duration::from_millis(quiet - since));
        }
        self.pending.store(false, Ordering::Release);
    }
}

/// Caps glibc's malloc at two arenas. By default every thread that
/// allocates may get an arena of its own (up to 8 per core); the daemon's
/// threads (one per client, domain watchers, actors) are short of work, not
/// of lock-free allocation, and each extra arena keeps its own free pages
/// and fragments. Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and changes a malloc tunable; it is
    // called before the daemon starts its threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the free pages of every malloc arena to the kernel (glibc); a
/// no-op with other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only releases memory malloc
    // itself holds free; it is thread-safe (it locks each arena in turn).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_requests_schedules_one_trim_after_the_quiet_period() {
        for _ in 0..5 {
            release_idle_memory_soon();
        }
        let t = TRIMMER
            .get()
            .and_then(Option::as_ref)
            .expect("the trimming thread started");
        assert!(t.pending.load(Ordering::Acquire), "a trim is scheduled");
        let deadline = Instant::now() + QUIET * 20;
        while t.pending.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !t.pending.load(Ordering::Acquire),
            "the trim ran once the burst was over"
        );
    }
}
