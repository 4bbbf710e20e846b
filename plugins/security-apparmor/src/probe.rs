//! Is AppArmor enabled? libapparmor's `aa_is_enabled()` decides, with the
//! file-system view (module parameter and securityfs) as the reason.

use std::path::Path;

/// Why AppArmor is or is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppArmorState {
    /// Whether profiles can be loaded and enforced.
    pub enabled: bool,
    /// One line.
    pub reason: String,
}

/// This host, as libapparmor sees it.
pub fn host_state() -> AppArmorState {
    match qvisor_apparmor_sys::is_enabled() {
        Ok(()) => AppArmorState {
            enabled: true,
            reason: "AppArmor enabled".to_string(),
        },
        Err(e) => {
            let fs = apparmor_state(Path::new("/"));
            AppArmorState {
                enabled: false,
                reason: if fs.enabled {
                    format!("AppArmor is not usable: {e}")
                } else {
                    fs.reason
                },
            }
        }
    }
}

/// Decides from the file system under `root` (normally `/`).
pub fn apparmor_state(root: &Path) -> AppArmorState {
    let param = root.join("sys/module/apparmor/parameters/enabled");
    match std::fs::read_to_string(&param) {
        Err(_) => AppArmorState {
            enabled: false,
            reason: "AppArmor is not enabled in the kernel (no apparmor module)".to_string(),
        },
        Ok(v) if v.trim() != "Y" => AppArmorState {
            enabled: false,
            reason: format!("AppArmor is disabled ({} = {})", param.display(), v.trim()),
        },
        Ok(_) => {
            let fs = root.join("sys/kernel/security/apparmor");
            if fs.is_dir() {
                AppArmorState {
                    enabled: true,
                    reason: "AppArmor enabled".to_string(),
                }
            } else {
                AppArmorState {
                    enabled: false,
                    reason: format!("AppArmor enabled but {} is not mounted", fs.display()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(enabled: Option<&str>, securityfs: bool) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "qvisor-aa-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        if let Some(v) = enabled {
            std::fs::create_dir_all(root.join("sys/module/apparmor/parameters")).unwrap();
            std::fs::write(root.join("sys/module/apparmor/parameters/enabled"), v).unwrap();
        }
        if securityfs {
            std::fs::create_dir_all(root.join("sys/kernel/security/apparmor")).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn no_module_means_disabled() {
        let root = tree(None, false);
        let s = apparmor_state(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert!(!s.enabled);
        assert!(s.reason.contains("not enabled in the kernel"));
    }

    #[test]
    fn module_disabled_is_reported() {
        let root = tree(Some("N\n"), true);
        let s = apparmor_state(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert!(!s.enabled);
    }

    #[test]
    fn module_enabled_with_securityfs_is_enabled() {
        let root = tree(Some("Y\n"), true);
        let s = apparmor_state(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert!(s.enabled, "{s:?}");
    }

    #[test]
    fn the_host_answer_has_a_reason() {
        assert!(!host_state().reason.is_empty());
    }
}
