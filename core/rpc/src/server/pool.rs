//! Handler threads kept for the next client.
//!
//! Most clients are one-shot (`virsh start`, `qvisor destroy`): a thread per
//! connection would cost a thread creation and exit for each — a stack mapping
//! and unmapping (a TLB shootdown on every CPU the daemon ran on), TLS set-up
//! and glibc's arena bookkeeping, all of them dear under nested virtualisation.
//! A thread whose client left parks for [`IDLE_KEEP`] waiting for another one;
//! at most [`MAX_IDLE`] wait at once, so a burst of clients leaves few behind.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// How long a thread without a client waits for one before it exits.
const IDLE_KEEP: Duration = Duration::from_secs(30);

/// A parked thread gives back its unused stack after this long without a
/// client (the end of a burst, as the daemon's heap trim).
const RELEASE_STACK_AFTER: Duration = Duration::from_millis(200);

/// Below the current frame, this much stack is left alone (the x86-64 red
/// zone is 128 bytes; the parking calls themselves need a few KiB).
const STACK_KEEP_BELOW: usize = 16 * 1024;

/// Gives back the pages of the calling thread's stack below its current
/// frame, as glibc does for a thread that exits: a parked thread keeps only
/// the frames it is in. They fault back in, zeroed, when the stack grows
/// again.
fn release_unused_stack() {
    let Some((low, _)) = current_stack() else {
        return;
    };
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    let page = page_size();
    let high = here.saturating_sub(STACK_KEEP_BELOW) & !(page - 1);
    let low = low.next_multiple_of(page);
    if high <= low {
        return;
    }
    // SAFETY: [low, high) lies in this thread's own stack below the current
    // frame minus a margin: by the ABI nothing there is live, and the
    // mapping stays; MADV_DONTNEED only drops its pages, which read back as
    // zeroes when touched again.
    unsafe {
        libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED);
    }
}

/// The calling thread's stack: (lowest address, size), from
/// `pthread_getattr_np`.
fn current_stack() -> Option<(usize, usize)> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before use and
    // destroyed once; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size = 0usize;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (rc == 0).then_some((addr as usize, size))
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n)
        .ok()
        .filter(|n| n.is_power_of_two())
        .unwrap_or(4096)
}

/// At most this many threads wait for a client at once.
pub const MAX_IDLE: usize = 4;

/// The name of a parked thread (`top -H`, `/proc/PID/task/*/comm`).
const IDLE_NAME: &str = "rpc-idle";

/// Names the calling thread as the kernel shows it (15 bytes kept).
fn set_thread_name(name: &str) {
    let bytes: Vec<u8> = name.bytes().filter(|b| *b != 0).take(15).collect();
    if let Ok(name) = std::ffi::CString::new(bytes) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run one client's handler at a time.
pub(crate) struct ThreadPool {
    /// Parked threads: their id and where to send their next job.
    idle: Mutex<Vec<(u64, Sender<Job>)>>,
    next_id: AtomicU64,
    stack_size: usize,
}

/// A job given to the pool; finished once its closure returned or unwound.
pub(crate) struct JobHandle {
    done: Receiver<()>,
}

impl JobHandle {
    /// Whether the job has returned (or panicked).
    pub fn is_finished(&self) -> bool {
        matches!(
            self.done.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected)
        )
    }

    /// Waits until the job has returned (or panicked).
    pub fn join(self) {
        while self.done.recv().is_ok() {}
    }
}

impl ThreadPool {
    pub fn new(stack_size: usize) -> Arc<ThreadPool> {
        Arc::new(ThreadPool {
            idle: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            stack_size,
        })
    }

