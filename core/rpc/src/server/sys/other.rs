//! `getpeereid(3)` on the BSDs and macOS (no pid).

use std::io;
use std::os::unix::net::UnixStream;

use super::Credentials;

/// The peer's effective uid and gid.
pub(crate) fn peer_credentials(stream: &UnixStream) -> io::Result<Credentials> {
    let (uid, gid) = nix::unistd::getpeereid(stream)?;
    Ok(Credentials {
        pid: -1,
        uid: uid.as_raw(),
        gid: gid.as_raw(),
    })
}
