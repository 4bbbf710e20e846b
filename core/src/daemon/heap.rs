//! Returning freed heap memory to the kernel.
//!
//! The daemon's work comes in bursts (a client parses a capabilities
//! document, defines or starts domains) that allocate and free many small
//! objects. glibc's malloc gives memory back only from the top of each
//! arena, so after a burst the freed pages in the middle stay resident: with
//! 20 guests started from a cached capabilities document that was about 4 MB
//! of the daemon's RSS (16 MB instead of 20 MB with the pages returned).
//! `malloc_trim(0)` hands every free page of every arena back
//! (`MADV_DONTNEED`); it costs well under a millisecond on a heap this size,
//! so the daemon calls it when a burst is over: after the driver has loaded
//! its domains and whenever a client disconnects.

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
