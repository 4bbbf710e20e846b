//! Is KVM usable here? `/dev/kvm` must open read-write and answer
//! `KVM_GET_API_VERSION` with 12, the only stable API version.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `KVM_GET_API_VERSION` = `_IO(KVMIO, 0x00)` with `KVMIO` = 0xAE.
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;

/// The KVM API version every usable kernel reports.
pub const KVM_API_VERSION: i32 = 12;

/// Why KVM is or is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmState {
    /// `/dev/kvm` opened and reported API version 12.
    Usable,
    /// The device could not be opened.
    CannotOpen(String),
    /// The ioctl failed.
    IoctlFailed(String),
    /// The kernel reports another API version.
    WrongApiVersion(i32),
}

impl KvmState {
    /// One line for `qvisor plugins`.
    pub fn reason(&self, dev: &Path) -> String {
        match self {
            KvmState::Usable => format!("{}: KVM API version {KVM_API_VERSION}", dev.display()),
            KvmState::CannotOpen(e) => format!("{}: {e}", dev.display()),
            KvmState::IoctlFailed(e) => {
                format!("{}: KVM_GET_API_VERSION failed: {e}", dev.display())
            }
            KvmState::WrongApiVersion(v) => format!(
                "{}: KVM API version {v}, expected {KVM_API_VERSION}",
                dev.display()
            ),
        }
    }
}

/// Checks the KVM device at `dev` (normally `/dev/kvm`).
pub fn check_kvm(dev: &Path) -> KvmState {
    let file = match OpenOptions::new().read(true).write(true).open(dev) {
        Ok(f) => f,
        Err(e) => return KvmState::CannotOpen(e.to_string()),
    };
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an int;
    // the descriptor is valid for the lifetime of `file`.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    if ret < 0 {
        return KvmState::IoctlFailed(io::Error::last_os_error().to_string());
    }
    if ret != KVM_API_VERSION {
        return KvmState::WrongApiVersion(ret);
    }
    KvmState::Usable
}

/// The first QEMU binary in `dirs` that can run KVM guests for the host
/// architecture (`qemu-kvm` or `qemu-system-<arch>`).
pub fn find_kvm_emulator(dirs: &[&Path], arch: &str) -> Option<std::path::PathBuf> {
    let names = ["qemu-kvm".to_string(), format!("qemu-system-{arch}")];
    dirs.iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_reported_with_its_path() {
        let dev = Path::new("/nonexistent/kvm");
        let state = check_kvm(dev);
        assert!(matches!(state, KvmState::CannotOpen(_)));
        assert!(state.reason(dev).starts_with("/nonexistent/kvm: "));
    }

    #[test]
    fn a_regular_file_is_not_kvm() {
        let state = check_kvm(Path::new("/proc/self/status"));
        assert!(
            matches!(state, KvmState::IoctlFailed(_) | KvmState::CannotOpen(_)),
            "{state:?}"
        );
    }

    #[test]
    fn emulator_lookup_prefers_qemu_kvm_then_arch_binary() {
        let dir = std::env::temp_dir().join(format!("qvisor-kvm-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("qemu-system-x86_64"), b"").unwrap();
        assert_eq!(
            find_kvm_emulator(&[&dir], "x86_64"),
            Some(dir.join("qemu-system-x86_64"))
        );
        std::fs::write(dir.join("qemu-kvm"), b"").unwrap();
        assert_eq!(
            find_kvm_emulator(&[&dir], "x86_64"),
            Some(dir.join("qemu-kvm"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
