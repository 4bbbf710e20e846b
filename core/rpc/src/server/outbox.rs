//! A client's outgoing frames, filled by its handler thread and by event senders,
//! drained by the I/O loop.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::SendError;

/// Wakes the I/O loop out of `poll` (a byte on a socket pair it watches).
pub(crate) struct Waker {
    tx: UnixStream,
}

impl Waker {
    pub(crate) fn new(tx: UnixStream) -> Self {
        Self { tx }
    }

    pub(crate) fn wake(&self) {
        // Non-blocking: a full pipe already means "wake up".
        let _ = (&self.tx).write(&[1]);
    }
}

#[derive(Default)]
struct State {
    frames: VecDeque<Vec<u8>>,
    /// The connection is gone: nothing more is queued.
    closed: bool,
    /// Someone asked to drop the client (overflow, `EventSender::close`).
    close_requested: bool,
    /// Drop the client once what is queued has been written.
    drain_requested: bool,
}

/// Frames waiting to be written to one client.
pub(crate) struct Outbox {
    state: Mutex<State>,
    max_events: usize,
}

impl Outbox {
    pub(crate) fn new(max_events: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_events: max_events.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a reply (bounded by the client's in-flight call limit, so never refused
    /// for size). Returns false once the connection is gone.
    pub(crate) fn push_reply(&self, frame: Vec<u8>) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        s.frames.push_back(frame);
        true
    }

    /// Queues an event; a client that let `max_events` frames pile up is dropped.
    pub(crate) fn push_event(&self, client: u64, frame: Vec<u8>) -> Result<(), SendError> {
        let mut s = self.lock();
        if s.closed || s.close_requested {
            return Err(SendError::Closed(client));
        }
        if s.frames.len() >= self.max_events {
            s.close_requested = true;
            return Err(SendError::Overflow(client));
        }
        s.frames.push_back(frame);
        Ok(())
    }

    pub(crate) fn pop(&self) -> Option<Vec<u8>> {
        self.lock().frames.pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().frames.is_empty()
    }

    pub(crate) fn request_close(&self) {
        self.lock().close_requested = true;
    }

    pub(crate) fn request_close_after_flush(&self) {
        self.lock().drain_requested = true;
    }

    pub(crate) fn drain_requested(&self) -> bool {
        self.lock().drain_requested
    }

    pub(crate) fn close_requested(&self) -> bool {
        self.lock().close_requested
    }

    /// Marks the connection gone and frees what was queued.
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.frames.clear();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}
