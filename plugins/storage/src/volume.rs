//! Volumes of `dir`/`fs` pools: the files in the pool's directory.
//!
//! Listing reads the directory only (no image header), so `vol-list` stays
//! fast for large pools; details, XML and start-up resolution read headers
//! on demand. A new volume is written under a temporary name and renamed
//! into place without replacing anything, so a failed creation leaves
//! nothing behind and a concurrent one cannot be overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use qvisor_sdk::{Access, VolumeInfo, VolumeRef};

use crate::chain::{backing_chain, MAX_DEPTH};
use crate::error::{Result, StorageError};
use crate::image::{self, probe_path, supports_backing, ImageInfo};
use crate::pool::{Pool, Store};
use crate::pooldef::{check_name, sanitize_path, Perms};
use crate::qemu_img;
use crate::voldef::{FileFacts, VolDef, VolumeView, CREATABLE_FORMATS};

/// libvirt's default mode of a volume it creates.
const DEFAULT_VOLUME_MODE: u32 = 0o600;

/// Prefix of the temporary names volumes are created under (skipped by
/// listings).
const PARTIAL_PREFIX: &str = ".qvisor-partial-";

/// Wipe algorithms libvirt hands to `scrub`.
const SCRUB_ALGORITHMS: &[&str] = &[
    "nnsa",
    "dod",
    "bsi",
    "gutmann",
    "schneier",
    "pfitzner7",
    "pfitzner33",
    "random",
];

/// A volume found in a pool.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Its pool.
    pub pool: Pool,
    /// Its name (file name).
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// `file`, `block` or `dir`.
    pub kind: &'static str,
}

fn kind_of(ft: fs::FileType) -> Option<&'static str> {
    if ft.is_file() {
        Some("file")
    } else if ft.is_dir() {
        Some("dir")
    } else if ft.is_block_device() {
        Some("block")
    } else {
        None
    }
}

/// The volume kind of `path`, following symlinks; `None` when it is not a
/// volume (missing, socket, ...).
fn kind_at(path: &Path) -> Option<&'static str> {
    fs::metadata(path).ok().and_then(|m| kind_of(m.file_type()))
}

impl Volume {
    fn in_pool(pool: &Pool, name: &str) -> Option<Volume> {
        if check_name("volume", name).is_err() || name.starts_with(PARTIAL_PREFIX) {
            return None;
        }
        let path = pool.dir().join(name);
        let kind = kind_at(&path)?;
        Some(Volume {
            pool: pool.clone(),
            name: name.to_string(),
            path,
            kind,
        })
    }

    fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    /// Header facts (format, capacity, backing).
    pub fn probe(&self) -> Result<ImageInfo> {
        if self.kind == "dir" {
            return Ok(ImageInfo {
                format: "dir",
                ..ImageInfo::default()
            });
        }
        probe_path(&self.path)
            .map_err(|e| StorageError::io("cannot read the header of", &self.path, e))
    }

    /// `vol-info` / `vol-list --details` data (reads the header).
    pub fn info(&self) -> Result<VolumeInfo> {
        let meta =
            fs::metadata(&self.path).map_err(|e| StorageError::io("cannot stat", &self.path, e))?;
        let physical = if self.kind == "block" {
            File::open(&self.path)
                .and_then(|f| image::file_size(&f))
                .unwrap_or(0)
        } else {
            meta.len()
        };
        let probe = self.probe()?;
        Ok(VolumeInfo {
            name: self.name.as_str().into(),
            pool: self.pool.def.name.as_str().into(),
            key: self.path_str().into(),
            path: self.path_str().into(),
            kind: self.kind.into(),
            format: probe.format.into(),
            capacity: probe.capacity.unwrap_or(physical),
            allocation: if self.kind == "block" {
                physical
            } else {
                meta.blocks() * 512
            },
            physical,
        })
    }

