//! The on-disk capability cache: libvirt's cache documents at
//! `<cache_dir>/capabilities/<sha256 of binary path>.xml` (the layout
//! libvirt uses under `cache/qemu/`).
//!
//! A cached document is reused while the binary's ctime and size, the
//! prober's version and ctime, the module directory, KVM availability (for
//! a native target) and, with a hardware accelerator, the host's CPU
//! signature, microcode and kernel are unchanged. Anything else (a missing,
//! corrupt or stale file) re-probes and rewrites the file atomically
//! (temporary file, fsync, rename, fsync of the directory).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::arch;
use crate::flags::Flag;
use crate::live::{self, BinaryStamp, LiveProbeError, ProbeOptions};
use crate::model::QemuCaps;
use crate::sha256::sha256_hex;

/// Settings of a [`CapsCache`].
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The connection's QEMU cache directory (e.g. `/var/cache/libvirt/qemu`
    /// or `<root>/cache/qemu`); files go to its `capabilities/`.
    pub cache_dir: PathBuf,
    /// The prober's version number (`selfvers`).
    pub self_version: u64,
    /// The prober's ctime (`selfctime`).
    pub self_ctime: i64,
    /// How to probe.
    pub probe: ProbeOptions,
}

impl CacheConfig {
    /// A configuration whose `selfvers` is this crate's version and whose
    /// `selfctime` is the running executable's ctime.
    pub fn new(cache_dir: impl Into<PathBuf>, probe: ProbeOptions) -> CacheConfig {
        CacheConfig {
            cache_dir: cache_dir.into(),
            self_version: self_version(),
            self_ctime: std::env::current_exe()
                .and_then(std::fs::metadata)
                .map(|m| m.ctime())
                .unwrap_or(0),
            probe,
        }
    }
}

