//! Small file-system helpers with the durability rules of the driver.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes temporary names unique within the process (concurrent writers of
/// the same file must not share a temporary file).
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` atomically: a temporary file in the same directory,
/// `fsync`, `rename` over the target, then `fsync` of the directory. A crash at
/// any point leaves either the old or the new contents, never a mix.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_replacing(path, data, mode, true)
}

/// Writes runtime state that lives no longer than the host's processes (a
/// running domain's status file, its master key) atomically for every other
/// process: a temporary file renamed over the target, so a restarted
/// supervisor reads the old or the new contents, never a mix. Not synced to
/// disk: after a power loss every QEMU is gone and the state with it (libvirt
/// keeps the same files on the `/run` tmpfs). Each `fsync` here was a
/// synchronous disk write on every start and stop.
pub fn write_atomic_runtime(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_replacing(path, data, mode, false)
}

fn write_replacing(path: &Path, data: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_contents_and_leaves_no_temp_file() {
        for (tag, write) in [
            (
                "durable",
                write_atomic as fn(&Path, &[u8], u32) -> io::Result<()>,
            ),
            ("runtime", write_atomic_runtime),
        ] {
            let dir =
                std::env::temp_dir().join(format!("qvisor-fsutil-{tag}-{}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            let p = dir.join("a.xml");
            write(&p, b"one", 0o600).unwrap();
            write(&p, b"two", 0o600).unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"two");
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            let names: Vec<_> = fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            fs::remove_dir_all(&dir).unwrap();
            assert_eq!(names.len(), 1, "{tag}: {names:?}");
            assert_eq!(mode, 0o600, "{tag}");
        }
    }

    #[test]
    fn atomic_write_into_missing_directory_fails_cleanly() {
        let p = Path::new("/nonexistent-qvisor-dir/a.xml");
        assert!(write_atomic(p, b"x", 0o600).is_err());
        assert!(write_atomic_runtime(p, b"x", 0o600).is_err());
    }
}