    /// `vol-dumpxml`: the format and backing store from the headers.
    pub fn xml(&self) -> Result<String> {
        let info = self.info()?;
        let probe = self.probe()?;
        let mut target = facts(&self.path, info.format.as_str());
        target.compat = probe.compat.map(str::to_string);
        target.cluster_size = probe.cluster_size;
        if probe.compat == Some("1.1") {
            target.features = Some(if probe.lazy_refcounts {
                vec!["lazy_refcounts"]
            } else {
                vec![]
            });
        }
        let backing = probe.backing.as_ref().map(|name| {
            let name = name.strip_prefix("file:").unwrap_or(name);
            let path = match Path::new(name) {
                p if p.is_absolute() => p.to_path_buf(),
                p => self.path.parent().unwrap_or(Path::new("/")).join(p),
            };
            let format = probe.backing_format.clone().unwrap_or_else(|| {
                probe_path(&path)
                    .map(|i| i.format.to_string())
                    .unwrap_or_else(|_| "raw".into())
            });
            facts(&path, &format)
        });
        Ok(VolumeView {
            kind: self.kind.to_string(),
            name: self.name.clone(),
            key: self.path_str(),
            capacity: info.capacity,
            allocation: info.allocation,
            physical: info.physical,
            target,
            backing,
        }
        .format())
    }
}

/// Path, format, permissions and timestamps of a file (what exists of them).
fn facts(path: &Path, format: &str) -> FileFacts {
    let mut f = FileFacts {
        path: path.display().to_string(),
        format: format.to_string(),
        ..FileFacts::default()
    };
    if let Ok(m) = fs::metadata(path) {
        f.perms = Perms {
            mode: Some(m.mode() & 0o777),
            owner: Some(m.uid()),
            group: Some(m.gid()),
            label: None,
        };
        f.times = Some([
            (m.atime(), m.atime_nsec()),
            (m.mtime(), m.mtime_nsec()),
            (m.ctime(), m.ctime_nsec()),
        ]);
    }
    f
}

