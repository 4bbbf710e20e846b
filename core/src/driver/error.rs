//! The driver's errors. Each carries what a user needs to fix it, and maps to a
//! libvirt error code so the RPC layer and the CLI print what libvirt would.

use std::path::PathBuf;

/// libvirt's `virErrorNumber` values the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorNumber {
    /// `VIR_ERR_INTERNAL_ERROR`.
    Internal = 1,
    /// `VIR_ERR_NO_SUPPORT`.
    NoSupport = 3,
    /// `VIR_ERR_INVALID_ARG`.
    InvalidArg = 8,
    /// `VIR_ERR_OPERATION_FAILED`.
    OperationFailed = 9,
    /// `VIR_ERR_XML_ERROR`.
    XmlError = 27,
    /// `VIR_ERR_SYSTEM_ERROR`.
    SystemError = 38,
    /// `VIR_ERR_NO_STORAGE_POOL`.
    NoStoragePool = 49,
    /// `VIR_ERR_NO_STORAGE_VOL`.
    NoStorageVol = 50,
    /// `VIR_ERR_NO_DOMAIN`.
    NoDomain = 42,
    /// `VIR_ERR_OPERATION_INVALID`.
    OperationInvalid = 55,
    /// `VIR_ERR_CONFIG_UNSUPPORTED`.
    ConfigUnsupported = 67,
    /// `VIR_ERR_OPERATION_TIMEOUT`.
    OperationTimeout = 68,
    /// `VIR_ERR_ARGUMENT_UNSUPPORTED`.
    ArgumentUnsupported = 74,
}

/// A driver error.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// No domain by that name/uuid/id.
    #[error("Domain not found: {0}")]
    NoDomain(String),
    /// The operation does not apply in the domain's state.
    #[error("Requested operation is not valid: {0}")]
    OperationInvalid(String),
    /// The operation was tried and failed.
    #[error("operation failed: {0}")]
    OperationFailed(String),
    /// The XML is invalid.
    #[error("XML error: {0}")]
    Xml(String),
    /// An error whose message carries no class prefix.
    #[error("{0}")]
    Plain(String),
    /// The configuration asks for something we do not support.
    #[error("unsupported configuration: {0}")]
    ConfigUnsupported(String),
    /// A bad argument.
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    /// Not supported by this driver.
    #[error("this function is not supported by the connection driver: {0}")]
    NoSupport(String),
    /// A timeout.
    #[error("Timed out during operation: {0}")]
    Timeout(String),
    /// QEMU failed to start; carries QEMU's last log lines.
    #[error("internal error: process exited while connecting to monitor: {0}")]
    QemuStart(String),
    /// A file operation failed.
    #[error("cannot {op} '{path}': {source}")]
    Io {
        /// What we tried (`write status file`, `create directory`...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No storage pool by that name or UUID.
    #[error("Storage pool not found: {0}")]
    NoStoragePool(String),
    /// No storage volume by that name, key or path.
    #[error("Storage volume not found: {0}")]
    NoStorageVol(String),
    /// A system call failed; the message says which and on what file.
    #[error("{0}")]
    System(String),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DriverError {
    /// The libvirt error number.
    pub fn number(&self) -> ErrorNumber {
        match self {
            DriverError::NoDomain(_) => ErrorNumber::NoDomain,
            DriverError::OperationInvalid(_) => ErrorNumber::OperationInvalid,
            DriverError::OperationFailed(_) | DriverError::Io { .. } => {
                ErrorNumber::OperationFailed
            }
            DriverError::Xml(_) => ErrorNumber::XmlError,
            DriverError::Plain(_) => ErrorNumber::Internal,
            DriverError::ConfigUnsupported(_) => ErrorNumber::ConfigUnsupported,
            DriverError::InvalidArg(_) => ErrorNumber::InvalidArg,
            DriverError::NoSupport(_) => ErrorNumber::NoSupport,
            DriverError::Timeout(_) => ErrorNumber::OperationTimeout,
            DriverError::NoStoragePool(_) => ErrorNumber::NoStoragePool,
            DriverError::NoStorageVol(_) => ErrorNumber::NoStorageVol,
            DriverError::System(_) => ErrorNumber::SystemError,
            DriverError::QemuStart(_) | DriverError::Internal(_) => ErrorNumber::Internal,
        }
    }

    /// The message without libvirt's per-code prefix (the RPC layer's
    /// `RemoteError` adds the prefix for the code itself).
    pub fn detail(&self) -> String {
        match self {
            DriverError::NoDomain(m)
            | DriverError::OperationInvalid(m)
            | DriverError::OperationFailed(m)
            | DriverError::Xml(m)
            | DriverError::Plain(m)
            | DriverError::ConfigUnsupported(m)
            | DriverError::InvalidArg(m)
            | DriverError::NoSupport(m)
            | DriverError::Timeout(m)
            | DriverError::NoStoragePool(m)
            | DriverError::NoStorageVol(m)
            | DriverError::System(m)
            | DriverError::Internal(m) => m.clone(),
            DriverError::QemuStart(m) => format!("process exited while connecting to monitor: {m}"),
            DriverError::Io { .. } => self.to_string(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DriverError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The error a storage plugin's message stands for. The plugin words its
    /// messages as libvirt does, code prefix included (only text crosses the
    /// ABI); the prefix gives back the code. A message without a known
    /// prefix is a failed system call (`cannot create path '/x': ...`).
    pub fn from_storage_message(message: &str) -> Self {
        type Make = fn(String) -> DriverError;
        const PREFIXES: [(&str, Make); 8] = [
            ("Storage pool not found: ", DriverError::NoStoragePool),
            ("Storage volume not found: ", DriverError::NoStorageVol),
            (
                "Requested operation is not valid: ",
                DriverError::OperationInvalid,
            ),
            ("operation failed: ", DriverError::OperationFailed),
            ("XML error: ", DriverError::Xml),
            (
                "unsupported configuration: ",
                DriverError::ConfigUnsupported,
            ),
            ("invalid argument: ", DriverError::InvalidArg),
            ("internal error: ", DriverError::Internal),
        ];
        PREFIXES
            .iter()
            .find_map(|(prefix, make)| message.strip_prefix(prefix).map(|m| make(m.into())))
            .unwrap_or_else(|| DriverError::System(message.into()))
    }

    /// "no domain with matching name 'x'".
    pub fn no_domain_name(name: &str) -> Self {
        DriverError::NoDomain(format!("no domain with matching name '{name}'"))
    }
}

impl From<qvisor_domain::Error> for DriverError {
    fn from(e: qvisor_domain::Error) -> Self {
        use qvisor_domain::Error as E;
        let full = e.to_string();
        let strip = |prefix: &str| full.strip_prefix(prefix).unwrap_or(&full).to_string();
        match e {
            E::Internal(m) | E::Caps(m) => DriverError::Internal(m),
            E::Unsupported(m) => DriverError::ConfigUnsupported(m),
            E::OperationFailed(m) => DriverError::OperationFailed(m),
            E::Plain(m) => DriverError::Plain(m),
            _ => DriverError::Xml(strip("XML error: ")),
        }
    }
}

/// The driver's result type.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;
