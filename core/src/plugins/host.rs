//! The host callback object given to each plugin instance: logging goes to our
//! `tracing` subscriber tagged with the plugin's file, events to the supervisor.

use std::sync::Arc;

use abi_stable::{sabi_trait::TD_Opaque, std_types::RStr};
use crossbeam_channel::Sender;
use qvisor_sdk::{Host, HostBox, Host_TO, LogLevel, PluginEvent};

/// An event a plugin reported, tagged with the plugin it came from.
#[derive(Debug, Clone)]
pub struct TaggedEvent {
    /// The plugin's file name.
    pub plugin: Arc<str>,
    /// The event.
    pub event: PluginEvent,
}

struct PluginHost {
    plugin: Arc<str>,
    events: Option<Sender<TaggedEvent>>,
}

impl Host for PluginHost {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        let plugin = &*self.plugin;
        let target = target.as_str();
        let message = message.as_str();
        match level {
            LogLevel::Error => tracing::error!(plugin, target, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, target, "{message}"),
            LogLevel::Info => tracing::info!(plugin, target, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, target, "{message}"),
            LogLevel::Trace => tracing::trace!(plugin, target, "{message}"),
        }
    }

    fn event(&self, event: PluginEvent) {
        tracing::debug!(
            plugin = &*self.plugin,
            event = event.name.as_str(),
            "plugin event"
        );
        if let Some(tx) = &self.events {
            // The receiver may be gone at shutdown; the event is then moot.
            let _ = tx.send(TaggedEvent {
                plugin: self.plugin.clone(),
                event,
            });
        }
    }
}

/// Builds the host object for one plugin instance.
pub fn host_for(plugin: Arc<str>, events: Option<Sender<TaggedEvent>>) -> HostBox {
    Host_TO::from_value(PluginHost { plugin, events }, TD_Opaque)
}
