//! `SO_PEERCRED`.

use std::io;
use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::Credentials;

/// The credentials the kernel recorded when the peer connected.
pub(crate) fn peer_credentials(stream: &UnixStream) -> io::Result<Credentials> {
    let c = getsockopt(stream, PeerCredentials)?;
    Ok(Credentials {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}