/// `vol-list`: the volumes of an active pool, sorted by name. Without
/// `details` no file is opened (directory entries only).
pub fn list(store: &Store, pool: &str, details: bool) -> Result<Vec<VolumeInfo>> {
    let pool = store.lookup(pool)?;
    pool.require_active()?;
    let rd = fs::read_dir(pool.dir())
        .map_err(|e| StorageError::io("cannot open directory", pool.dir(), e))?;
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(PARTIAL_PREFIX) {
            continue;
        }
        let path = entry.path();
        let kind = match entry.file_type() {
            Ok(ft) if ft.is_symlink() => kind_at(&path),
            Ok(ft) => kind_of(ft),
            Err(_) => None,
        };
        let Some(kind) = kind else { continue };
        let vol = Volume {
            pool: pool.clone(),
            name,
            path,
            kind,
        };
        if details {
            // A volume that vanished or cannot be read is listed bare.
            if let Ok(info) = vol.info() {
                out.push(info);
                continue;
            }
        }
        let path = vol.path_str();
        out.push(VolumeInfo {
            name: vol.name.as_str().into(),
            pool: pool.def.name.as_str().into(),
            key: path.as_str().into(),
            path: path.as_str().into(),
            kind: kind.into(),
            format: "".into(),
            capacity: 0,
            allocation: 0,
            physical: 0,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The volume at `path` (its key) in any active pool.
fn by_path(store: &Store, path: &str) -> Option<Volume> {
    let clean = sanitize_path(path);
    let p = Path::new(&clean);
    let (parent, name) = (p.parent()?, p.file_name()?.to_str()?);
    let canon_parent = fs::canonicalize(parent).ok();
    store
        .list()
        .into_iter()
        .filter(|pool| pool.active)
        .find_map(|pool| {
            let same_dir = pool.dir() == parent
                || canon_parent.is_some() && fs::canonicalize(pool.dir()).ok() == canon_parent;
            if same_dir {
                Volume::in_pool(&pool, name)
            } else {
                None
            }
        })
}

/// Finds a volume: by name in the named pool, else by key or path (and then
/// it must be in the named pool, if one was named).
pub fn lookup(store: &Store, r: &VolumeRef) -> Result<Volume> {
    let name = r.name.as_str();
    match r.pool.as_ref().into_option() {
        Some(pool_name) => {
            let pool = store.lookup(pool_name.as_str())?;
            pool.require_active()?;
            if let Some(v) = Volume::in_pool(&pool, name) {
                return Ok(v);
            }
            match by_path(store, name) {
                Some(v) if v.pool.def.name == pool.def.name => Ok(v),
                Some(_) => Err(StorageError::VolumeInOtherPool {
                    name: name.to_string(),
                    pool: pool.def.name,
                }),
                None => Err(StorageError::NoVolume {
                    pool: pool.def.name,
                    name: name.to_string(),
                }),
            }
        }
        None => by_path(store, name).ok_or_else(|| StorageError::NoVolumePath(name.to_string())),
    }
}

/// Removes a partly created volume unless it was committed.
struct Partial {
    path: PathBuf,
    committed: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Renames `from` to `to` unless `to` exists.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths relative to the cwd.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    // File systems without RENAME_NOREPLACE: link() also refuses to replace.
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

/// The backing store of a new volume: path, format, capacity.
fn check_backing(path: &str, format: Option<&str>) -> Result<(String, String, u64)> {
    if fs::metadata(path).is_err() {
        return Err(StorageError::Internal(format!(
            "inaccessible backing store volume {path}"
        )));
    }
    let probed = probe_path(Path::new(path))
        .map_err(|e| StorageError::io("cannot read the header of", path, e))?;
    let format = match format {
        Some(f) if f != probed.format => {
            return Err(StorageError::OperationFailed(format!(
                "backing store '{path}' is a '{}' image, not '{f}'",
                probed.format
            )))
        }
        Some(f) => f.to_string(),
        None => probed.format.to_string(),
    };
    // The backing store's own chain must be sound (no loop, nothing missing).
    backing_chain(Path::new(path), &format, MAX_DEPTH - 1)?;
    let size = probed
        .capacity
        .or_else(|| File::open(path).and_then(|f| image::file_size(&f)).ok())
        .unwrap_or(0);
    Ok((path.to_string(), format, size))
}

fn qcow2_options(def: &VolDef, format: &str) -> Option<String> {
    if format != "qcow2" {
        return None;
    }
    let mut opts = vec![format!("compat={}", def.compat.as_deref().unwrap_or("1.1"))];
    if def.lazy_refcounts {
        opts.push("lazy_refcounts=on".into());
    }
    if let Some(c) = def.cluster_size {
        opts.push(format!("cluster_size={c}"));
    }
    Some(opts.join(","))
}

/// `vol-create` / `vol-create-as` / `vol-clone`: creates a volume from its
/// XML, empty or as a copy of `clone_of`. Nothing is left behind on failure.
pub fn create(
    store: &Store,
    pool: &str,
    xml: &str,
    clone_of: Option<&VolumeRef>,
) -> Result<VolumeInfo> {
    let pool = store.lookup(pool)?;
    pool.require_active()?;
    let def = VolDef::parse(xml)?;
    if def.name.starts_with(PARTIAL_PREFIX) {
        return Err(StorageError::InvalidArg(format!(
            "volume name '{}' is reserved for volumes being created",
            def.name
        )));
    }
    let format = def.format.clone().unwrap_or_else(|| "raw".into());
    if !CREATABLE_FORMATS.contains(&format.as_str()) {
        return Err(StorageError::Unsupported(format!(
            "creating volumes of format '{format}' is not supported"
        )));
    }
    let path = pool.dir().join(&def.name);
    if fs::symlink_metadata(&path).is_ok() {
        return Err(StorageError::VolumeExists(def.name.clone()));
    }
    let source = match clone_of {
        Some(r) => {
            let v = lookup(store, r)?;
            let info = v.probe()?;
            Some((v, info))
        }
        None => None,
    };
    let backing = match &def.backing {
        Some(_) if format == "raw" => {
            return Err(StorageError::Unsupported(
                "backing storage not supported for raw volumes".into(),
            ))
        }
        Some(_) if !supports_backing(&format) => {
            return Err(StorageError::Unsupported(format!(
                "format '{format}' does not support a backing store"
            )))
        }
        Some((p, f)) => Some(check_backing(p, f.as_deref())?),
        None => None,
    };
    let source_capacity = source.as_ref().map(|(v, i)| {
        i.capacity.unwrap_or_else(|| {
            File::open(&v.path)
                .and_then(|f| image::file_size(&f))
                .unwrap_or(0)
        })
    });
    let capacity = match (def.capacity, source_capacity, &backing) {
        (Some(c), Some(s), _) => c.max(s),
        (Some(c), None, _) => c,
        (None, Some(s), _) => s,
        (None, None, Some((_, _, b))) => *b,
        (None, None, None) => return Err(StorageError::Xml("missing capacity element".into())),
    };

    let temp = pool.dir().join(format!(
        "{PARTIAL_PREFIX}{}-{}",
        def.name,
        std::process::id()
    ));
    let mode = def.perms.mode.unwrap_or(DEFAULT_VOLUME_MODE);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .map_err(|e| StorageError::io("cannot create path", &path, e))?;
    let mut partial = Partial {
        path: temp.clone(),
        committed: false,
    };
    let what = format!("creating volume '{}'", def.name);
    let temp_arg = temp.as_os_str();
    match (&source, format.as_str()) {
        (Some((src, info)), _) => {
            drop(file);
            let mut args: Vec<std::ffi::OsString> = vec![
                "convert".into(),
                "-f".into(),
                info.format.into(),
                "-O".into(),
                format.as_str().into(),
            ];
            if let Some(o) = qcow2_options(&def, &format) {
                args.extend(["-o".into(), o.into()]);
            }
            if let Some((b, bf, _)) = &backing {
                args.extend(["-B".into(), b.into(), "-F".into(), bf.into()]);
            }
            args.extend([src.path.clone().into_os_string(), temp_arg.to_owned()]);
            qemu_img::run(&args, &what)?;
            if Some(capacity) > source_capacity {
                let args: Vec<std::ffi::OsString> = vec![
                    "resize".into(),
                    "-f".into(),
                    format.as_str().into(),
                    temp_arg.to_owned(),
                    capacity.to_string().into(),
                ];
                qemu_img::run(&args, &what)?;
            }
        }
        (None, "raw") => {
            file.set_len(capacity)
                .map_err(|e| StorageError::io("cannot extend file", &path, e))?;
            let allocation = def.allocation.unwrap_or(0).min(capacity);
            if allocation > 0 {
                // SAFETY: a valid open descriptor; offset/len are in range.
                let rc = unsafe {
                    libc::posix_fallocate(file.as_raw_fd(), 0, allocation as libc::off_t)
                };
                if rc != 0 {
                    return Err(StorageError::io(
                        "cannot allocate space for",
                        &path,
                        io::Error::from_raw_os_error(rc),
                    ));
                }
            }
            file.sync_all()
                .map_err(|e| StorageError::io("cannot sync", &path, e))?;
        }
        (None, _) => {
            drop(file);
            let mut args: Vec<std::ffi::OsString> =
                vec!["create".into(), "-f".into(), format.as_str().into()];
            if let Some((b, bf, _)) = &backing {
                args.extend(["-b".into(), b.into(), "-F".into(), bf.into()]);
            }
            if let Some(o) = qcow2_options(&def, &format) {
                args.extend(["-o".into(), o.into()]);
            }
            args.extend([temp_arg.to_owned(), capacity.to_string().into()]);
            qemu_img::run(&args, &what)?;
        }
    }
    fs::set_permissions(&temp, fs::Permissions::from_mode(mode))
        .map_err(|e| StorageError::io("cannot set mode of", &path, e))?;
    if def.perms.owner.is_some() || def.perms.group.is_some() {
        std::os::unix::fs::chown(&temp, def.perms.owner, def.perms.group)
            .map_err(|e| StorageError::io("cannot set owner of", &path, e))?;
    }
    rename_noreplace(&temp, &path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            StorageError::VolumeExists(def.name.clone())
        } else {
            StorageError::io("cannot create path", &path, e)
        }
    })?;
    partial.committed = true;
    let vol = Volume::in_pool(&pool, &def.name)
        .ok_or_else(|| StorageError::Internal(format!("volume '{}' vanished", def.name)))?;
    vol.info()
}

/// `vol-delete`.
pub fn delete(vol: &Volume) -> Result<()> {
    let r = if vol.kind == "dir" {
        fs::remove_dir(&vol.path)
    } else {
        fs::remove_file(&vol.path)
    };
    r.map_err(|e| StorageError::io("cannot unlink file", &vol.path, e))
}

/// Writes zeros over `len` bytes of `file`.
fn zero_fill(file: &mut File, len: u64, path: &Path) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    file.seek(SeekFrom::Start(0))
        .map_err(|e| StorageError::io("cannot seek", path, e))?;
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&zeros[..n])
            .map_err(|e| StorageError::io("Failed to write storage volume with path", path, e))?;
        left -= n as u64;
    }
    file.sync_data()
        .map_err(|e| StorageError::io("cannot sync data to file", path, e))
}

