//! The plugin object.

use std::path::Path;

use qvisor_sdk::prelude::*;

use crate::probe::apparmor_state;

/// AppArmor sVirt.
pub struct AppArmorPlugin {
    host: HostHandle,
}

impl AppArmorPlugin {
    /// Creates the plugin.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        Ok(AppArmorPlugin { host })
    }
}

impl QvisorPlugin for AppArmorPlugin {
    fn describe(&self) -> Description {
        Description::new(
            "security-apparmor",
            PluginKind::Security,
            env!("CARGO_PKG_VERSION"),
            &["security-model:apparmor"],
        )
    }

    fn probe(&self) -> ProbeResult {
        let s = apparmor_state(Path::new("/"));
        self.host.debug(&format!("probe: {}", s.reason));
        if s.enabled {
            ProbeResult::usable(s.reason)
        } else {
            ProbeResult::unusable(s.reason)
        }
    }
}
