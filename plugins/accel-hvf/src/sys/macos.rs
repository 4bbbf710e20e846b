//! macOS: integer sysctls through `sysctlbyname(3)`.

use std::ffi::CString;

/// Reads an integer sysctl by name.
pub fn sysctl_int(name: &str) -> Option<i64> {
    let cname = CString::new(name).ok()?;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>();
    // SAFETY: `cname` is NUL-terminated, `value`/`len` describe a valid
    // buffer of the right size, and no new value is written.
    let ret = unsafe {
        libc::sysctlbyname(
            cname.as_ptr(),
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (ret == 0).then_some(i64::from(value))
}
