//! qvisor-rpc: libvirt's remote protocol, so the stock `virsh` and libvirt bindings can
//! talk to qvisord.
//!
//! Layers, bottom up:
//! - [`xdr`]: a small typed XDR codec with bounded decoding of untrusted input;
//! - [`frame`]: the length word + header framing, programs, message types;
//! - [`remote`], [`qemu`]: typed argument/reply/event structs generated from libvirt's
//!   `.x` files; [`procedures`]: every procedure's number, name, API and read-only
//!   safety; [`RemoteError`] with [`ErrorCode`]/[`ErrorDomain`]; [`events`]: domain
//!   state and event codes;
//! - [`Call`]/[`Req`]/[`Response`]: one decoded call and its typed reply;
//! - [`server`]: the UNIX socket transport that decodes calls and hands them to a
//!   [`Handler`] the driver implements. It knows nothing about domains.
//!
//! # Serving the driver
//!
//! The driver implements [`Service`] (one per daemon: makes a handler per client) and
//! [`Handler`] (one per connection: answers its calls in order, on that connection's
//! thread). Each [`Call`] variant holds a [`Req<Args, Ret>`](Req) whose reply type is
//! fixed, so a handler cannot send the wrong reply struct:
//!
//! ```no_run
//! use qvisor_rpc::remote::{ConnectGetTypeRet, DomainLookupByNameRet, NonnullDomain};
//! use qvisor_rpc::{
//!     Call, ErrorCode, ErrorDomain, EventSender, Handler, Peer, RemoteError, Response,
//!     Server, ServerConfig, Service, SocketConfig,
//! };
//!
//! struct Driver;
//! struct Conn {
//!     events: EventSender,
//!     read_only: bool,
//! }
//!
//! impl Service for Driver {
//!     type Handler = Conn;
//!     fn connect(&self, peer: &Peer, events: EventSender) -> Conn {
//!         Conn { events, read_only: peer.read_only }
//!     }
//! }
//!
//! impl Handler for Conn {
//!     fn call(&mut self, call: Call) -> Response {
//!         match call {
//!             Call::ConnectGetType(r) => r.ok(ConnectGetTypeRet { r#type: "QEMU".into() }),
//!             Call::DomainLookupByName(r) => r.respond(|args| {
//!                 Err(RemoteError::new(
//!                     ErrorCode::NoDomain,
//!                     ErrorDomain::Qemu,
//!                     format!("no domain with matching name '{}'", args.name),
//!                 ))
//!             }),
//!             other => other.unsupported(),
//!         }
//!     }
//! }
//!
//! let config = ServerConfig {
//!     sockets: vec![
//!         SocketConfig::read_write("/run/libvirt/libvirt-sock"),
//!         SocketConfig::read_only("/run/libvirt/libvirt-sock-ro"),
//!     ],
//!     ..ServerConfig::default()
//! };
//! let server = Server::bind(config, Driver)?;
//! let handle = server.handle(); // shutdown() from a signal thread; idle_for() for --timeout
//! server.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Events go out through the [`EventSender`] given to [`Service::connect`]:
//! `events.send(&DomainEventCallbackLifecycleMsg { .. })` from any thread; it never
//! blocks, and fails once the client is gone. `examples/minimal_daemon.rs` is a
//! complete daemon `virsh version` accepts.
//!
//! What the transport does itself: keepalive PING/PONG and the `PROGRAM_KEEPALIVE`
//! feature query, unknown programs/procedures/bodies (libvirt's RPC errors), procedures
//! this crate has no types for (libvirt's "unsupported" error), and refusing
//! non-read-only procedures on read-only sockets. Everything else, including the
//! connection handshake (`AUTH_LIST`, `CONNECT_OPEN`, ...), reaches the handler.
//!
//! # Regenerating
//!
//! `src/generated/` comes from libvirt 9.0.0's sources:
//! `core/rpc/tools/gen_protocol.py /path/to/libvirt-9.0.0`. To type another procedure,
//! add it to `TYPED` there and rerun; its [`Call`] variant appears.
//!
//! # Testing
//!
//! `cargo test -p qvisor-rpc` runs the codec/layout tests, a short fuzz pass, the
//! transport tests, and the real `virsh`/python3-libvirt against a test handler (those
//! skip with a printed reason when the clients are missing). The full fuzz run:
//! `QVISOR_RPC_FUZZ_ITERS=1000000 cargo test --release -p qvisor-rpc --test fuzz -- --nocapture`.

pub mod call;
pub mod client;
pub mod error;
pub mod events;
pub mod frame;
pub mod procedures;
#[path = "generated/qemu.rs"]
pub mod qemu;
#[path = "generated/remote.rs"]
pub mod remote;
pub mod server;
pub mod xdr;

pub use call::{error_frame, Call, EventMessage, Req, Response};
pub use error::{ErrorCode, ErrorDomain, ErrorLevel, RemoteError};
pub use frame::{Header, MessageStatus, MessageType, Program};
pub use procedures::{procedure, procedure_by_name, qemu_proc, remote_proc, ProcedureInfo};
pub use server::{
    EventSender, Handler, Peer, PeerPolicy, Server, ServerConfig, ServerHandle, Service,
    SocketConfig,
};
