//! An exclusive lock file (`flock`), held for a process's lifetime so two
//! supervisors never serve the same tree.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A held lock; released when dropped (or when the process dies).
pub struct LockFile {
    _file: File,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("another qvisord already serves this tree (lock '{0}' is held)")]
    Held(PathBuf),
    /// The file could not be opened or locked.
    #[error("cannot lock '{path}': {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl LockFile {
    /// Takes the lock without waiting.
    pub fn acquire(path: &Path) -> Result<LockFile, LockError> {
        let io_err = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err)?;
        // SAFETY: flock on a descriptor we own; no memory involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Err(LockError::Held(path.to_path_buf()));
            }
            return Err(io_err(e));
        }
        Ok(LockFile {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_the_first_is_dropped() {
        let p = std::env::temp_dir().join(format!("qvisor-lock-{}", std::process::id()));
        let a = LockFile::acquire(&p).unwrap();
        assert!(matches!(LockFile::acquire(&p), Err(LockError::Held(_))));
        drop(a);
        let b = LockFile::acquire(&p).unwrap();
        assert_eq!(b.path(), p);
        drop(b);
        let _ = std::fs::remove_file(p);
    }
}
