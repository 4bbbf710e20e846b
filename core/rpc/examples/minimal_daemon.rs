//! The smallest daemon `virsh` accepts: the connection handshake plus `version` and
//! `hostname`; every other procedure gets libvirt's "unsupported" error.
//!
//! ```text
//! cargo run -p qvisor-rpc --example minimal_daemon -- /tmp/sock
//! virsh -c 'qemu+unix:///system?socket=/tmp/sock' version
//! ```
//!
//! Stops on SIGINT/SIGTERM (the process exits; the socket file stays).

use qvisor_rpc::remote::{
    AuthListRet, ConnectGetHostnameRet, ConnectGetLibVersionRet, ConnectGetTypeRet,
    ConnectGetVersionRet, ConnectSupportsFeatureRet, AUTH_NONE,
};
use qvisor_rpc::{
    Call, EventSender, Handler, Peer, Response, Server, ServerConfig, Service, SocketConfig,
};

struct Minimal;

struct Connection;

impl Service for Minimal {
    type Handler = Connection;

    fn connect(&self, _peer: &Peer, _events: EventSender) -> Connection {
        Connection
    }
}

impl Handler for Connection {
    fn call(&mut self, call: Call) -> Response {
        match call {
            Call::AuthList(r) => r.ok(AuthListRet {
                types: vec![AUTH_NONE],
            }),
            // 14: REMOTE_EVENT_CALLBACK, 15: REMOTE_CLOSE_CALLBACK.
            Call::ConnectSupportsFeature(r) => {
                let supported = i32::from(matches!(r.args.feature, 14 | 15));
                r.ok(ConnectSupportsFeatureRet { supported })
            }
            Call::ConnectOpen(r) => r.ok(()),
            Call::ConnectClose(r) => r.ok(()),
            Call::ConnectRegisterCloseCallback(r) => r.ok(()),
            Call::ConnectUnregisterCloseCallback(r) => r.ok(()),
            Call::ConnectGetType(r) => r.ok(ConnectGetTypeRet {
                r#type: "QEMU".into(),
            }),
            Call::ConnectGetVersion(r) => r.ok(ConnectGetVersionRet { hv_ver: 7_002_000 }),
            Call::ConnectGetLibVersion(r) => r.ok(ConnectGetLibVersionRet { lib_ver: 9_000_000 }),
            Call::ConnectGetHostname(r) => r.ok(ConnectGetHostnameRet {
                hostname: "minimal".into(),
            }),
            other => other.unsupported(),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: minimal_daemon SOCKET_PATH")?;
    let config = ServerConfig {
        sockets: vec![SocketConfig::read_write(&path)],
        ..ServerConfig::default()
    };
    Server::bind(config, Minimal)?.run()?;
    Ok(())
}
