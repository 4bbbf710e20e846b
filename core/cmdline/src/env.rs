//! Everything host-dependent the builder needs, as one value.
//!
//! The real start-up path and the conformance harness build the command
//! line with the same [`crate::build`]; they differ only in the
//! [`BuildEnv`] they pass: real directories, descriptors opened for real
//! and `/dev/urandom`, or libvirt's test harness values ([`crate::fake`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qvisor_domain::{CpuMode, CpuSet, Domain, DomainType};

use crate::model::FdPurpose;
use crate::props::Keyval;

/// A mounted hugetlbfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugetlbfsMount {
    /// Mount point.
    pub path: PathBuf,
    /// Page size in KiB.
    pub page_size_kib: u64,
    /// Whether this is the system's default huge page size.
    pub default: bool,
}

/// What the accelerator plugin contributes: the `-accel` argument and the
/// CPU modes it can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelContribution {
    /// The `-accel` argument (`kvm`, `tcg,tb-size=N`, `hvf`).
    pub accel: Keyval,
    /// CPU modes the accelerator supports.
    pub cpu_modes: Vec<CpuMode>,
}

impl AccelContribution {
    /// libvirt's built-in mapping from the domain type, used until the
    /// accelerator plugin answers (and by the conformance harness):
    /// `qemu` → TCG with `tb-size` from `<features><tcg><tb-cache>`,
    /// `kvm` → KVM with `dirty-ring-size`, `hvf` → HVF.
    pub fn for_domain(def: &Domain) -> Self {
        let all = vec![
            CpuMode::Custom,
            CpuMode::HostModel,
            CpuMode::HostPassthrough,
            CpuMode::Maximum,
        ];
        let accel = match def.kind {
            Some(DomainType::Kvm) => {
                let mut kv = Keyval::head("kvm");
                if let Some(size) = kvm_dirty_ring(def) {
                    kv.push("dirty-ring-size", size);
                }
                kv
            }
            Some(DomainType::Hvf) => Keyval::head("hvf"),
            _ => {
                let mut kv = Keyval::head("tcg");
                if let Some(Some(kib)) = def.features.as_ref().and_then(|f| f.tcg) {
                    if kib > 0 {
                        kv.push("tb-size", kib >> 10);
                    }
                }
                kv
            }
        };
        AccelContribution {
            accel,
            cpu_modes: all,
        }
    }
}

fn kvm_dirty_ring(def: &Domain) -> Option<u64> {
    let kvm = def.features.as_ref()?.kvm.as_ref()?;
    let dr = kvm.find("dirty-ring")?;
    if dr.get_attr("state") != Some("on") {
        return None;
    }
    dr.get_attr("size").and_then(|s| s.parse().ok())
}

/// A storage volume resolved from `<source pool= volume=>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedVolume {
    /// Actual disk type: `file`, `block`, `dir` or `network`.
    pub kind: String,
    /// Local path (file/block/dir).
    pub path: Option<String>,
    /// For network volumes (iSCSI direct pools): protocol, host, port, name.
    pub network: Option<NetworkVolume>,
}

/// The network location of a volume of an iSCSI-direct style pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkVolume {
    /// Protocol (`iscsi`).
    pub protocol: String,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: Option<String>,
    /// Target/LUN name.
    pub name: String,
    /// Initiator IQN.
    pub initiator: Option<String>,
    /// CHAP user and secret usage/uuid.
    pub auth: Option<(String, String)>,
}

/// Which graphics port is being allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphicsPort {
    /// VNC display port (5900 + display).
    Vnc,
    /// SPICE plain-text port.
    Spice,
    /// SPICE TLS port.
    SpiceTls,
}

/// What a secret reference in the XML names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `<secret uuid=>`.
    Uuid(String),
    /// `<secret usage=>` with the usage type (`ceph`, `iscsi`, `volume`, `tls`, ...).
    Usage {
        /// Usage type.
        kind: String,
        /// Usage id.
        usage: String,
    },
}

/// The services of the host the builder asks for (descriptors, secrets,
/// storage, randomness and file-system facts). The lifecycle implements it
/// for real; [`crate::fake::FakeHost`] implements libvirt's test harness.
pub trait Host {
    /// Fills `buf` with random bytes (IVs, generated ids).
    fn random_bytes(&mut self, buf: &mut [u8]);

    /// The value of a secret.
    fn secret(&self, r: &SecretRef) -> Result<Vec<u8>, String>;

    /// Resolves a volume of a storage pool.
    fn resolve_volume(&self, pool: &str, volume: &str) -> Result<ResolvedVolume, String>;

    /// Opens (or creates) the resource and returns the descriptor number
    /// the child will see. The implementation keeps the descriptor open
    /// until the child is spawned.
    fn pass_fd(&mut self, purpose: &FdPurpose) -> Result<i32, String>;

    /// Whether chardev files and the monitor socket are opened here and
    /// passed as descriptors. libvirt's "pretend" command line
    /// (`domxml-to-native`) opens nothing and names their paths instead.
    fn passes_chardev_fds(&self) -> bool {
        true
    }

