//! Plugins: loading libraries, the plugin set, one actor per plugin, and the
//! supervisor that owns them.

pub mod actor;
pub mod host;
pub mod load;
pub mod set;
pub mod supervisor;

pub use actor::{Call, CallError, PluginActor};
pub use host::TaggedEvent;
pub use load::{load_plugin, LoadError, LoadedPlugin};
pub use set::{load_specs, plugin_dir, PluginSetError, PluginSpec};
pub use supervisor::{
    CallPlugin, ListPlugins, PluginInstance, PluginMailboxes, PluginState, PluginStatus, Supervisor,
};
