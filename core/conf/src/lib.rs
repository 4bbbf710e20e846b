//! qvisor-conf: the pure configuration parts of the QEMU driver.
//!
//! - [`parser`]: libvirt's configuration-file syntax (`virconf`).
//! - [`qemu`]: [`QemuConf`], every key of libvirt 9.0's `qemu.conf`, typed,
//!   with libvirt's defaults for the system, session and embedded drivers.
//! - [`uri`]: connection URIs ([`ConnectUri`]) and the default-URI rule.
//! - [`paths`]: [`DriverPaths`], the directory trees of the system, session
//!   and embedded drivers, creating them, and the UNIX socket length check.
//! - [`env`]: the [`Environment`] (uid, home, XDG variables) the above
//!   depend on, as a value so everything is testable.
//!
//! Nothing here starts a process, opens a socket or talks to QEMU.

use std::path::PathBuf;

pub mod env;
pub mod parser;
pub mod paths;
pub mod qemu;
pub mod uri;

pub use env::Environment;
pub use paths::DriverPaths;
pub use qemu::QemuConf;
pub use uri::ConnectUri;

/// Which driver instance a configuration belongs to, as libvirt's QEMU
/// driver distinguishes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `qemu:///system`: the privileged, system-wide driver.
    System,
    /// `qemu:///session`: the per-user driver.
    Session,
    /// `qemu:///embed?root=DIR`: a driver whose whole state lives under
    /// `root` (an absolute path).
    Embed {
        /// The embedded root directory.
        root: PathBuf,
    },
}

/// libvirt's error codes (`virErrorNumber`) for the errors of this crate, so
/// a front end can report them over libvirt's RPC with the right code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `VIR_ERR_INTERNAL_ERROR` (1), "internal error".
    Internal,
    /// `VIR_ERR_NO_CONNECT` (5), "no connection driver available".
    NoConnect,
    /// `VIR_ERR_INVALID_ARG` (8), "invalid argument".
    InvalidArg,
    /// `VIR_ERR_CONF_SYNTAX` (33), "configuration file syntax error".
    ConfSyntax,
    /// `VIR_ERR_SYSTEM_ERROR` (38), "system call error"-style failures.
    SystemError,
    /// `VIR_ERR_CONFIG_UNSUPPORTED` (67), "unsupported configuration".
    ConfigUnsupported,
}

impl ErrorCode {
    /// The numeric `virErrorNumber`.
    pub fn number(self) -> i32 {
        match self {
            ErrorCode::Internal => 1,
            ErrorCode::NoConnect => 5,
            ErrorCode::InvalidArg => 8,
            ErrorCode::ConfSyntax => 33,
            ErrorCode::SystemError => 38,
            ErrorCode::ConfigUnsupported => 67,
        }
    }

    /// The prefix libvirt puts before the message (`internal error`).
    pub fn prefix(self) -> &'static str {
        match self {
            ErrorCode::Internal => "internal error",
            ErrorCode::NoConnect => "no connection driver available for",
            ErrorCode::InvalidArg => "invalid argument",
            ErrorCode::ConfSyntax => "configuration file syntax error",
            ErrorCode::SystemError => "system error",
            ErrorCode::ConfigUnsupported => "unsupported configuration",
        }
    }
}
