//! The I/O loop: one thread polls the listening sockets, every client socket and a
//! wake-up pipe; it reads frames without blocking, answers keepalive, queues calls to
//! each client's handler thread, and writes events and whatever a handler thread
//! could not write at once (see [`super::outbox`]).

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::dispatch::{access_denied_frame, keepalive_reply, worker};
use super::outbox::{Outbox, Waker};
use super::pool::{JobHandle, ThreadPool};
use super::{
    sys, EventSender, Peer, PeerPolicy, ServerConfig, ServerError, Service, Shared, SocketConfig,
};
use crate::frame::{parse_frame, Frame, MessageType, Program};

/// Bytes read from one client per loop turn, so one fast sender cannot starve others.
const READ_BUDGET: usize = 1024 * 1024;
/// A read buffer larger than this is given back once it is empty.
const KEEP_BUFFER: usize = 64 * 1024;

pub(crate) struct Listening {
    pub listener: UnixListener,
    pub config: SocketConfig,
    /// Device and inode of the socket file we bound, so shutting down
    /// removes only our own file (not one a successor bound at that path).
    pub file_id: Option<(u64, u64)>,
}

/// The I/O loop's view of one client.
struct Conn {
    peer: Arc<Peer>,
    /// Shared with the outbox, whose writers (this loop and the handler
    /// thread) write to it.
    stream: Arc<UnixStream>,
    /// Received bytes not yet forming a whole frame.
    rbuf: Vec<u8>,
    outbox: Arc<Outbox>,
    /// Calls for the handler thread; `None` for a refused peer.
    calls: Option<Sender<Frame>>,
    /// Calls queued or running on the handler thread.
    inflight: Arc<AtomicUsize>,
    /// Close once everything queued is written (refused peers).
    draining: bool,
}

impl Conn {
    fn has_output(&self) -> bool {
        self.outbox.has_output()
    }
}

pub(crate) struct Reactor<'a, S: Service> {
    pub service: &'a Arc<S>,
    pub config: &'a ServerConfig,
    pub listeners: &'a [Listening],
    pub shared: &'a Arc<Shared>,
    pub wake_rx: &'a UnixStream,
    pub waker: &'a Arc<Waker>,
    pub pool: &'a Arc<ThreadPool>,
}

