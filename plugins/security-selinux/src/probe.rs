//! Is SELinux enabled? As libselinux decides it: `selinuxfs` must be mounted
//! (normally at `/sys/fs/selinux`) and a policy loaded.

use std::path::Path;

/// Why SELinux is or is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelinuxState {
    /// Whether labels can be applied.
    pub enabled: bool,
    /// One line.
    pub reason: String,
}

/// Decides from the contents of `/proc/mounts` and the selinuxfs root.
pub fn selinux_state(proc_mounts: &str, fs_root: &Path) -> SelinuxState {
    let mount = proc_mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "selinuxfs").then(|| dir.to_string())
        })
        .next();
    let Some(dir) = mount else {
        return SelinuxState {
            enabled: false,
            reason: "SELinux is not enabled on this host (no selinuxfs mounted)".to_string(),
        };
    };
    let enforce = fs_root.join(dir.trim_start_matches('/')).join("enforce");
    match std::fs::read_to_string(&enforce) {
        Ok(v) => {
            let mode = if v.trim() == "1" {
                "enforcing"
            } else {
                "permissive"
            };
            SelinuxState {
                enabled: true,
                reason: format!("SELinux enabled ({mode}), selinuxfs at {dir}"),
            }
        }
        Err(e) => SelinuxState {
            enabled: false,
            reason: format!(
                "selinuxfs mounted at {dir} but {} is unreadable: {e}",
                enforce.display()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_selinuxfs_means_disabled() {
        let s = selinux_state("proc /proc proc rw 0 0\n", Path::new("/"));
        assert!(!s.enabled);
        assert!(s.reason.contains("no selinuxfs"));
    }

    #[test]
    fn mounted_selinuxfs_with_enforce_file_is_enabled() {
        let root = std::env::temp_dir().join(format!("qvisor-selinux-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sys/fs/selinux")).unwrap();
        std::fs::write(root.join("sys/fs/selinux/enforce"), "1\n").unwrap();
        let s = selinux_state("selinuxfs /sys/fs/selinux selinuxfs rw 0 0\n", &root);
        std::fs::remove_dir_all(&root).unwrap();
        assert!(s.enabled, "{s:?}");
        assert!(s.reason.contains("enforcing"));
    }
}
