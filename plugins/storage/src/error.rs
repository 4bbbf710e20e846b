//! The storage plugin's errors, worded as libvirt words them (its error-code
//! prefix included: the message crosses the ABI as text).

use std::io;
use std::path::PathBuf;

use qvisor_sdk::PluginError;

/// What went wrong in a storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No pool by that name or UUID.
    #[error("Storage pool not found: no storage pool with matching name '{0}'")]
    NoPool(String),
    /// No volume by that name in the pool.
    #[error(
        "Storage volume not found: no storage vol with matching name '{name}' in pool '{pool}'"
    )]
    NoVolume {
        /// The pool.
        pool: String,
        /// The volume name.
        name: String,
    },
    /// No volume with that key or path in any active pool.
    #[error("Storage volume not found: no storage vol with matching path '{0}'")]
    NoVolumePath(String),
    /// The volume was found, but in another pool than the one named.
    #[error("Requested volume '{name}' is not in pool '{pool}'")]
    VolumeInOtherPool {
        /// The volume as named.
        name: String,
        /// The pool named.
        pool: String,
    },
    /// The pool must be running for this.
    #[error("Requested operation is not valid: storage pool '{0}' is not active")]
    PoolNotActive(String),
    /// The pool is running already.
    #[error("Requested operation is not valid: storage pool '{0}' is already active")]
    PoolAlreadyActive(String),
    /// The pool must be stopped for this.
    #[error("Requested operation is not valid: storage pool '{0}' is still active")]
    PoolStillActive(String),
    /// A volume of that name exists.
    #[error("storage volume '{0}' exists already")]
    VolumeExists(String),
    /// Bad XML (syntax or content).
    #[error("XML error: {0}")]
    Xml(String),
    /// A valid request this plugin does not support.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// A bad argument.
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    /// An operation that conflicts with the state of things.
    #[error("operation failed: {0}")]
    OperationFailed(String),
    /// A file operation failed.
    #[error("{action} '{path}': {source}")]
    Io {
        /// libvirt's wording of the action (`cannot create path`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `qemu-img` failed.
    #[error("internal error: {what}: qemu-img failed: {detail}")]
    QemuImg {
        /// What we were doing (`creating volume 'x'`).
        what: String,
        /// qemu-img's message, or why it could not run.
        detail: String,
    },
    /// A backing file is missing or unreadable.
    #[error("Cannot access backing file '{backing}' of storage file '{image}' (as uid:{uid}, gid:{gid}): {source}")]
    BrokenChain {
        /// The backing file as resolved.
        backing: PathBuf,
        /// The image that names it.
        image: PathBuf,
        /// Our uid.
        uid: u32,
        /// Our gid.
        gid: u32,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A backing chain refers back to one of its own images.
    #[error("internal error: backing store for '{image}' is self-referential: its chain reaches '{repeated}' again")]
    ChainLoop {
        /// The image whose chain loops.
        image: PathBuf,
        /// The image met twice.
        repeated: PathBuf,
    },
    /// A backing chain deeper than we follow.
    #[error("unsupported configuration: backing chains more than {max} layers deep are not supported for '{image}'")]
    ChainTooDeep {
        /// The top image.
        image: PathBuf,
        /// The limit.
        max: usize,
    },
    /// A backing image whose format must be probed but may not be.
    #[error("Requested operation is not valid: format of backing image '{backing}' of image '{image}' was not specified in the image metadata (See https://libvirt.org/kbase/backing_chains.html for troubleshooting)")]
    UnspecifiedBackingFormat {
        /// The backing image.
        backing: PathBuf,
        /// The image naming it.
        image: PathBuf,
    },
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The plugin's result type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// An I/O error with libvirt's wording of the action.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<StorageError> for PluginError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Xml(_) | StorageError::InvalidArg(_) => PluginError::invalid(e),
            _ => PluginError::failed(e),
        }
    }
}
