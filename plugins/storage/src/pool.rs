//! Pools of one connection, kept in files so that every process (the CLI,
//! the driver) sees the same state without a daemon:
//!
//! - `CONFIG/NAME.xml`: the persistent definition (libvirt's layout);
//! - `CONFIG/autostart/NAME.xml`: a symlink to it when the pool autostarts;
//! - `STATE/NAME.xml`: present while the pool is active, holding the
//!   definition it was started with;
//! - `STATE/.autostarted`: the boot id of the last autostart pass, so
//!   autostart pools are started once per host boot, on first use;
//! - `CONFIG/.default-pool`: the `default` pool (at the connection's images
//!   directory) was created once; undefining it later is respected.
//!
//! Changes are serialised by an advisory lock on `STATE/.lock`.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use qvisor_sdk::{PoolInfo, PoolState, StorageContext};

use crate::error::{Result, StorageError};
use crate::pooldef::{canonical_uuid, random_uuid, Perms, PoolDef, PoolType};

/// libvirt's default mode of a pool directory it builds.
const DEFAULT_POOL_MODE: u32 = 0o711;

/// libvirt's header on files it writes.
fn saved_header(name: &str) -> String {
    format!(
        "<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
         OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n  \
         virsh pool-edit {name}\nor other application using the libvirt API.\n-->\n\n"
    )
}

/// Writes `path` atomically (temporary file in the same directory, fsync,
/// rename).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        StorageError::io("cannot write file", path, e)
    })
}

/// A pool as stored.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The definition in force: the one it was started with when active,
    /// else the persistent one.
    pub def: PoolDef,
    /// The persistent definition.
    pub config: PoolDef,
    /// Running.
    pub active: bool,
    /// Starts automatically.
    pub autostart: bool,
}

impl Pool {
    /// The directory volumes live in.
    pub fn dir(&self) -> &Path {
        Path::new(&self.def.target)
    }

    /// Fails unless the pool is active.
    pub fn require_active(&self) -> Result<()> {
        if self.active {
            Ok(())
        } else {
            Err(StorageError::PoolNotActive(self.def.name.clone()))
        }
    }

    /// (capacity, allocation, available) of the file system holding the
    /// pool, when active.
    pub fn sizes(&self) -> (u64, u64, u64) {
        if !self.active {
            return (0, 0, 0);
        }
        let Ok(c) = CString::new(self.def.target.as_bytes()) else {
            return (0, 0, 0);
        };
        // SAFETY: `st` is plain data; statvfs writes it fully on success.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid NUL-terminated path and a valid out pointer.
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return (0, 0, 0);
        }
        let frsize = st.f_frsize as u64;
        let capacity = st.f_blocks as u64 * frsize;
        let available = st.f_bavail as u64 * frsize;
        let allocation = (st.f_blocks as u64).saturating_sub(st.f_bfree as u64) * frsize;
        (capacity, allocation, available)
    }

    /// What `pool-info` shows.
    pub fn info(&self) -> PoolInfo {
        let (capacity, allocation, available) = self.sizes();
        PoolInfo {
            name: self.def.name.as_str().into(),
            uuid: self.def.uuid.as_str().into(),
            kind: self.def.kind.as_str().into(),
            path: self.def.target.as_str().into(),
            state: if self.active {
                PoolState::Running
            } else {
                PoolState::Inactive
            },
            persistent: true,
            autostart: self.autostart,
            capacity,
            allocation,
            available,
        }
    }

    /// `pool-dumpxml [--inactive]`.
    pub fn xml(&self, inactive: bool) -> String {
        if inactive {
            self.config.format(0, 0, 0)
        } else {
            let (c, a, v) = self.sizes();
            self.def.format(c, a, v)
        }
    }
}

/// An exclusive advisory lock, released on drop.
pub struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by self.0 and still open.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// The pools of one connection.
#[derive(Debug, Clone)]
pub struct Store {
    config_dir: PathBuf,
    state_dir: PathBuf,
    images_dir: PathBuf,
}

impl Store {
    /// The store of a connection, without side effects.
    pub fn new(ctx: &StorageContext) -> Store {
        Store {
            config_dir: PathBuf::from(ctx.config_dir.as_str()),
            state_dir: PathBuf::from(ctx.state_dir.as_str()),
            images_dir: PathBuf::from(ctx.images_dir.as_str()),
        }
    }

    /// The store of a connection, after creating the `default` pool (first
    /// use only) and starting autostart pools (once per host boot).
    pub fn open(ctx: &StorageContext) -> Store {
        let store = Store::new(ctx);
        store.ensure_default();
        store.autostart_once_per_boot();
        store
    }

    fn config_path(&self, name: &str) -> PathBuf {
        self.config_dir.join(format!("{name}.xml"))
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.xml"))
    }

