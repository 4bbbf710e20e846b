//! Extended attributes on a path (not following a final symlink is never
//! wanted here: disk paths are resolved like QEMU resolves them).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// Reads attribute `name` of `path`; `Ok(None)` when it is not set.
pub fn get(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `p` and `n` are NUL-terminated; `buf` is valid for
        // `buf.len()` bytes of writes.
        let r =
            unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 64 * 1024 => buf.resize(buf.len() * 4, 0),
            _ => return Err(e),
        }
    }
}

/// Reads attribute `name` as text.
pub fn get_string(path: &Path, name: &str) -> io::Result<Option<String>> {
    Ok(get(path, name)?.map(|v| {
        let v = v.strip_suffix(&[0]).unwrap_or(&v);
        String::from_utf8_lossy(v).into_owned()
    }))
}

/// Sets attribute `name` of `path` to `value`.
pub fn set(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    // SAFETY: `p` and `n` are NUL-terminated; `value` is valid for reads of
    // `value.len()` bytes.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes attribute `name`; not being set is not an error.
pub fn remove(path: &Path, name: &str) -> io::Result<()> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    // SAFETY: both strings are NUL-terminated.
    let r = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENODATA) {
            return Err(e);
        }
    }
    Ok(())
}

/// Whether an error means "this file system has no extended attributes".
pub fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}
