//! What a confined QEMU may open.
//!
//! Besides the domain's own resources, QEMU needs the system's code and
//! data: the emulator and its libraries, firmware and keymaps under
//! `/usr/share`, `/etc` (dynamic linker cache, QEMU's firmware descriptors,
//! time zone), `/proc` and `/sys` to read, and a few harmless device nodes.
//! Nothing else is writable: not other domains' images, not `/tmp`, not
//! the host's home directories.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use landlock::Access as _;
use landlock::{make_bitflags, AccessFs, BitFlags, ABI};
use qvisor_sdk::{Access, Resource, ResourceKind};

/// One path and the rights granted beneath it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// A file or directory.
    pub path: PathBuf,
    /// The rights.
    pub access: BitFlags<AccessFs>,
}

/// Read-only system trees (code may be executed from them).
const SYSTEM_CODE: &[&str] = &["/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/opt"];

/// Read-only system data.
const SYSTEM_DATA: &[&str] = &["/etc", "/proc", "/sys"];

/// Device nodes any QEMU may read and write.
const HARMLESS_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Terminals: ptys need ioctls.
const TERMINALS: &[&str] = &["/dev/ptmx", "/dev/pts"];

fn read_file() -> BitFlags<AccessFs> {
    make_bitflags!(AccessFs::{ReadFile})
}

fn write_file() -> BitFlags<AccessFs> {
    make_bitflags!(AccessFs::{ReadFile | WriteFile | Truncate})
}

fn is_device(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.file_type().is_block_device() || m.file_type().is_char_device())
        .unwrap_or(false)
}

/// The rights for one resource of the domain.
pub fn resource_access(r: &Resource, abi: ABI) -> BitFlags<AccessFs> {
    let path = Path::new(r.path.as_str());
    let mut access = match (r.kind, r.access) {
        (ResourceKind::Directory, Access::ReadWrite) => AccessFs::from_all(abi),
        (ResourceKind::Directory, Access::ReadOnly) => {
            AccessFs::from_read(abi) & !AccessFs::Execute
        }
        (_, Access::ReadOnly) => read_file(),
        (_, Access::ReadWrite) => write_file(),
    };
    // Block and character devices: QEMU sizes disks and drives /dev/kvm
    // with ioctls.
    if r.kind == ResourceKind::Device || is_device(path) {
        access |= AccessFs::IoctlDev;
    }
    access
}

/// Every rule for a domain with `resources`, run by `emulator`, at `abi`.
/// Paths that do not exist are left out (Landlock needs to open them).
pub fn domain_rules(resources: &[Resource], emulator: &str, abi: ABI) -> Vec<Rule> {
    let mut rules = Vec::new();
    let code = AccessFs::from_read(abi);
    let data = AccessFs::from_read(abi) & !AccessFs::Execute;
    for p in SYSTEM_CODE {
        rules.push(Rule {
            path: p.into(),
            access: code,
        });
    }
    for p in SYSTEM_DATA {
        rules.push(Rule {
            path: p.into(),
            access: data,
        });
    }
    if !emulator.is_empty() {
        rules.push(Rule {
            path: emulator.into(),
            access: make_bitflags!(AccessFs::{ReadFile | Execute}),
        });
    }
    for p in HARMLESS_DEVICES {
        rules.push(Rule {
            path: p.into(),
            access: write_file(),
        });
    }
    for p in TERMINALS {
        rules.push(Rule {
            path: p.into(),
            access: write_file() | AccessFs::IoctlDev | AccessFs::ReadDir,
        });
    }
    for r in resources {
        rules.push(Rule {
            path: r.path.as_str().into(),
            access: resource_access(r, abi),
        });
    }
    rules.retain(|r| r.path.exists());
    // Rights that only apply to directories are refused on a file.
    let file_rights = AccessFs::from_file(abi);
    for r in &mut rules {
        if !r.path.is_dir() {
            r.access &= file_rights;
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str, kind: ResourceKind, access: Access) -> Resource {
        Resource {
            path: path.into(),
            kind,
            access,
            shared: false,
        }
    }

    #[test]
    fn read_only_disks_get_no_write_right() {
        let a = resource_access(
            &res("/i/base.img", ResourceKind::Disk, Access::ReadOnly),
            ABI::V5,
        );
        assert_eq!(a, read_file());
        let a = resource_access(
            &res("/i/top.img", ResourceKind::Disk, Access::ReadWrite),
            ABI::V5,
        );
        assert!(a.contains(AccessFs::WriteFile) && a.contains(AccessFs::Truncate));
    }

    #[test]
    fn devices_get_the_ioctl_right() {
        let a = resource_access(
            &res("/dev/kvm", ResourceKind::Device, Access::ReadWrite),
            ABI::V5,
        );
        assert!(a.contains(AccessFs::IoctlDev));
        // A block device behind a disk too (here /dev/null stands in: a char device).
        let a = resource_access(
            &res("/dev/null", ResourceKind::Disk, Access::ReadOnly),
            ABI::V5,
        );
        assert!(a.contains(AccessFs::IoctlDev));
    }

    #[test]
    fn missing_paths_are_left_out_and_files_get_file_rights_only() {
        let rules = domain_rules(
            &[
                res("/no/such/disk.img", ResourceKind::Disk, Access::ReadWrite),
                res("/etc/hostname", ResourceKind::Other, Access::ReadWrite),
            ],
            "",
            ABI::V5,
        );
        assert!(!rules
            .iter()
            .any(|r| r.path == Path::new("/no/such/disk.img")));
        let host = rules
            .iter()
            .find(|r| r.path == Path::new("/etc/hostname"))
            .unwrap();
        assert_eq!(host.access, write_file());
        let etc = rules.iter().find(|r| r.path == Path::new("/etc")).unwrap();
        assert!(
            etc.access.contains(AccessFs::ReadDir) && !etc.access.contains(AccessFs::WriteFile)
        );
    }
}