impl<S: Service> Reactor<'_, S> {
    /// Runs until shutdown; then drops every client and joins their handler threads.
    pub fn run(&self) -> Result<(), ServerError> {
        let mut conns: Vec<Conn> = Vec::new();
        let mut workers: Vec<JobHandle> = Vec::new();
        let result = self.turns(&mut conns, &mut workers);
        for c in conns.drain(..) {
            self.drop_conn(c);
        }
        for w in workers {
            w.join();
        }
        result
    }

    fn turns(
        &self,
        conns: &mut Vec<Conn>,
        workers: &mut Vec<JobHandle>,
    ) -> Result<(), ServerError> {
        let max_inflight = self.config.max_client_requests.max(1);
        loop {
            if self.shared.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            // Write what handler threads and event senders queued; drop finished clients.
            let mut i = 0;
            while i < conns.len() {
                if let Some(c) = conns.get_mut(i) {
                    c.draining |= c.outbox.drain_requested();
                }
                let keep = match conns.get_mut(i) {
                    Some(c) if c.outbox.close_requested() => false,
                    // Flush first: a draining client leaves once its output is out.
                    Some(c) => flush(c).is_ok() && (!c.draining || c.has_output()),
                    None => false,
                };
                if keep {
                    i += 1;
                } else {
                    let c = conns.swap_remove(i);
                    self.drop_conn(c);
                }
            }
            workers.retain(|w| !w.is_finished());

            let mut fds: Vec<PollFd<'_>> =
                Vec::with_capacity(self.listeners.len() + 1 + conns.len());
            fds.push(PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN));
            for l in self.listeners {
                fds.push(PollFd::new(l.listener.as_fd(), PollFlags::POLLIN));
            }
            for c in conns.iter() {
                let mut flags = PollFlags::empty();
                if !c.draining && c.inflight.load(Ordering::SeqCst) < max_inflight {
                    flags |= PollFlags::POLLIN;
                }
                if c.has_output() {
                    flags |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(c.stream.as_fd(), flags));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ServerError::Poll(e.into())),
            }
            let ready: Vec<PollFlags> = fds
                .iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);

            let (wake, rest) = match ready.split_first() {
                Some((w, rest)) => (*w, rest),
                None => (PollFlags::empty(), &[][..]),
            };
            if !wake.is_empty() {
                let mut buf = [0u8; 256];
                while matches!((&mut &*self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
            }
            let (listen_ready, conn_ready) = rest.split_at(self.listeners.len().min(rest.len()));
            // Client events first: indices shift once new clients are pushed.
            let mut dead = Vec::new();
            for (idx, flags) in conn_ready.iter().enumerate() {
                let Some(c) = conns.get_mut(idx) else { break };
                let mut ok = true;
                if flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                    ok = self.read_from(c);
                }
                if ok && flags.contains(PollFlags::POLLOUT) {
                    ok = flush(c).is_ok();
                }
                if !ok {
                    dead.push(idx);
                }
            }
            for idx in dead.into_iter().rev() {
                let c = conns.swap_remove(idx);
                self.drop_conn(c);
            }
            for (l, flags) in self.listeners.iter().zip(listen_ready) {
                if !flags.is_empty() {
                    self.accept_all(l, conns, workers);
                }
            }
        }
    }

    /// Reads what is available and hands out complete frames; false: drop the client.
    fn read_from(&self, c: &mut Conn) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let mut budget = READ_BUDGET;
        while budget > 0 {
            match (&*c.stream).read(&mut chunk) {
                Ok(0) => {
                    self.take_frames(c);
                    return false;
                }
                Ok(n) => {
                    c.rbuf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    budget = budget.saturating_sub(n);
                    if !self.take_frames(c) {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!("client {}: read failed: {e}", c.peer.id);
                    return false;
                }
            }
        }
        true
    }

    /// Consumes whole frames from the read buffer; false on a frame that cannot be
    /// trusted (bad length, bad header): the client is dropped.
    fn take_frames(&self, c: &mut Conn) -> bool {
        let mut used_total = 0;
        let ok = loop {
            let rest = c.rbuf.get(used_total..).unwrap_or_default();
            match parse_frame(rest) {
                Ok(Some((frame, used))) => {
                    used_total += used;
                    if !self.handle_frame(c, frame) {
                        break false;
                    }
                }
                Ok(None) => break true,
                Err(e) => {
                    tracing::warn!(
                        "client {} (pid {} uid {}): {e}; dropping it",
                        c.peer.id,
                        c.peer.pid,
                        c.peer.uid
                    );
                    break false;
                }
            }
        };
        c.rbuf.drain(..used_total.min(c.rbuf.len()));
        if c.rbuf.is_empty() && c.rbuf.capacity() > KEEP_BUFFER {
            c.rbuf = Vec::new();
        }
        ok
    }

    fn handle_frame(&self, c: &mut Conn, frame: Frame) -> bool {
        if c.draining {
            return true;
        }
        let Some(calls) = &c.calls else {
            // A refused peer: one access-denied reply, then the door closes.
            if frame.header.kind == MessageType::Call {
                if let Some(bytes) = access_denied_frame(&frame.header, &c.peer) {
                    c.outbox.push_reply(bytes);
                }
            }
            c.draining = true;
            return true;
        };
        if Program::from_number(frame.header.program) == Some(Program::Keepalive) {
            if let Some(pong) = keepalive_reply(&frame.header, &c.peer) {
                c.outbox.push_reply(pong);
            }
            return true;
        }
        c.inflight.fetch_add(1, Ordering::SeqCst);
        if calls.send(frame).is_err() {
            return false;
        }
        true
    }

    fn accept_all(&self, l: &Listening, conns: &mut Vec<Conn>, workers: &mut Vec<JobHandle>) {
        loop {
            let stream = match l.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(
                        "unable to accept a client on '{}': {e}",
                        l.config.path.display()
                    );
                    // Out of file descriptors and the like: back off instead of spinning.
                    thread::sleep(Duration::from_millis(50));
                    return;
                }
            };
            if let Some((conn, worker)) = self.admit(l, stream) {
                conns.push(conn);
                workers.extend(worker);
            }
        }
    }

    fn admit(&self, l: &Listening, stream: UnixStream) -> Option<(Conn, Option<JobHandle>)> {
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
        if self.shared.active.load(Ordering::SeqCst) >= self.config.max_clients {
            tracing::warn!(
                "too many active clients ({}), dropping connection from '{}'",
                self.config.max_clients,
                l.config.path.display()
            );
            return None;
        }
        let creds = match sys::peer_credentials(&stream) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("client {id}: cannot read its credentials: {e}");
                return None;
            }
        };
        if let Err(e) = stream.set_nonblocking(true) {
            tracing::warn!("client {id}: cannot make its socket non-blocking: {e}");
            return None;
        }
        let peer = Arc::new(Peer {
            id,
            pid: creds.pid,
            uid: creds.uid,
            gid: creds.gid,
            read_only: l.config.read_only,
            socket: l.config.path.clone(),
        });
        let allowed = match self.config.peer_policy {
            PeerPolicy::AnyUser => true,
            PeerPolicy::SameUser => creds.uid == sys::effective_uid(),
        };
        let stream = Arc::new(stream);
        let outbox = Arc::new(Outbox::new(self.config.outgoing_queue, Arc::clone(&stream)));
        let inflight = Arc::new(AtomicUsize::new(0));
        let (calls, worker) = if allowed {
            tracing::debug!(
                "client {id} connected to '{}' (pid {} uid {} gid {}{})",
                peer.socket.display(),
                peer.pid,
                peer.uid,
                peer.gid,
                if peer.read_only { ", read-only" } else { "" }
            );
            let (tx, rx) = channel();
            let events = EventSender {
                client: id,
                outbox: Arc::clone(&outbox),
                waker: Arc::clone(self.waker),
            };
            let service = Arc::clone(self.service);
            let max_inflight = self.config.max_client_requests.max(1);
            let (p, o, n, w) = (
                Arc::clone(&peer),
                Arc::clone(&outbox),
                Arc::clone(&inflight),
                Arc::clone(self.waker),
            );
            let spawned = self.pool.run(format!("rpc-client-{id}"), move || {
                let handler = service.connect(&p, events);
                worker(handler, &p, &rx, &o, &n, &w, max_inflight);
            });
            match spawned {
                Ok(t) => (Some(tx), Some(t)),
                Err(e) => {
                    tracing::warn!("client {id}: cannot start its thread: {e}");
                    return None;
                }
            }
        } else {
            tracing::warn!(
                "client {id} (pid {} uid {}) refused: only uid {} may connect",
                peer.pid,
                peer.uid,
                sys::effective_uid()
            );
            (None, None)
        };
        self.shared.active.fetch_add(1, Ordering::SeqCst);
        *self
            .shared
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        Some((
            Conn {
                peer,
                stream,
                rbuf: Vec::new(),
                outbox,
                calls,
                inflight,
                draining: false,
            },
            worker,
        ))
    }

    fn drop_conn(&self, c: Conn) {
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        c.outbox.close();
        // Dropping `calls` ends the handler thread once its current call returns.
        drop(c.calls);
        if self.shared.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self
                .shared
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        tracing::debug!("client {} disconnected", c.peer.id);
    }
}

/// Writes queued frames until the socket would block; `Err` means the client is gone.
fn flush(c: &mut Conn) -> io::Result<()> {
    c.outbox.flush().inspect_err(|e| {
        tracing::debug!("client {}: write failed: {e}", c.peer.id);
    })
}
