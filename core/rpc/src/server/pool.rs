//! Handler threads kept for the next client.
//!
//! Most clients are one-shot (`virsh start`, `qvisor destroy`): a thread per
//! connection would cost a thread creation and exit for each — a stack mapping
//! and unmapping (a TLB shootdown on every CPU the daemon ran on), TLS set-up
//! and glibc's arena bookkeeping, all of them dear under nested virtualisation.
//! A thread whose client left parks for [`IDLE_KEEP`] waiting for another one;
//! at most [`MAX_IDLE`] wait at once, so a burst of clients leaves few behind.

use std::io;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// How long a thread without a client waits for one before it exits.
const IDLE_KEEP: Duration = Duration::from_secs(30);

/// At most this many threads wait for a client at once.
pub const MAX_IDLE: usize = 4;

/// The name of a parked thread (`top -H`, `/proc/PID/task/*/comm`).
pub const IDLE_NAME: &str = "rpc-idle";

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
    next_id: Mutex<u64>,
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
            next_id: Mutex::new(0),
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
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
            *n += 1;
            *n
        };
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
                    let next = match rx.recv_timeout(IDLE_KEEP) {
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
