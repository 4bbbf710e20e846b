//! Backing chains read from image headers: bounded depth, loops and missing
//! files reported with the image that names them.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::image::{probe_path, reads_backing};

/// libvirt's limit on the depth of a disk's backing chain.
pub const MAX_DEPTH: usize = 200;

/// One image below the top of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The file, as QEMU will open it.
    pub path: PathBuf,
    /// Its format (recorded in the image above it, else probed).
    pub format: String,
}

/// Whether a backing name is a local file (not `json:`, `nbd:`, a URL...).
fn is_local(name: &str) -> bool {
    if name.starts_with('/') || name.starts_with('.') {
        return true;
    }
    match name.split_once(':') {
        Some((proto, _)) => {
            // `file:` is QEMU's explicit local protocol; a ':' further in a
            // relative name (`a:b.img`) after a '/' is part of the file name.
            !(proto
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
                && proto != "file")
        }
        None => true,
    }
}

fn uid_gid() -> (u32, u32) {
    // SAFETY: getuid/getgid have no preconditions and cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// The images below `top` (whose format is `format`), nearest first.
///
/// Stops at an image whose format cannot have a backing file, or that names
/// none. A backing format missing from the header is probed, and refused
/// (as libvirt does) if the probed image names a backing file itself.
pub fn backing_chain(top: &Path, format: &str, max_depth: usize) -> Result<Vec<Layer>> {
    let mut chain: Vec<Layer> = Vec::new();
    let top_meta = std::fs::metadata(top)
        .map_err(|e| StorageError::io("cannot access storage file", top, e))?;
    let mut seen: HashSet<(u64, u64)> = HashSet::from([(top_meta.dev(), top_meta.ino())]);
    let mut current = top.to_path_buf();
    let mut current_format = format.to_string();
    while reads_backing(&current_format) {
        let info = probe_path(&current)
            .map_err(|e| StorageError::io("cannot read the header of", &current, e))?;
        if info.format != current_format {
            return Err(StorageError::OperationFailed(format!(
                "image '{}' is a '{}' image, not '{}' as its user says",
                current.display(),
                info.format,
                current_format
            )));
        }
        let Some(name) = info.backing else { break };
        if !is_local(&name) {
            return Err(StorageError::Unsupported(format!(
                "backing store '{name}' of image '{}' is not a local file",
                current.display()
            )));
        }
        let name = name.strip_prefix("file:").unwrap_or(&name);
        let backing = match Path::new(name) {
            p if p.is_absolute() => p.to_path_buf(),
            p => current.parent().unwrap_or(Path::new("/")).join(p),
        };
        let meta = std::fs::metadata(&backing).map_err(|source| {
            let (uid, gid) = uid_gid();
            StorageError::BrokenChain {
                backing: backing.clone(),
                image: current.clone(),
                uid,
                gid,
                source,
            }
        })?;
        if !seen.insert((meta.dev(), meta.ino())) {
            return Err(StorageError::ChainLoop {
                image: top.to_path_buf(),
                repeated: backing,
            });
        }
        if chain.len() >= max_depth {
            return Err(StorageError::ChainTooDeep {
                image: top.to_path_buf(),
                max: max_depth,
            });
        }
        let backing_format = match info.backing_format {
            Some(f) => f,
            None => {
                let probed = probe_path(&backing)
                    .map_err(|e| StorageError::io("cannot read the header of", &backing, e))?;
                if probed.backing.is_some() {
                    return Err(StorageError::UnspecifiedBackingFormat {
                        backing,
                        image: current,
                    });
                }
                probed.format.to_string()
            }
        };
        chain.push(Layer {
            path: backing.clone(),
            format: backing_format.clone(),
        });
        current = backing;
        current_format = backing_format;
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_protocol_backing_names_are_told_apart() {
        assert!(is_local("/var/lib/base.img"));
        assert!(is_local("base.img"));
        assert!(is_local("./dir/base.img"));
        assert!(is_local("file:/x.img"));
        assert!(!is_local("json:{\"driver\":\"nbd\"}"));
        assert!(!is_local("nbd://host/export"));
        assert!(!is_local("rbd:pool/image"));
    }

    #[test]
    fn raw_top_has_an_empty_chain() {
        let p = std::env::temp_dir().join(format!("qvisor-chain-raw-{}", std::process::id()));
        std::fs::write(&p, [0u8; 1024]).unwrap();
        let chain = backing_chain(&p, "raw", MAX_DEPTH).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(chain.is_empty());
    }
}
