//! The UNIX socket transport: accepts libvirt clients and hands their decoded calls to
//! a [`Handler`].
//!
//! # Design
//!
//! One accept thread (the caller of [`Server::run`]) polls the listening sockets and a
//! wake-up pipe. Each client gets two plain threads:
//!
//! - a *reader* that reads one frame at a time (bounded, see [`crate::frame`]), answers
//!   keepalive PINGs, enforces the read-only socket and decodes the call, then calls
//!   the client's [`Handler`] synchronously: one handler call per request, in order;
//! - a *writer* that drains the client's bounded outgoing queue (replies from the
//!   reader, events from any thread through the client's [`EventSender`]).
//!
//! No async runtime: an idle client costs two parked threads (a few pages of stack
//! each) and two file descriptors, which keeps the daemon's idle RSS small, and the
//! driver's handler code can block without starving anyone else. libvirt clients may
//! pipeline calls on one connection; they are answered in order, like a libvirtd
//! with one worker per client. A client whose queue overflows (it stopped reading)
//! or whose socket stays unwritable for [`ServerConfig::write_timeout`] is dropped.
//!
//! A malformed frame never reaches the handler: a bad length word (below the header
//! size or over libvirt's 32 MiB), a truncated body or an invalid header drops that
//! client (its byte stream can no longer be trusted); an unknown program, version or
//! procedure, an undecodable body or a forbidden call gets a libvirt error reply and
//! the connection stays up. The server does not send keepalive PINGs of its own; it
//! answers the client's.

mod conn;
mod sys;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::call::{Call, EventMessage, Response};
use crate::frame::FrameError;

pub use conn::dispatch;

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    /// Where to create it. An existing socket nobody listens on is replaced.
    pub path: PathBuf,
    /// Its permission bits (`unix_sock_rw_perms` / `unix_sock_ro_perms`).
    pub mode: u32,
    /// Clients of this socket may only call read-only procedures.
    pub read_only: bool,
}

impl SocketConfig {
    /// A read-write socket with libvirt's default mode 0700.
    pub fn read_write(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            mode: 0o700,
            read_only: false,
        }
    }

    /// A read-only socket with libvirt's default mode 0777.
    pub fn read_only(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            mode: 0o777,
            read_only: true,
        }
    }
}

/// Which peers may use the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerPolicy {
    /// Anyone who can open the socket (its mode decides).
    #[default]
    AnyUser,
    /// Only peers running as the daemon's own effective uid (session daemons).
    SameUser,
}

/// Transport settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The sockets to listen on.
    pub sockets: Vec<SocketConfig>,
    /// Who may connect.
    pub peer_policy: PeerPolicy,
    /// Connections beyond this many are closed at once (libvirt's `max_clients`).
    pub max_clients: usize,
    /// Frames (replies and events) queued per client before it counts as stuck.
    pub outgoing_queue: usize,
    /// How long a write to a client may block before the client is dropped.
    pub write_timeout: Duration,
    /// Stack size of the thread that runs a client's handler.
    pub handler_stack_size: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            sockets: Vec::new(),
            peer_policy: PeerPolicy::AnyUser,
            max_clients: 5000,
            outgoing_queue: 1024,
            write_timeout: Duration::from_secs(30),
            handler_stack_size: 1024 * 1024,
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// A number unique among this server's connections.
    pub id: u64,
    /// Process id from `SO_PEERCRED`.
    pub pid: i32,
    /// User id from `SO_PEERCRED`.
    pub uid: u32,
    /// Group id from `SO_PEERCRED`.
    pub gid: u32,
    /// Connected through a read-only socket: only read-only procedures reach the
    /// handler, and the driver should open its connection read-only.
    pub read_only: bool,
    /// The socket it connected to.
    pub socket: PathBuf,
}

/// Creates one [`Handler`] per connection; implemented by the driver.
pub trait Service: Send + Sync + 'static {
    /// The per-connection handler.
    type Handler: Handler;

    /// A client connected. `events` pushes event messages to it from any thread.
    fn connect(&self, peer: &Peer, events: EventSender) -> Self::Handler;
}

/// Serves one connection's calls, in order, on that connection's thread.
pub trait Handler: Send + 'static {
    /// Answers one call. Anything not implemented: `call.unsupported()`.
    fn call(&mut self, call: Call) -> Response;

    /// The client went away (after its last call). Dropping the handler follows.
    fn disconnected(&mut self) {}
}

/// What a client's writer thread is asked to do.
enum Outgoing {
    Frame(Vec<u8>),
    Close,
}

