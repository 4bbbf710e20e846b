//! Errors of the QMP client.

use std::path::PathBuf;
use std::time::Duration;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can fail while talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting to the monitor socket failed.
    #[error("failed to connect to monitor socket '{path}': {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a command failed.
    #[error("failed to send QMP command '{command}': {source}")]
    Send {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No greeting arrived, or it was not a QMP greeting.
    #[error("QEMU monitor did not send a QMP greeting: {reason}")]
    Greeting {
        /// What went wrong.
        reason: String,
    },
    /// No reply arrived in time.
    #[error("timed out after {after:?} waiting for a reply to QMP command '{command}'")]
    Timeout {
        /// The command.
        command: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The monitor connection closed (QEMU exited or the socket broke).
    #[error("QEMU monitor closed while waiting for a reply to '{command}'")]
    Closed {
        /// The command.
        command: String,
    },
    /// A reply was neither `return` nor `error`.
    #[error("malformed reply to QMP command '{command}': {reply}")]
    Protocol {
        /// The command.
        command: String,
        /// The reply text.
        reply: String,
    },
    /// QEMU answered with an error (`{"error": {"class": ..., "desc": ...}}`).
    #[error("QEMU error for '{command}': {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QMP error class (`GenericError`, `CommandNotFound`,
        /// `DeviceNotFound`, ...).
        class: String,
        /// Human-readable description.
        desc: String,
    },
}

impl Error {
    /// The QMP error class when QEMU answered with an error.
    pub fn qmp_class(&self) -> Option<&str> {
        match self {
            Error::Command { class, .. } => Some(class),
            _ => None,
        }
    }
}
