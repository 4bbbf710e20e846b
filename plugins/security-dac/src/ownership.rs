//! Handing a domain's files to the QEMU user and back (`dynamic_ownership`),
//! and the pre-start check that QEMU can reach them at all.
//!
//! What is restored, as in libvirt: every file QEMU opens read-write, plus
//! kernel, initrd, firmware; the original owner is remembered in xattrs with
//! a reference count (`remember_owner`), so a `<shareable/>` disk used by two
//! running guests goes back to its owner only when the second stops.
//! Read-only disk images are handed over but never taken back (other
//! domains may be reading them; libvirt's rule). Files in the domain's
//! private directory are removed at stop and are not recorded.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use qvisor_security_common::remember::{Recall, Store};

/// How a relabelled file is restored (the `data` of its label record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Recall the owner from the xattrs (`remember`).
    Remembered,
    /// Set this owner back (`owner=+U:+G`): remembering was off or the file
    /// system has no xattrs.
    Owner(u32, u32),
}

impl Restore {
    /// The record text.
    pub fn to_data(&self) -> String {
        match self {
            Restore::Remembered => "remember".to_string(),
            Restore::Owner(u, g) => format!("owner=+{u}:+{g}"),
        }
    }

    /// Parses a record text.
    pub fn from_data(data: &str) -> Option<Restore> {
        if data == "remember" {
            return Some(Restore::Remembered);
        }
        parse_owner(data.strip_prefix("owner=")?).map(|(u, g)| Restore::Owner(u, g))
    }
}

/// Parses libvirt's `+UID:+GID` label.
pub fn parse_owner(label: &str) -> Option<(u32, u32)> {
    let (u, g) = label.split_once(':')?;
    let id = |s: &str| s.trim_start_matches('+').parse::<u32>().ok();
    Some((id(u)?, id(g)?))
}

/// What to do with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Hand over and restore later.
    Restore,
    /// Hand over, never restore (read-only images).
    HandOver,
    /// Hand over without a record (private directory: removed at stop).
    Private,
    /// Leave alone (device nodes).
    Skip,
}

/// Why a relabel failed.
#[derive(Debug)]
pub enum OwnershipError {
    /// The file is in use by another domain running as someone else.
    InUse(PathBuf),
    /// A system call failed.
    Io(&'static str, PathBuf, io::Error),
}

impl std::fmt::Display for OwnershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnershipError::InUse(p) => write!(
                f,
                "Setting different DAC user or group on {} which is already in use",
                p.display()
            ),
            OwnershipError::Io(op, p, e) => write!(f, "unable to {op} '{}': {e}", p.display()),
        }
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is NUL-terminated.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// chown errors libvirt only logs: the file system cannot or may not.
fn chown_is_tolerated(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::EPERM) | Some(libc::EROFS)
    )
}

