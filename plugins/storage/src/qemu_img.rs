//! Running `qemu-img` (qemu-utils) for the image formats we do not write
//! ourselves.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Result, StorageError};

/// Finds `qemu-img`: `$QVISOR_QEMU_IMG`, else `/usr/bin`, else `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QVISOR_QEMU_IMG") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let mut dirs = vec![PathBuf::from("/usr/bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("qemu-img"))
        .find(|p| Path::new(p).is_file())
}

/// Runs `qemu-img ARGS`; `what` says what for, in errors.
pub fn run<I, S>(args: I, what: &str) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let bin = find().ok_or_else(|| StorageError::QemuImg {
        what: what.to_string(),
        detail: "qemu-img not found (install qemu-utils, or set QVISOR_QEMU_IMG)".into(),
    })?;
    let out = Command::new(&bin)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| StorageError::QemuImg {
            what: what.to_string(),
            detail: format!("cannot run {}: {e}", bin.display()),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(StorageError::QemuImg {
        what: what.to_string(),
        detail: stderr
            .trim()
            .strip_prefix("qemu-img: ")
            .unwrap_or(stderr.trim())
            .to_string(),
    })
}
