//! The plugin object: describes itself, probes the host and contributes
//! `-accel kvm` to a domain's command line.

use std::path::Path;

use qvisor_sdk::prelude::*;

use crate::probe::{check_kvm, find_kvm_emulator, KvmState};

/// The KVM accelerator.
pub struct KvmPlugin {
    host: HostHandle,
}

impl KvmPlugin {
    /// Creates the plugin; it takes no settings.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        Ok(KvmPlugin { host })
    }
}

const KVM_DEVICE: &str = "/dev/kvm";

impl QvisorPlugin for KvmPlugin {
    fn describe(&self) -> Description {
        Description::new(
            "accel-kvm",
            PluginKind::Accelerator,
            env!("CARGO_PKG_VERSION"),
            &["domain-type:kvm", "accel:kvm"],
        )
    }

    fn probe(&self) -> ProbeResult {
        let dev = Path::new(KVM_DEVICE);
        let state = check_kvm(dev);
        let reason = state.reason(dev);
        self.host.debug(&format!("probe: {reason}"));
        if state != KvmState::Usable {
            return ProbeResult::unusable(reason);
        }
        let dirs = [Path::new("/usr/bin"), Path::new("/usr/local/bin")];
        match find_kvm_emulator(&dirs, std::env::consts::ARCH) {
            Some(emu) => {
                ProbeResult::usable(reason).with_detail("emulator", emu.display().to_string())
            }
            None => ProbeResult::unusable(format!(
                "{reason}, but no qemu-kvm or qemu-system-{} found",
                std::env::consts::ARCH
            )),
        }
    }

    fn command_line(&self, _domain: &DomainContext) -> Result<AccelContribution, PluginError> {
        Ok(AccelContribution {
            accel: "kvm".into(),
            accel_props: RVec::new(),
            cpu_modes: ["custom", "host-model", "host-passthrough", "maximum"]
                .into_iter()
                .map(RString::from)
                .collect(),
            default_cpu_model: ROption::RNone,
        })
    }
}