    fn autostart_path(&self, name: &str) -> PathBuf {
        self.config_dir
            .join("autostart")
            .join(format!("{name}.xml"))
    }

    /// Takes the store's lock.
    pub fn lock(&self) -> Result<Lock> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.state_dir)
            .map_err(|e| StorageError::io("cannot create directory", &self.state_dir, e))?;
        let path = self.state_dir.join(".lock");
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StorageError::io("cannot open lock file", &path, e))?;
        loop {
            // SAFETY: a valid open descriptor.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock(f));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(StorageError::io("cannot lock", &path, e));
            }
        }
    }

    /// Names of the defined pools, sorted.
    pub fn names(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.config_dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                let stem = n.strip_suffix(".xml")?;
                e.file_type().ok()?.is_file().then(|| stem.to_string())
            })
            .collect();
        names.sort();
        names
    }

    /// The pool named `name`.
    pub fn load(&self, name: &str) -> Result<Pool> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(StorageError::NoPool(name.to_string()));
        }
        let path = self.config_path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::NoPool(name.to_string()))
            }
            Err(e) => return Err(StorageError::io("cannot read pool config", &path, e)),
        };
        let config = PoolDef::parse(&text)?;
        if config.name != name {
            return Err(StorageError::Xml(format!(
                "Storage pool config filename '{}' does not match pool name '{}'",
                path.display(),
                config.name
            )));
        }
        let state = fs::read_to_string(self.state_path(name)).ok();
        let active = state.is_some();
        let def = state
            .and_then(|s| PoolDef::parse(&s).ok())
            .unwrap_or_else(|| config.clone());
        let autostart = fs::symlink_metadata(self.autostart_path(name)).is_ok();
        Ok(Pool {
            def,
            config,
            active,
            autostart,
        })
    }

    /// All pools that load, sorted by name.
    pub fn list(&self) -> Vec<Pool> {
        self.names()
            .iter()
            .filter_map(|n| self.load(n).ok())
            .collect()
    }

    /// A pool by name, else by UUID.
    pub fn lookup(&self, name_or_uuid: &str) -> Result<Pool> {
        match self.load(name_or_uuid) {
            Err(StorageError::NoPool(_)) => {}
            other => return other,
        }
        if let Some(uuid) = canonical_uuid(name_or_uuid) {
            if let Some(p) = self.list().into_iter().find(|p| p.config.uuid == uuid) {
                return Ok(p);
            }
        }
        Err(StorageError::NoPool(name_or_uuid.to_string()))
    }

    /// `pool-define`: checks name/UUID/source conflicts and writes the
    /// definition.
    pub fn define(&self, xml: &str) -> Result<Pool> {
        let def = PoolDef::parse(xml)?;
        let _lock = self.lock()?;
        self.define_locked(def)
    }

    fn define_locked(&self, def: PoolDef) -> Result<Pool> {
        for other in self.list() {
            if other.config.name == def.name {
                if other.config.uuid != def.uuid {
                    return Err(StorageError::OperationFailed(format!(
                        "pool '{}' already exists with uuid {}",
                        def.name, other.config.uuid
                    )));
                }
                continue;
            }
            if other.config.uuid == def.uuid {
                return Err(StorageError::OperationFailed(format!(
                    "pool '{}' is already defined with uuid {}",
                    other.config.name, def.uuid
                )));
            }
            let same_dir = other.config.target == def.target;
            let same_dev = def.device.is_some() && other.config.device == def.device;
            if same_dir || same_dev {
                return Err(StorageError::OperationFailed(format!(
                    "Storage source conflict with pool: '{}'",
                    other.config.name
                )));
            }
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.config_dir)
            .map_err(|e| StorageError::io("cannot create config directory", &self.config_dir, e))?;
        let mut text = saved_header(&def.name);
        text.push_str(&def.format(0, 0, 0));
        write_atomic(&self.config_path(&def.name), text.as_bytes(), 0o600)?;
        self.load(&def.name)
    }

    /// `pool-undefine`: only an inactive pool.
    pub fn undefine(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let pool = self.lookup(name)?;
        if pool.active {
            return Err(StorageError::PoolStillActive(pool.def.name));
        }
        let auto = self.autostart_path(&pool.def.name);
        match fs::remove_file(&auto) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("Failed to delete autostart link", auto, e)),
        }
        let cfg = self.config_path(&pool.def.name);
        fs::remove_file(&cfg).map_err(|e| StorageError::io("Failed to delete config file", cfg, e))
    }

    /// `pool-build`: creates the pool's directory.
    pub fn build(&self, name: &str) -> Result<()> {
        let pool = self.lookup(name)?;
        if pool.active {
            return Err(StorageError::PoolAlreadyActive(pool.def.name));
        }
        build_dir(Path::new(&pool.config.target), &pool.config.perms)
    }

    /// `pool-start`.
    pub fn start(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let pool = self.lookup(name)?;
        self.start_locked(&pool)
    }

    fn start_locked(&self, pool: &Pool) -> Result<()> {
        if pool.active {
            return Err(StorageError::PoolAlreadyActive(pool.def.name.clone()));
        }
        let def = &pool.config;
        let target = Path::new(&def.target);
        let meta = fs::metadata(target)
            .map_err(|e| StorageError::io("cannot open directory", target, e))?;
        if !meta.is_dir() {
            return Err(StorageError::OperationFailed(format!(
                "storage pool target '{}' is not a directory",
                def.target
            )));
        }
        if def.kind == PoolType::Fs {
            mount_fs(def)?;
        }
        let xml = def.format(0, 0, 0);
        let state = self.state_path(&def.name);
        let written = write_atomic(&state, xml.as_bytes(), 0o600);
        if written.is_err() && def.kind == PoolType::Fs {
            let _ = umount_fs(def);
        }
        written
    }

    /// `pool-destroy`.
    pub fn destroy(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let pool = self.lookup(name)?;
        pool.require_active()?;
        if pool.def.kind == PoolType::Fs {
            umount_fs(&pool.def)?;
        }
        let state = self.state_path(&pool.def.name);
        fs::remove_file(&state).map_err(|e| StorageError::io("cannot remove state file", state, e))
    }

    /// `pool-refresh`: volumes are read from the directory on every request,
    /// so this only checks that the pool is usable.
    pub fn refresh(&self, name: &str) -> Result<()> {
        let pool = self.lookup(name)?;
        pool.require_active()?;
        fs::read_dir(pool.dir())
            .map(|_| ())
            .map_err(|e| StorageError::io("cannot open directory", pool.dir(), e))
    }

    /// `pool-autostart [--disable]`.
    pub fn set_autostart(&self, name: &str, autostart: bool) -> Result<()> {
        let _lock = self.lock()?;
        let pool = self.lookup(name)?;
        let link = self.autostart_path(&pool.def.name);
        if autostart {
            if pool.autostart {
                return Ok(());
            }
            let dir = self.config_dir.join("autostart");
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| StorageError::io("cannot create autostart directory", &dir, e))?;
            std::os::unix::fs::symlink(self.config_path(&pool.def.name), &link)
                .map_err(|e| StorageError::io("Failed to create symlink", &link, e))
        } else {
            match fs::remove_file(&link) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StorageError::io("Failed to delete symlink", link, e)),
            }
        }
    }

    /// Creates the `default` pool at the images directory once per
    /// connection (marker `CONFIG/.default-pool`), built, autostarted.
    fn ensure_default(&self) {
        let marker = self.config_dir.join(".default-pool");
        if marker.exists() {
            return;
        }
        let Ok(_lock) = self.lock() else { return };
        if marker.exists() {
            return;
        }
        let images = self.images_dir.display().to_string();
        let taken = self
            .list()
            .iter()
            .any(|p| p.config.name == "default" || p.config.target == images);
        if !taken {
            let Ok(uuid) = random_uuid() else { return };
            let def = PoolDef {
                kind: PoolType::Dir,
                name: "default".into(),
                uuid,
                target: images,
                perms: Perms::default(),
                device: None,
                fs_format: "auto".into(),
                cow: None,
            };
            let perms = Perms {
                mode: Some(DEFAULT_POOL_MODE),
                ..Perms::default()
            };
            if build_dir(&self.images_dir, &perms).is_err() || self.define_locked(def).is_err() {
                return;
            }
            let dir = self.config_dir.join("autostart");
            let _ = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir);
            let _ = std::os::unix::fs::symlink(
                self.config_path("default"),
                self.autostart_path("default"),
            );
            // Started now: a pool created on first use is expected to work
            // at once, whatever the autostart marker says.
            if let Ok(pool) = self.load("default") {
                let _ = self.start_locked(&pool);
            }
        }
        let _ = write_atomic(&marker, b"", 0o600);
    }

    /// Starts every autostart pool once per host boot.
    fn autostart_once_per_boot(&self) {
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let marker = self.state_dir.join(".autostarted");
        let done = |m: &Path| fs::read_to_string(m).is_ok_and(|s| s.trim() == boot);
        if done(&marker) {
            return;
        }
        let Ok(_lock) = self.lock() else { return };
        if done(&marker) {
            return;
        }
        for pool in self.list() {
            if pool.autostart && !pool.active {
                // A pool that cannot start stays inactive; pool-start says why.
                let _ = self.start_locked(&pool);
            }
        }
        let _ = write_atomic(&marker, format!("{boot}\n").as_bytes(), 0o644);
    }
}