/// This crate's version as `major * 1_000_000 + minor * 1_000 + patch`.
pub fn self_version() -> u64 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    a * 1_000_000 + b * 1_000 + c
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Probing failed.
    #[error(transparent)]
    Probe(#[from] LiveProbeError),
    /// Writing the cache file failed.
    #[error("Failed to save '{path}' for '{binary}': {source}")]
    Save {
        /// The cache file.
        path: PathBuf,
        /// The binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Capabilities of QEMU binaries, probed on demand and cached in memory and
/// on disk. Safe to share between threads.
pub struct CapsCache {
    config: CacheConfig,
    memory: Mutex<HashMap<PathBuf, Arc<QemuCaps>>>,
    probing: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl CapsCache {
    /// A cache with `config`.
    pub fn new(config: CacheConfig) -> CapsCache {
        CapsCache {
            config,
            memory: Mutex::new(HashMap::new()),
            probing: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The cache file of `binary`.
    pub fn file_for(&self, binary: &Path) -> PathBuf {
        self.config.cache_dir.join("capabilities").join(format!(
            "{}.xml",
            sha256_hex(binary.as_os_str().as_encoded_bytes())
        ))
    }

    /// The capabilities of `binary`: from memory, from the cache file, or
    /// probed (and then saved).
    pub fn lookup(&self, binary: &Path) -> Result<Arc<QemuCaps>, CacheError> {
        let stamp = match live::stamp_binary(binary) {
            Ok(s) => s,
            Err(e) => {
                lock(&self.memory).remove(binary);
                return Err(e.into());
            }
        };
        let gate = Arc::clone(lock(&self.probing).entry(binary.to_path_buf()).or_default());
        let _guard = lock(&gate);

        if let Some(c) = lock(&self.memory).get(binary) {
            if self.check_valid(c, binary, stamp).is_ok() {
                return Ok(Arc::clone(c));
            }
        }
        let file = self.file_for(binary);
        if let Some(c) = self.load_valid(&file, binary, stamp) {
            let c = Arc::new(c);
            lock(&self.memory).insert(binary.to_path_buf(), Arc::clone(&c));
            return Ok(c);
        }
        let mut caps = live::probe_binary(binary, &self.config.probe)?;
        caps.self_ctime = self.config.self_ctime;
        caps.self_vers = self.config.self_version;
        write_atomically(&file, caps.to_cache_xml().as_bytes()).map_err(|source| {
            CacheError::Save {
                path: file.clone(),
                binary: binary.to_path_buf(),
                source,
            }
        })?;
        let c = Arc::new(caps);
        lock(&self.memory).insert(binary.to_path_buf(), Arc::clone(&c));
        Ok(c)
    }

    /// [`CapsCache::lookup`] for several binaries in parallel.
    pub fn lookup_many(&self, binaries: &[PathBuf]) -> Vec<Result<Arc<QemuCaps>, CacheError>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = binaries
                .iter()
                .map(|b| s.spawn(move || self.lookup(b)))
                .collect();
            handles
                .into_iter()
                .zip(binaries)
                .map(|(h, b)| {
                    h.join().unwrap_or_else(|_| {
                        Err(CacheError::Probe(LiveProbeError::Exited {
                            binary: b.clone(),
                            detail: "probe thread panicked".to_string(),
                        }))
                    })
                })
                .collect()
        })
    }

    fn load_valid(&self, file: &Path, binary: &Path, stamp: BinaryStamp) -> Option<QemuCaps> {
        let text = std::fs::read_to_string(file).ok()?;
        match QemuCaps::from_cache_xml(&text) {
            Ok(c) => match self.check_valid(&c, binary, stamp) {
                Ok(()) => Some(c),
                Err(why) => {
                    tracing::debug!("Outdated capabilities for '{}': {why}", binary.display());
                    None
                }
            },
            Err(e) => {
                tracing::warn!(
                    "corrupt QEMU capabilities cache '{}' for '{}', re-probing: {e}",
                    file.display(),
                    binary.display()
                );
                None
            }
        }
    }

    /// Why a cached document no longer describes `binary` on this host.
    pub fn check_valid(
        &self,
        c: &QemuCaps,
        binary: &Path,
        stamp: BinaryStamp,
    ) -> Result<(), String> {
        let cfg = &self.config;
        if Path::new(&c.emulator) != binary {
            return Err(format!("cache is for '{}'", c.emulator));
        }
        if c.self_vers != cfg.self_version || c.self_ctime != cfg.self_ctime {
            return Err(format!(
                "prober changed ({} vs {}, {} vs {})",
                c.self_ctime, cfg.self_ctime, c.self_vers, cfg.self_version
            ));
        }
        if c.qemu_ctime != stamp.ctime || c.qemu_size != Some(stamp.size) {
            return Err(format!(
                "QEMU binary changed ({} vs {}, {:?} vs {})",
                c.qemu_ctime, stamp.ctime, c.qemu_size, stamp.size
            ));
        }
        let moddir = cfg
            .probe
            .module_dir
            .as_ref()
            .and_then(|d| std::fs::metadata(d).ok())
            .map(|m| m.mtime());
        if c.qemu_moddir_mtime.filter(|&m| m > 0) != moddir.filter(|&m| m > 0) {
            return Err("QEMU modules directory changed".to_string());
        }
        if arch::guest_is_native(host_arch(), &c.arch) {
            if !c.has(Flag::Kvm) && cfg.probe.kvm_usable {
                return Err(
                    "KVM was not enabled when probing, but it should be usable now".to_string(),
                );
            }
            if c.has(Flag::Kvm) && !cfg.probe.kvm_usable {
                return Err("KVM was enabled when probing, but it is not available now".to_string());
            }
        }
        if c.has_hw_accel() {
            let h = &cfg.probe.host;
            if c.host_cpu_signature != h.cpu_signature {
                return Err("host CPU changed".to_string());
            }
            if c.microcode_version != h.microcode_version {
                return Err("microcode version changed".to_string());
            }
            if c.kernel_version != h.kernel_version {
                return Err("kernel version changed".to_string());
            }
            if c.has(Flag::Kvm) && c.kvm_supports_nesting != h.kvm_supports_nesting {
                return Err("kvm kernel nested value changed".to_string());
            }
        }
        Ok(())
    }
}

/// libvirt's name for the host architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "i686",
        "arm" => "armv7l",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "powerpc" => "ppc",
        other => other,
    }
}

