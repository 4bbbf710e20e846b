//! The one error type that crosses the plugin boundary.

use std::fmt;

use abi_stable::{std_types::RString, StableAbi};

/// An error returned by a plugin. The supervisor converts it to its own error
/// type at the boundary, adding the plugin's name and file.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The plugin does not handle this request (e.g. a request added in a newer
    /// SDK minor version, or a pipeline step it takes no part in).
    Unsupported(RString),
    /// The request was understood but is invalid (bad settings, bad domain data).
    Invalid(RString),
    /// The plugin tried and failed; the message says what failed and why.
    Failed(RString),
    /// The plugin panicked; the message is the panic payload. The supervisor
    /// restarts the plugin instance after this.
    Panicked(RString),
}

impl PluginError {
    /// A [`PluginError::Failed`] from anything printable.
    pub fn failed(msg: impl fmt::Display) -> Self {
        PluginError::Failed(RString::from(msg.to_string()))
    }

    /// A [`PluginError::Invalid`] from anything printable.
    pub fn invalid(msg: impl fmt::Display) -> Self {
        PluginError::Invalid(RString::from(msg.to_string()))
    }

    /// A [`PluginError::Unsupported`] from anything printable.
    pub fn unsupported(msg: impl fmt::Display) -> Self {
        PluginError::Unsupported(RString::from(msg.to_string()))
    }

    /// The message carried by the error.
    pub fn message(&self) -> &str {
        match self {
            PluginError::Unsupported(m)
            | PluginError::Invalid(m)
            | PluginError::Failed(m)
            | PluginError::Panicked(m) => m.as_str(),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Unsupported(m) => write!(f, "unsupported: {m}"),
            PluginError::Invalid(m) => write!(f, "invalid request: {m}"),
            PluginError::Failed(m) => write!(f, "{m}"),
            PluginError::Panicked(m) => write!(f, "plugin panicked: {m}"),
        }
    }
}

impl std::error::Error for PluginError {}