/// Creates `dir` (and parents) with the pool's permissions.
fn build_dir(dir: &Path, perms: &Perms) -> Result<()> {
    let mode = perms.mode.unwrap_or(DEFAULT_POOL_MODE);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| StorageError::io("cannot create path", dir, e))?;
    if perms.owner.is_some() || perms.group.is_some() {
        std::os::unix::fs::chown(dir, perms.owner, perms.group)
            .map_err(|e| StorageError::io("cannot set owner of", dir, e))?;
    }
    Ok(())
}

fn is_mounted(target: &str) -> bool {
    fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .any(|p| p.replace("\\040", " ") == target)
    })
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| StorageError::OperationFailed(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StorageError::OperationFailed(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn mount_fs(def: &PoolDef) -> Result<()> {
    if is_mounted(&def.target) {
        return Ok(());
    }
    let device = def.device.as_deref().unwrap_or_default();
    let mut cmd = Command::new("mount");
    if def.fs_format != "auto" {
        cmd.arg("-t").arg(&def.fs_format);
    }
    cmd.arg(device).arg(&def.target);
    run(
        &mut cmd,
        &format!("cannot mount '{device}' on '{}'", def.target),
    )
}

fn umount_fs(def: &PoolDef) -> Result<()> {
    if !is_mounted(&def.target) {
        return Ok(());
    }
    run(
        Command::new("umount").arg(&def.target),
        &format!("cannot unmount '{}'", def.target),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(tag: &str) -> (PathBuf, Store) {
        let root = std::env::temp_dir().join(format!("qvisor-pool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let ctx = StorageContext {
            config_dir: root.join("etc/storage").display().to_string().into(),
            state_dir: root.join("run/storage").display().to_string().into(),
            images_dir: root.join("lib/images").display().to_string().into(),
        };
        (root, Store::open(&ctx))
    }

    #[test]
    fn first_use_creates_a_running_autostart_default_pool_at_the_images_dir() {
        let (root, store) = temp_store("default");
        let pool = store.load("default").unwrap();
        assert!(pool.active && pool.autostart);
        assert_eq!(
            pool.def.target,
            root.join("lib/images").display().to_string()
        );
        assert!(root.join("lib/images").is_dir());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn undefined_default_pool_stays_undefined() {
        let (root, store) = temp_store("undef");
        store.destroy("default").unwrap();
        store.undefine("default").unwrap();
        let again = Store::open(&StorageContext {
            config_dir: root.join("etc/storage").display().to_string().into(),
            state_dir: root.join("run/storage").display().to_string().into(),
            images_dir: root.join("lib/images").display().to_string().into(),
        });
        assert!(matches!(
            again.load("default"),
            Err(StorageError::NoPool(_))
        ));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn define_start_destroy_undefine_cycle() {
        let (root, store) = temp_store("cycle");
        let dir = root.join("p1");
        let xml = format!(
            "<pool type='dir'><name>p1</name><target><path>{}</path></target></pool>",
            dir.display()
        );
        let pool = store.define(&xml).unwrap();
        assert!(!pool.active);
        let err = store.start("p1").unwrap_err().to_string();
        assert!(err.contains("cannot open directory"), "{err}");
        store.build("p1").unwrap();
        store.start("p1").unwrap();
        assert!(store.load("p1").unwrap().active);
        let err = store.undefine("p1").unwrap_err();
        assert!(matches!(err, StorageError::PoolStillActive(_)));
        store.destroy("p1").unwrap();
        store.undefine("p1").unwrap();
        assert!(matches!(store.load("p1"), Err(StorageError::NoPool(_))));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn same_target_as_another_pool_is_a_conflict() {
        let (root, store) = temp_store("conflict");
        let xml = format!(
            "<pool type='dir'><name>other</name><target><path>{}/lib/images/</path></target></pool>",
            root.display()
        );
        let err = store.define(&xml).unwrap_err();
        assert_eq!(
            err.to_string(),
            "operation failed: Storage source conflict with pool: 'default'"
        );
        assert!(!root.join("etc/storage/other.xml").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn redefining_a_name_with_another_uuid_is_refused() {
        let (root, store) = temp_store("uuid");
        let xml = format!(
            "<pool type='dir'><name>default</name><uuid>00000000-0000-0000-0000-000000000001</uuid><target><path>{}/x</path></target></pool>",
            root.display()
        );
        let err = store.define(&xml).unwrap_err().to_string();
        assert!(
            err.contains("pool 'default' already exists with uuid"),
            "{err}"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn lookup_by_uuid_finds_the_pool() {
        let (root, store) = temp_store("byuuid");
        let uuid = store.load("default").unwrap().def.uuid;
        assert_eq!(store.lookup(&uuid).unwrap().def.name, "default");
        fs::remove_dir_all(&root).unwrap();
    }
}