/// Hands `path` to `uid:gid`. Returns how to restore it, or `None` when
/// nothing needs restoring (policy, missing file, or a tolerated failure,
/// which is reported through `note`).
pub fn hand_over(
    path: &Path,
    uid: u32,
    gid: u32,
    policy: Policy,
    store: Option<&Store>,
    note: &mut dyn FnMut(String),
) -> Result<Option<Restore>, OwnershipError> {
    if policy == Policy::Skip {
        return Ok(None);
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // Created later (by QEMU or the supervisor): nothing to hand over.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OwnershipError::Io("stat", path.to_path_buf(), e)),
    };
    let (old_uid, old_gid) = (meta.uid(), meta.gid());
    let mut restore = match policy {
        Policy::Restore => Some(Restore::Owner(old_uid, old_gid)),
        _ => None,
    };
    if policy == Policy::Restore {
        if let Some(store) = store {
            let label = format!("+{old_uid}:+{old_gid}");
            match store.remember(path, &label) {
                Ok(Some(count)) => {
                    restore = Some(Restore::Remembered);
                    if count > 1 && (old_uid != uid || old_gid != gid) {
                        // Someone else runs with it: undo our count, refuse.
                        let _ = store.recall(path);
                        return Err(OwnershipError::InUse(path.to_path_buf()));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(OwnershipError::Io(
                        "remember the owner of",
                        path.to_path_buf(),
                        e,
                    ))
                }
            }
        }
    }
    if (old_uid, old_gid) != (uid, gid) {
        if let Err(e) = chown(path, uid, gid) {
            if !chown_is_tolerated(&e) {
                if restore == Some(Restore::Remembered) {
                    if let Some(store) = store {
                        let _ = store.recall(path);
                    }
                }
                return Err(OwnershipError::Io(
                    "set user and group on",
                    path.to_path_buf(),
                    e,
                ));
            }
            note(format!(
                "Setting user and group to '{uid}:{gid}' on '{}' not possible: {e}",
                path.display()
            ));
        }
    }
    Ok(restore)
}

/// Gives `path` back according to `restore`. Returns a line to log.
pub fn give_back(path: &Path, restore: &Restore, store: Option<&Store>) -> Result<String, String> {
    let owner = match restore {
        Restore::Owner(u, g) => Some((*u, *g)),
        Restore::Remembered => {
            let Some(store) = store else {
                return Err(format!(
                    "cannot recall the owner of '{}': no boot time",
                    path.display()
                ));
            };
            match store.recall(path) {
                Ok(Recall::Restore(label)) => Some(parse_owner(&label).ok_or_else(|| {
                    format!(
                        "malformed remembered owner '{label}' on '{}'",
                        path.display()
                    )
                })?),
                Ok(Recall::InUse(n)) => {
                    return Ok(format!(
                        "'{}' is still used by {n} other domain(s); owner kept",
                        path.display()
                    ))
                }
                Ok(Recall::NotRemembered) => {
                    return Ok(format!(
                        "no remembered owner on '{}'; left as it is",
                        path.display()
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(format!("'{}' is gone", path.display()))
                }
                Err(e) => {
                    return Err(format!(
                        "cannot recall the owner of '{}': {e}",
                        path.display()
                    ))
                }
            }
        }
    };
    let Some((uid, gid)) = owner else {
        return Ok(String::new());
    };
    match chown(path, uid, gid) {
        Ok(()) => Ok(format!("restored '{}' to {uid}:{gid}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok(format!("'{}' is gone", path.display()))
        }
        Err(e) => Err(format!(
            "unable to restore user and group to '{uid}:{gid}' on '{}': {e}",
            path.display()
        )),
    }
}

/// Checks that `uid`/`gid`/`groups` may search every directory above
/// `path` (what `open` needs). The error names the first directory that
/// blocks and the usual fix.
pub fn check_searchable(path: &Path, uid: u32, gid: u32, groups: &[u32]) -> Result<(), String> {
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs {
        let Ok(meta) = std::fs::metadata(dir) else {
            // A missing directory is QEMU's (or the user's) error to report.
            return Ok(());
        };
        let mode = meta.mode();
        let bit = if meta.uid() == uid {
            libc::S_IXUSR
        } else if meta.gid() == gid || groups.contains(&meta.gid()) {
            libc::S_IXGRP
        } else {
            libc::S_IXOTH
        };
        if mode & bit == 0 {
            return Err(format!(
                "cannot access '{}' as uid {uid}, gid {gid}: directory '{}' is not searchable by that user (mode {:04o}, owner {}:{}); fix it with 'chmod o+x {}'",
                path.display(),
                dir.display(),
                mode & 0o7777,
                meta.uid(),
                meta.gid(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Checks that `uid`/`gid`/`groups` may open the device node `path` (which
/// DAC never hands over: `/dev/kvm` and the like stay the system's). The
/// error names the group to join.
pub fn check_device_access(
    path: &Path,
    write: bool,
    uid: u32,
    gid: u32,
    groups: &[u32],
) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.mode();
    let (r, w) = if meta.uid() == uid {
        (libc::S_IRUSR, libc::S_IWUSR)
    } else if meta.gid() == gid || groups.contains(&meta.gid()) {
        (libc::S_IRGRP, libc::S_IWGRP)
    } else {
        (libc::S_IROTH, libc::S_IWOTH)
    };
    if mode & r != 0 && (!write || mode & w != 0) {
        return Ok(());
    }
    let group = group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string());
    Err(format!(
        "QEMU (uid {uid}, gid {gid}) cannot open '{}' {} (mode {:04o}, owner {}:{}); add the QEMU user to group '{group}' or set qemu.conf 'group' to it",
        path.display(),
        if write { "read-write" } else { "read-only" },
        mode & 0o7777,
        meta.uid(),
        meta.gid(),
    ))
}

/// The name of group `gid`, if the group database knows it.
fn group_name(gid: u32) -> Option<String> {
    // SAFETY: group is a plain C struct; all-zero is a valid empty value.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `buf` backs the strings.
    let r = unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut result) };
    if r != 0 || result.is_null() {
        return None;
    }
    // SAFETY: gr_name is a NUL-terminated string inside `buf`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(gr.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("qvisor-dac-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }

    fn root() -> bool {
        // SAFETY: geteuid cannot fail.
        let r = unsafe { libc::geteuid() } == 0;
        if !r {
            eprintln!("skipping: chown needs root");
        }
        r
    }

    #[test]
    fn owner_records_round_trip() {
        for r in [Restore::Remembered, Restore::Owner(107, 36)] {
            assert_eq!(Restore::from_data(&r.to_data()), Some(r));
        }
        assert_eq!(Restore::from_data("owner=x"), None);
        assert_eq!(parse_owner("+0:+0"), Some((0, 0)));
    }

    #[test]
    fn a_closed_directory_is_named_with_the_fix() {
        let t = tmp("search");
        let closed = t.0.join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = closed.join("disk.img");
        let e = check_searchable(&file, 64000, 64000, &[]).unwrap_err();
        assert!(
            e.contains(&format!("directory '{}'", closed.display())),
            "{e}"
        );
        assert!(
            e.contains(&format!("chmod o+x {}", closed.display())),
            "{e}"
        );
        // The owner of the directory may pass.
        let meta = std::fs::metadata(&closed).unwrap();
        assert!(check_searchable(&file, meta.uid(), meta.gid(), &[]).is_ok());
    }

    #[test]
    fn a_device_the_user_cannot_open_names_its_group() {
        // /dev/null is world read-write; /dev/mem is root's alone.
        assert!(check_device_access(Path::new("/dev/null"), true, 64000, 64000, &[]).is_ok());
        if Path::new("/dev/mem").exists() {
            let e =
                check_device_access(Path::new("/dev/mem"), true, 64000, 64000, &[]).unwrap_err();
            assert!(
                e.contains("'/dev/mem' read-write") && e.contains("add the QEMU user to group"),
                "{e}"
            );
        }
    }

    #[test]
    fn hand_over_and_give_back_without_xattrs_uses_the_record() {
        if !root() {
            return;
        }
        let t = tmp("owner");
        let f = t.0.join("disk.img");
        std::fs::write(&f, b"x").unwrap();
        chown(&f, 1234, 4321).unwrap();
        let r = hand_over(&f, 999, 995, Policy::Restore, None, &mut |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(r, Restore::Owner(1234, 4321));
        assert_eq!(std::fs::metadata(&f).unwrap().uid(), 999);
        give_back(&f, &r, None).unwrap();
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 4321));
    }

    #[test]
    fn read_only_images_are_handed_over_for_good() {
        if !root() {
            return;
        }
        let t = tmp("ro");
        let f = t.0.join("base.img");
        std::fs::write(&f, b"x").unwrap();
        let r = hand_over(&f, 999, 995, Policy::HandOver, None, &mut |_| {}).unwrap();
        assert_eq!(r, None);
        assert_eq!(std::fs::metadata(&f).unwrap().uid(), 999);
    }

    #[test]
    fn a_second_user_with_another_uid_is_refused() {
        if !root() {
            return;
        }
        let t = tmp("inuse");
        let f = t.0.join("shared.img");
        std::fs::write(&f, b"x").unwrap();
        let store = Store::with_boot_time("dac", 42);
        if store.remember(&f, "+0:+0").is_err() {
            eprintln!("skipping: no trusted xattrs here");
            return;
        }
        store.forget(&f).unwrap();
        let first = hand_over(&f, 999, 995, Policy::Restore, Some(&store), &mut |_| {}).unwrap();
        assert_eq!(first, Some(Restore::Remembered));
        let e = hand_over(&f, 1000, 1000, Policy::Restore, Some(&store), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        // The refused attempt did not count: one give-back restores.
        give_back(&f, &Restore::Remembered, Some(&store)).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().uid(), 0);
    }
}
