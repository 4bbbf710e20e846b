//! The plugin object.

use std::path::PathBuf;

use qvisor_sdk::prelude::*;

/// The TCG accelerator.
pub struct TcgPlugin {
    host: HostHandle,
}

impl TcgPlugin {
    /// Creates the plugin; it takes no settings.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        Ok(TcgPlugin { host })
    }
}

/// Finds QEMU system emulators (`qemu-system-*`, `qemu-kvm`, `qemu`) in `dirs`.
pub fn find_emulators(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("qemu-system-") || name == "qemu-kvm" || name == "qemu" {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// `/usr/bin` then the `PATH` directories, each once (`/bin` is often a
/// symlink to `/usr/bin`, so directories are compared canonicalized).
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::iter::once(PathBuf::from("/usr/bin")).chain(std::env::split_paths(&path)) {
        let canonical = d.canonicalize().unwrap_or(d);
        if !dirs.contains(&canonical) {
            dirs.push(canonical);
        }
    }
    dirs
}

impl QvisorPlugin for TcgPlugin {
    fn describe(&self) -> Description {
        Description::new(
            "accel-tcg",
            PluginKind::Accelerator,
            env!("CARGO_PKG_VERSION"),
            &["domain-type:qemu", "accel:tcg"],
        )
    }

    fn probe(&self) -> ProbeResult {
        let emulators = find_emulators(&search_dirs());
        self.host.debug(&format!(
            "probe: {} QEMU emulator(s) found",
            emulators.len()
        ));
        match emulators.first() {
            Some(first) => ProbeResult::usable(format!(
                "{} QEMU emulator(s), e.g. {}",
                emulators.len(),
                first.display()
            ))
            .with_detail("emulators", emulators_list(&emulators)),
            None => {
                ProbeResult::unusable("no QEMU emulator (qemu-system-*) found in /usr/bin or PATH")
            }
        }
    }

    fn command_line(&self, _domain: &DomainContext) -> Result<AccelContribution, PluginError> {
        Ok(AccelContribution {
            accel: "tcg".into(),
            accel_props: RVec::new(),
            cpu_modes: ["custom", "maximum"]
                .into_iter()
                .map(RString::from)
                .collect(),
            default_cpu_model: ROption::RNone,
        })
    }
}

fn emulators_list(emulators: &[PathBuf]) -> String {
    emulators
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn finds_only_qemu_system_binaries() {
        let dir = std::env::temp_dir().join(format!("qvisor-tcg-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["qemu-system-x86_64", "qemu-img", "ls"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let found = find_emulators(std::slice::from_ref(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found, vec![dir.join("qemu-system-x86_64")]);
    }

    #[test]
    fn missing_directory_finds_nothing() {
        assert!(find_emulators(&[Path::new("/nonexistent").to_path_buf()]).is_empty());
    }
}