/// Writes `data` to `path` atomically: a temporary file in the same
/// directory, fsync, rename, fsync of the directory. Creates the directory.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("cache");
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const QEMU: &str = "/usr/bin/qemu-system-x86_64";

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("qvisor-caps-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn cache(dir: &Path) -> CapsCache {
        let probe = ProbeOptions {
            work_dir: dir.to_path_buf(),
            timeout: Duration::from_secs(20),
            ..Default::default()
        };
        CapsCache::new(CacheConfig::new(dir.join("cache"), probe))
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporaries() {
        let d = scratch("atomic");
        let f = d.join("sub/x.xml");
        write_atomically(&f, b"one").unwrap();
        write_atomically(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.join("sub")).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cache_file_name_is_libvirts() {
        let c = CapsCache::new(CacheConfig::new("/c", ProbeOptions::default()));
        assert_eq!(
            c.file_for(Path::new(QEMU)),
            Path::new("/c/capabilities/926803a9278e445ec919c2b6cbd8c1c449c75b26dcb1686b774314180376c725.xml")
        );
    }

    #[test]
    fn missing_binary_is_an_error() {
        let d = scratch("missing");
        let e = cache(&d)
            .lookup(Path::new("/nonexistent/qemu"))
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/qemu"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn probe_is_cached_then_reused_and_corrupt_files_reprobe() {
        if !Path::new(QEMU).exists() {
            eprintln!("skipping: {QEMU} is not installed");
            return;
        }
        let d = scratch("reuse");
        let c = cache(&d);
        let first = c.lookup(Path::new(QEMU)).unwrap();
        let file = c.file_for(Path::new(QEMU));
        let saved = std::fs::read_to_string(&file).unwrap();
        assert_eq!(saved, first.to_cache_xml());

        // A fresh cache object (new process) loads the file without probing.
        let c2 = cache(&d);
        let t = Instant::now();
        let again = c2.lookup(Path::new(QEMU)).unwrap();
        assert!(t.elapsed() < Duration::from_millis(500));
        assert_eq!(*again, *first);

        // Corrupt file: re-probed, rewritten, no panic.
        std::fs::write(&file, "<qemuCaps><flag name=").unwrap();
        let c3 = cache(&d);
        let reprobed = c3.lookup(Path::new(QEMU)).unwrap();
        assert_eq!(reprobed.flags, first.flags);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), saved);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_documents_are_rejected() {
        let d = scratch("stale");
        let c = cache(&d);
        let cfg = c.config().clone();
        let mut caps = QemuCaps::new("/q");
        caps.arch = host_arch().to_string();
        caps.qemu_ctime = 10;
        caps.qemu_size = Some(20);
        caps.self_vers = cfg.self_version;
        caps.self_ctime = cfg.self_ctime;
        caps.qemu_moddir_mtime = cfg
            .probe
            .module_dir
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.mtime());
        let stamp = BinaryStamp {
            ctime: 10,
            size: 20,
        };
        assert_eq!(c.check_valid(&caps, Path::new("/q"), stamp), Ok(()));
        assert!(c.check_valid(&caps, Path::new("/other"), stamp).is_err());
        assert!(c
            .check_valid(
                &caps,
                Path::new("/q"),
                BinaryStamp {
                    ctime: 11,
                    size: 20
                }
            )
            .is_err());
        assert!(c
            .check_valid(
                &caps,
                Path::new("/q"),
                BinaryStamp {
                    ctime: 10,
                    size: 21
                }
            )
            .is_err());
        let mut old = caps.clone();
        old.self_vers += 1;
        assert!(c.check_valid(&old, Path::new("/q"), stamp).is_err());
        // KVM became usable since the probe.
        let mut kvm_now = CapsCache::new(CacheConfig {
            probe: ProbeOptions {
                kvm_usable: true,
                ..cfg.probe.clone()
            },
            ..cfg.clone()
        });
        assert!(kvm_now.check_valid(&caps, Path::new("/q"), stamp).is_err());
        // KVM probed but gone now.
        let mut with_kvm = caps.clone();
        with_kvm.set(Flag::Kvm);
        assert!(c.check_valid(&with_kvm, Path::new("/q"), stamp).is_err());
        kvm_now.config.probe.host = Default::default();
        assert_eq!(
            kvm_now.check_valid(&with_kvm, Path::new("/q"), stamp),
            Ok(())
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