/// Why an event could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The client has disconnected.
    #[error("client {0} has disconnected")]
    Closed(u64),
    /// The client stopped reading and its queue is full; it is being dropped.
    #[error("client {0} is not reading its messages; disconnecting it")]
    Overflow(u64),
    /// The message could not be encoded.
    #[error("cannot encode event message")]
    Encode(#[source] FrameError),
}

/// Pushes event messages to one client; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct EventSender {
    client: u64,
    tx: SyncSender<Outgoing>,
    stream: Arc<UnixStream>,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender")
            .field("client", &self.client)
            .finish()
    }
}

impl EventSender {
    /// The [`Peer::id`] of the client this sends to.
    pub fn client(&self) -> u64 {
        self.client
    }

    /// Queues `msg` without blocking.
    pub fn send<M: EventMessage>(&self, msg: &M) -> std::result::Result<(), SendError> {
        self.send_frame(msg.to_frame().map_err(SendError::Encode)?)
    }

    /// Queues an already encoded frame without blocking.
    pub fn send_frame(&self, frame: Vec<u8>) -> std::result::Result<(), SendError> {
        match self.tx.try_send(Outgoing::Frame(frame)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(SendError::Closed(self.client)),
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    "client {} is not reading its messages; disconnecting it",
                    self.client
                );
                self.close();
                Err(SendError::Overflow(self.client))
            }
        }
    }

    /// Disconnects the client (its handler sees `disconnected` once its thread notices).
    pub fn close(&self) {
        // Both directions: the reader sees end of stream, the writer an error.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Why the server could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No socket was configured.
    #[error("no listening socket configured")]
    NoSockets,
    /// Another process is serving the socket path.
    #[error("socket '{}' is in use by another daemon", path.display())]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Creating or binding a socket failed.
    #[error("unable to bind to UNIX socket path '{}'", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Setting a socket's mode failed.
    #[error("unable to set permissions {mode:#o} on '{}'", path.display())]
    SetPermissions {
        /// The socket path.
        path: PathBuf,
        /// The mode.
        mode: u32,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Polling the sockets failed.
    #[error("unable to poll the listening sockets")]
    Poll(#[source] io::Error),
    /// Creating the server's internal wake-up pipe failed.
    #[error("unable to create the server's wake-up socket pair")]
    WakePipe(#[source] io::Error),
}

/// Shorthand for this module's results.
pub type Result<T> = std::result::Result<T, ServerError>;

struct Shared {
    stopping: AtomicBool,
    wake: UnixStream,
    next_id: AtomicU64,
    active: AtomicUsize,
    /// A second handle on each live client's socket, to shut it down on exit.
    clients: Mutex<HashMap<u64, UnixStream>>,
    /// When the last client left (or the server started), while none is connected.
    idle_since: Mutex<Option<Instant>>,
}

impl Shared {
    fn client_left(&self, id: u64) {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    }
}

/// Controls a running [`Server`] from other threads (signal handlers' helpers, the
/// idle-timeout watchdog).
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Stops accepting, disconnects every client, and makes [`Server::run`] return
    /// once their handlers finished.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = (&self.shared.wake).write(&[1]);
    }

    /// Connected clients right now.
    pub fn client_count(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// How long no client has been connected (`None` while one is), for `--timeout`.
    pub fn idle_for(&self) -> Option<Duration> {
        self.shared
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|t| t.elapsed())
    }
}

struct Listening {
    listener: UnixListener,
    config: SocketConfig,
}

/// A bound, not yet running server.
pub struct Server<S: Service> {
    service: Arc<S>,
    config: ServerConfig,
    listeners: Vec<Listening>,
    shared: Arc<Shared>,
    wake_rx: UnixStream,
}

impl<S: Service> Server<S> {
    /// Creates the configured sockets (with their modes) and returns a server ready
    /// to [`run`](Self::run).
    pub fn bind(config: ServerConfig, service: S) -> Result<Self> {
        if config.sockets.is_empty() {
            return Err(ServerError::NoSockets);
        }
        let listeners = config
            .sockets
            .iter()
            .map(|sc| {
                Ok(Listening {
                    listener: bind_socket(sc)?,
                    config: sc.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (wake_rx, wake) = UnixStream::pair().map_err(ServerError::WakePipe)?;
        wake.set_nonblocking(true).map_err(ServerError::WakePipe)?;
        wake_rx
            .set_nonblocking(true)
            .map_err(ServerError::WakePipe)?;
        Ok(Self {
            service: Arc::new(service),
            config,
            listeners,
            shared: Arc::new(Shared {
                stopping: AtomicBool::new(false),
                wake,
                next_id: AtomicU64::new(1),
                active: AtomicUsize::new(0),
                clients: Mutex::new(HashMap::new()),
                idle_since: Mutex::new(Some(Instant::now())),
            }),
            wake_rx,
        })
    }

    /// A handle to stop the server or watch its clients.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accepts clients until [`ServerHandle::shutdown`]; then disconnects them, waits
    /// for their threads and removes the socket files.
    pub fn run(self) -> Result<()> {
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let result = self.accept_loop(&mut threads);
        let live: Vec<UnixStream> = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in &live {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        for t in threads {
            let _ = t.join();
        }
        for l in &self.listeners {
            let _ = fs::remove_file(&l.config.path);
        }
        result
    }

    fn accept_loop(&self, threads: &mut Vec<JoinHandle<()>>) -> Result<()> {
        loop {
            if self.shared.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            let mut fds: Vec<PollFd<'_>> = self
                .listeners
                .iter()
                .map(|l| PollFd::new(l.listener.as_fd(), PollFlags::POLLIN))
                .collect();
            fds.push(PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN));
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ServerError::Poll(e.into())),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready.last().copied().unwrap_or(false) {
                let mut buf = [0u8; 16];
                let _ = io::Read::read(&mut &self.wake_rx, &mut buf);
                continue;
            }
            for (l, _) in self.listeners.iter().zip(&ready).filter(|(_, r)| **r) {
                self.accept_one(l, threads);
            }
            threads.retain(|t| !t.is_finished());
        }
    }

    fn accept_one(&self, l: &Listening, threads: &mut Vec<JoinHandle<()>>) {
        let stream = match l.listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
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
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
        if self.shared.active.load(Ordering::SeqCst) >= self.config.max_clients {
            tracing::warn!(
                "too many active clients ({}), dropping connection from '{}'",
                self.config.max_clients,
                l.config.path.display()
            );
            return;
        }
        if let Err(e) = stream.set_nonblocking(false) {
            tracing::warn!("client {id}: cannot make its socket blocking: {e}");
            return;
        }
        let creds = match sys::peer_credentials(&stream) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("client {id}: cannot read its credentials: {e}");
                return;
            }
        };
        let peer = Peer {
            id,
            pid: creds.pid,
            uid: creds.uid,
            gid: creds.gid,
            read_only: l.config.read_only,
            socket: l.config.path.clone(),
        };
        let allowed = match self.config.peer_policy {
            PeerPolicy::AnyUser => true,
            PeerPolicy::SameUser => creds.uid == sys::effective_uid(),
        };
        let registry = match stream.try_clone() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("client {id}: cannot duplicate its socket: {e}");
                return;
            }
        };
        self.shared
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, registry);
        self.shared.active.fetch_add(1, Ordering::SeqCst);
        *self
            .shared
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        tracing::debug!(
            "client {id} connected to '{}' (pid {} uid {} gid {}{})",
            peer.socket.display(),
            peer.pid,
            peer.uid,
            peer.gid,
            if peer.read_only { ", read-only" } else { "" }
        );
        let service = Arc::clone(&self.service);
        let shared = Arc::clone(&self.shared);
        let cfg = conn::ConnConfig {
            outgoing_queue: self.config.outgoing_queue.max(1),
            write_timeout: self.config.write_timeout,
        };
        let spawned = thread::Builder::new()
            .name(format!("rpc-client-{id}"))
            .stack_size(self.config.handler_stack_size)
            .spawn(move || {
                if allowed {
                    conn::serve(&*service, stream, &peer, &cfg);
                } else {
                    conn::refuse(stream, &peer);
                }
                shared.client_left(peer.id);
                tracing::debug!("client {} disconnected", peer.id);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                tracing::warn!("client {id}: cannot start its thread: {e}");
                self.shared.client_left(id);
            }
        }
    }
}

/// Binds `sc.path`, replacing a stale socket left by a dead daemon, and applies its mode.
fn bind_socket(sc: &SocketConfig) -> Result<UnixListener> {
    let path = &sc.path;
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::SocketInUse { path: path.clone() });
            }
            let _ = fs::remove_file(path);
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| ServerError::Bind {
            path: path.clone(),
            source,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
        path: path.clone(),
        source,
    })?;
    // The socket exists with the umask's mode for an instant; under the usual umasks
    // that grants others no write (connect) permission, so this only ever widens.
    set_mode(path, sc.mode)?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServerError::Bind {
            path: path.clone(),
            source,
        })?;
    Ok(listener)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
        ServerError::SetPermissions {
            path: path.to_path_buf(),
            mode,
            source,
        }
    })
}
