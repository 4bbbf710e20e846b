//! The UNIX socket transport: accepts libvirt clients and hands their decoded calls to
//! a [`Handler`].
//!
//! # Design
//!
//! One I/O thread (the caller of [`Server::run`]) polls the listening sockets, every
//! client socket and a wake-up pipe. It reads frames without blocking (bounded, see
//! [`crate::frame`]), answers keepalive PINGs at once, and queues each call to its
//! client's *handler thread*; it writes replies and events from each client's outgoing
//! queue as the socket accepts them. Each client has one plain handler thread that
//! decodes its calls, enforces the read-only socket, and calls the client's [`Handler`]
//! synchronously: one handler call per request, in order.
//!
//! So a client costs one parked thread and one socket (a thread whose client left waits
//! a while for the next one, see [`pool`]); no async runtime, which keeps
//! the daemon's idle RSS small and lets the driver's handler code block (start a
//! guest, talk to a monitor) without stalling anyone else. Because I/O never waits for
//! a handler, keepalive PINGs are answered even while a long call runs, like
//! libvirtd's event loop does. Like libvirtd's `max_client_requests`, a client with
//! that many calls in flight is not read from until one finishes; one whose event
//! queue overflows (it stopped reading) is dropped.
//!
//! A malformed frame never reaches the handler: a bad length word (below the header
//! size or over libvirt's 32 MiB), or an invalid header drops that client (its byte
//! stream can no longer be trusted; a truncated frame just waits for more bytes or the
//! hang-up); an unknown program, version or procedure, an undecodable body or a
//! forbidden call gets a libvirt error reply and the connection stays up. The server
//! does not send keepalive PINGs of its own; it answers the client's.

mod dispatch;
mod outbox;
mod pool;
mod reactor;
mod sys;

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::call::{Call, EventMessage, Response};
use crate::frame::FrameError;

pub use dispatch::dispatch;
use outbox::{Outbox, Waker};
pub use pool::MAX_IDLE as MAX_IDLE_HANDLER_THREADS;
use reactor::{Listening, Reactor};

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
    /// Calls a client may have queued or running before the server stops reading from
    /// it until one finishes (libvirt's `max_client_requests`).
    pub max_client_requests: usize,
    /// Frames queued for a client beyond which an event drops it as not reading.
    pub outgoing_queue: usize,
    /// Stack size of the thread that runs a client's handler.
    pub handler_stack_size: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            sockets: Vec::new(),
            peer_policy: PeerPolicy::AnyUser,
            max_clients: 5000,
            max_client_requests: 5,
            outgoing_queue: 1024,
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
    outbox: Arc<Outbox>,
    waker: Arc<Waker>,
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
        let result = self.outbox.push_event(self.client, frame);
        if let Err(SendError::Overflow(_)) = result {
            tracing::warn!(
                "client {} is not reading its messages; disconnecting it",
                self.client
            );
        }
        self.waker.wake();
        result
    }

    /// Whether the client has gone (sends would fail).
    pub fn is_closed(&self) -> bool {
        self.outbox.is_closed() || self.outbox.close_requested()
    }

    /// Disconnects the client; its handler sees `disconnected` after its current call.
    pub fn close(&self) {
        self.outbox.request_close();
        self.waker.wake();
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
    next_id: AtomicU64,
    active: AtomicUsize,
    /// When the last client left (or the server started), while none is connected.
    idle_since: Mutex<Option<Instant>>,
}

/// Controls a running [`Server`] from other threads (a signal-handling thread, the
/// idle-timeout watchdog).
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
}

impl ServerHandle {
    /// Stops accepting, disconnects every client, and makes [`Server::run`] return
    /// once their handlers finished their current call.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.waker.wake();
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

/// A bound, not yet running server.
pub struct Server<S: Service> {
    service: Arc<S>,
    config: ServerConfig,
    listeners: Vec<Listening>,
    shared: Arc<Shared>,
    wake_rx: UnixStream,
    waker: Arc<Waker>,
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
                let listener = bind_socket(sc)?;
                Ok(Listening {
                    listener,
                    config: sc.clone(),
                    file_id: file_id(&sc.path),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (wake_rx, wake_tx) = UnixStream::pair().map_err(ServerError::WakePipe)?;
        wake_tx
            .set_nonblocking(true)
            .map_err(ServerError::WakePipe)?;
        wake_rx
            .set_nonblocking(true)
            .map_err(ServerError::WakePipe)?;
        Ok(Self {
            service: Arc::new(service),
            config,
            listeners,
            shared: Arc::new(Shared {
                stopping: AtomicBool::new(false),
                next_id: AtomicU64::new(1),
                active: AtomicUsize::new(0),
                idle_since: Mutex::new(Some(Instant::now())),
            }),
            wake_rx,
            waker: Arc::new(Waker::new(wake_tx)),
        })
    }

    /// A handle to stop the server or watch its clients.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Serves clients until [`ServerHandle::shutdown`]; then disconnects them, waits
    /// for their handler threads and removes the socket files.
    pub fn run(self) -> Result<()> {
        let result = Reactor {
            service: &self.service,
            config: &self.config,
            listeners: &self.listeners,
            shared: &self.shared,
            wake_rx: &self.wake_rx,
            waker: &self.waker,
            pool: &pool::ThreadPool::new(self.config.handler_stack_size),
        }
        .run();
        for l in &self.listeners {
            if l.file_id.is_some() && file_id(&l.config.path) == l.file_id {
                let _ = fs::remove_file(&l.config.path);
            }
        }
        result
    }
}

/// Device and inode of the file at `path` (not following a symlink).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
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
