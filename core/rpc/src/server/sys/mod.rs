//! Peer credentials of a UNIX socket, per operating system.

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use linux::peer_credentials;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod other;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) use other::peer_credentials;

/// Who is on the other end of a UNIX socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// Process id (`-1` where the OS does not say).
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// This process's effective uid.
pub(crate) fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}
