//! The host callback object each plugin receives when it is created.
//!
//! Each `cdylib` has its own copy of every static (a `log`/`tracing` logger
//! included), so a plugin logs and reports events through this object, never
//! through a global.

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RStr, RString, RVec},
    StableAbi,
};

use crate::Setting;

/// Log levels, with the meaning Cloud Hypervisor gives them.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// A user's action could not be carried out.
    Error,
    /// Abnormal, no real harm.
    Warn,
    /// Rare state changes.
    Info,
    /// For developers.
    Debug,
    /// Very verbose, for developers.
    Trace,
}

/// Something a plugin wants the supervisor to know, outside a request/reply.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginEvent {
    /// Event name, e.g. `probe-changed`.
    pub name: RString,
    /// The domain it concerns, or empty.
    pub domain: RString,
    /// Event data.
    pub data: RVec<Setting>,
}

/// Callbacks from a plugin into the supervisor.
#[sabi_trait]
pub trait Host: Send + Sync + Unpin {
    /// Logs a message on behalf of the plugin. `target` is usually the plugin name.
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>);

    /// Reports an event.
    #[sabi(last_prefix_field)]
    fn event(&self, event: PluginEvent);
}

/// The owned, type-erased host object handed to plugins.
pub type HostBox = Host_TO<'static, RBox<()>>;
