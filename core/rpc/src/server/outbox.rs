//! A client's outgoing frames, written by its handler thread when the
//! socket takes them at once, otherwise queued for the I/O loop.
//!
//! A reply usually goes out on the thread that computed it: when nothing
//! else is waiting for this client, the handler thread writes it itself
//! (without blocking) and the I/O loop is not woken for it, which spares a
//! loop turn and a thread switch per call. Everything else (events, the part
//! of a frame the socket did not take, keepalive answers) waits in the queue
//! until the loop sees the socket writable. Writes happen under the queue's
//! lock, so frames never interleave whichever thread writes.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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

struct State {
    /// The client's socket (non-blocking); `None` once the connection is gone.
    stream: Option<Arc<UnixStream>>,
    /// The frame being written, and how much of it went out.
    current: Vec<u8>,
    written: usize,
    frames: VecDeque<Vec<u8>>,
    /// The connection is gone: nothing more is queued.
    closed: bool,
    /// Someone asked to drop the client (overflow, `EventSender::close`).
    close_requested: bool,
    /// Drop the client once what is queued has been written.
    drain_requested: bool,
}

impl State {
    fn has_output(&self) -> bool {
        self.written < self.current.len() || !self.frames.is_empty()
    }

    /// Writes queued frames until the socket would block; `Err` means the
    /// client is gone.
    fn flush(&mut self) -> io::Result<()> {
        let State {
            stream: Some(stream),
            current,
            written,
            frames,
            ..
        } = self
        else {
            return Ok(());
        };
        loop {
            if *written >= current.len() {
                *written = 0;
                match frames.pop_front() {
                    Some(next) => *current = next,
                    None => {
                        *current = Vec::new();
                        return Ok(());
                    }
                }
            }
            let pending = current.get(*written..).unwrap_or_default();
            match (&**stream).write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// What [`Outbox::send_reply`] did with a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Written whole; the I/O loop need not know.
    Written,
    /// Queued (behind other output, or the socket was full): the I/O loop
    /// must be woken to write it.
    Queued,
    /// The connection is gone (or the write failed: the I/O loop drops it).
    Gone,
}

/// Frames waiting to be written to one client.
pub(crate) struct Outbox {
    state: Mutex<State>,
    max_events: usize,
}

impl Outbox {
    pub(crate) fn new(max_events: usize, stream: Arc<UnixStream>) -> Self {
        Self {
            state: Mutex::new(State {
                stream: Some(stream),
                current: Vec::new(),
                written: 0,
                frames: VecDeque::new(),
                closed: false,
                close_requested: false,
                drain_requested: false,
            }),
            max_events: max_events.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a reply for the I/O loop to write (bounded by the client's
    /// in-flight call limit, so never refused for size). Returns false once
    /// the connection is gone.
    pub(crate) fn push_reply(&self, frame: Vec<u8>) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        s.frames.push_back(frame);
        true
    }

    /// Sends a reply from the handler thread: written at once when nothing
    /// is ahead of it and the socket takes it, queued otherwise.
    pub(crate) fn send_reply(&self, frame: Vec<u8>) -> Sent {
        let mut s = self.lock();
        if s.closed {
            return Sent::Gone;
        }
        s.frames.push_back(frame);
        if s.frames.len() > 1 || s.written < s.current.len() {
            // Behind other output: the I/O loop is already due to write.
            return Sent::Queued;
        }
        match s.flush() {
            Ok(()) if !s.has_output() => Sent::Written,
            Ok(()) => Sent::Queued,
            // The I/O loop's next read or write sees the failure and drops
            // the client.
            Err(_) => Sent::Gone,
        }
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

    /// Writes what is queued until the socket would block (the I/O loop);
    /// `Err` means the client is gone.
    pub(crate) fn flush(&self) -> io::Result<()> {
        self.lock().flush()
    }

    /// Whether anything waits to be written.
    pub(crate) fn has_output(&self) -> bool {
        self.lock().has_output()
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

    /// Marks the connection gone and frees what was queued (and this
    /// outbox's hold on the socket).
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.stream = None;
        s.frames.clear();
        s.current = Vec::new();
        s.written = 0;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pair() -> (Arc<UnixStream>, UnixStream) {
        let (a, b) = UnixStream::pair().expect("socket pair");
        a.set_nonblocking(true).expect("non-blocking");
        (Arc::new(a), b)
    }

    #[test]
    fn a_reply_with_nothing_ahead_is_written_at_once() {
        let (a, mut b) = pair();
        let outbox = Outbox::new(8, a);
        assert_eq!(outbox.send_reply(b"reply".to_vec()), Sent::Written);
        assert!(!outbox.has_output());
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"reply");
    }

    #[test]
    fn a_reply_behind_queued_output_waits_its_turn() {
        let (a, mut b) = pair();
        let outbox = Outbox::new(8, a);
        outbox.push_event(1, b"event ".to_vec()).expect("queued");
        assert_eq!(outbox.send_reply(b"reply".to_vec()), Sent::Queued);
        outbox.flush().expect("flush");
        assert!(!outbox.has_output());
        let mut buf = [0u8; 11];
        b.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"event reply");
    }

    #[test]
    fn what_a_full_socket_does_not_take_stays_queued_in_order() {
        let (a, mut b) = pair();
        let outbox = Outbox::new(8, a);
        // Far more than a socket buffer holds.
        let big = vec![7u8; 4 * 1024 * 1024];
        assert_eq!(outbox.send_reply(big.clone()), Sent::Queued);
        assert_eq!(outbox.send_reply(b"next".to_vec()), Sent::Queued);
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; big.len() + 4];
            b.read_exact(&mut got).expect("read");
            got
        });
        while outbox.has_output() {
            outbox.flush().expect("flush");
            std::thread::yield_now();
        }
        let got = reader.join().expect("reader");
        assert!(got.iter().take(4 * 1024 * 1024).all(|&b| b == 7));
        assert_eq!(got.get(4 * 1024 * 1024..), Some(&b"next"[..]));
    }

    #[test]
    fn nothing_is_sent_once_the_connection_is_closed() {
        let (a, _b) = pair();
        let outbox = Outbox::new(8, a);
        outbox.close();
        assert_eq!(outbox.send_reply(b"late".to_vec()), Sent::Gone);
        assert!(!outbox.push_reply(b"late".to_vec()));
        assert!(!outbox.has_output());
    }
}
