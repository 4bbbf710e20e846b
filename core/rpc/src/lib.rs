//! qvisor-rpc: libvirt's remote protocol, so the stock `virsh` and libvirt bindings can
//! talk to qvisord.
//!
//! Layers, bottom up:
//! - [`xdr`]: a small typed XDR codec with bounded decoding of untrusted input;
//! - [`frame`]: the length word + header framing, programs, message types;
//! - [`remote`], [`qemu`]: typed argument/reply/event structs generated from libvirt's
//!   `.x` files; [`procedures`]: every procedure's number, name, API and read-only
//!   safety; [`RemoteError`] with [`ErrorCode`]/[`ErrorDomain`];
//! - [`Call`]/[`Req`]/[`Response`]: one decoded call and its typed reply;
//! - [`server`]: the UNIX socket transport that decodes calls and hands them to a
//!   [`Handler`] the driver implements. It knows nothing about domains.

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
