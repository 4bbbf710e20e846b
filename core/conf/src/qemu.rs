//! `qemu.conf`: every key of libvirt 9.0's QEMU driver configuration, typed,
//! with libvirt's defaults and libvirt's checks.
//!
//! The key set is the one of libvirt 9.0 (`src/qemu/qemu.conf.in`,
//! `libvirtd_qemu.aug`, `qemu_conf.c`): 93 keys, listed in [`KEYS`] with
//! their type and what qvisor does with them. Unknown keys are not errors:
//! they come back as [`Warning`]s, as do duplicates (the first setting wins,
//! as in libvirt) and settings libvirt also only warns about.
//!
//! Types are checked the way libvirt's `virConfGetValue*` check them:
//!
//! | kind        | accepted                               | otherwise                                      |
//! |-------------|----------------------------------------|------------------------------------------------|
//! | bool        | the number `0` or `1`                  | `expected a bool` / `must be 0 or 1`           |
//! | uint        | an unsigned number `<= 4294967295`     | `expected an unsigned integer` / range error   |
//! | int         | a number in `i32` range                | `expected a signed integer` / range error      |
//! | string      | a quoted string                        | `expected a string`                            |
//! | string list | a list of strings                      | `expected a string list`                       |
//! | string/list | a string (a one-element list) or list  | `expected a string or string list`             |
//!
//! and each error names the file, line, column, key and what was found:
//! `internal error: /etc/libvirt/qemu.conf:7:11: expected a bool for
//! 'vnc_tls' parameter, found string "yes"`.
//!
//! Value checks are libvirt's too (port ranges, `stdio_handler`,
//! `sched_core`, `max_core`, cgroup controller and namespace names,
//! duplicate security drivers, `nvram` pairs, migration addresses,
//! `allow_disk_format_probing`, `user`/`group` syntax). Checks that need the
//! host (does a certificate directory exist, does a user exist, is a
//! namespace or `SCHED_CORE` available, hugepage sizes) are left to the
//! driver; [`QemuConf::validate_cert_dirs`] does the first with a probe the
//! caller passes in.
//!
//! ## What qvisor gives effect to
//!
//! [`KeyInfo::effect`] says, per key, who uses it:
//! - [`Effect::Lifecycle`]: the driver's lifecycle (issue 6): `vnc_listen`,
//!   `stdio_handler`, `max_processes`, `max_files`, `max_threads_per_process`,
//!   `max_core`, `log_timestamp`, `set_process_name`, and the directory
//!   settings `auto_dump_path`, `memory_backing_dir`, `hugetlbfs_mount`,
//!   `nvram`.
//! - [`Effect::Security`]: the security plugins: `user`, `group`,
//!   `dynamic_ownership`, `remember_owner`, `security_driver`,
//!   `security_default_confined`, `security_require_confined`,
//!   `cgroup_controllers`, `cgroup_device_acl`, `clear_emulator_capabilities`,
//!   `seccomp_sandbox`, `namespaces`, `swtpm_user`, `swtpm_group`.
//! - [`Effect::CommandLine`]: the QEMU command line builder (graphics, TLS,
//!   audio, memory and compatibility settings).
//! - [`Effect::Recorded`]: parsed and validated, kept in [`QemuConf`], not
//!   acted on yet (migration, save/dump formats, lock manager, RPC limits,
//!   helpers qvisor does not run).
//!
//! `clear_emulator_capabilities` is obsolete in libvirt 9.0 (its augeas lens
//! still accepts it, the C code ignores it); qvisor honours it (default 1).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::parser::{self, ConfFile, Entry, Position, Value};
use crate::{ErrorCode, Mode};

/// The type a key's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `0` or `1`.
    Bool,
    /// An unsigned 32-bit number.
    UInt,
    /// A signed 32-bit number.
    Int,
    /// A quoted string.
    String,
    /// A list of strings.
    StringList,
    /// A string or a list of strings.
    StringOrList,
    /// An unsigned 64-bit number or the string `"unlimited"` (`max_core`).
    SizeOrUnlimited,
}

/// Who acts on a key in qvisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The driver's lifecycle code (process limits, logs, directories).
    Lifecycle,
    /// The security plugins (DAC, cgroups, capabilities, seccomp, namespaces).
    Security,
    /// The QEMU command line builder.
    CommandLine,
    /// Parsed and validated only.
    Recorded,
}

/// One `qemu.conf` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key.
    pub name: &'static str,
    /// Its value type.
    pub kind: KeyKind,
    /// Who acts on it.
    pub effect: Effect,
}

const fn key(name: &'static str, kind: KeyKind, effect: Effect) -> KeyInfo {
    KeyInfo { name, kind, effect }
}

use Effect::{CommandLine as Cmd, Lifecycle as Life, Recorded as Rec, Security as Sec};
use KeyKind::{
    Bool, Int, SizeOrUnlimited, String as Str, StringList as List, StringOrList as StrOrList, UInt,
};

/// Every key of libvirt 9.0's `qemu.conf`, in the order of libvirt's sample
/// file, plus the obsolete `clear_emulator_capabilities`.
pub const KEYS: &[KeyInfo] = &[
    key("default_tls_x509_cert_dir", Str, Cmd),
    key("default_tls_x509_verify", Bool, Cmd),
    key("default_tls_x509_secret_uuid", Str, Cmd),
    key("vnc_listen", Str, Life),
    key("vnc_auto_unix_socket", Bool, Cmd),
    key("vnc_tls", Bool, Cmd),
    key("vnc_tls_x509_cert_dir", Str, Cmd),
    key("vnc_tls_x509_secret_uuid", Str, Cmd),
    key("vnc_tls_x509_verify", Bool, Cmd),
    key("vnc_password", Str, Cmd),
    key("vnc_sasl", Bool, Cmd),
    key("vnc_sasl_dir", Str, Cmd),
    key("vnc_allow_host_audio", Bool, Cmd),
    key("spice_listen", Str, Cmd),
    key("spice_tls", Bool, Cmd),
    key("spice_tls_x509_cert_dir", Str, Cmd),
    key("spice_auto_unix_socket", Bool, Cmd),
    key("spice_password", Str, Cmd),
    key("spice_sasl", Bool, Cmd),
    key("spice_sasl_dir", Str, Cmd),
    key("chardev_tls", Bool, Cmd),
    key("chardev_tls_x509_cert_dir", Str, Cmd),
    key("chardev_tls_x509_verify", Bool, Cmd),
    key("chardev_tls_x509_secret_uuid", Str, Cmd),
    key("vxhs_tls", Bool, Cmd),
    key("vxhs_tls_x509_cert_dir", Str, Cmd),
    key("vxhs_tls_x509_secret_uuid", Str, Cmd),
    key("nbd_tls", Bool, Cmd),
    key("nbd_tls_x509_cert_dir", Str, Cmd),
    key("nbd_tls_x509_secret_uuid", Str, Cmd),
    key("migrate_tls_x509_cert_dir", Str, Rec),
    key("migrate_tls_x509_verify", Bool, Rec),
    key("migrate_tls_x509_secret_uuid", Str, Rec),
    key("migrate_tls_force", Bool, Rec),
    key("backup_tls_x509_cert_dir", Str, Rec),
    key("backup_tls_x509_verify", Bool, Rec),
    key("backup_tls_x509_secret_uuid", Str, Rec),
    key("nographics_allow_host_audio", Bool, Cmd),
    key("remote_display_port_min", UInt, Cmd),
    key("remote_display_port_max", UInt, Cmd),
    key("remote_websocket_port_min", UInt, Cmd),
    key("remote_websocket_port_max", UInt, Cmd),
    key("security_driver", StrOrList, Sec),
    key("security_default_confined", Bool, Sec),
    key("security_require_confined", Bool, Sec),
    key("user", Str, Sec),
    key("group", Str, Sec),
    key("dynamic_ownership", Bool, Sec),
    key("remember_owner", Bool, Sec),
    key("cgroup_controllers", List, Sec),
    key("cgroup_device_acl", List, Sec),
    key("save_image_format", Str, Rec),
    key("dump_image_format", Str, Rec),
    key("snapshot_image_format", Str, Rec),
    key("auto_dump_path", Str, Life),
    key("auto_dump_bypass_cache", Bool, Rec),
    key("auto_start_bypass_cache", Bool, Rec),
    key("hugetlbfs_mount", StrOrList, Life),
    key("bridge_helper", Str, Rec),
    key("set_process_name", Bool, Life),
    key("max_processes", UInt, Life),
    key("max_files", UInt, Life),
    key("max_threads_per_process", UInt, Life),
    key("max_core", SizeOrUnlimited, Life),
    key("dump_guest_core", Bool, Cmd),
    key("mac_filter", Bool, Rec),
    key("relaxed_acs_check", Bool, Rec),
    key("allow_disk_format_probing", Bool, Rec),
    key("lock_manager", Str, Rec),
    key("max_queued", UInt, Rec),
    key("keepalive_interval", Int, Rec),
    key("keepalive_count", UInt, Rec),
    key("seccomp_sandbox", Int, Sec),
    key("migration_address", Str, Rec),
    key("migration_host", Str, Rec),
    key("migration_port_min", UInt, Rec),
    key("migration_port_max", UInt, Rec),
    key("log_timestamp", Bool, Life),
    key("nvram", List, Life),
    key("stdio_handler", Str, Life),
    key("gluster_debug_level", UInt, Cmd),
    key("virtiofsd_debug", Bool, Rec),
    key("namespaces", List, Sec),
    key("memory_backing_dir", Str, Life),
    key("pr_helper", Str, Rec),
    key("slirp_helper", Str, Rec),
    key("dbus_daemon", Str, Rec),
    key("swtpm_user", Str, Sec),
    key("swtpm_group", Str, Sec),
    key("capability_filters", List, Cmd),
    key("deprecation_behavior", Str, Cmd),
    key("sched_core", Str, Rec),
    key("clear_emulator_capabilities", Bool, Sec),
];

/// The information on `name`, if it is a `qemu.conf` key.
pub fn key_info(name: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|k| k.name == name)
}

/// libvirt's default `cgroup_device_acl`.
pub const DEFAULT_CGROUP_DEVICE_ACL: &[&str] = &[
    "/dev/null",
    "/dev/full",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/dev/ptmx",
    "/dev/kvm",
];

/// libvirt's built-in firmware/NVRAM template pairs (`DEFAULT_LOADER_NVRAM`).
pub const DEFAULT_NVRAM: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.secboot.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/AAVMF/AAVMF_CODE.fd",
        "/usr/share/AAVMF/AAVMF_VARS.fd",
    ),
    (
        "/usr/share/AAVMF/AAVMF32_CODE.fd",
        "/usr/share/AAVMF/AAVMF32_VARS.fd",
    ),
];

/// The user QEMU runs as under the system driver when `qemu.conf` does not
/// say (libvirt's build-time `QEMU_USER`; its generic default is root).
pub const DEFAULT_SYSTEM_USER: &str = "root";
/// The group QEMU runs as under the system driver (`QEMU_GROUP`).
pub const DEFAULT_SYSTEM_GROUP: &str = "root";

/// The hugetlbfs mount points listed in `/proc/mounts`-format text, in
/// order: what a privileged driver uses when `hugetlbfs_mount` is unset.
/// (Octal escapes such as `\040` for a space are decoded.)
pub fn hugetlbfs_mounts_from(proc_mounts: &str) -> Vec<PathBuf> {
    proc_mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (_, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == "hugetlbfs").then(|| PathBuf::from(decode_mount_field(dir)))
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escaping of mount fields.
fn decode_mount_field(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0')));
        match octal.and_then(|v| u8::try_from(v).ok()) {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// A user or group as `qemu.conf` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdSpec {
    /// The user or group running the driver (libvirt's unprivileged default).
    Caller,
    /// `"+N"`: the numeric id N, never looked up as a name.
    Id(u32),
    /// A name; if no such user or group exists and it is all digits, it is
    /// taken as a numeric id (libvirt's rule).
    Name(String),
}

/// Whether an [`IdSpec`] names a user or a group (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// A user (`user`, `swtpm_user`).
    User,
    /// A group (`group`, `swtpm_group`).
    Group,
}

impl IdKind {
    fn word(self) -> &'static str {
        match self {
            IdKind::User => "user",
            IdKind::Group => "group",
        }
    }
}

