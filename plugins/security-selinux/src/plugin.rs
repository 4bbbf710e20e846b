//! The plugin object.

use std::path::Path;

use qvisor_sdk::prelude::*;

use crate::probe::selinux_state;

/// SELinux sVirt.
pub struct SelinuxPlugin {
    host: HostHandle,
}

impl SelinuxPlugin {
    /// Creates the plugin.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        Ok(SelinuxPlugin { host })
    }
}

impl QvisorPlugin for SelinuxPlugin {
    fn describe(&self) -> Description {
        Description::new(
            "security-selinux",
            PluginKind::Security,
            env!("CARGO_PKG_VERSION"),
            &["security-model:selinux"],
        )
    }

    fn probe(&self) -> ProbeResult {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let s = selinux_state(&mounts, Path::new("/"));
        self.host.debug(&format!("probe: {}", s.reason));
        if s.enabled {
            ProbeResult::usable(s.reason)
        } else {
            ProbeResult::unusable(s.reason)
        }
    }
}
