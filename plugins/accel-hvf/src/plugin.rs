//! The plugin object.

use qvisor_sdk::prelude::*;

use crate::probe::probe_hvf;
use crate::sys::sysctl_int;

/// The HVF accelerator.
pub struct HvfPlugin {
    host: HostHandle,
}

impl HvfPlugin {
    /// Creates the plugin; it takes no settings.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        Ok(HvfPlugin { host })
    }
}

impl QvisorPlugin for HvfPlugin {
    fn describe(&self) -> Description {
        Description::new(
            "accel-hvf",
            PluginKind::Accelerator,
            env!("CARGO_PKG_VERSION"),
            &["domain-type:hvf", "accel:hvf"],
        )
    }

    fn probe(&self) -> ProbeResult {
        let p = probe_hvf(std::env::consts::OS, sysctl_int);
        self.host.debug(&format!("probe: {}", p.reason));
        if p.usable {
            ProbeResult::usable(p.reason)
        } else {
            ProbeResult::unusable(p.reason)
        }
    }

    fn command_line(&self, _domain: &DomainContext) -> Result<AccelContribution, PluginError> {
        Ok(AccelContribution {
            accel: "hvf".into(),
            accel_props: RVec::new(),
            cpu_modes: ["custom", "host-model", "host-passthrough", "maximum"]
                .into_iter()
                .map(RString::from)
                .collect(),
            default_cpu_model: ROption::RNone,
        })
    }
}