impl IdSpec {
    /// Parses a `user`/`group` value the way libvirt does: `+N` is the id
    /// N, anything else a name.
    pub fn parse(value: &str, kind: IdKind) -> std::result::Result<Self, String> {
        match value.strip_prefix('+') {
            Some(digits) => digits
                .parse::<u32>()
                .ok()
                .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
                .map(IdSpec::Id)
                .ok_or_else(|| format!("Failed to parse {} '{digits}'", kind.word())),
            None => Ok(IdSpec::Name(value.to_owned())),
        }
    }

    /// Resolves to a numeric id: `lookup` maps a name to an id (`getpwnam`
    /// or `getgrnam`), `caller` is the id running the driver. A name that
    /// does not exist but is all digits is that id (libvirt's rule).
    pub fn resolve(
        &self,
        kind: IdKind,
        lookup: impl FnOnce(&str) -> Option<u32>,
        caller: u32,
    ) -> std::result::Result<u32, String> {
        match self {
            IdSpec::Caller => Ok(caller),
            IdSpec::Id(id) => Ok(*id),
            IdSpec::Name(name) => lookup(name)
                .or_else(|| name.parse().ok())
                .ok_or_else(|| format!("Failed to parse {} '{name}'", kind.word())),
        }
    }
}

impl fmt::Display for IdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdSpec::Caller => f.write_str("(caller)"),
            IdSpec::Id(id) => write!(f, "+{id}"),
            IdSpec::Name(name) => f.write_str(name),
        }
    }
}

/// `max_core`: the core dump size limit for QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxCore {
    /// At most this many bytes (0, the default, disables core dumps).
    Bytes(u64),
    /// `"unlimited"`.
    Unlimited,
}

/// `stdio_handler`: where QEMU's stdout/stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioHandler {
    /// `"logd"` (default): through a log handler that rotates the file.
    Logd,
    /// `"file"`: QEMU writes the log file directly.
    File,
}

/// `sched_core`: core scheduling groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedCore {
    /// `"none"` (default).
    None,
    /// `"vcpus"`.
    Vcpus,
    /// `"emulator"`.
    Emulator,
    /// `"full"`.
    Full,
}

/// `deprecation_behavior`: QEMU's `-compat` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeprecationBehavior {
    /// `"none"` (default).
    None,
    /// `"omit"`.
    Omit,
    /// `"reject"`.
    Reject,
    /// `"crash"`.
    Crash,
}

/// A cgroup controller name accepted by `cgroup_controllers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupController {
    /// `cpu`
    Cpu,
    /// `cpuacct`
    Cpuacct,
    /// `cpuset`
    Cpuset,
    /// `memory`
    Memory,
    /// `devices`
    Devices,
    /// `freezer`
    Freezer,
    /// `blkio`
    Blkio,
    /// `net_cls`
    NetCls,
    /// `perf_event`
    PerfEvent,
    /// `name=systemd`
    Systemd,
}

const CGROUP_CONTROLLERS: &[(&str, CgroupController)] = &[
    ("cpu", CgroupController::Cpu),
    ("cpuacct", CgroupController::Cpuacct),
    ("cpuset", CgroupController::Cpuset),
    ("memory", CgroupController::Memory),
    ("devices", CgroupController::Devices),
    ("freezer", CgroupController::Freezer),
    ("blkio", CgroupController::Blkio),
    ("net_cls", CgroupController::NetCls),
    ("perf_event", CgroupController::PerfEvent),
    ("name=systemd", CgroupController::Systemd),
];

/// A namespace accepted by `namespaces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `mount`: a private mount namespace with its own `/dev`.
    Mount,
}

/// One `nvram` entry: a firmware image and its variable-store template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwarePair {
    /// The firmware (code) image.
    pub code: PathBuf,
    /// The NVRAM template copied for each domain.
    pub vars: PathBuf,
}

/// A user of TLS certificates with its own `*_tls_x509_*` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsService {
    /// VNC server (`vnc_tls_*`).
    Vnc,
    /// SPICE server (`spice_tls_*`).
    Spice,
    /// TCP character devices (`chardev_tls_*`).
    Chardev,
    /// Migration (`migrate_tls_*`).
    Migrate,
    /// Backup NBD server (`backup_tls_*`).
    Backup,
    /// VxHS disks (`vxhs_tls_*`).
    Vxhs,
    /// NBD disks (`nbd_tls_*`).
    Nbd,
}

impl TlsService {
    /// Every service, in libvirt's order.
    pub const ALL: [TlsService; 7] = [
        TlsService::Vnc,
        TlsService::Spice,
        TlsService::Chardev,
        TlsService::Migrate,
        TlsService::Backup,
        TlsService::Vxhs,
        TlsService::Nbd,
    ];

    /// The key prefix (`vnc`).
    pub fn name(self) -> &'static str {
        match self {
            TlsService::Vnc => "vnc",
            TlsService::Spice => "spice",
            TlsService::Chardev => "chardev",
            TlsService::Migrate => "migrate",
            TlsService::Backup => "backup",
            TlsService::Vxhs => "vxhs",
            TlsService::Nbd => "nbd",
        }
    }
}

/// The TLS settings one service ends up with after libvirt's defaulting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate directory.
    pub cert_dir: PathBuf,
    /// Whether clients must present certificates; `None` for services
    /// without a `*_verify` key (SPICE, VxHS, NBD).
    pub verify: Option<bool>,
    /// UUID of the secret decrypting the server key, if any.
    pub secret_uuid: Option<String>,
}

/// The QEMU driver configuration: one field per `qemu.conf` key, named as
/// the key, holding the file's value or libvirt's default.
///
/// `Option` fields are those whose absence means something (libvirt
/// derives a value, or the feature is off); see the accessor methods for
/// the derived values ([`QemuConf::tls`], [`QemuConf::firmwares`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConf {
    // --- default TLS
    /// Default `/etc/pki/qemu` (`ROOT/etc/pki/qemu` when embedded).
    pub default_tls_x509_cert_dir: PathBuf,
    pub default_tls_x509_verify: Option<bool>,
    pub default_tls_x509_secret_uuid: Option<String>,
    // --- VNC
    /// Default `127.0.0.1`.
    pub vnc_listen: String,
    pub vnc_auto_unix_socket: bool,
    pub vnc_tls: bool,
    pub vnc_tls_x509_cert_dir: Option<PathBuf>,
    pub vnc_tls_x509_secret_uuid: Option<String>,
    pub vnc_tls_x509_verify: Option<bool>,
    /// At most 8 characters (longer values are truncated with a warning).
    pub vnc_password: Option<String>,
    pub vnc_sasl: bool,
    pub vnc_sasl_dir: Option<PathBuf>,
    pub vnc_allow_host_audio: bool,
    // --- SPICE
    /// Default `127.0.0.1`.
    pub spice_listen: String,
    pub spice_tls: bool,
    pub spice_tls_x509_cert_dir: Option<PathBuf>,
    pub spice_auto_unix_socket: bool,
    pub spice_password: Option<String>,
    pub spice_sasl: bool,
    pub spice_sasl_dir: Option<PathBuf>,
    // --- other TLS users
    pub chardev_tls: bool,
    pub chardev_tls_x509_cert_dir: Option<PathBuf>,
    pub chardev_tls_x509_verify: Option<bool>,
    pub chardev_tls_x509_secret_uuid: Option<String>,
    pub vxhs_tls: bool,
    pub vxhs_tls_x509_cert_dir: Option<PathBuf>,
    pub vxhs_tls_x509_secret_uuid: Option<String>,
    pub nbd_tls: bool,
    pub nbd_tls_x509_cert_dir: Option<PathBuf>,
    pub nbd_tls_x509_secret_uuid: Option<String>,
    pub migrate_tls_x509_cert_dir: Option<PathBuf>,
    pub migrate_tls_x509_verify: Option<bool>,
    pub migrate_tls_x509_secret_uuid: Option<String>,
    pub migrate_tls_force: bool,
    pub backup_tls_x509_cert_dir: Option<PathBuf>,
    pub backup_tls_x509_verify: Option<bool>,
    pub backup_tls_x509_secret_uuid: Option<String>,
    pub nographics_allow_host_audio: bool,
    // --- display ports
    /// Default 5900, at least 5900.
    pub remote_display_port_min: u16,
    /// Default 65535, between the minimum and 65535.
    pub remote_display_port_max: u16,
    /// Default 5700, at least 5700.
    pub remote_websocket_port_min: u16,
    /// Default 65535.
    pub remote_websocket_port_max: u16,
    // --- security
    /// `None`: probe the available security drivers (libvirt's default).
    pub security_driver: Option<Vec<String>>,
    /// Default 1.
    pub security_default_confined: bool,
    pub security_require_confined: bool,
    /// System: `root`; session and embedded as non-root: the caller.
    pub user: IdSpec,
    /// System: `root`; session and embedded as non-root: the caller.
    pub group: IdSpec,
    /// Default 1 when privileged, 0 otherwise.
    pub dynamic_ownership: bool,
    /// Default 1 when privileged, 0 otherwise.
    pub remember_owner: bool,
    /// `None`: use every controller that is mounted (auto-detect).
    pub cgroup_controllers: Option<Vec<CgroupController>>,
    /// Default [`DEFAULT_CGROUP_DEVICE_ACL`].
    pub cgroup_device_acl: Vec<PathBuf>,
    /// -1 (default): use the sandbox when QEMU supports it; 0 off; 1 on.
    pub seccomp_sandbox: i32,
    /// Default `[mount]` when privileged, empty otherwise.
    pub namespaces: Vec<Namespace>,
    /// Obsolete in libvirt; qvisor drops QEMU's capabilities unless 0.
    pub clear_emulator_capabilities: bool,
    // --- save / dump
    pub save_image_format: Option<String>,
    pub dump_image_format: Option<String>,
    pub snapshot_image_format: Option<String>,
    /// `None`: the driver's `lib/.../dump` directory.
    pub auto_dump_path: Option<PathBuf>,
    pub auto_dump_bypass_cache: bool,
    pub auto_start_bypass_cache: bool,
    // --- process
    /// `None`: detect hugetlbfs mounts (privileged) or none (unprivileged).
    pub hugetlbfs_mount: Option<Vec<PathBuf>>,
    /// Default `/usr/libexec/qemu-bridge-helper`.
    pub bridge_helper: PathBuf,
    /// Default `/usr/bin/qemu-pr-helper`.
    pub pr_helper: PathBuf,
    /// Default `/usr/bin/slirp-helper`.
    pub slirp_helper: PathBuf,
    /// Default `/usr/bin/dbus-daemon`.
    pub dbus_daemon: PathBuf,
    pub set_process_name: bool,
    /// 0 (default): leave the limit alone.
    pub max_processes: u32,
    /// 0 (default): leave the limit alone.
    pub max_files: u32,
    /// 0 (default): leave the limit alone.
    pub max_threads_per_process: u32,
    /// Default `Bytes(0)`.
    pub max_core: MaxCore,
    pub dump_guest_core: bool,
    /// Default [`StdioHandler::Logd`].
    pub stdio_handler: StdioHandler,
    /// Default [`SchedCore::None`].
    pub sched_core: SchedCore,
    // --- devices
    pub mac_filter: bool,
    pub relaxed_acs_check: bool,
    /// Always false: libvirt refuses 1.
    pub allow_disk_format_probing: bool,
    pub lock_manager: Option<String>,
    // --- RPC
    pub max_queued: u32,
    /// Default 5.
    pub keepalive_interval: i32,
    /// Default 5.
    pub keepalive_count: u32,
    // --- migration
    pub migration_address: Option<String>,
    pub migration_host: Option<String>,
    /// Default 49152.
    pub migration_port_min: u16,
    /// Default 49215.
    pub migration_port_max: u16,
    // --- logs
    /// Default 1.
    pub log_timestamp: bool,
    // --- firmware
    /// `None`: [`DEFAULT_NVRAM`]; see [`QemuConf::firmwares`].
    pub nvram: Option<Vec<FirmwarePair>>,
    // --- debugging
    /// Default 4.
    pub gluster_debug_level: u32,
    pub virtiofsd_debug: bool,
    /// Default [`DeprecationBehavior::None`].
    pub deprecation_behavior: DeprecationBehavior,
    // --- memory
    /// The configured directory; guests' files go to
    /// `DIR/libvirt/qemu` (libvirt appends that). `None`: the driver's
    /// `lib/.../ram` directory.
    pub memory_backing_dir: Option<PathBuf>,
    // --- swtpm
    /// `None`: `tss` if it exists, else root (privileged); the caller
    /// otherwise.
    pub swtpm_user: Option<IdSpec>,
    /// Like `swtpm_user`.
    pub swtpm_group: Option<IdSpec>,
    pub capability_filters: Vec<String>,

    /// Where per-service certificate directories are looked for
    /// (`/etc/pki`, or `ROOT/etc/pki` when embedded).
    pki_dir: PathBuf,
    /// Where each key was set, when it came from a file.
    positions: BTreeMap<String, Position>,
    /// The file the settings came from.
    origin: Option<String>,
}

