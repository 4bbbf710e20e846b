//! Raw bindings to the few libapparmor functions qvisor needs, plus safe
//! wrappers. The declarations follow `<sys/apparmor.h>` of libapparmor 3.x
//! (Debian 12: `libapparmor1`/`libapparmor-dev` 3.0.8).
//!
//! ```no_run
//! if qvisor_apparmor_sys::is_enabled().is_ok() {
//!     // profile switch at the next exec
//!     qvisor_apparmor_sys::change_onexec(c"libvirt-00000000-0000-0000-0000-000000000000").unwrap();
//! }
//! ```

use std::ffi::{CStr, CString};
use std::io;
use std::os::raw::{c_char, c_int};

/// The raw C functions.
pub mod ffi {
    use std::os::raw::{c_char, c_int};

    extern "C" {
        /// `int aa_is_enabled(void)`: 1 when AppArmor is enabled, else 0 with
        /// errno saying why (ENOSYS: not in the kernel; ECANCELED: disabled
        /// at boot; ENOENT: securityfs not mounted; EPERM/EACCES).
        pub fn aa_is_enabled() -> c_int;
        /// `int aa_change_onexec(const char *profile)`: confine the next
        /// exec of this task with `profile`.
        pub fn aa_change_onexec(profile: *const c_char) -> c_int;
        /// `int aa_change_profile(const char *profile)`: switch now.
        pub fn aa_change_profile(profile: *const c_char) -> c_int;
        /// `int aa_getcon(char **label, char **mode)`: this task's label;
        /// `*label` must be freed with `free`, `mode` points into it.
        pub fn aa_getcon(label: *mut *mut c_char, mode: *mut *mut c_char) -> c_int;
    }
}

/// Whether AppArmor is enabled; the error (errno) says why not.
pub fn is_enabled() -> io::Result<()> {
    // SAFETY: no arguments; sets errno on failure.
    if unsafe { ffi::aa_is_enabled() } == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for `profile` to confine this task from its next `exec` on.
///
/// Only makes system calls on memory prepared by the caller, so it may run
/// in a forked child when `profile` was built before the fork (libapparmor
/// formats the command into a heap buffer; glibc's malloc is usable after
/// `fork`).
pub fn change_onexec(profile: &CStr) -> io::Result<()> {
    // SAFETY: `profile` is a valid NUL-terminated string for the call.
    if unsafe { ffi::aa_change_onexec(profile.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The label confining this task (`unconfined` when none) and its mode.
pub fn current_label() -> io::Result<(String, Option<String>)> {
    let mut label: *mut c_char = std::ptr::null_mut();
    let mut mode: *mut c_char = std::ptr::null_mut();
    // SAFETY: both out-pointers are valid; on success `label` is a malloc'ed
    // NUL-terminated string and `mode` is null or points into it.
    let r: c_int = unsafe { ffi::aa_getcon(&mut label, &mut mode) };
    if r < 0 || label.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above: both are NUL-terminated strings owned by `label`.
    let out = unsafe {
        let l = CStr::from_ptr(label).to_string_lossy().into_owned();
        let m = (!mode.is_null()).then(|| CStr::from_ptr(mode).to_string_lossy().into_owned());
        libc::free(label.cast());
        (l, m)
    };
    Ok(out)
}

/// A profile name as a C string (refuses interior NUL bytes).
pub fn profile_name(name: &str) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "profile name contains NUL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_links_and_answers() {
        // On a host without AppArmor this is an error with a reason; either
        // way the call went through libapparmor.
        match is_enabled() {
            Ok(()) => {
                let (label, _) = current_label().unwrap();
                assert!(!label.is_empty());
            }
            Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
        }
    }

    #[test]
    fn profile_names_with_nul_are_refused() {
        assert!(profile_name("a\0b").is_err());
        assert_eq!(profile_name("libvirt-x").unwrap().as_bytes(), b"libvirt-x");
    }
}
