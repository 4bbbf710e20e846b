//! Errors of this crate.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can fail while loading, probing or caching QEMU capabilities.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cache document is not well-formed XML.
    #[error("failed to parse QEMU capabilities cache: {reason}")]
    ParseCacheXml {
        /// Parser message.
        reason: String,
    },
    /// The root element is not `<qemuCaps>`.
    #[error("unexpected root element <{found}> in QEMU capabilities cache, expecting <qemuCaps>")]
    CacheRoot {
        /// Root element found.
        found: String,
    },
    /// A required element or attribute is missing.
    #[error("missing {what} in QEMU capabilities cache")]
    CacheMissing {
        /// What is missing (`version`, `machine name`, ...).
        what: &'static str,
    },
    /// A value does not parse.
    #[error("malformed {what} '{value}' in QEMU capabilities cache")]
    CacheMalformed {
        /// Which value.
        what: &'static str,
        /// The text found.
        value: String,
    },
    /// Reading a file failed.
    #[error("cannot read '{path}': {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