/// A setting that was accepted but needs the user's attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub origin: String,
    /// Where the key is.
    pub pos: Position,
    /// The key.
    pub key: String,
    /// What is wrong.
    pub kind: WarningKind,
}

/// What a [`Warning`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// Not a `qemu.conf` key; ignored. Carries the closest key, if close.
    UnknownKey {
        /// A known key spelled almost the same.
        suggestion: Option<&'static str>,
    },
    /// Set again; this setting is ignored, the first one wins (libvirt).
    DuplicateKey {
        /// Where the setting in effect is.
        first: Position,
    },
    /// `vnc_password` longer than 8 characters was truncated (libvirt).
    PasswordTruncated {
        /// The configured length.
        length: usize,
    },
    /// `deprecation_behavior` has a value libvirt does not know; ignored
    /// (libvirt warns and uses `none`).
    UnknownDeprecationBehavior {
        /// The value.
        value: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.origin, self.pos)?;
        match &self.kind {
            WarningKind::UnknownKey { suggestion: None } => {
                write!(f, "unknown setting '{}' ignored", self.key)
            }
            WarningKind::UnknownKey {
                suggestion: Some(s),
            } => write!(
                f,
                "unknown setting '{}' ignored (did you mean '{s}'?)",
                self.key
            ),
            WarningKind::DuplicateKey { first } => write!(
                f,
                "setting '{}' repeated; ignored, the one at line {} is used",
                self.key, first.line
            ),
            WarningKind::PasswordTruncated { length } => write!(
                f,
                "VNC password is {length} characters long, only 8 permitted, truncating"
            ),
            WarningKind::UnknownDeprecationBehavior { value } => write!(
                f,
                "Unsupported deprecation behavior '{value}', using 'none'"
            ),
        }
    }
}

/// Errors from loading `qemu.conf`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or is not valid syntax.
    #[error(transparent)]
    Parse(#[from] parser::Error),
    /// A value has the wrong type.
    #[error(
        "internal error: {origin}:{pos}: expected {expected} for '{key}' parameter, found {found}"
    )]
    WrongType {
        /// The file.
        origin: String,
        /// Where the offending value is.
        pos: Position,
        /// The key.
        key: String,
        /// What the key takes (`a bool`).
        expected: &'static str,
        /// What was written (`string "yes"`).
        found: String,
    },
    /// A number is out of the key's range.
    #[error("internal error: {origin}:{pos}: value for '{key}' parameter must be {range}, found {found}")]
    OutOfRange {
        /// The file.
        origin: String,
        /// Where the value is.
        pos: Position,
        /// The key.
        key: String,
        /// What is allowed (`0 or 1`, `in range 0:4294967295`).
        range: String,
        /// The value written.
        found: String,
    },
    /// A value is of the right type but not acceptable.
    #[error("{}: {origin}:{pos}: {message}", code.prefix())]
    InvalidValue {
        /// The file.
        origin: String,
        /// Where the value is.
        pos: Position,
        /// The key.
        key: String,
        /// libvirt's message (`Unknown stdio handler foo`).
        message: String,
        /// libvirt's error code for it.
        code: ErrorCode,
    },
    /// A certificate directory set in the file does not exist.
    #[error("configuration file syntax error: {key} directory '{}' does not exist", path.display())]
    MissingCertDir {
        /// The key.
        key: String,
        /// The directory.
        path: PathBuf,
    },
}

impl Error {
    /// The libvirt error code this error maps to.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Parse(e) => e.code(),
            Error::WrongType { .. } | Error::OutOfRange { .. } => ErrorCode::Internal,
            Error::InvalidValue { code, .. } => *code,
            Error::MissingCertDir { .. } => ErrorCode::ConfSyntax,
        }
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A loaded configuration and the warnings loading produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The configuration.
    pub conf: QemuConf,
    /// Unknown keys, duplicates and other non-fatal findings, in file order.
    pub warnings: Vec<Warning>,
}

fn paths(items: &[&str]) -> Vec<PathBuf> {
    items.iter().map(PathBuf::from).collect()
}

impl QemuConf {
    /// libvirt's defaults for a driver in `mode`. `privileged` is whether
    /// the driver runs as root (always for [`Mode::System`]; for an embedded
    /// driver, whether its user is root).
    pub fn defaults(mode: &Mode, privileged: bool) -> Self {
        let privileged = privileged || *mode == Mode::System;
        let etc = match mode {
            Mode::Embed { root } => root.join("etc"),
            Mode::System | Mode::Session => PathBuf::from("/etc"),
        };
        let pki_dir = etc.join("pki");
        let (user, group) = if privileged {
            (
                IdSpec::Name(DEFAULT_SYSTEM_USER.to_owned()),
                IdSpec::Name(DEFAULT_SYSTEM_GROUP.to_owned()),
            )
        } else {
            (IdSpec::Caller, IdSpec::Caller)
        };
        let (swtpm_user, swtpm_group) = if privileged {
            (None, None)
        } else {
            (Some(IdSpec::Caller), Some(IdSpec::Caller))
        };
        QemuConf {
            default_tls_x509_cert_dir: pki_dir.join("qemu"),
            default_tls_x509_verify: None,
            default_tls_x509_secret_uuid: None,
            vnc_listen: "127.0.0.1".to_owned(),
            vnc_auto_unix_socket: false,
            vnc_tls: false,
            vnc_tls_x509_cert_dir: None,
            vnc_tls_x509_secret_uuid: None,
            vnc_tls_x509_verify: None,
            vnc_password: None,
            vnc_sasl: false,
            vnc_sasl_dir: None,
            vnc_allow_host_audio: false,
            spice_listen: "127.0.0.1".to_owned(),
            spice_tls: false,
            spice_tls_x509_cert_dir: None,
            spice_auto_unix_socket: false,
            spice_password: None,
            spice_sasl: false,
            spice_sasl_dir: None,
            chardev_tls: false,
            chardev_tls_x509_cert_dir: None,
            chardev_tls_x509_verify: None,
            chardev_tls_x509_secret_uuid: None,
            vxhs_tls: false,
            vxhs_tls_x509_cert_dir: None,
            vxhs_tls_x509_secret_uuid: None,
            nbd_tls: false,
            nbd_tls_x509_cert_dir: None,
            nbd_tls_x509_secret_uuid: None,
            migrate_tls_x509_cert_dir: None,
            migrate_tls_x509_verify: None,
            migrate_tls_x509_secret_uuid: None,
            migrate_tls_force: false,
            backup_tls_x509_cert_dir: None,
            backup_tls_x509_verify: None,
            backup_tls_x509_secret_uuid: None,
            nographics_allow_host_audio: false,
            remote_display_port_min: REMOTE_PORT_MIN,
            remote_display_port_max: PORT_MAX,
            remote_websocket_port_min: WEBSOCKET_PORT_MIN,
            remote_websocket_port_max: PORT_MAX,
            security_driver: None,
            security_default_confined: true,
            security_require_confined: false,
            user,
            group,
            dynamic_ownership: privileged,
            remember_owner: privileged,
            cgroup_controllers: None,
            cgroup_device_acl: paths(DEFAULT_CGROUP_DEVICE_ACL),
            seccomp_sandbox: -1,
            namespaces: if privileged {
                vec![Namespace::Mount]
            } else {
                Vec::new()
            },
            clear_emulator_capabilities: true,
            save_image_format: None,
            dump_image_format: None,
            snapshot_image_format: None,
            auto_dump_path: None,
            auto_dump_bypass_cache: false,
            auto_start_bypass_cache: false,
            hugetlbfs_mount: None,
            bridge_helper: PathBuf::from("/usr/libexec/qemu-bridge-helper"),
            pr_helper: PathBuf::from("/usr/bin/qemu-pr-helper"),
            slirp_helper: PathBuf::from("/usr/bin/slirp-helper"),
            dbus_daemon: PathBuf::from("/usr/bin/dbus-daemon"),
            set_process_name: false,
            max_processes: 0,
            max_files: 0,
            max_threads_per_process: 0,
            max_core: MaxCore::Bytes(0),
            dump_guest_core: false,
            stdio_handler: StdioHandler::Logd,
            sched_core: SchedCore::None,
            mac_filter: false,
            relaxed_acs_check: false,
            allow_disk_format_probing: false,
            lock_manager: None,
            max_queued: 0,
            keepalive_interval: 5,
            keepalive_count: 5,
            migration_address: None,
            migration_host: None,
            migration_port_min: MIGRATION_PORT_MIN,
            migration_port_max: MIGRATION_PORT_MAX,
            log_timestamp: true,
            nvram: None,
            gluster_debug_level: 4,
            virtiofsd_debug: false,
            deprecation_behavior: DeprecationBehavior::None,
            memory_backing_dir: None,
            swtpm_user,
            swtpm_group,
            capability_filters: Vec::new(),
            pki_dir,
            positions: BTreeMap::new(),
            origin: None,
        }
    }

    /// Parses `text` (named `origin` in messages) over the defaults.
    pub fn from_str(origin: &str, text: &str, mode: &Mode, privileged: bool) -> Result<Loaded> {
        let file = ConfFile::parse_str(origin, text)?;
        Self::from_file(&file, mode, privileged)
    }