/// `vol-wipe`: `zero` overwrites the contents with zeros (a sparse file is
/// truncated and re-extended, as libvirt does); the other algorithms run
/// `scrub`. An image format with a header (qcow2...) is then re-created
/// empty with the same capacity and backing store, so the volume keeps its
/// format and stays usable.
pub fn wipe(vol: &Volume, algorithm: &str) -> Result<()> {
    if vol.kind == "dir" {
        return Err(StorageError::Unsupported(
            "cannot wipe a directory volume".into(),
        ));
    }
    let before = vol.probe()?;
    let capacity_before = before.capacity;
    match algorithm {
        "zero" => {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&vol.path)
                .map_err(|e| {
                    StorageError::io("Failed to open storage volume with path", &vol.path, e)
                })?;
            let meta = file.metadata().map_err(|e| {
                StorageError::io("Failed to stat storage volume with path", &vol.path, e)
            })?;
            if meta.is_file() && meta.blocks() * 512 < meta.len() {
                let size = meta.len();
                file.set_len(0)
                    .and_then(|()| file.set_len(size))
                    .map_err(|e| StorageError::io("Failed to truncate", &vol.path, e))?;
            } else {
                let len = image::file_size(&file).map_err(|e| {
                    StorageError::io("Failed to stat storage volume with path", &vol.path, e)
                })?;
                zero_fill(&mut file, len, &vol.path)?;
            }
        }
        "trim" => {
            return Err(StorageError::InvalidArg(
                "'trim' algorithm not supported".into(),
            ))
        }
        a if SCRUB_ALGORITHMS.contains(&a) => {
            let out = std::process::Command::new("scrub")
                .args(["-f", "-p", a])
                .arg(&vol.path)
                .output()
                .map_err(|e| {
                    StorageError::Unsupported(format!(
                        "wiping algorithm '{a}' needs the 'scrub' program: {e}"
                    ))
                })?;
            if !out.status.success() {
                return Err(StorageError::OperationFailed(format!(
                    "scrub -p {a} '{}': {}",
                    vol.path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        other => {
            return Err(StorageError::InvalidArg(format!(
                "unsupported algorithm '{other}'"
            )))
        }
    }
    if before.format != "raw" && CREATABLE_FORMATS.contains(&before.format) {
        let mut args: Vec<String> = vec!["create".into(), "-f".into(), before.format.into()];
        if let Some(b) = &before.backing {
            args.extend(["-b".into(), b.clone(), "-u".into()]);
            if let Some(f) = &before.backing_format {
                args.extend(["-F".into(), f.clone()]);
            }
        }
        if let Some(c) = before.compat {
            args.extend(["-o".into(), format!("compat={c}")]);
        }
        args.push(vol.path_str());
        args.push(capacity_before.unwrap_or(0).to_string());
        qemu_img::run(&args, &format!("re-creating wiped volume '{}'", vol.name))?;
    }
    Ok(())
}

/// `vol-upload` / `vol-download`: the volume's file opened for writing (never
/// truncated or created) or reading, at `offset`. The caller owns the
/// returned descriptor.
pub fn open(vol: &Volume, access: Access, offset: u64) -> Result<i32> {
    if vol.kind == "dir" {
        return Err(StorageError::Unsupported(format!(
            "volume '{}' is a directory: it has no contents to transfer",
            vol.name
        )));
    }
    let mut opts = OpenOptions::new();
    match access {
        Access::ReadOnly => opts.read(true),
        Access::ReadWrite => opts.write(true),
    };
    let mut file = opts
        .custom_flags(libc::O_CLOEXEC)
        .open(&vol.path)
        .map_err(|e| StorageError::io("cannot open", &vol.path, e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| StorageError::io("cannot seek", &vol.path, e))?;
    Ok(file.into_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvisor_sdk::StorageContext;

    struct Root(PathBuf, Store);

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn root(tag: &str) -> Root {
        let root = std::env::temp_dir().join(format!("qvisor-vol-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let ctx = StorageContext {
            config_dir: root.join("etc/storage").display().to_string().into(),
            state_dir: root.join("run/storage").display().to_string().into(),
            images_dir: root.join("lib/images").display().to_string().into(),
        };
        let store = Store::open(&ctx);
        Root(root, store)
    }

    fn vol_xml(name: &str, capacity: &str, format: &str, backing: Option<&str>) -> String {
        let backing = backing
            .map(|b| format!("<backingStore><path>{b}</path></backingStore>"))
            .unwrap_or_default();
        format!(
            "<volume><name>{name}</name><capacity>{capacity}</capacity><target><format type='{format}'/></target>{backing}</volume>"
        )
    }

    fn images(r: &Root) -> PathBuf {
        r.0.join("lib/images")
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn raw_volume_has_the_capacity_and_is_detected_raw() {
        let r = root("raw");
        let info = create(
            &r.1,
            "default",
            &vol_xml("a.qcow2", "1048576", "raw", None),
            None,
        )
        .unwrap();
        assert_eq!(info.capacity, 1048576);
        // The name says qcow2; the header says raw.
        assert_eq!(info.format.as_str(), "raw");
        let m = fs::metadata(images(&r).join("a.qcow2")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
    }

    #[test]
    fn qcow2_volume_is_created_with_qemu_img() {
        let r = root("qcow2");
        let info = create(
            &r.1,
            "default",
            &vol_xml("os", "1073741824", "qcow2", None),
            None,
        )
        .unwrap();
        assert_eq!(info.format.as_str(), "qcow2");
        assert_eq!(info.capacity, 1 << 30);
        let xml = lookup(&r.1, &VolumeRef::in_pool("default", "os"))
            .unwrap()
            .xml()
            .unwrap();
        assert!(xml.contains("<format type='qcow2'/>"), "{xml}");
        assert!(xml.contains("<compat>1.1</compat>"), "{xml}");
    }

    #[test]
    fn overlay_names_its_backing_volume_and_takes_its_capacity() {
        let r = root("overlay");
        let base = create(
            &r.1,
            "default",
            &vol_xml("base", "2097152", "raw", None),
            None,
        )
        .unwrap();
        let xml = format!(
            "<volume><name>top</name><target><format type='qcow2'/></target><backingStore><path>{}</path><format type='raw'/></backingStore></volume>",
            base.path
        );
        let top = create(&r.1, "default", &xml, None).unwrap();
        assert_eq!(top.capacity, 2097152);
        let dump = lookup(&r.1, &VolumeRef::in_pool("default", "top"))
            .unwrap()
            .xml()
            .unwrap();
        assert!(
            dump.contains(&format!(
                "<backingStore>\n    <path>{}</path>\n    <format type='raw'/>",
                base.path
            )),
            "{dump}"
        );
        let chain = backing_chain(Path::new(top.path.as_str()), "qcow2", MAX_DEPTH).unwrap();
        assert_eq!(chain.len(), 1);
        assert_eq!(chain[0].format, "raw");
    }

    #[test]
    fn existing_name_missing_backing_and_raw_backing_are_refused_leaving_nothing() {
        let r = root("refuse");
        create(&r.1, "default", &vol_xml("a", "1024", "raw", None), None).unwrap();
        let before = entries(&images(&r));
        let err = create(&r.1, "default", &vol_xml("a", "1024", "raw", None), None).unwrap_err();
        assert_eq!(err.to_string(), "storage volume 'a' exists already");
        let err = create(
            &r.1,
            "default",
            &vol_xml("b", "1024", "qcow2", Some("/nonexistent/x")),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("inaccessible backing store volume /nonexistent/x"),
            "{err}"
        );
        let base = images(&r).join("a").display().to_string();
        let err = create(
            &r.1,
            "default",
            &vol_xml("c", "1024", "raw", Some(&base)),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("backing storage not supported for raw volumes"),
            "{err}"
        );
        assert_eq!(entries(&images(&r)), before);
    }

    #[test]
    fn backing_loop_is_refused_when_creating_and_when_resolving() {
        let r = root("loop");
        let dir = images(&r);
        create(
            &r.1,
            "default",
            &vol_xml("a", "1048576", "qcow2", None),
            None,
        )
        .unwrap();
        let a = dir.join("a").display().to_string();
        create(
            &r.1,
            "default",
            &vol_xml("b", "1048576", "qcow2", Some(&a)),
            None,
        )
        .unwrap();
        let b = dir.join("b").display().to_string();
        // Make a's backing file b: a -> b -> a.
        qemu_img::run(
            ["rebase", "-u", "-f", "qcow2", "-b", &b, "-F", "qcow2", &a],
            "test",
        )
        .unwrap();
        let err = backing_chain(Path::new(&a), "qcow2", MAX_DEPTH).unwrap_err();
        assert!(matches!(err, StorageError::ChainLoop { .. }), "{err}");
        assert!(err.to_string().contains("self-referential"), "{err}");
        let before = entries(&dir);
        let err = create(
            &r.1,
            "default",
            &vol_xml("c", "1048576", "qcow2", Some(&a)),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("self-referential"), "{err}");
        assert_eq!(entries(&dir), before);
    }

    #[test]
    fn missing_backing_file_names_both_files() {
        let r = root("missing");
        let dir = images(&r);
        create(
            &r.1,
            "default",
            &vol_xml("base", "1048576", "raw", None),
            None,
        )
        .unwrap();
        let base = dir.join("base").display().to_string();
        create(
            &r.1,
            "default",
            &vol_xml("top", "1048576", "qcow2", Some(&base)),
            None,
        )
        .unwrap();
        fs::remove_file(&base).unwrap();
        let top = dir.join("top");
        let err = backing_chain(&top, "qcow2", MAX_DEPTH)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "Cannot access backing file '{base}' of storage file '{}'",
                top.display()
            )),
            "{err}"
        );
        assert!(
            err.ends_with("No such file or directory (os error 2)"),
            "{err}"
        );
    }

    #[test]
    fn list_skips_partial_files_and_sorts() {
        let r = root("list");
        for n in ["b", "a", "c"] {
            create(&r.1, "default", &vol_xml(n, "1", "raw", None), None).unwrap();
        }
        fs::write(images(&r).join(format!("{PARTIAL_PREFIX}x-1")), b"").unwrap();
        let names: Vec<String> = list(&r.1, "default", false)
            .unwrap()
            .iter()
            .map(|v| v.name.to_string())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn clone_copies_contents_and_keeps_format() {
        let r = root("clone");
        let src = create(
            &r.1,
            "default",
            &vol_xml("src", "1048576", "qcow2", None),
            None,
        )
        .unwrap();
        let copy = create(
            &r.1,
            "default",
            &vol_xml("copy", "0", "qcow2", None),
            Some(&VolumeRef::in_pool("default", "src")),
        )
        .unwrap();
        assert_eq!(copy.format.as_str(), "qcow2");
        assert_eq!(copy.capacity, src.capacity);
    }

    #[test]
    fn wipe_zeroes_raw_and_keeps_qcow2_a_qcow2() {
        let r = root("wipe");
        create(&r.1, "default", &vol_xml("raw", "65536", "raw", None), None).unwrap();
        let path = images(&r).join("raw");
        fs::write(&path, vec![0xabu8; 65536]).unwrap();
        let v = lookup(&r.1, &VolumeRef::in_pool("default", "raw")).unwrap();
        wipe(&v, "zero").unwrap();
        assert!(fs::read(&path).unwrap().iter().all(|b| *b == 0));
        create(
            &r.1,
            "default",
            &vol_xml("q", "1048576", "qcow2", None),
            None,
        )
        .unwrap();
        let q = lookup(&r.1, &VolumeRef::in_pool("default", "q")).unwrap();
        wipe(&q, "zero").unwrap();
        let info = q.info().unwrap();
        assert_eq!((info.format.as_str(), info.capacity), ("qcow2", 1048576));
        assert!(matches!(
            wipe(&q, "bogus"),
            Err(StorageError::InvalidArg(_))
        ));
    }

    #[test]
    fn lookup_by_path_and_wrong_pool() {
        let r = root("bypath");
        let a = create(&r.1, "default", &vol_xml("a", "1", "raw", None), None).unwrap();
        let v = lookup(&r.1, &VolumeRef::by_key_or_path(&a.path)).unwrap();
        assert_eq!(v.name, "a");
        let err = lookup(&r.1, &VolumeRef::in_pool("default", "nope")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Storage volume not found: no storage vol with matching name 'nope' in pool 'default'"
        );
        let err = lookup(&r.1, &VolumeRef::by_key_or_path("/nowhere/x")).unwrap_err();
        assert!(matches!(err, StorageError::NoVolumePath(_)));
    }

    #[test]
    fn open_for_upload_writes_in_place_without_truncating() {
        let r = root("open");
        create(&r.1, "default", &vol_xml("u", "8192", "raw", None), None).unwrap();
        let v = lookup(&r.1, &VolumeRef::in_pool("default", "u")).unwrap();
        let fd = open(&v, Access::ReadWrite, 4096).unwrap();
        // SAFETY: `open` handed us ownership of a fresh descriptor.
        let mut f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        f.write_all(b"PATTERN").unwrap();
        drop(f);
        let data = fs::read(&v.path).unwrap();
        assert_eq!(data.len(), 8192);
        assert_eq!(&data[4096..4103], b"PATTERN");
    }
}
