//! Returning freed heap memory to the kernel.
//!
//! The daemon's work comes in bursts (a client parses a capabilities
//! document, defines or starts domains) that allocate and free many small
//! objects. glibc's malloc gives memory back only from the top of each
//! arena, so after a burst the freed pages in the middle stay resident: with
//! 20 guests started from a cached capabilities document that was about 4 MB
//! of the daemon's RSS (16 MB instead of 20 MB with the pages returned).
//! `malloc_trim(0)` hands every free page of every arena back
//! (`MADV_DONTNEED`), so the daemon calls it when a burst is over: after the
//! driver has loaded its domains, and [`QUIET`] after the last client
//! disconnect of a burst. Trimming at every disconnect instead made each
//! one-shot client pay for it twice: the trim itself, then the page faults
//! of the next call refilling the pages just given back.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long after the last request the trim runs.
pub const QUIET: Duration = Duration::from_millis(200);

/// Asks for [`release_free_memory`] once no further request came for
/// [`QUIET`]: a burst of requests costs one trim. Runs it at once when the
/// trimming thread cannot start.
pub fn release_free_memory_soon() {
    static TRIMMER: OnceLock<Mutex<Option<Sender<()>>>> = OnceLock::new();
    let slot = TRIMMER.get_or_init(|| {
        let (tx, rx) = channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("heap-trim".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                while rx.recv().is_ok() {
                    loop {
                        match rx.recv_timeout(QUIET) {
                            Ok(()) => {}
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    release_free_memory();
                }
            });
        Mutex::new(spawned.ok().map(|_| tx))
    });
    let sent = slot
        .lock()
        .ok()
        .and_then(|tx| tx.as_ref().map(|tx| tx.send(()).is_ok()));
    if sent != Some(true) {
        release_free_memory();
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