    /// Reads `path` over the defaults. A missing file gives the defaults,
    /// as in libvirt (every key is optional); any other read error is an
    /// error.
    pub fn load(path: &Path, mode: &Mode, privileged: bool) -> Result<Loaded> {
        match ConfFile::read(path) {
            Ok(file) => Self::from_file(&file, mode, privileged),
            Err(parser::Error::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Loaded {
                    conf: Self::defaults(mode, privileged),
                    warnings: Vec::new(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Applies a parsed file over the defaults.
    pub fn from_file(file: &ConfFile, mode: &Mode, privileged: bool) -> Result<Loaded> {
        let privileged = privileged || *mode == Mode::System;
        let mut conf = Self::defaults(mode, privileged);
        let mut reader = Reader::new(file);
        conf.read(&mut reader, privileged)?;
        conf.origin = Some(file.origin().to_owned());
        let Reader {
            mut warnings, used, ..
        } = reader;
        let mut first_seen: BTreeMap<&str, Position> = BTreeMap::new();
        for entry in file.entries() {
            if let Some(first) = first_seen.get(entry.key.as_str()) {
                warnings.push(Warning {
                    origin: file.origin().to_owned(),
                    pos: entry.pos,
                    key: entry.key.clone(),
                    kind: WarningKind::DuplicateKey { first: *first },
                });
                continue;
            }
            first_seen.insert(&entry.key, entry.pos);
            if used.contains(&entry.key.as_str()) {
                conf.positions.insert(entry.key.clone(), entry.pos);
            } else {
                warnings.push(Warning {
                    origin: file.origin().to_owned(),
                    pos: entry.pos,
                    key: entry.key.clone(),
                    kind: WarningKind::UnknownKey {
                        suggestion: suggest_key(&entry.key),
                    },
                });
            }
        }
        warnings.sort_by_key(|w| w.pos);
        Ok(Loaded { conf, warnings })
    }

    /// Where `key` was set in the file, or `None` if it has its default.
    pub fn position_of(&self, key: &str) -> Option<Position> {
        self.positions.get(key).copied()
    }

    /// Whether the file set `key`.
    pub fn is_set(&self, key: &str) -> bool {
        self.positions.contains_key(key)
    }

    /// The file the settings came from, if any.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The firmware/NVRAM pairs: `nvram` if set, else libvirt's built-in
    /// list. (libvirt ignores `nvram` when firmware descriptor files exist;
    /// that check needs the host and is the driver's.)
    pub fn firmwares(&self) -> Vec<FirmwarePair> {
        match &self.nvram {
            Some(list) => list.clone(),
            None => DEFAULT_NVRAM
                .iter()
                .map(|(code, vars)| FirmwarePair {
                    code: PathBuf::from(code),
                    vars: PathBuf::from(vars),
                })
                .collect(),
        }
    }

    /// The directory guests' file-backed memory goes in when
    /// `memory_backing_dir` is set: `DIR/libvirt/qemu`, as libvirt does.
    /// `None` when unset (the driver then uses its `ram` directory).
    pub fn memory_backing_subdir(&self) -> Option<PathBuf> {
        self.memory_backing_dir
            .as_ref()
            .map(|d| d.join("libvirt").join("qemu"))
    }

    /// The hugetlbfs mounts to use, or `None` to detect them. An empty
    /// string in the list (`hugetlbfs_mount = ""`) disables hugepages.
    pub fn hugetlbfs_mounts(&self) -> Option<Vec<PathBuf>> {
        self.hugetlbfs_mount.as_ref().map(|list| {
            list.iter()
                .filter(|p| !p.as_os_str().is_empty())
                .cloned()
                .collect()
        })
    }

    /// The TLS settings of `service` after libvirt's defaulting:
    /// - certificate directory: the service's key; else `PKI/libvirt-NAME`
    ///   if `dir_exists` says it exists; else `default_tls_x509_cert_dir`.
    ///   (`PKI` is `/etc/pki`, or `ROOT/etc/pki` for an embedded driver, which
    ///   keeps an embedded root self-contained where libvirt would look in
    ///   the host's `/etc/pki`.)
    /// - verify: the service's key; else `default_tls_x509_verify`; else
    ///   libvirt's per-service default (VNC no; chardev, migrate, backup yes).
    /// - secret UUID: the service's key; else, when the service's directory
    ///   is not set either, `default_tls_x509_secret_uuid`.
    pub fn tls(&self, service: TlsService, dir_exists: impl Fn(&Path) -> bool) -> TlsConfig {
        let (dir, verify, secret, verify_default) = match service {
            TlsService::Vnc => (
                &self.vnc_tls_x509_cert_dir,
                Some(self.vnc_tls_x509_verify),
                Some(&self.vnc_tls_x509_secret_uuid),
                false,
            ),
            TlsService::Spice => (&self.spice_tls_x509_cert_dir, None, None, false),
            TlsService::Chardev => (
                &self.chardev_tls_x509_cert_dir,
                Some(self.chardev_tls_x509_verify),
                Some(&self.chardev_tls_x509_secret_uuid),
                true,
            ),
            TlsService::Migrate => (
                &self.migrate_tls_x509_cert_dir,
                Some(self.migrate_tls_x509_verify),
                Some(&self.migrate_tls_x509_secret_uuid),
                true,
            ),
            TlsService::Backup => (
                &self.backup_tls_x509_cert_dir,
                Some(self.backup_tls_x509_verify),
                Some(&self.backup_tls_x509_secret_uuid),
                true,
            ),
            TlsService::Vxhs => (
                &self.vxhs_tls_x509_cert_dir,
                None,
                Some(&self.vxhs_tls_x509_secret_uuid),
                false,
            ),
            TlsService::Nbd => (
                &self.nbd_tls_x509_cert_dir,
                None,
                Some(&self.nbd_tls_x509_secret_uuid),
                false,
            ),
        };
        let cert_dir = match dir {
            Some(d) => d.clone(),
            None => {
                let own = self.pki_dir.join(format!("libvirt-{}", service.name()));
                if dir_exists(&own) {
                    own
                } else {
                    self.default_tls_x509_cert_dir.clone()
                }
            }
        };
        let verify = verify.map(|v| v.or(self.default_tls_x509_verify).unwrap_or(verify_default));
        let secret_uuid = secret.and_then(|s| match (s, dir) {
            (Some(s), _) => Some(s.clone()),
            (None, None) => self.default_tls_x509_secret_uuid.clone(),
            (None, Some(_)) => None,
        });
        TlsConfig {
            cert_dir,
            verify,
            secret_uuid,
        }
    }

    /// libvirt's start-up check that every certificate directory set in the
    /// file exists (`default_tls_x509_cert_dir` only when set explicitly).
    pub fn validate_cert_dirs(&self, dir_exists: impl Fn(&Path) -> bool) -> Result<()> {
        let explicit_default = self
            .is_set("default_tls_x509_cert_dir")
            .then_some(&self.default_tls_x509_cert_dir);
        let dirs = [
            ("default_tls_x509_cert_dir", explicit_default),
            ("vnc_tls_x509_cert_dir", self.vnc_tls_x509_cert_dir.as_ref()),
            (
                "spice_tls_x509_cert_dir",
                self.spice_tls_x509_cert_dir.as_ref(),
            ),
            (
                "chardev_tls_x509_cert_dir",
                self.chardev_tls_x509_cert_dir.as_ref(),
            ),
            (
                "migrate_tls_x509_cert_dir",
                self.migrate_tls_x509_cert_dir.as_ref(),
            ),
            (
                "backup_tls_x509_cert_dir",
                self.backup_tls_x509_cert_dir.as_ref(),
            ),
            (
                "vxhs_tls_x509_cert_dir",
                self.vxhs_tls_x509_cert_dir.as_ref(),
            ),
            ("nbd_tls_x509_cert_dir", self.nbd_tls_x509_cert_dir.as_ref()),
        ];
        for (key, dir) in dirs {
            if let Some(dir) = dir.filter(|d| !dir_exists(d)) {
                return Err(Error::MissingCertDir {
                    key: key.to_owned(),
                    path: dir.clone(),
                });
            }
        }
        Ok(())
    }

    fn read(&mut self, r: &mut Reader<'_>, privileged: bool) -> Result<()> {
        self.read_tls(r)?;
        self.read_graphics(r)?;
        self.read_ports(r)?;
        self.read_save(r)?;
        self.read_process(r)?;
        self.read_devices(r)?;
        self.read_network(r)?;
        self.read_security(r, privileged)?;
        self.read_misc(r)
    }

    fn read_tls(&mut self, r: &mut Reader<'_>) -> Result<()> {
        r.path(
            "default_tls_x509_cert_dir",
            &mut self.default_tls_x509_cert_dir,
        )?;
        r.opt_bool("default_tls_x509_verify", &mut self.default_tls_x509_verify)?;
        r.opt_string(
            "default_tls_x509_secret_uuid",
            &mut self.default_tls_x509_secret_uuid,
        )?;
        r.bool("vxhs_tls", &mut self.vxhs_tls)?;
        r.bool("nbd_tls", &mut self.nbd_tls)?;
        r.bool("chardev_tls", &mut self.chardev_tls)?;
        r.bool("migrate_tls_force", &mut self.migrate_tls_force)?;
        r.opt_path(
            "chardev_tls_x509_cert_dir",
            &mut self.chardev_tls_x509_cert_dir,
        )?;
        r.opt_string(
            "chardev_tls_x509_secret_uuid",
            &mut self.chardev_tls_x509_secret_uuid,
        )?;
        r.opt_bool("chardev_tls_x509_verify", &mut self.chardev_tls_x509_verify)?;
        r.opt_path(
            "migrate_tls_x509_cert_dir",
            &mut self.migrate_tls_x509_cert_dir,
        )?;
        r.opt_string(
            "migrate_tls_x509_secret_uuid",
            &mut self.migrate_tls_x509_secret_uuid,
        )?;
        r.opt_bool("migrate_tls_x509_verify", &mut self.migrate_tls_x509_verify)?;
        r.opt_path(
            "backup_tls_x509_cert_dir",
            &mut self.backup_tls_x509_cert_dir,
        )?;
        r.opt_string(
            "backup_tls_x509_secret_uuid",
            &mut self.backup_tls_x509_secret_uuid,
        )?;
        r.opt_bool("backup_tls_x509_verify", &mut self.backup_tls_x509_verify)?;
        r.opt_path("vxhs_tls_x509_cert_dir", &mut self.vxhs_tls_x509_cert_dir)?;
        r.opt_string(
            "vxhs_tls_x509_secret_uuid",
            &mut self.vxhs_tls_x509_secret_uuid,
        )?;
        r.opt_path("nbd_tls_x509_cert_dir", &mut self.nbd_tls_x509_cert_dir)?;
        r.opt_string(
            "nbd_tls_x509_secret_uuid",
            &mut self.nbd_tls_x509_secret_uuid,
        )
    }

    fn read_graphics(&mut self, r: &mut Reader<'_>) -> Result<()> {
        r.bool("vnc_auto_unix_socket", &mut self.vnc_auto_unix_socket)?;
        r.bool("vnc_tls", &mut self.vnc_tls)?;
        r.opt_bool("vnc_tls_x509_verify", &mut self.vnc_tls_x509_verify)?;
        r.opt_path("vnc_tls_x509_cert_dir", &mut self.vnc_tls_x509_cert_dir)?;
        r.opt_string(
            "vnc_tls_x509_secret_uuid",
            &mut self.vnc_tls_x509_secret_uuid,
        )?;
        r.string("vnc_listen", &mut self.vnc_listen)?;
        r.opt_string("vnc_password", &mut self.vnc_password)?;
        r.bool("vnc_sasl", &mut self.vnc_sasl)?;
        r.opt_path("vnc_sasl_dir", &mut self.vnc_sasl_dir)?;
        r.bool("vnc_allow_host_audio", &mut self.vnc_allow_host_audio)?;
        if let Some(password) = &mut self.vnc_password {
            let length = password.chars().count();
            if length > 8 {
                *password = password.chars().take(8).collect();
                r.warn("vnc_password", WarningKind::PasswordTruncated { length });
            }
        }
        r.bool(
            "nographics_allow_host_audio",
            &mut self.nographics_allow_host_audio,
        )?;
        r.bool("spice_tls", &mut self.spice_tls)?;
        r.opt_path("spice_tls_x509_cert_dir", &mut self.spice_tls_x509_cert_dir)?;
        r.bool("spice_sasl", &mut self.spice_sasl)?;
        r.opt_path("spice_sasl_dir", &mut self.spice_sasl_dir)?;
        r.string("spice_listen", &mut self.spice_listen)?;
        r.opt_string("spice_password", &mut self.spice_password)?;
        r.bool("spice_auto_unix_socket", &mut self.spice_auto_unix_socket)
    }

    fn read_ports(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let (ws_min, ws_max) = r.port_range(
            ("remote_websocket_port_min", "remote_websocket_port_max"),
            (
                self.remote_websocket_port_min,
                self.remote_websocket_port_max,
            ),
            WEBSOCKET_PORT_MIN,
        )?;
        let (d_min, d_max) = r.port_range(
            ("remote_display_port_min", "remote_display_port_max"),
            (self.remote_display_port_min, self.remote_display_port_max),
            REMOTE_PORT_MIN,
        )?;
        self.remote_websocket_port_min = ws_min;
        self.remote_websocket_port_max = ws_max;
        self.remote_display_port_min = d_min;
        self.remote_display_port_max = d_max;
        Ok(())
    }

    fn read_save(&mut self, r: &mut Reader<'_>) -> Result<()> {
        r.opt_string("save_image_format", &mut self.save_image_format)?;
        r.opt_string("dump_image_format", &mut self.dump_image_format)?;
        r.opt_string("snapshot_image_format", &mut self.snapshot_image_format)?;
        r.opt_path("auto_dump_path", &mut self.auto_dump_path)?;
        r.bool("auto_dump_bypass_cache", &mut self.auto_dump_bypass_cache)?;
        r.bool("auto_start_bypass_cache", &mut self.auto_start_bypass_cache)
    }

    fn read_process(&mut self, r: &mut Reader<'_>) -> Result<()> {
        if let Some(list) = r.string_list("hugetlbfs_mount", true)? {
            self.hugetlbfs_mount = Some(list.into_iter().map(|(s, _)| PathBuf::from(s)).collect());
        }
        r.path("bridge_helper", &mut self.bridge_helper)?;
        r.path("pr_helper", &mut self.pr_helper)?;
        r.path("slirp_helper", &mut self.slirp_helper)?;
        r.path("dbus_daemon", &mut self.dbus_daemon)?;
        r.bool("set_process_name", &mut self.set_process_name)?;
        r.uint("max_processes", &mut self.max_processes)?;
        r.uint("max_files", &mut self.max_files)?;
        r.uint("max_threads_per_process", &mut self.max_threads_per_process)?;
        self.read_max_core(r)?;
        r.bool("dump_guest_core", &mut self.dump_guest_core)?;
        let mut handler = None;
        r.opt_string("stdio_handler", &mut handler)?;
        if let Some(h) = handler {
            self.stdio_handler = match h.as_str() {
                "logd" => StdioHandler::Logd,
                "file" => StdioHandler::File,
                _ => {
                    return Err(r.invalid(
                        "stdio_handler",
                        ErrorCode::ConfigUnsupported,
                        format!("Unknown stdio handler {h}"),
                    ))
                }
            };
        }
        let mut sched = None;
        r.opt_string("sched_core", &mut sched)?;
        if let Some(s) = sched {
            self.sched_core = match s.as_str() {
                "none" => SchedCore::None,
                "vcpus" => SchedCore::Vcpus,
                "emulator" => SchedCore::Emulator,
                "full" => SchedCore::Full,
                _ => {
                    return Err(r.invalid(
                        "sched_core",
                        ErrorCode::ConfigUnsupported,
                        format!("Unknown sched_core value {s}"),
                    ))
                }
            };
        }
        Ok(())
    }

    fn read_max_core(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let Some(entry) = r.entry("max_core") else {
            return Ok(());
        };
        match &entry.value {
            Value::String(s) if s == "unlimited" => self.max_core = MaxCore::Unlimited,
            Value::String(s) => {
                return Err(r.invalid(
                    "max_core",
                    ErrorCode::ConfigUnsupported,
                    format!("Unknown core size '{s}'"),
                ))
            }
            Value::Unsigned(n) => self.max_core = MaxCore::Bytes(*n),
            other => {
                return Err(r.wrong_type(
                    "max_core",
                    entry.value_pos,
                    "an unsigned integer or \"unlimited\"",
                    other,
                ))
            }
        }
        Ok(())
    }

    fn read_devices(&mut self, r: &mut Reader<'_>) -> Result<()> {
        r.bool("mac_filter", &mut self.mac_filter)?;
        r.bool("relaxed_acs_check", &mut self.relaxed_acs_check)?;
        r.opt_string("lock_manager", &mut self.lock_manager)?;
        let mut probing = false;
        r.bool("allow_disk_format_probing", &mut probing)?;
        if probing {
            return Err(r.invalid(
                "allow_disk_format_probing",
                ErrorCode::ConfigUnsupported,
                "allow_disk_format_probing is no longer supported".to_owned(),
            ));
        }
        r.uint("max_queued", &mut self.max_queued)?;
        r.int("keepalive_interval", &mut self.keepalive_interval)?;
        r.uint("keepalive_count", &mut self.keepalive_count)
    }

    fn read_network(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let mut min = u32::from(self.migration_port_min);
        let mut max = u32::from(self.migration_port_max);
        r.uint("migration_port_min", &mut min)?;
        if min == 0 {
            return Err(r.invalid(
                "migration_port_min",
                ErrorCode::Internal,
                "migration_port_min: port must be greater than 0".to_owned(),
            ));
        }
        r.uint("migration_port_max", &mut max)?;
        if max > u32::from(PORT_MAX) || max < min {
            return Err(r.invalid(
                "migration_port_max",
                ErrorCode::Internal,
                format!(
                    "migration_port_max: port must be between the minimal port {min} and 65535"
                ),
            ));
        }
        self.migration_port_min = u16::try_from(min).unwrap_or(PORT_MAX);
        self.migration_port_max = u16::try_from(max).unwrap_or(PORT_MAX);
        for key in ["migration_host", "migration_address"] {
            let mut value = None;
            r.opt_string(key, &mut value)?;
            let Some(value) = value.map(strip_ipv6_brackets) else {
                continue;
            };
            if value.starts_with("localhost") || is_numeric_localhost(&value) {
                return Err(r.invalid(
                    key,
                    ErrorCode::ConfSyntax,
                    format!("{key} must not be the address of the local machine: {value}"),
                ));
            }
            match key {
                "migration_host" => self.migration_host = Some(value),
                _ => self.migration_address = Some(value),
            }
        }
        Ok(())
    }

    fn read_security(&mut self, r: &mut Reader<'_>, privileged: bool) -> Result<()> {
        if let Some(names) = r.string_list("security_driver", true)? {
            for (i, (name, pos)) in names.iter().enumerate() {
                if names.iter().skip(i + 1).any(|(other, _)| other == name) {
                    return Err(r.invalid_at(
                        "security_driver",
                        *pos,
                        ErrorCode::ConfSyntax,
                        format!("Duplicate security driver {name}"),
                    ));
                }
            }
            // An empty list means the default probe, as in libvirt.
            self.security_driver =
                (!names.is_empty()).then(|| names.into_iter().map(|(n, _)| n).collect());
        }
        r.bool(
            "security_default_confined",
            &mut self.security_default_confined,
        )?;
        r.bool(
            "security_require_confined",
            &mut self.security_require_confined,
        )?;
        for (key, kind) in [("user", IdKind::User), ("group", IdKind::Group)] {
            let mut value = None;
            r.opt_string(key, &mut value)?;
            if let Some(value) = value {
                let spec = IdSpec::parse(&value, kind)
                    .map_err(|m| r.invalid(key, ErrorCode::InvalidArg, m))?;
                match key {
                    "user" => self.user = spec,
                    _ => self.group = spec,
                }
            }
        }
        r.bool("dynamic_ownership", &mut self.dynamic_ownership)?;
        r.bool("remember_owner", &mut self.remember_owner)?;
        if let Some(names) = r.string_list("cgroup_controllers", false)? {
            let mut controllers = Vec::new();
            for (name, pos) in names {
                let Some((_, c)) = CGROUP_CONTROLLERS.iter().find(|(n, _)| *n == name) else {
                    return Err(r.invalid_at(
                        "cgroup_controllers",
                        pos,
                        ErrorCode::ConfSyntax,
                        format!("Unknown cgroup controller '{name}'"),
                    ));
                };
                controllers.push(*c);
            }
            self.cgroup_controllers = Some(controllers);
        }
        if let Some(acl) = r.string_list("cgroup_device_acl", false)? {
            self.cgroup_device_acl = acl.into_iter().map(|(s, _)| PathBuf::from(s)).collect();
        }
        r.int("seccomp_sandbox", &mut self.seccomp_sandbox)?;
        if let Some(names) = r.string_list("namespaces", false)? {
            let mut namespaces = Vec::new();
            for (name, pos) in names {
                if name != "mount" {
                    return Err(r.invalid_at(
                        "namespaces",
                        pos,
                        ErrorCode::ConfSyntax,
                        format!("Unknown namespace: {name}"),
                    ));
                }
                if !privileged {
                    return Err(r.invalid_at(
                        "namespaces",
                        pos,
                        ErrorCode::ConfigUnsupported,
                        "cannot use namespaces in session mode".to_owned(),
                    ));
                }
                if !namespaces.contains(&Namespace::Mount) {
                    namespaces.push(Namespace::Mount);
                }
            }
            self.namespaces = namespaces;
        }
        r.bool(
            "clear_emulator_capabilities",
            &mut self.clear_emulator_capabilities,
        )?;
        for (key, kind) in [("swtpm_user", IdKind::User), ("swtpm_group", IdKind::Group)] {
            let mut value = None;
            r.opt_string(key, &mut value)?;
            if let Some(value) = value {
                let spec = IdSpec::parse(&value, kind)
                    .map_err(|m| r.invalid(key, ErrorCode::InvalidArg, m))?;
                match key {
                    "swtpm_user" => self.swtpm_user = Some(spec),
                    _ => self.swtpm_group = Some(spec),
                }
            }
        }
        Ok(())
    }

    fn read_misc(&mut self, r: &mut Reader<'_>) -> Result<()> {
        r.bool("log_timestamp", &mut self.log_timestamp)?;
        if let Some(list) = r.string_list("nvram", false)? {
            let mut pairs = Vec::new();
            for (item, pos) in list {
                let parts: Vec<&str> = item.split(':').collect();
                match parts.as_slice() {
                    [code, vars]
                        if !code.trim_start().is_empty() && !vars.trim_start().is_empty() =>
                    {
                        pairs.push(FirmwarePair {
                            code: PathBuf::from(code.trim_start()),
                            vars: PathBuf::from(vars.trim_start()),
                        })
                    }
                    _ => {
                        return Err(r.invalid_at(
                            "nvram",
                            pos,
                            ErrorCode::ConfSyntax,
                            format!("Invalid nvram format: '{item}'"),
                        ))
                    }
                }
            }
            self.nvram = Some(pairs);
        }
        r.uint("gluster_debug_level", &mut self.gluster_debug_level)?;
        r.bool("virtiofsd_debug", &mut self.virtiofsd_debug)?;
        let mut behavior = None;
        r.opt_string("deprecation_behavior", &mut behavior)?;
        if let Some(b) = behavior {
            self.deprecation_behavior = match b.as_str() {
                "none" => DeprecationBehavior::None,
                "omit" => DeprecationBehavior::Omit,
                "reject" => DeprecationBehavior::Reject,
                "crash" => DeprecationBehavior::Crash,
                _ => {
                    r.warn(
                        "deprecation_behavior",
                        WarningKind::UnknownDeprecationBehavior { value: b },
                    );
                    DeprecationBehavior::None
                }
            };
        }
        r.opt_path("memory_backing_dir", &mut self.memory_backing_dir)?;
        if let Some(list) = r.string_list("capability_filters", false)? {
            self.capability_filters = list.into_iter().map(|(s, _)| s).collect();
        }
        Ok(())
    }
}

const REMOTE_PORT_MIN: u16 = 5900;
const WEBSOCKET_PORT_MIN: u16 = 5700;
const PORT_MAX: u16 = 65535;
const MIGRATION_PORT_MIN: u16 = 49152;
const MIGRATION_PORT_MAX: u16 = 49215;

fn strip_ipv6_brackets(s: String) -> String {
    match s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(inner) if inner.contains(':') => inner.to_owned(),
        _ => s,
    }
}

fn is_numeric_localhost(s: &str) -> bool {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a == std::net::Ipv4Addr::LOCALHOST,
        Ok(IpAddr::V6(a)) => a.is_loopback(),
        Err(_) => false,
    }
}

/// The known key closest to `name`, if at most two edits away.
fn suggest_key(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (edit_distance(name, k.name), k.name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let delete = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let insert = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(substitute.min(delete).min(insert));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("string {s:?}"),
        Value::Signed(n) => format!("number {n}"),
        Value::Unsigned(n) => format!("number {n}"),
        Value::List(_) => "a list".to_owned(),
    }
}

/// Typed access to a parsed file, recording which keys were read.
struct Reader<'a> {
    file: &'a ConfFile,
    used: Vec<&'static str>,
    warnings: Vec<Warning>,
}

impl<'a> Reader<'a> {
    fn new(file: &'a ConfFile) -> Self {
        Reader {
            file,
            used: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn entry(&mut self, key: &'static str) -> Option<&'a Entry> {
        debug_assert!(key_info(key).is_some(), "{key} missing from KEYS");
        self.used.push(key);
        self.file.get(key)
    }

    fn value_pos(&self, key: &str) -> Position {
        self.file
            .get(key)
            .map(|e| e.value_pos)
            .unwrap_or(Position { line: 0, column: 0 })
    }

    fn warn(&mut self, key: &str, kind: WarningKind) {
        let pos = self.file.get(key).map(|e| e.pos);
        self.warnings.push(Warning {
            origin: self.file.origin().to_owned(),
            pos: pos.unwrap_or(Position { line: 0, column: 0 }),
            key: key.to_owned(),
            kind,
        });
    }

    fn wrong_type(&self, key: &str, pos: Position, expected: &'static str, found: &Value) -> Error {
        Error::WrongType {
            origin: self.file.origin().to_owned(),
            pos,
            key: key.to_owned(),
            expected,
            found: describe(found),
        }
    }

    fn out_of_range(&self, key: &str, pos: Position, range: String, found: String) -> Error {
        Error::OutOfRange {
            origin: self.file.origin().to_owned(),
            pos,
            key: key.to_owned(),
            range,
            found,
        }
    }

    fn invalid(&self, key: &str, code: ErrorCode, message: String) -> Error {
        self.invalid_at(key, self.value_pos(key), code, message)
    }

    fn invalid_at(&self, key: &str, pos: Position, code: ErrorCode, message: String) -> Error {
        Error::InvalidValue {
            origin: self.file.origin().to_owned(),
            pos,
            key: key.to_owned(),
            message,
            code,
        }
    }

    fn bool(&mut self, key: &'static str, out: &mut bool) -> Result<()> {
        let Some(e) = self.entry(key) else {
            return Ok(());
        };
        match e.value {
            Value::Unsigned(n @ (0 | 1)) => *out = n == 1,
            Value::Unsigned(n) => {
                return Err(self.out_of_range(key, e.value_pos, "0 or 1".into(), n.to_string()))
            }
            ref other => return Err(self.wrong_type(key, e.value_pos, "a bool", other)),
        }
        Ok(())
    }

    fn opt_bool(&mut self, key: &'static str, out: &mut Option<bool>) -> Result<()> {
        let mut value = false;
        if self.file.get(key).is_some() {
            self.bool(key, &mut value)?;
            *out = Some(value);
        } else {
            self.used.push(key);
        }
        Ok(())
    }

    fn uint(&mut self, key: &'static str, out: &mut u32) -> Result<()> {
        let Some(e) = self.entry(key) else {
            return Ok(());
        };
        match e.value {
            Value::Unsigned(n) => {
                *out = u32::try_from(n).map_err(|_| {
                    self.out_of_range(
                        key,
                        e.value_pos,
                        format!("in range 0:{}", u32::MAX),
                        n.to_string(),
                    )
                })?
            }
            ref other => {
                return Err(self.wrong_type(key, e.value_pos, "an unsigned integer", other))
            }
        }
        Ok(())
    }

    fn int(&mut self, key: &'static str, out: &mut i32) -> Result<()> {
        let Some(e) = self.entry(key) else {
            return Ok(());
        };
        let range = || format!("in range {}:{}", i32::MIN, i32::MAX);
        match e.value {
            Value::Unsigned(n) => {
                *out = i32::try_from(n)
                    .map_err(|_| self.out_of_range(key, e.value_pos, range(), n.to_string()))?
            }
            Value::Signed(n) => {
                *out = i32::try_from(n)
                    .map_err(|_| self.out_of_range(key, e.value_pos, range(), n.to_string()))?
            }
            ref other => return Err(self.wrong_type(key, e.value_pos, "a signed integer", other)),
        }
        Ok(())
    }

    fn opt_string(&mut self, key: &'static str, out: &mut Option<String>) -> Result<()> {
        let Some(e) = self.entry(key) else {
            return Ok(());
        };
        match &e.value {
            Value::String(s) => *out = Some(s.clone()),
            other => return Err(self.wrong_type(key, e.value_pos, "a string", other)),
        }
        Ok(())
    }

    fn string(&mut self, key: &'static str, out: &mut String) -> Result<()> {
        let mut value = None;
        self.opt_string(key, &mut value)?;
        if let Some(v) = value {
            *out = v;
        }
        Ok(())
    }

    fn opt_path(&mut self, key: &'static str, out: &mut Option<PathBuf>) -> Result<()> {
        let mut value = None;
        self.opt_string(key, &mut value)?;
        if let Some(v) = value {
            *out = Some(PathBuf::from(v));
        }
        Ok(())
    }

    fn path(&mut self, key: &'static str, out: &mut PathBuf) -> Result<()> {
        let mut value = None;
        self.opt_path(key, &mut value)?;
        if let Some(v) = value {
            *out = v;
        }
        Ok(())
    }

    /// A `*_port_min`/`*_port_max` pair with libvirt's checks: the minimum
    /// at least `floor`, the maximum between the minimum and 65535.
    fn port_range(
        &mut self,
        (min_key, max_key): (&'static str, &'static str),
        (min_default, max_default): (u16, u16),
        floor: u16,
    ) -> Result<(u16, u16)> {
        let mut min = u32::from(min_default);
        let mut max = u32::from(max_default);
        self.uint(min_key, &mut min)?;
        if min < u32::from(floor) {
            return Err(self.invalid(
                min_key,
                ErrorCode::Internal,
                format!("{min_key}: port must be greater than or equal to {floor}"),
            ));
        }
        self.uint(max_key, &mut max)?;
        if max > u32::from(PORT_MAX) || max < min {
            return Err(self.invalid(
                max_key,
                ErrorCode::Internal,
                format!("{max_key}: port must be between the minimal port and {PORT_MAX}"),
            ));
        }
        // Both are now within floor..=65535.
        let port = |p: u32| u16::try_from(p).unwrap_or(PORT_MAX);
        Ok((port(min), port(max)))
    }

    /// A list of strings, or with `string_ok` also a single string.
    fn string_list(
        &mut self,
        key: &'static str,
        string_ok: bool,
    ) -> Result<Option<Vec<(String, Position)>>> {
        let Some(e) = self.entry(key) else {
            return Ok(None);
        };
        let expected = if string_ok {
            "a string or string list"
        } else {
            "a string list"
        };
        match &e.value {
            Value::String(s) if string_ok => Ok(Some(vec![(s.clone(), e.value_pos)])),
            Value::List(items) => items
                .iter()
                .map(|item| match &item.value {
                    Value::String(s) => Ok((s.clone(), item.pos)),
                    other => Err(self.wrong_type(key, item.pos, "a string list", other)),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            other => Err(self.wrong_type(key, e.value_pos, expected, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../testdata/qemu.conf.sample");

    fn embed() -> Mode {
        Mode::Embed {
            root: PathBuf::from("/srv/vm"),
        }
    }

    fn load(text: &str) -> Loaded {
        load_as(text, &Mode::System, true)
    }

    fn load_as(text: &str, mode: &Mode, privileged: bool) -> Loaded {
        match QemuConf::from_str("qemu.conf", text, mode, privileged) {
            Ok(l) => l,
            Err(e) => panic!("load failed: {e}"),
        }
    }

    fn err(text: &str) -> Error {
        err_as(text, &Mode::System, true)
    }

    fn err_as(text: &str, mode: &Mode, privileged: bool) -> Error {
        match QemuConf::from_str("qemu.conf", text, mode, privileged) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e,
        }
    }

    fn aug_keys() -> Vec<String> {
        let aug = include_str!("../testdata/libvirtd_qemu.aug");
        aug.split("_entry")
            .skip(1)
            .filter_map(|s| s.trim_start().strip_prefix('"'))
            .filter_map(|s| s.split('"').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn keys_table_matches_libvirt_augeas_lens() {
        let mut from_aug = aug_keys();
        from_aug.sort();
        let mut ours: Vec<String> = KEYS.iter().map(|k| k.name.to_owned()).collect();
        ours.sort();
        assert_eq!(ours, from_aug);
        assert_eq!(KEYS.len(), 93);
    }

    #[test]
    fn every_key_of_libvirt_augeas_test_is_known() {
        // Top-level nodes of test_libvirtd_qemu.aug.in start a line with `{ "`.
        let test = include_str!("../testdata/test_libvirtd_qemu.aug.in");
        let keys: Vec<&str> = test
            .lines()
            .filter_map(|l| l.strip_prefix("{ \""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert!(keys.len() > 80, "{}", keys.len());
        for k in keys {
            assert!(key_info(k).is_some(), "{k} unknown");
        }
    }

    #[test]
    fn every_key_of_the_table_is_read_by_the_loader() {
        let file = ConfFile::default();
        let mut reader = Reader::new(&file);
        let mut conf = QemuConf::defaults(&Mode::System, true);
        assert!(conf.read(&mut reader, true).is_ok());
        for k in KEYS {
            assert!(reader.used.contains(&k.name), "{} not read", k.name);
        }
    }

    #[test]
    fn libvirt_augeas_test_config_loads_without_warnings() {
        // Every key of test_libvirtd_qemu.aug.in, with the values it uses.
        let loaded = load(SAMPLE);
        assert_eq!(loaded.warnings, vec![]);
        let c = &loaded.conf;
        assert_eq!(c.vnc_listen, "0.0.0.0");
        assert!(c.vnc_tls && c.spice_tls && c.chardev_tls && c.vxhs_tls && c.nbd_tls);
        assert_eq!(c.vnc_password.as_deref(), Some("XYZ12345"));
        assert_eq!(c.security_driver, Some(vec!["selinux".to_owned()]));
        assert_eq!(c.user, IdSpec::Name("qemu".into()));
        assert_eq!(c.cgroup_controllers.as_ref().map(Vec::len), Some(6));
        assert_eq!(c.cgroup_device_acl, paths(DEFAULT_CGROUP_DEVICE_ACL));
        assert_eq!(c.max_core, MaxCore::Unlimited);
        assert_eq!(c.stdio_handler, StdioHandler::Logd);
        assert!(!c.log_timestamp);
        assert_eq!(c.nvram.as_ref().map(Vec::len), Some(4));
        assert_eq!(c.namespaces, vec![Namespace::Mount]);
        assert_eq!(
            c.hugetlbfs_mount,
            Some(vec![PathBuf::from("/dev/hugepages")])
        );
        assert_eq!(c.migration_host.as_deref(), Some("host.example.com"));
        assert_eq!(c.gluster_debug_level, 9);
        assert_eq!(c.swtpm_user, Some(IdSpec::Name("tss".into())));
        assert_eq!(c.capability_filters, vec!["capname".to_owned()]);
        assert_eq!(c.sched_core, SchedCore::None);
        assert_eq!(c.position_of("vnc_listen").map(|p| p.column), Some(1));
    }

    #[test]
    fn conformance_baseline_qemu_conf_loads() {
        let text = include_str!("../testdata/conformance-qemu.conf");
        let loaded = load(text);
        assert_eq!(loaded.warnings, vec![]);
        let c = &loaded.conf;
        assert!(c.spice_tls);
        assert_eq!(c.spice_password.as_deref(), Some("123456"));
        assert_eq!(
            c.nbd_tls_x509_cert_dir,
            Some(PathBuf::from("/etc/pki/libvirt-nbd/dummy,path"))
        );
        assert_eq!(
            c.hugetlbfs_mounts(),
            Some(vec![
                PathBuf::from("/dev/hugepages2M"),
                PathBuf::from("/dev/hugepages1G")
            ])
        );
        assert_eq!(c.security_driver, Some(vec!["none".to_owned()]));
        assert_eq!(c.seccomp_sandbox, -1);
    }

    #[test]
    fn system_defaults_match_libvirt() {
        let c = QemuConf::defaults(&Mode::System, true);
        assert_eq!(c.vnc_listen, "127.0.0.1");
        assert_eq!(c.spice_listen, "127.0.0.1");
        assert!(!c.vnc_tls && !c.spice_tls);
        assert_eq!(c.default_tls_x509_cert_dir, PathBuf::from("/etc/pki/qemu"));
        assert_eq!(c.user, IdSpec::Name("root".into()));
        assert_eq!(c.group, IdSpec::Name("root".into()));
        assert!(c.dynamic_ownership && c.remember_owner);
        assert!(c.clear_emulator_capabilities);
        assert_eq!(c.cgroup_device_acl.len(), 7);
        assert_eq!((c.max_processes, c.max_files), (0, 0));
        assert!(c.log_timestamp);
        assert_eq!(c.stdio_handler, StdioHandler::Logd);
        assert_eq!(c.seccomp_sandbox, -1);
        assert!(!c.set_process_name);
        assert_eq!(c.deprecation_behavior, DeprecationBehavior::None);
        assert_eq!(c.namespaces, vec![Namespace::Mount]);
        assert_eq!(
            (c.remote_display_port_min, c.remote_display_port_max),
            (5900, 65535)
        );
        assert_eq!(
            (c.remote_websocket_port_min, c.remote_websocket_port_max),
            (5700, 65535)
        );
        assert_eq!((c.migration_port_min, c.migration_port_max), (49152, 49215));
        assert_eq!((c.keepalive_interval, c.keepalive_count), (5, 5));
        assert_eq!(c.gluster_debug_level, 4);
        assert!(c.security_default_confined && !c.security_require_confined);
        assert_eq!(c.firmwares().len(), 4);
        assert_eq!(c.swtpm_user, None);
    }

    #[test]
    fn session_defaults_run_qemu_as_the_caller_without_relabelling() {
        let c = QemuConf::defaults(&Mode::Session, false);
        assert_eq!(
            (c.user.clone(), c.group.clone()),
            (IdSpec::Caller, IdSpec::Caller)
        );
        assert!(!c.dynamic_ownership && !c.remember_owner);
        assert!(c.namespaces.is_empty());
        assert_eq!(c.swtpm_user, Some(IdSpec::Caller));
        assert_eq!(c.default_tls_x509_cert_dir, PathBuf::from("/etc/pki/qemu"));
    }

    #[test]
    fn embedded_defaults_keep_tls_inside_the_root() {
        let c = QemuConf::defaults(&embed(), false);
        assert_eq!(
            c.default_tls_x509_cert_dir,
            PathBuf::from("/srv/vm/etc/pki/qemu")
        );
        assert_eq!(c.user, IdSpec::Caller);
        let root_embed = QemuConf::defaults(&embed(), true);
        assert_eq!(root_embed.user, IdSpec::Name("root".into()));
        assert!(root_embed.dynamic_ownership);
    }

    #[test]
    fn string_for_bool_names_key_line_and_expected_type() {
        let e = err("# c\nvnc_tls = \"yes\"\n");
        assert_eq!(
            e.to_string(),
            "internal error: qemu.conf:2:11: expected a bool for 'vnc_tls' parameter, found string \"yes\""
        );
        assert_eq!(e.code(), ErrorCode::Internal);
    }

    #[test]
    fn bool_other_than_0_or_1_is_out_of_range() {
        let e = err("vnc_tls = 2\n");
        assert_eq!(
            e.to_string(),
            "internal error: qemu.conf:1:11: value for 'vnc_tls' parameter must be 0 or 1, found 2"
        );
    }

    #[test]
    fn negative_number_for_unsigned_key_is_wrong_type() {
        let e = err("max_files = -1\n");
        assert_eq!(
            e.to_string(),
            "internal error: qemu.conf:1:13: expected an unsigned integer for 'max_files' parameter, found number -1"
        );
    }

    #[test]
    fn unsigned_over_u32_is_out_of_range() {
        let e = err("max_processes = 4294967296\n");
        assert!(
            e.to_string()
                .contains("must be in range 0:4294967295, found 4294967296"),
            "{e}"
        );
    }

    #[test]
    fn signed_keys_accept_negative_values() {
        let c = load("seccomp_sandbox = 0\nkeepalive_interval = -1\n").conf;
        assert_eq!((c.seccomp_sandbox, c.keepalive_interval), (0, -1));
        let e = err("seccomp_sandbox = -2147483649\n");
        assert!(
            e.to_string().contains("in range -2147483648:2147483647"),
            "{e}"
        );
    }

    #[test]
    fn number_for_string_key_is_wrong_type() {
        let e = err("vnc_listen = 0\n");
        assert!(
            e.to_string()
                .contains("expected a string for 'vnc_listen' parameter, found number 0"),
            "{e}"
        );
    }

    #[test]
    fn list_for_string_key_is_wrong_type() {
        let e = err("user = [ \"qemu\" ]\n");
        assert!(
            e.to_string()
                .contains("expected a string for 'user' parameter, found a list"),
            "{e}"
        );
    }

    #[test]
    fn string_list_key_rejects_a_plain_string() {
        let e = err("cgroup_device_acl = \"/dev/null\"\n");
        assert!(
            e.to_string()
                .contains("expected a string list for 'cgroup_device_acl'"),
            "{e}"
        );
    }

    #[test]
    fn number_inside_string_list_points_at_the_item() {
        let e = err("cgroup_device_acl = [\n  \"/dev/null\",\n  5 ]\n");
        assert_eq!(
            e.to_string(),
            "internal error: qemu.conf:3:3: expected a string list for 'cgroup_device_acl' parameter, found number 5"
        );
    }

    #[test]
    fn security_driver_accepts_string_or_list() {
        let c = load("security_driver = \"apparmor\"\n").conf;
        assert_eq!(c.security_driver, Some(vec!["apparmor".to_owned()]));
        let c = load("security_driver = [ \"selinux\", \"apparmor\" ]\n").conf;
        assert_eq!(
            c.security_driver,
            Some(vec!["selinux".to_owned(), "apparmor".to_owned()])
        );
        let e = err("security_driver = 1\n");
        assert!(
            e.to_string().contains("expected a string or string list"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_security_driver_is_refused() {
        let e = err("security_driver = [ \"selinux\", \"selinux\" ]\n");
        assert_eq!(
            e.to_string(),
            "configuration file syntax error: qemu.conf:1:21: Duplicate security driver selinux"
        );
    }

    #[test]
    fn cgroup_device_acl_replaces_the_default_list() {
        let c = load("cgroup_device_acl = [ \"/dev/null\", \"/dev/kvm\" ]\n").conf;
        assert_eq!(c.cgroup_device_acl, paths(&["/dev/null", "/dev/kvm"]));
    }

    #[test]
    fn unknown_keys_are_warnings_with_suggestions() {
        let loaded = load("vnc_tsl = 1\nfrobnicate = \"x\"\nlog_timestamp = 0\n");
        assert!(!loaded.conf.log_timestamp);
        let shown: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "qemu.conf:1:1: unknown setting 'vnc_tsl' ignored (did you mean 'vnc_tls'?)",
                "qemu.conf:2:1: unknown setting 'frobnicate' ignored",
            ]
        );
    }

    #[test]
    fn duplicate_key_keeps_the_first_and_warns() {
        let loaded = load("max_files = 10\nmax_files = 20\n");
        assert_eq!(loaded.conf.max_files, 10);
        assert_eq!(
            loaded
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["qemu.conf:2:1: setting 'max_files' repeated; ignored, the one at line 1 is used"]
        );
    }

    #[test]
    fn stdio_handler_accepts_logd_and_file_only() {
        assert_eq!(
            load("stdio_handler = \"file\"").conf.stdio_handler,
            StdioHandler::File
        );
        assert_eq!(
            load("stdio_handler = \"logd\"").conf.stdio_handler,
            StdioHandler::Logd
        );
        let e = err("stdio_handler = \"syslog\"\n");
        assert_eq!(
            e.to_string(),
            "unsupported configuration: qemu.conf:1:17: Unknown stdio handler syslog"
        );
        assert_eq!(e.code(), ErrorCode::ConfigUnsupported);
    }

    #[test]
    fn max_core_takes_a_size_or_unlimited() {
        assert_eq!(load("max_core = 1024").conf.max_core, MaxCore::Bytes(1024));
        assert_eq!(
            load("max_core = \"unlimited\"").conf.max_core,
            MaxCore::Unlimited
        );
        let e = err("max_core = \"lots\"");
        assert!(e.to_string().ends_with("Unknown core size 'lots'"), "{e}");
        let e = err("max_core = -1");
        assert!(
            e.to_string()
                .contains("expected an unsigned integer or \"unlimited\""),
            "{e}"
        );
    }

    #[test]
    fn sched_core_values_are_checked() {
        assert_eq!(
            load("sched_core = \"full\"").conf.sched_core,
            SchedCore::Full
        );
        let e = err("sched_core = \"half\"");
        assert!(
            e.to_string().ends_with("Unknown sched_core value half"),
            "{e}"
        );
    }

    #[test]
    fn display_port_ranges_are_checked_as_libvirt() {
        let e = err("remote_display_port_min = 5000\n");
        assert_eq!(
            e.to_string(),
            "internal error: qemu.conf:1:27: remote_display_port_min: port must be greater than or equal to 5900"
        );
        let e = err("remote_display_port_min = 6000\nremote_display_port_max = 5950\n");
        assert!(
            e.to_string().contains("between the minimal port and 65535"),
            "{e}"
        );
        let e = err("remote_websocket_port_max = 70000\n");
        assert!(e.to_string().contains("remote_websocket_port_max"), "{e}");
        let c = load("remote_display_port_min = 6000\nremote_display_port_max = 6100\n").conf;
        assert_eq!(
            (c.remote_display_port_min, c.remote_display_port_max),
            (6000, 6100)
        );
    }

    #[test]
    fn migration_ports_and_addresses_are_checked() {
        let e = err("migration_port_min = 0\n");
        assert!(
            e.to_string().ends_with("port must be greater than 0"),
            "{e}"
        );
        let e = err("migration_port_min = 50000\nmigration_port_max = 49999\n");
        assert!(
            e.to_string()
                .ends_with("between the minimal port 50000 and 65535"),
            "{e}"
        );
        let e = err("migration_host = \"localhost.localdomain\"\n");
        assert!(e.to_string().ends_with("migration_host must not be the address of the local machine: localhost.localdomain"), "{e}");
        let e = err("migration_address = \"[::1]\"\n");
        assert!(e.to_string().ends_with("local machine: ::1"), "{e}");
        let c = load("migration_address = \"[::]\"\nmigration_host = \"10.0.0.1\"\n").conf;
        assert_eq!(c.migration_address.as_deref(), Some("::"));
    }

    #[test]
    fn cgroup_controllers_and_namespaces_are_checked() {
        let e = err("cgroup_controllers = [ \"cpu\", \"gpu\" ]\n");
        assert_eq!(
            e.to_string(),
            "configuration file syntax error: qemu.conf:1:31: Unknown cgroup controller 'gpu'"
        );
        let e = err("namespaces = [ \"net\" ]\n");
        assert!(e.to_string().ends_with("Unknown namespace: net"), "{e}");
        let e = err_as("namespaces = [ \"mount\" ]\n", &Mode::Session, false);
        assert!(
            e.to_string()
                .ends_with("cannot use namespaces in session mode"),
            "{e}"
        );
        let c = load_as("namespaces = [ ]\n", &Mode::Session, false).conf;
        assert!(c.namespaces.is_empty());
        let c = load("namespaces = [ ]\n").conf;
        assert!(c.namespaces.is_empty());
    }

    #[test]
    fn allow_disk_format_probing_1_is_refused() {
        assert!(
            !load("allow_disk_format_probing = 0")
                .conf
                .allow_disk_format_probing
        );
        let e = err("allow_disk_format_probing = 1");
        assert!(
            e.to_string()
                .ends_with("allow_disk_format_probing is no longer supported"),
            "{e}"
        );
    }

    #[test]
    fn nvram_pairs_are_parsed_and_checked() {
        let c = load("nvram = [ \"/a/CODE.fd:/a/VARS.fd\" ]").conf;
        assert_eq!(
            c.firmwares(),
            vec![FirmwarePair {
                code: "/a/CODE.fd".into(),
                vars: "/a/VARS.fd".into()
            }]
        );
        let e = err("nvram = [ \"/a/CODE.fd\" ]");
        assert!(
            e.to_string()
                .ends_with("Invalid nvram format: '/a/CODE.fd'"),
            "{e}"
        );
        let e = err("nvram = [ \"a:b:c\" ]");
        assert!(e.to_string().contains("Invalid nvram format"), "{e}");
    }

    #[test]
    fn empty_security_driver_list_means_the_default_probe() {
        assert_eq!(load("security_driver = [ ]").conf.security_driver, None);
    }

    #[test]
    fn user_and_group_parse_names_and_plus_ids() {
        let c = load("user = \"+107\"\ngroup = \"kvm\"\n").conf;
        assert_eq!(c.user, IdSpec::Id(107));
        assert_eq!(c.group, IdSpec::Name("kvm".into()));
        let e = err("user = \"+qemu\"\n");
        assert_eq!(
            e.to_string(),
            "invalid argument: qemu.conf:1:8: Failed to parse user 'qemu'"
        );
    }

    #[test]
    fn id_spec_resolves_names_then_digits() {
        let lookup = |n: &str| (n == "qemu").then_some(107);
        let user = IdKind::User;
        assert_eq!(
            IdSpec::Name("qemu".into()).resolve(user, lookup, 1000),
            Ok(107)
        );
        assert_eq!(
            IdSpec::Name("55".into()).resolve(user, lookup, 1000),
            Ok(55)
        );
        assert_eq!(IdSpec::Caller.resolve(user, lookup, 1000), Ok(1000));
        assert_eq!(
            IdSpec::Name("nobody-here".into()).resolve(IdKind::Group, lookup, 1000),
            Err("Failed to parse group 'nobody-here'".to_owned())
        );
    }

    #[test]
    fn long_vnc_password_is_truncated_with_a_warning() {
        let loaded = load("vnc_password = \"0123456789\"\n");
        assert_eq!(loaded.conf.vnc_password.as_deref(), Some("01234567"));
        assert_eq!(
            loaded
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["qemu.conf:1:1: VNC password is 10 characters long, only 8 permitted, truncating"]
        );
    }

    #[test]
    fn unknown_deprecation_behavior_warns_and_uses_none() {
        let loaded = load("deprecation_behavior = \"explode\"\n");
        assert_eq!(loaded.conf.deprecation_behavior, DeprecationBehavior::None);
        assert_eq!(loaded.warnings.len(), 1);
        assert_eq!(
            load("deprecation_behavior = \"crash\"")
                .conf
                .deprecation_behavior,
            DeprecationBehavior::Crash
        );
    }

    #[test]
    fn hugetlbfs_mount_accepts_string_list_and_empty_disables() {
        let c = load("hugetlbfs_mount = \"/dev/hugepages\"").conf;
        assert_eq!(
            c.hugetlbfs_mounts(),
            Some(vec![PathBuf::from("/dev/hugepages")])
        );
        let c = load("hugetlbfs_mount = \"\"").conf;
        assert_eq!(c.hugetlbfs_mounts(), Some(vec![]));
        assert_eq!(
            QemuConf::defaults(&Mode::System, true).hugetlbfs_mounts(),
            None
        );
    }

    #[test]
    fn memory_backing_dir_gets_libvirt_qemu_appended() {
        let c = load("memory_backing_dir = \"/var/lib/libvirt/qemu/ram\"").conf;
        assert_eq!(
            c.memory_backing_subdir(),
            Some(PathBuf::from("/var/lib/libvirt/qemu/ram/libvirt/qemu"))
        );
    }

    #[test]
    fn tls_dirs_default_to_service_dir_then_default_dir() {
        let c = load("default_tls_x509_cert_dir = \"/pki/default\"\n").conf;
        let none = |_: &Path| false;
        assert_eq!(
            c.tls(TlsService::Vnc, none).cert_dir,
            PathBuf::from("/pki/default")
        );
        let vnc_exists = |p: &Path| p == Path::new("/etc/pki/libvirt-vnc");
        assert_eq!(
            c.tls(TlsService::Vnc, vnc_exists).cert_dir,
            PathBuf::from("/etc/pki/libvirt-vnc")
        );
        assert_eq!(
            c.tls(TlsService::Spice, vnc_exists).cert_dir,
            PathBuf::from("/pki/default")
        );
        let c = load("spice_tls_x509_cert_dir = \"/pki/spice\"\n").conf;
        assert_eq!(
            c.tls(TlsService::Spice, none).cert_dir,
            PathBuf::from("/pki/spice")
        );
        let embedded = QemuConf::defaults(&embed(), false);
        let emb_vnc = |p: &Path| p == Path::new("/srv/vm/etc/pki/libvirt-vnc");
        assert_eq!(
            embedded.tls(TlsService::Vnc, emb_vnc).cert_dir,
            PathBuf::from("/srv/vm/etc/pki/libvirt-vnc")
        );
        assert_eq!(
            embedded.tls(TlsService::Nbd, emb_vnc).cert_dir,
            PathBuf::from("/srv/vm/etc/pki/qemu")
        );
    }

    #[test]
    fn tls_verify_follows_service_then_default_then_builtin() {
        let none = |_: &Path| false;
        let c = QemuConf::defaults(&Mode::System, true);
        assert_eq!(c.tls(TlsService::Vnc, none).verify, Some(false));
        assert_eq!(c.tls(TlsService::Chardev, none).verify, Some(true));
        assert_eq!(c.tls(TlsService::Migrate, none).verify, Some(true));
        assert_eq!(c.tls(TlsService::Backup, none).verify, Some(true));
        assert_eq!(c.tls(TlsService::Spice, none).verify, None);
        let c = load("default_tls_x509_verify = 1\nchardev_tls_x509_verify = 0\n").conf;
        assert_eq!(c.tls(TlsService::Vnc, none).verify, Some(true));
        assert_eq!(c.tls(TlsService::Chardev, none).verify, Some(false));
    }

    #[test]
    fn tls_secret_uuid_defaults_only_without_service_dir() {
        let none = |_: &Path| false;
        let c = load(
            "default_tls_x509_secret_uuid = \"d\"\nvnc_tls_x509_cert_dir = \"/v\"\nnbd_tls_x509_secret_uuid = \"n\"\n",
        )
        .conf;
        assert_eq!(c.tls(TlsService::Vnc, none).secret_uuid, None);
        assert_eq!(
            c.tls(TlsService::Chardev, none).secret_uuid.as_deref(),
            Some("d")
        );
        assert_eq!(
            c.tls(TlsService::Nbd, none).secret_uuid.as_deref(),
            Some("n")
        );
        assert_eq!(c.tls(TlsService::Spice, none).secret_uuid, None);
    }

    #[test]
    fn explicit_cert_dirs_must_exist() {
        let c = load("vnc_tls_x509_cert_dir = \"/nope\"\n").conf;
        let e = c.validate_cert_dirs(|_| false).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("configuration file syntax error: vnc_tls_x509_cert_dir directory '/nope' does not exist")
        );
        // The implicit default directory is not required to exist.
        assert!(QemuConf::defaults(&Mode::System, true)
            .validate_cert_dirs(|_| false)
            .is_ok());
    }

    #[test]
    fn missing_file_gives_defaults_and_syntax_errors_propagate() {
        let dir = std::env::temp_dir().join(format!("qvisor-conf-qemu-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let missing = QemuConf::load(&dir.join("absent.conf"), &Mode::System, true);
        assert_eq!(
            missing.ok().map(|l| l.conf),
            Some(QemuConf::defaults(&Mode::System, true))
        );
        let bad = dir.join("bad.conf");
        let _ = std::fs::write(&bad, "vnc_tls = \n");
        let e = QemuConf::load(&bad, &Mode::System, true)
            .err()
            .map(|e| e.code());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(e, Some(ErrorCode::ConfSyntax));
    }

    #[test]
    fn load_reads_a_file_and_records_its_origin() {
        let dir = std::env::temp_dir().join(format!("qvisor-conf-qemu2-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("qemu.conf");
        let _ = std::fs::write(&path, "max_files = 4096\n");
        let loaded = QemuConf::load(&path, &Mode::Session, false);
        let _ = std::fs::remove_dir_all(&dir);
        let conf = loaded.ok().map(|l| l.conf);
        assert_eq!(conf.as_ref().map(|c| c.max_files), Some(4096));
        assert_eq!(
            conf.as_ref().and_then(|c| c.origin().map(str::to_owned)),
            Some(path.display().to_string())
        );
    }

    #[test]
    fn hugetlbfs_mounts_are_found_in_proc_mounts() {
        let text = "sysfs /sys sysfs rw 0 0\n\
                    hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n\
                    none /mnt/huge\\0401G hugetlbfs rw,pagesize=1024M 0 0\n\
                    garbage\n";
        assert_eq!(
            hugetlbfs_mounts_from(text),
            vec![
                PathBuf::from("/dev/hugepages"),
                PathBuf::from("/mnt/huge 1G")
            ]
        );
    }

    #[test]
    fn mutated_sample_files_never_panic() {
        let mut x: u64 = 0x1234_5678;
        let bytes = SAMPLE.as_bytes();
        for _ in 0..800 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut text = bytes.to_vec();
            for k in 0..4 {
                let at = ((x >> (k * 16)) as usize) % text.len().max(1);
                if let Some(b) = text.get_mut(at) {
                    *b = b"01-\"[]#,\n x"[(x as usize >> 3) % 11];
                }
            }
            let text = String::from_utf8_lossy(&text);
            let _ = QemuConf::from_str("fuzz", &text, &Mode::Session, false);
        }
    }

    #[test]
    fn random_values_for_every_key_never_panic() {
        let values = [
            "0",
            "1",
            "2",
            "-1",
            "4294967296",
            "\"\"",
            "\"x\"",
            "\"unlimited\"",
            "[ ]",
            "[ \"a\" ]",
            "[ 1 ]",
            "[ \"a:b\", \"a\" ]",
            "\"[::1]\"",
            "\"+5\"",
            "\"mount\"",
        ];
        for k in KEYS {
            for v in values {
                let text = format!("{} = {v}\n", k.name);
                let _ = QemuConf::from_str("t", &text, &Mode::Session, false);
                let _ = QemuConf::from_str("t", &text, &Mode::System, true);
            }
        }
    }
}
