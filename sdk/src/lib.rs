//! The stable plugin ABI of qvisor.
//!
//! A qvisor plugin is a dynamic library (`cdylib`) that exports one root module,
//! [`PluginModRef`]. The supervisor loads it with abi_stable, which checks at load
//! time that the plugin was built against a compatible version of this crate and
//! that every type crossing the boundary has the layout the supervisor expects.
//!
//! A plugin author implements the ordinary Rust trait [`QvisorPlugin`] and exports
//! it with [`export_plugin!`]; the macro wraps every call so that a panic inside
//! the plugin becomes a [`PluginError::Panicked`] reply instead of unwinding across
//! `extern "C"` (which would abort the supervisor).
//!
//! Everything that crosses the boundary is an abi_stable type (`RString`, `RVec`,
//! `ROption`, `RResult`, ...). Requests and replies are non-exhaustive enums
//! ([`Request_NE`], [`Reply_NE`]): new variants can be appended in a minor version
//! and an old plugin answers them with [`PluginError::Unsupported`].
//!
//! See `docs/plugin-abi.md` in the repository for the versioning policy and a
//! complete out-of-tree example.
//!
//! ```no_run
//! use qvisor_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl QvisorPlugin for Hello {
//!     fn describe(&self) -> Description {
//!         Description::new("hello", PluginKind::Device, "0.1.0", &["device:hello"])
//!     }
//!     fn probe(&self) -> ProbeResult {
//!         ProbeResult::usable("always")
//!     }
//! }
//!
//! fn new(_host: HostHandle, _settings: &str) -> Result<Hello, PluginError> {
//!     Ok(Hello)
//! }
//!
//! qvisor_sdk::export_plugin!(new);
//! ```

#![deny(missing_docs)]

mod error;
mod export;
mod host;
mod messages;
mod module;
mod storage;

pub use abi_stable;

pub use error::PluginError;
pub use export::{dispatch, HostHandle, QvisorPlugin};

#[doc(hidden)]
pub mod __private {
    pub use crate::export::instantiate;
}
pub use host::{Host, HostBox, Host_TO, LogLevel, PluginEvent};
pub use messages::{
    AccelContribution, Access, Description, DomainContext, LabelRecord, PluginKind, PrepareResult,
    ProbeResult, Reply, Reply_NE, Request, Request_NE, ResolvedSource, Resource, ResourceKind,
    Setting,
};
pub use module::{Plugin, PluginBox, PluginMod, PluginModRef, Plugin_TO, ROOT_MODULE_NAME};
pub use storage::{
    PoolInfo, PoolState, StorageContext, StorageOp, StorageOp_NE, StorageReply, StorageReply_NE,
    StorageRequest, VolumeInfo, VolumeRef, POOL_TYPES,
};

/// The version of this ABI crate, as compiled into the supervisor and each plugin.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a plugin author usually needs.
pub mod prelude {
    pub use crate::{
        AccelContribution, Access, Description, DomainContext, HostHandle, LabelRecord, LogLevel,
        PluginError, PluginEvent, PluginKind, PrepareResult, ProbeResult, QvisorPlugin,
        ResolvedSource, Resource, ResourceKind, Setting,
    };
    pub use crate::{
        PoolInfo, PoolState, StorageContext, StorageOp, StorageReply, StorageRequest, VolumeInfo,
        VolumeRef,
    };
    pub use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};
}
