//! libvirt's remembered labels: before relabelling a file for a domain, its
//! original owner (DAC) or context (SELinux) is stored in
//! `trusted.libvirt.security.<driver>` with a reference count in
//! `trusted.libvirt.security.ref_<driver>` and the host's boot time in
//! `trusted.libvirt.security.timestamp_<driver>`. The first user stores the
//! original; later users only count up; the last one to stop gets the
//! original back and removes the attributes. Attributes written before the
//! last reboot are stale (no domain from then is running) and are ignored.
//!
//! The names and formats are libvirt's, so a host may move between libvirt
//! and qvisor without losing an original owner.

use std::io;
use std::path::Path;
use std::sync::OnceLock;

use crate::xattr;

/// What [`Store::recall`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recall {
    /// The last user stopped: restore this original label.
    Restore(String),
    /// Other running domains still use the file: leave it alone.
    InUse(u32),
    /// Nothing (valid) is remembered, or the file system has no xattrs: the
    /// caller falls back to what it recorded itself.
    NotRemembered,
}

/// The remembered-label store of one security driver (`dac`, `selinux`).
#[derive(Debug, Clone)]
pub struct Store {
    driver: String,
    boot_time: String,
}

/// The host's boot time in seconds since the epoch (`btime` of `/proc/stat`).
/// Read once per process: it cannot change while the host runs, and every
/// label and restore asks for it.
pub fn host_boot_time() -> io::Result<u64> {
    static BOOT_TIME: OnceLock<u64> = OnceLock::new();
    if let Some(t) = BOOT_TIME.get() {
        return Ok(*t);
    }
    let stat = std::fs::read_to_string("/proc/stat")?;
    let t = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no btime in /proc/stat"))?;
    Ok(*BOOT_TIME.get_or_init(|| t))
}

impl Store {
    /// The store of `driver`, stamped with this host's boot time.
    pub fn new(driver: &str) -> io::Result<Store> {
        Ok(Store::with_boot_time(driver, host_boot_time()?))
    }

    /// The store of `driver` with an explicit boot time (tests).
    pub fn with_boot_time(driver: &str, boot_time: u64) -> Store {
        Store {
            driver: driver.to_string(),
            boot_time: boot_time.to_string(),
        }
    }

    fn label_attr(&self) -> String {
        format!("trusted.libvirt.security.{}", self.driver)
    }

    fn ref_attr(&self) -> String {
        format!("trusted.libvirt.security.ref_{}", self.driver)
    }

    fn stamp_attr(&self) -> String {
        format!("trusted.libvirt.security.timestamp_{}", self.driver)
    }