    /// Runs `job` on a parked thread, or on a new one; either way the thread
    /// is named `name` while the job runs and [`IDLE_NAME`] while parked.
    pub fn run(
        self: &Arc<Self>,
        name: String,
        job: impl FnOnce() + Send + 'static,
    ) -> io::Result<JobHandle> {
        let (done_tx, done) = channel::<()>();
        let thread_name = name.clone();
        let mut job: Job = Box::new(move || {
            // Dropped when the job returns or unwinds: that is "finished".
            let _done = done_tx;
            set_thread_name(&thread_name);
            job();
        });
        loop {
            let parked = self.lock_idle().pop();
            match parked {
                // A thread that timed out between our pop and its check still
                // holds its receiver until it has looked: the send cannot be lost.
                Some((_, tx)) => match tx.send(job) {
                    Ok(()) => return Ok(JobHandle { done }),
                    Err(e) => job = e.0,
                },
                None => break,
            }
        }
        let (tx, rx) = channel::<Job>();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pool = Arc::downgrade(self);
        thread::Builder::new()
            .name(name)
            .stack_size(self.stack_size)
            .spawn(move || {
                job();
                // Park for the next client while the pool lives and has room.
                loop {
                    set_thread_name(IDLE_NAME);
                    let Some(p) = pool.upgrade() else { return };
                    {
                        let mut idle = p.lock_idle();
                        if idle.len() >= MAX_IDLE {
                            return;
                        }
                        idle.push((id, tx.clone()));
                    }
                    drop(p);
                    // Once the burst is over, the stack the last client's
                    // calls grew goes back to the kernel; a thread reused
                    // within a burst keeps it warm.
                    let first = match rx.recv_timeout(RELEASE_STACK_AFTER) {
                        Err(RecvTimeoutError::Timeout) => {
                            release_unused_stack();
                            rx.recv_timeout(IDLE_KEEP.saturating_sub(RELEASE_STACK_AFTER))
                        }
                        other => other,
                    };
                    let next = match first {
                        Ok(next) => next,
                        Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => {
                            let Some(p) = pool.upgrade() else { return };
                            let mut idle = p.lock_idle();
                            if let Some(i) = idle.iter().position(|(k, _)| *k == id) {
                                idle.swap_remove(i);
                                return;
                            }
                            drop(idle);
                            // Somebody popped us just now: their job is on its way.
                            match rx.recv() {
                                Ok(next) => next,
                                Err(_) => return,
                            }
                        }
                    };
                    next();
                }
            })?;
        Ok(JobHandle { done })
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Sender<Job>)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_finished_job_leaves_its_thread_for_the_next() {
        let pool = ThreadPool::new(256 * 1024);
        let first = pool.run("t".into(), || {}).expect("spawn");
        first.join();
        // The thread parks after signalling completion; wait until it has.
        for _ in 0..1000 {
            if !pool.lock_idle().is_empty() {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let parked = pool.lock_idle().len();
        assert_eq!(parked, 1);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        pool.run("t".into(), move || {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .expect("reuse")
        .join();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn releasing_the_unused_stack_keeps_the_thread_working() {
        let h = thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(|| {
                // Grow the stack, drop the pages below, then use them again.
                fn deep(n: u32) -> u64 {
                    let buf = [n as u8; 4096];
                    if n == 0 {
                        return u64::from(buf[100]);
                    }
                    std::hint::black_box(&buf);
                    deep(n - 1) + u64::from(buf[0])
                }
                let first = deep(100);
                release_unused_stack();
                let (low, size) = current_stack().expect("stack bounds");
                assert!(size >= 512 * 1024, "{size}");
                assert!(low > 0);
                assert_eq!(deep(100), first);
            })
            .expect("spawn");
        h.join().expect("the thread survived");
    }

    #[test]
    fn a_panicking_job_counts_as_finished_and_others_still_run() {
        let pool = ThreadPool::new(256 * 1024);
        let h = pool.run("t".into(), || panic!("boom")).expect("spawn");
        h.join();
        let ran = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let r = ran.clone();
                pool.run("t".into(), move || {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .expect("spawn")
            })
            .collect();
        for h in handles {
            h.join();
        }
        assert_eq!(ran.load(Ordering::SeqCst), 8);
        assert!(pool.lock_idle().len() <= MAX_IDLE);
    }
}
