//! The plugin object.

use std::path::{Path, PathBuf};

use qvisor_sdk::prelude::*;

/// Storage pools and volumes.
pub struct StoragePlugin {
    host: HostHandle,
}

impl StoragePlugin {
    /// Creates the plugin.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        Ok(StoragePlugin { host })
    }
}

/// Finds `qemu-img` (needed for qcow2 volumes) in the usual places.
pub fn find_qemu_img() -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("qemu-img"))
        .find(|p| Path::new(p).is_file())
}

impl QvisorPlugin for StoragePlugin {
    fn describe(&self) -> Description {
        Description::new(
            "storage",
            PluginKind::Storage,
            env!("CARGO_PKG_VERSION"),
            &["disk-source:volume", "pool-type:dir"],
        )
    }

    fn probe(&self) -> ProbeResult {
        match find_qemu_img() {
            Some(img) => {
                self.host
                    .debug(&format!("probe: qemu-img at {}", img.display()));
                ProbeResult::usable(format!(
                    "dir pools; raw and qcow2 volumes ({})",
                    img.display()
                ))
                .with_detail("qemu-img", img.display().to_string())
            }
            None => ProbeResult::usable("dir pools; raw volumes only (qemu-img not found)"),
        }
    }
}
