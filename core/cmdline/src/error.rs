//! Errors of the command-line builder.
//!
//! Messages follow libvirt's wording and class prefix (`unsupported
//! configuration:`, `internal error:`) so a user sees the same reason
//! libvirt would give.

/// Everything that can make building a QEMU command line fail.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The configuration is valid XML but this QEMU (or host) cannot run it.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// An inconsistency libvirt reports as an internal error.
    #[error("internal error: {0}")]
    Internal(String),
    /// A requested operation cannot be carried out (libvirt's VIR_ERR_OPERATION_FAILED).
    #[error("operation failed: {0}")]
    OperationFailed(String),
    /// A value in the definition is out of range or malformed.
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    /// The XML names something that does not exist (a pool, a volume, a secret).
    #[error("{0}")]
    NotFound(String),
    /// The host environment refused a request (fd passing, secret lookup).
    #[error("{0}")]
    Host(String),
    /// The definition could not be prepared by the domain model.
    #[error(transparent)]
    Domain(#[from] qvisor_domain::Error),
}

impl Error {
    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(msg.into())
    }
    pub(crate) fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
