//! qvisor-conf: the pure configuration parts of the QEMU driver.
//!
//! - [`parser`]: libvirt's configuration-file syntax (`virconf`).
//! - [`qemu`]: [`QemuConf`], every key of libvirt 9.0's `qemu.conf`, typed,
//!   with libvirt's defaults for the system, session and embedded drivers.
//! - [`uri`]: connection URIs ([`ConnectUri`]) and the default-URI rule.
//! - [`paths`]: [`DriverPaths`], the directory trees of the system, session
//!   and embedded drivers, creating them, and the UNIX socket length check.
//! - [`env`](mod@env): the [`Environment`] (uid, home, XDG variables) the above
//!   depend on, as a value so everything is testable.
//!
//! Nothing here starts a process, opens a socket or talks to QEMU.
//!
//! How a driver opens, end to end:
//!
//! ```
//! use qvisor_conf::{ConnectUri, DriverPaths, Environment, QemuConf};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Tests build the environment; a program uses Environment::from_process().
//! let env = Environment {
//!     uid: 1000,
//!     gid: 1000,
//!     home: Some("/home/u".into()),
//!     ..Environment::default()
//! };
//! let uri = ConnectUri::parse("qemu:///embed?root=/srv/vms", env.is_root())?;
//! // Refuses a relative root or one too long for the driver's sockets.
//! let mut paths = DriverPaths::new(&uri.mode, &env)?;
//! assert_eq!(paths.qemu_conf, std::path::Path::new("/srv/vms/etc/qemu.conf"));
//!
//! // In a program: paths.load_qemu_conf()? reads paths.qemu_conf.
//! let loaded = QemuConf::from_str(
//!     "/srv/vms/etc/qemu.conf",
//!     "vnc_listen = \"0.0.0.0\"\nmax_files = 8192\nvnc_tsl = 1\n",
//!     &paths.mode,
//!     paths.privileged,
//! )?;
//! assert_eq!(loaded.conf.vnc_listen, "0.0.0.0");
//! assert_eq!(
//!     loaded.warnings[0].to_string(),
//!     "/srv/vms/etc/qemu.conf:3:1: unknown setting 'vnc_tsl' ignored (did you mean 'vnc_tls'?)"
//! );
//! paths.apply_conf(&loaded.conf);
//! // paths.create_tree()? would now make ROOT/{etc,log,run,cache,lib}/...
//! # Ok(())
//! # }
//! ```

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
