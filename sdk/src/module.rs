//! The root module each plugin library exports, and the plugin object.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr},
    StableAbi,
};

use crate::{HostBox, PluginError, Reply_NE, Request_NE};

/// The name abi_stable uses for the root module (shown in load errors).
pub const ROOT_MODULE_NAME: &str = "qvisor_plugin";

/// A loaded plugin instance, as the supervisor sees it.
///
/// Plugin authors do not implement this directly: they implement
/// [`crate::QvisorPlugin`] and [`crate::export_plugin!`] adapts it, catching panics.
#[sabi_trait]
pub trait Plugin: Send + Sync + Unpin {
    /// Answers one request. Never panics across the boundary.
    fn call(&self, request: Request_NE) -> RResult<Reply_NE, PluginError>;

    /// Runs in the QEMU child between `fork` and `exec`, for a token the plugin
    /// returned from [`crate::Request::Confine`]. Must be async-signal-safe: no
    /// allocation, no locks; only system calls on state prepared in the parent.
    /// Returns 0 on success or an `errno` value.
    #[sabi(last_prefix_field)]
    fn pre_exec(&self, token: u64) -> i32;
}

/// The owned, type-erased plugin object.
pub type PluginBox = Plugin_TO<'static, RBox<()>>;

/// The root module of a plugin library (a prefix type: fields may be appended
/// after the last prefix field in a minor version).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Creates a plugin instance. `settings` is the plugin's entry from the
    /// plugin-set file, as RON text (`()` when it has none).
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(host: HostBox, settings: RStr<'_>) -> RResult<PluginBox, PluginError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = ROOT_MODULE_NAME;
    const NAME: &'static str = ROOT_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