    /// The current valid reference count (0 when absent or stale).
    fn refcount(&self, path: &Path) -> io::Result<u32> {
        let Some(count) = xattr::get_string(path, &self.ref_attr())? else {
            return Ok(0);
        };
        let stamp = xattr::get_string(path, &self.stamp_attr())?;
        if stamp.as_deref() != Some(self.boot_time.as_str()) {
            // Written before the last boot: nobody from then is running.
            return Ok(0);
        }
        count.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed refcount {count} on {}", path.display()),
            )
        })
    }

    /// Remembers `label` as the original of `path` (only if no running
    /// domain remembered one already) and counts one more user. Returns the
    /// new count, or `None` when the file system has no extended attributes.
    pub fn remember(&self, path: &Path, label: &str) -> io::Result<Option<u32>> {
        let count = match self.refcount(path) {
            Ok(c) => c,
            Err(e) if xattr::is_unsupported(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let set = |name: &str, value: &str| match xattr::set(path, name, value.as_bytes()) {
            Err(e) if xattr::is_unsupported(&e) => Ok(false),
            Err(e) => Err(e),
            Ok(()) => Ok(true),
        };
        if count == 0 {
            if !set(&self.label_attr(), label)? {
                return Ok(None);
            }
            set(&self.stamp_attr(), &self.boot_time)?;
        }
        let count = count + 1;
        set(&self.ref_attr(), &count.to_string())?;
        Ok(Some(count))
    }

    /// Counts one user less; when it was the last, returns the original
    /// label and removes every attribute of this driver.
    pub fn recall(&self, path: &Path) -> io::Result<Recall> {
        let count = match self.refcount(path) {
            Ok(c) => c,
            Err(e) if xattr::is_unsupported(&e) => return Ok(Recall::NotRemembered),
            Err(e) => return Err(e),
        };
        if count == 0 {
            self.forget(path)?;
            return Ok(Recall::NotRemembered);
        }
        if count > 1 {
            xattr::set(path, &self.ref_attr(), (count - 1).to_string().as_bytes())?;
            return Ok(Recall::InUse(count - 1));
        }
        let label = xattr::get_string(path, &self.label_attr())?;
        self.forget(path)?;
        Ok(match label {
            Some(l) => Recall::Restore(l),
            None => Recall::NotRemembered,
        })
    }

    /// Removes every attribute of this driver from `path`.
    pub fn forget(&self, path: &Path) -> io::Result<()> {
        for name in [self.ref_attr(), self.label_attr(), self.stamp_attr()] {
            match xattr::remove(path, &name) {
                Err(e) if xattr::is_unsupported(&e) => return Ok(()),
                other => other?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(std::path::PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("qvisor-remember-{tag}-{}", std::process::id()));
        std::fs::write(&p, b"x").unwrap();
        Tmp(p)
    }

    /// trusted.* needs CAP_SYS_ADMIN and a file system that stores it.
    fn trusted_xattrs_work(p: &Path) -> bool {
        match xattr::set(p, "trusted.qvisor.probe", b"1") {
            Ok(()) => {
                let _ = xattr::remove(p, "trusted.qvisor.probe");
                true
            }
            Err(e) => {
                eprintln!("skipping: trusted.* xattrs unavailable here: {e}");
                false
            }
        }
    }

    #[test]
    fn last_user_gets_the_original_back() {
        let f = file("last");
        if !trusted_xattrs_work(&f.0) {
            return;
        }
        let s = Store::with_boot_time("dac", 1000);
        assert_eq!(s.remember(&f.0, "+1:+2").unwrap(), Some(1));
        // A second domain does not overwrite the original.
        assert_eq!(s.remember(&f.0, "+107:+107").unwrap(), Some(2));
        assert_eq!(s.recall(&f.0).unwrap(), Recall::InUse(1));
        assert_eq!(s.recall(&f.0).unwrap(), Recall::Restore("+1:+2".into()));
        assert_eq!(
            xattr::get(&f.0, "trusted.libvirt.security.dac").unwrap(),
            None
        );
        assert_eq!(s.recall(&f.0).unwrap(), Recall::NotRemembered);
    }

    #[test]
    fn attributes_from_before_the_last_boot_are_ignored() {
        let f = file("stale");
        if !trusted_xattrs_work(&f.0) {
            return;
        }
        let old = Store::with_boot_time("dac", 1000);
        old.remember(&f.0, "+5:+5").unwrap();
        old.remember(&f.0, "+5:+5").unwrap();
        let now = Store::with_boot_time("dac", 2000);
        // Counted afresh: the original is whatever the file has now.
        assert_eq!(now.remember(&f.0, "+6:+6").unwrap(), Some(1));
        assert_eq!(now.recall(&f.0).unwrap(), Recall::Restore("+6:+6".into()));
    }

    #[test]
    fn drivers_do_not_share_counts() {
        let f = file("drivers");
        if !trusted_xattrs_work(&f.0) {
            return;
        }
        let dac = Store::with_boot_time("dac", 1);
        let se = Store::with_boot_time("selinux", 1);
        dac.remember(&f.0, "+1:+1").unwrap();
        se.remember(&f.0, "system_u:object_r:virt_image_t:s0")
            .unwrap();
        assert_eq!(
            se.recall(&f.0).unwrap(),
            Recall::Restore("system_u:object_r:virt_image_t:s0".into())
        );
        assert_eq!(dac.recall(&f.0).unwrap(), Recall::Restore("+1:+1".into()));
    }
}