    /// Whether `path` is a host CD-ROM drive.
    fn is_cdrom(&self, path: &str) -> bool;

    /// Reads a text file (firmware/vhost-user descriptors).
    fn read_file(&self, path: &Path) -> Option<String>;

    /// Lists a directory (file names, any order); empty when absent.
    fn list_dir(&self, dir: &Path) -> Vec<String>;

    /// Whether `path` exists (symlinks followed).
    fn exists(&self, path: &Path) -> bool;

    /// Whether every host NUMA node of `nodes` exists and is usable.
    fn numa_nodes_available(&self, nodes: &CpuSet) -> bool;

    /// The nodeset numad would choose for `placement='auto'`.
    fn auto_nodeset(&self) -> Option<CpuSet>;

    /// Runs a vhost-user helper with `--print-capabilities` and returns its
    /// output.
    fn vhost_user_capabilities(&self, binary: &Path) -> Option<String>;

    /// A port for an auto-allocated graphics server (`autoport='yes'`).
    fn graphics_port(&mut self, what: GraphicsPort) -> Result<u16, String>;

    /// A free vsock guest CID for `<cid auto='yes'/>`.
    fn free_vsock_cid(&mut self) -> Result<u32, String>;

    /// The socket of the swtpm started for an emulated TPM.
    fn tpm_emulator_socket(&self, alias: &str) -> String;

    /// The `/dev/sgN` node of a SCSI host device (`adapter`, bus, target, unit).
    fn scsi_host_device(
        &self,
        adapter: &str,
        bus: u32,
        target: u32,
        unit: u32,
    ) -> Result<String, String>;
}

/// The host-dependent inputs of [`crate::build`].
pub struct BuildEnv<'h> {
    /// Runtime domain id (-1 when only preparing, as `domxml-to-native`).
    pub domain_id: i32,
    /// Whether the driver is privileged (system).
    pub privileged: bool,
    /// The driver's state directory (`/var/lib/libvirt/qemu`); the
    /// per-domain private directory is `<lib_dir>/domain-<short name>`.
    pub lib_dir: PathBuf,
    /// Where channel sockets live (`/var/lib/libvirt/qemu/channel/target`).
    pub channel_target_dir: PathBuf,
    /// Where generated NVRAM files live.
    pub nvram_dir: PathBuf,
    /// Where file-backed guest RAM lives (qemu.conf `memory_backing_dir`).
    pub memory_backing_dir: PathBuf,
    /// Mounted hugetlbfs file systems (from qemu.conf or /proc/mounts).
    pub hugetlbfs: Vec<HugetlbfsMount>,
    /// Directory for passt sockets.
    pub passt_dir: PathBuf,
    /// System page size in KiB.
    pub system_page_size_kib: u64,
    /// Firmware descriptor directories, highest priority first.
    pub firmware_dirs: Vec<PathBuf>,
    /// vhost-user descriptor directories, highest priority first.
    pub vhost_user_dirs: Vec<PathBuf>,
    /// Map of a descriptor path prefix to where it actually is (lets the
    /// conformance harness put `/usr/share/qemu/...` under its aux dir).
    pub path_prefix_map: Vec<(PathBuf, PathBuf)>,
    /// The accelerator plugin's contribution.
    pub accel: AccelContribution,
    /// The domain master key (32 bytes).
    pub master_key: [u8; 32],
    /// "Now" as Unix time (for `<clock offset='variable'>`).
    pub now: i64,
    /// Offset of local time from UTC in seconds (east positive), for
    /// `<clock offset='variable' basis='localtime'>`.
    pub local_offset: i64,
    /// Process environment libvirt reads while building (`QEMU_AUDIO_DRV`,
    /// `SDL_AUDIODRIVER`).
    pub process_env: BTreeMap<String, String>,
    /// The DRM render node chosen when graphics ask for one automatically.
    pub render_node: Option<String>,
    /// Name of a TAP device to use when the XML gives none (`vnet0`).
    pub default_tap_name: String,
    /// Host services.
    pub host: &'h mut dyn Host,
}

impl BuildEnv<'_> {
    /// libvirt's short domain name: `<id>-<first 20 characters of name>`.
    pub fn short_name(&self, name: &str) -> String {
        let trimmed: String = name.chars().take(20).collect();
        format!("{}-{}", self.domain_id, trimmed)
    }

    /// The per-domain private directory.
    pub fn private_dir(&self, name: &str) -> PathBuf {
        self.lib_dir
            .join(format!("domain-{}", self.short_name(name)))
    }

    /// Maps a well-known host path through [`BuildEnv::path_prefix_map`].
    pub fn host_path(&self, p: &Path) -> PathBuf {
        for (from, to) in &self.path_prefix_map {
            if let Ok(rest) = p.strip_prefix(from) {
                return to.join(rest);
            }
        }
        p.to_path_buf()
    }
}
