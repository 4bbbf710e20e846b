//! Who QEMU runs as, prepared in the supervisor and applied in the child.
//!
//! std's `Command::uid`/`gid` cannot be used: they switch identity before our
//! hooks run, and once QEMU's uid is no longer 0 the bounding set can no
//! longer be dropped. So the whole switch happens in one `pre_exec` hook, in
//! this order: drop the bounding set and ambient capabilities (needs
//! `CAP_SETPCAP`, i.e. still root), set the supplementary groups, gid and
//! uid, clear the permitted/effective/inheritable sets, and set
//! `no_new_privs` so no set-uid binary or file capability can give anything
//! back.

use std::ffi::CStr;
use std::io;

use caps::{CapSet, Capability};

/// The identity switch for one QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Target uid.
    pub uid: libc::uid_t,
    /// Target gid.
    pub gid: libc::gid_t,
    /// Supplementary groups of the target user.
    pub groups: Vec<libc::gid_t>,
    /// Whether ids change at all (the supervisor runs as someone else).
    pub switch_ids: bool,
    /// Whether every capability set is emptied.
    pub clear_caps: bool,
    /// Capabilities to drop from the bounding set (empty when the
    /// supervisor may not, i.e. lacks `CAP_SETPCAP`).
    pub bounding: Vec<Capability>,
}

/// Why the identity cannot be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError(pub String);

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The user name and supplementary groups of `uid` from the user database
/// (`getpwuid_r` + `getgrouplist`); a uid without an entry has only `gid`.
pub fn supplementary_groups(uid: libc::uid_t, gid: libc::gid_t) -> Vec<libc::gid_t> {
    let mut pw: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `buf` backs the strings
    // `pw` points into and outlives their use below.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if r != 0 || result.is_null() {
        return vec![gid];
    }
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: `pw.pw_name` is a NUL-terminated name inside `buf`; the
        // groups array holds `count` entries.
        let r = unsafe { libc::getgrouplist(pw.pw_name, gid, groups.as_mut_ptr(), &mut count) };
        if r >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if count <= n || n > 65536 {
            return vec![gid];
        }
        n = count;
    }
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: passwd is a plain C struct of pointers and integers, for
    // which all-zero is a valid (empty) value.
    unsafe { std::mem::zeroed() }
}

/// The name of `uid`, if the user database knows it.
pub fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut pw: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `supplementary_groups`.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if r != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf`.
    Some(
        unsafe { CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

impl Identity {
    /// Plans the switch to `uid`/`gid` from a supervisor running as
    /// `euid`/`egid`. A root QEMU keeps its capabilities unless
    /// `clear_root_caps` (qemu.conf `clear_emulator_capabilities`).
    pub fn plan(
        uid: libc::uid_t,
        gid: libc::gid_t,
        euid: libc::uid_t,
        egid: libc::gid_t,
        clear_root_caps: bool,
        groups: Vec<libc::gid_t>,
        may_drop_bounding: bool,
    ) -> Result<Option<Identity>, IdentityError> {
        let switch_ids = uid != euid || gid != egid;
        if switch_ids && euid != 0 {
            return Err(IdentityError(format!(
                "cannot run QEMU as uid {uid}, gid {gid}: the supervisor runs as uid {euid} and is not privileged"
            )));
        }
        let clear_caps = uid != 0 || clear_root_caps;
        if !switch_ids && !clear_caps {
            return Ok(None);
        }
        let bounding = if clear_caps && may_drop_bounding {
            let mut all: Vec<Capability> =
                caps::runtime::thread_all_supported().into_iter().collect();
            all.sort_by_key(|c| c.index());
            all
        } else {
            Vec::new()
        };
        Ok(Some(Identity {
            uid,
            gid,
            groups: if switch_ids { groups } else { Vec::new() },
            switch_ids,
            clear_caps,
            bounding,
        }))
    }

    /// Applies the switch to the calling (child) process. Returns 0 or an
    /// errno. Async-signal-safe: only system calls on data prepared before
    /// the fork (the caps crate's success paths do not allocate).
    pub fn apply(&self) -> i32 {
        fn errno() -> i32 {
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EPERM)
        }
        if self.clear_caps {
            for cap in &self.bounding {
                if caps::drop(None, CapSet::Bounding, *cap).is_err() {
                    return errno();
                }
            }
            // Ambient capabilities exist since Linux 4.3; EINVAL before.
            let _ = caps::clear(None, CapSet::Ambient);
        }
        if self.switch_ids {
            // SAFETY: `groups` is a valid array of `len` gids.
            if unsafe { libc::setgroups(self.groups.len(), self.groups.as_ptr()) } < 0 {
                return errno();
            }
            // SAFETY: plain system calls with integer arguments.
            if unsafe { libc::setresgid(self.gid, self.gid, self.gid) } < 0 {
                return errno();
            }
            // SAFETY: as above. Leaving uid 0 clears permitted/effective.
            if unsafe { libc::setresuid(self.uid, self.uid, self.uid) } < 0 {
                return errno();
            }
        }
        if self.clear_caps {
            if caps::clear(None, CapSet::Permitted).is_err()
                || caps::clear(None, CapSet::Inheritable).is_err()
            {
                return errno();
            }
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
                return errno();
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unprivileged_supervisor_cannot_switch_users() {
        let e = Identity::plan(107, 107, 1000, 1000, true, vec![], false).unwrap_err();
        assert!(e.0.contains("not privileged"), "{e}");
    }

    #[test]
    fn root_qemu_keeps_capabilities_unless_told() {
        assert_eq!(
            Identity::plan(0, 0, 0, 0, false, vec![], true).unwrap(),
            None
        );
        let id = Identity::plan(0, 0, 0, 0, true, vec![], true)
            .unwrap()
            .unwrap();
        assert!(id.clear_caps && !id.switch_ids);
    }

    #[test]
    fn a_non_root_qemu_always_loses_capabilities() {
        let id = Identity::plan(107, 108, 0, 0, false, vec![108, 5], true)
            .unwrap()
            .unwrap();
        assert!(id.switch_ids && id.clear_caps);
        assert_eq!(id.groups, vec![108, 5]);
        assert!(!id.bounding.is_empty());
    }

    #[test]
    fn the_callers_own_identity_only_clears_capabilities() {
        let id = Identity::plan(1000, 1000, 1000, 1000, true, vec![1], false)
            .unwrap()
            .unwrap();
        assert!(!id.switch_ids);
        assert!(id.bounding.is_empty());
        assert!(id.groups.is_empty());
    }

    #[test]
    fn root_has_a_group_list() {
        assert!(supplementary_groups(0, 0).contains(&0));
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}
