//! A cgroup per running domain, and its device access list.
//!
//! QEMU is placed into the domain's cgroups by a `pre_exec` hook in the
//! child, before exec: files opened before a move would stay open, so moving
//! it in afterwards would not revoke anything. The hook only writes `0` to
//! descriptors the supervisor opened before the fork (`tasks` in v1,
//! `cgroup.procs` in v2).
//!
//! Device access, as libvirt's: deny everything, then allow
//! `cgroup_device_acl` (default `/dev/null`, `/dev/full`, `/dev/zero`,
//! `/dev/random`, `/dev/urandom`, `/dev/ptmx`, `/dev/kvm`), every pty
//! (`c 136:* rw`), and the device nodes the domain's resources name (block
//! devices backing its disks, read-only where the disk is). On a cgroup v1
//! host that is the `devices` controller's `devices.deny`/`devices.allow`;
//! on the v2 hierarchy the same list becomes a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program attached to the domain's cgroup. A hybrid host (v1 controllers
//! plus v2 at `/sys/fs/cgroup/unified`, where libvirt 9.0 puts its filter
//! too) gets both; the kernel then requires both to allow an access.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use qvisor_conf::qemu::CgroupController;

use super::process::PreExecHook;

/// The major number of pseudo-terminal slaves (`/dev/pts/*`).
pub const PTY_MAJOR: u32 = 136;

/// Errors setting up a domain's cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file operation failed.
    #[error("cannot {op} '{path}': {source}")]
    Io {
        /// What we tried.
        op: &'static str,
        /// The cgroup file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The device filter program was refused.
    #[error("cannot attach the device filter to cgroup '{path}': {reason}")]
    Bpf {
        /// The v2 cgroup.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Block or character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    /// `b`
    Block,
    /// `c`
    Char,
}

/// One allowed device (or a whole major number when `minor` is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Block or char.
    pub kind: DeviceType,
    /// Major number.
    pub major: u32,
    /// Minor number; `None` = any.
    pub minor: Option<u32>,
    /// Write access besides read.
    pub write: bool,
}

impl DeviceRule {
    /// The rule for the device node at `path`: `None` when it is not a
    /// device node, or does not exist (libvirt skips missing ACL entries).
    pub fn for_path(path: &Path, write: bool) -> io::Result<Option<DeviceRule>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let ft = meta.file_type();
        let kind = if ft.is_block_device() {
            DeviceType::Block
        } else if ft.is_char_device() {
            DeviceType::Char
        } else {
            return Ok(None);
        };
        let rdev = meta.rdev();
        Ok(Some(DeviceRule {
            kind,
            major: libc::major(rdev),
            minor: Some(libc::minor(rdev)),
            write,
        }))
    }

    /// The v1 `devices.allow` line (`b 7:0 rw`, `c 136:* rw`).
    pub fn v1_line(&self) -> String {
        let k = match self.kind {
            DeviceType::Block => 'b',
            DeviceType::Char => 'c',
        };
        let minor = self.minor.map_or("*".to_string(), |m| m.to_string());
        let access = if self.write { "rw" } else { "r" };
        format!("{k} {}:{minor} {access}", self.major)
    }
}

/// Merges rules for the same device: write wins.
pub fn merge_rules(rules: Vec<DeviceRule>) -> Vec<DeviceRule> {
    let mut out: Vec<DeviceRule> = Vec::new();
    for r in rules {
        match out
            .iter_mut()
            .find(|o| o.kind == r.kind && o.major == r.major && o.minor == r.minor)
        {
            Some(o) => o.write |= r.write,
            None => out.push(r),
        }
    }
    out
}

/// Where the cgroup hierarchies are mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// v1 mounts: (controller name, mount point).
    pub v1: Vec<(String, PathBuf)>,
    /// The v2 (unified) mount, if any.
    pub v2: Option<PathBuf>,
}

/// The v1 controllers a domain joins, by their qemu.conf names.
const V1_CONTROLLERS: &[(&str, CgroupController)] = &[
    ("cpu", CgroupController::Cpu),
    ("cpuacct", CgroupController::Cpuacct),
    ("cpuset", CgroupController::Cpuset),
    ("memory", CgroupController::Memory),
    ("devices", CgroupController::Devices),
    ("freezer", CgroupController::Freezer),
    ("blkio", CgroupController::Blkio),
    ("net_cls", CgroupController::NetCls),
    ("perf_event", CgroupController::PerfEvent),
];

impl Layout {
    /// Reads the layout from `/proc/mounts`-format text. A mount carrying
    /// several controllers (`cpu,cpuacct`) is listed once per controller.
    pub fn from_mounts(mounts: &str) -> Layout {
        let mut layout = Layout::default();
        for line in mounts.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(dir), Some(fstype), Some(opts)) = (f.get(1), f.get(2), f.get(3)) else {
                continue;
            };
            match *fstype {
                "cgroup2" if layout.v2.is_none() => layout.v2 = Some(PathBuf::from(dir)),
                "cgroup" => {
                    for opt in opts.split(',') {
                        if V1_CONTROLLERS.iter().any(|(n, _)| *n == opt)
                            && !layout.v1.iter().any(|(n, _)| n == opt)
                        {
                            layout.v1.push((opt.to_string(), PathBuf::from(dir)));
                        }
                    }
                }
                _ => {}
            }
        }
        layout
    }

    /// This host's layout, read from `/proc/mounts` once per process: every
    /// domain start and stop asks for it, and cgroup hierarchies are
    /// mounted at boot. A hierarchy mounted later is seen after a restart,
    /// as a changed qemu.conf is. A failed read is not remembered.
    pub fn host() -> Layout {
        static HOST: OnceLock<Layout> = OnceLock::new();
        if let Some(l) = HOST.get() {
            return l.clone();
        }
        match std::fs::read_to_string("/proc/mounts") {
            Ok(m) => HOST.get_or_init(|| Layout::from_mounts(&m)).clone(),
            Err(_) => Layout::default(),
        }
    }

    /// The directories of one domain's cgroup `rel` in every hierarchy the
    /// configuration selects (`None` = every controller), v1 first; each
    /// mount point once.
    pub fn domain_dirs(
        &self,
        rel: &Path,
        selected: Option<&[CgroupController]>,
    ) -> Vec<(Option<String>, PathBuf)> {
        let wanted = |name: &str| {
            let Some(sel) = selected else { return true };
            V1_CONTROLLERS
                .iter()
                .any(|(n, c)| *n == name && sel.contains(c))
        };
        let mut out: Vec<(Option<String>, PathBuf)> = Vec::new();
        for (name, mount) in &self.v1 {
            let dir = mount.join(rel);
            if wanted(name) && !out.iter().any(|(_, d)| *d == dir) {
                out.push((Some(name.clone()), dir));
            }
        }
        // The v2 hierarchy carries the device filter where no v1 `devices`
        // controller is mounted (a pure v2 host). On a hybrid host the v1
        // controller already confines devices and v2 has nothing of ours
        // to control, so QEMU does not join it: a v2 `cgroup.procs` write
        // waits for an RCU grace period (~6 ms here) on every start.
        let v1_devices = self.v1.iter().any(|(n, _)| n == "devices");
        if let Some(v2) = &self.v2 {
            if wanted("devices") && !v1_devices {
                out.push((None, v2.join(rel)));
            }
        }
        out
    }
}

/// A domain's cgroups, created and ready for QEMU to join.
pub struct DomainCgroup {
    dirs: Vec<PathBuf>,
    procs: Arc<Vec<OwnedFd>>,
}

impl DomainCgroup {
    /// Creates the domain's cgroup `rel` in each selected hierarchy and sets
    /// the device list `rules` (after denying everything). Any earlier
    /// leftover of the same name is removed first.
    pub fn create(
        layout: &Layout,
        rel: &Path,
        selected: Option<&[CgroupController]>,
        rules: &[DeviceRule],
    ) -> Result<DomainCgroup, CgroupError> {
        let mut cg = DomainCgroup {
            dirs: Vec::new(),
            procs: Arc::new(Vec::new()),
        };
        let mut procs = Vec::new();
        for (controller, dir) in layout.domain_dirs(rel, selected) {
            let _ = remove_dir(&dir);
            std::fs::create_dir_all(&dir).map_err(io_err("create cgroup", &dir))?;
            cg.dirs.push(dir.clone());
            match controller.as_deref() {
                Some("cpuset") => copy_cpuset_from_parent(&dir)?,
                Some("devices") => set_v1_devices(&dir, rules)?,
                None => attach_device_filter(&dir, rules)?,
                _ => {}
            }
            // v1: the calling thread joins through `tasks`, which (unlike
            // `cgroup.procs`) does not take the kernel's global threadgroup
            // lock and so does not wait for an RCU grace period (~7 ms);
            // the child is single-threaded between fork and exec, so this
            // moves the whole process. v2 only has `cgroup.procs`.
            let file = dir.join(if controller.is_some() {
                "tasks"
            } else {
                "cgroup.procs"
            });
            let fd = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&file)
                .map_err(io_err("open", &file))?;
            procs.push(OwnedFd::from(fd));
        }
        cg.procs = Arc::new(procs);
        Ok(cg)
    }

    /// The cgroup directories.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// A hook that moves the calling (child) process into every cgroup;
    /// it must run single-threaded (between fork and exec).
    pub fn join_hook(&self) -> PreExecHook {
        let procs = self.procs.clone();
        Arc::new(move || {
            for fd in procs.iter() {
                // SAFETY: writing 1 byte from a static buffer to a
                // descriptor we own; write(2) is async-signal-safe.
                let r = unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// Removes a domain's cgroup `rel` from every hierarchy (whatever the
/// configuration says now): kills what is left in it, then `rmdir`.
pub fn remove(layout: &Layout, rel: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let mut dirs: Vec<PathBuf> = layout
        .domain_dirs(rel, None)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    // Also where an earlier version (or another layout) put the domain.
    if let Some(v2) = &layout.v2 {
        if !dirs.contains(&v2.join(rel)) {
            dirs.push(v2.join(rel));
        }
    }
    for dir in dirs {
        if let Err(e) = remove_dir(&dir) {
            errors.push(format!("cannot remove cgroup '{}': {e}", dir.display()));
        }
    }
    errors
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    for attempt in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 49 => {
                // Stragglers (QEMU helpers): kill them, give the kernel a moment.
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill with a pid read from the cgroup, no memory.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    f.write_all(value.as_bytes()).map_err(io_err("write", path))
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes: inherit.
fn copy_cpuset_from_parent(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if !own.trim().is_empty() {
            continue;
        }
        let value = std::fs::read_to_string(parent.join(file))
            .map_err(io_err("read", &parent.join(file)))?;
        write_file(&dir.join(file), value.trim())?;
    }
    Ok(())
}

fn set_v1_devices(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    write_file(&dir.join("devices.deny"), "a")?;
    for rule in rules {
        write_file(&dir.join("devices.allow"), &rule.v1_line())?;
    }
    Ok(())
}

// ------------------------------------------------------------ BPF (cgroup v2)

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const BPF_ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const BPF_MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const BPF_MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const BPF_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const BPF_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;
/// `BPF_DEVCG_ACC_MKNOD | READ | WRITE`.
const DEVCG_ACC_READ: i32 = 2;
const DEVCG_ACC_WRITE: i32 = 4;
const DEVCG_ACC_ALL: i32 = 7;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (dst & 0x0f) | (src << 4),
        off,
        imm,
    }
}

/// The device filter for `rules`: returns 1 (allow) when a rule matches the
/// device type, numbers and requested access, else 0 (deny).
///
/// `r1` is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
/// where `access_type` holds the device type in its low 16 bits and the
/// requested access in its high 16 bits.
pub fn device_program(rules: &[DeviceRule]) -> Vec<BpfInsn> {
    let mut p = vec![
        insn(BPF_LDX_MEM_W, 2, 1, 0, 0),        // r2 = type | access << 16
        insn(BPF_ALU32_AND_K, 2, 0, 0, 0xffff), // w2 = type
        insn(BPF_LDX_MEM_W, 3, 1, 0, 0),        // r3 = type | access << 16
        insn(BPF_ALU32_RSH_K, 3, 0, 0, 16),     // w3 = access
        insn(BPF_LDX_MEM_W, 4, 1, 4, 0),        // r4 = major
        insn(BPF_LDX_MEM_W, 5, 1, 8, 0),        // r5 = minor
    ];
    for rule in rules {
        let ty = match rule.kind {
            DeviceType::Block => DEVCG_DEV_BLOCK,
            DeviceType::Char => DEVCG_DEV_CHAR,
        };
        let allowed = if rule.write {
            DEVCG_ACC_READ | DEVCG_ACC_WRITE
        } else {
            DEVCG_ACC_READ
        };
        // The checks, each jumping past the rest of this block on mismatch.
        let mut block: Vec<(u8, u8, u8, i32, bool)> = vec![
            (BPF_JNE_K, 2, 0, ty, true),
            (BPF_MOV64_X, 1, 3, 0, false),
            (BPF_ALU32_AND_K, 1, 0, !allowed & DEVCG_ACC_ALL, false),
            (BPF_JNE_K, 1, 0, 0, true),
            (BPF_JNE_K, 4, 0, rule.major as i32, true),
        ];
        if let Some(minor) = rule.minor {
            block.push((BPF_JNE_K, 5, 0, minor as i32, true));
        }
        block.push((BPF_MOV64_K, 0, 0, 1, false));
        block.push((BPF_EXIT, 0, 0, 0, false));
        let len = block.len();
        for (i, (code, dst, src, imm, jumps)) in block.into_iter().enumerate() {
            let off = if jumps { (len - i - 1) as i16 } else { 0 };
            p.push(insn(code, dst, src, off, imm));
        }
    }
    p.push(insn(BPF_MOV64_K, 0, 0, 0, 0));
    p.push(insn(BPF_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C, align(8))]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C, align(8))]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    /// `relative_fd` (kernel 6.6+): spelled out and zeroed, because the
    /// kernel reads the whole size we pass and rejects (EINVAL) a non-zero
    /// value here, which uninitialized padding would be.
    relative_fd: u32,
}

/// Loads the device filter for `rules` and attaches it to the v2 cgroup
/// directory `dir` (with `BPF_F_ALLOW_MULTI`, so filters of parents still
/// apply). The cgroup keeps the program; our descriptors close here.
pub fn attach_device_filter(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let bpf_err = |reason: String| CgroupError::Bpf {
        path: dir.to_path_buf(),
        reason,
    };
    let prog = device_program(rules);
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"qvisor_dev");
    let load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    // SAFETY: `load` is a valid bpf_attr prefix of the size we pass; the
    // pointers inside it (program, license, log) outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &load as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let verifier = String::from_utf8_lossy(&log);
        let verifier = verifier.trim_end_matches('\0').trim();
        return Err(bpf_err(if verifier.is_empty() {
            format!("loading the program: {e}")
        } else {
            format!("loading the program: {e}: {verifier}")
        }));
    }
    let prog_fd = fd as i32;
    let result = (|| {
        let cg = std::fs::File::open(dir).map_err(|e| bpf_err(format!("open: {e}")))?;
        let attach = ProgAttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: prog_fd as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            replace_bpf_fd: 0,
            relative_fd: 0,
        };
        // SAFETY: `attach` is a valid bpf_attr prefix of the size we pass.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_ATTACH,
                &attach as *const ProgAttachAttr,
                std::mem::size_of::<ProgAttachAttr>(),
            )
        };
        if r < 0 {
            return Err(bpf_err(format!(
                "attaching the program: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(())
    })();
    // SAFETY: we own prog_fd (returned by BPF_PROG_LOAD above).
    unsafe { libc::close(prog_fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn mounts_give_v1_controllers_and_the_unified_hierarchy() {
        let l = Layout::from_mounts(
            "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0\n\
             cgroup /sys/fs/cgroup/devices cgroup rw,relatime,devices 0 0\n\
             cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n\
             cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n",
        );
        assert_eq!(
            l.v1,
            vec![
                (
                    "cpu".to_string(),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
                ),
                (
                    "cpuacct".to_string(),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
                ),
                (
                    "devices".to_string(),
                    PathBuf::from("/sys/fs/cgroup/devices")
                ),
            ]
        );
        assert_eq!(l.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        // A co-mounted hierarchy is joined once; with a v1 `devices`
        // controller the v2 hierarchy is not joined.
        let dirs = l.domain_dirs(Path::new("machine/x"), None);
        assert_eq!(dirs.len(), 2);
        let v2_only = Layout::from_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n");
        assert_eq!(
            v2_only.domain_dirs(Path::new("machine/x"), None),
            vec![(None, PathBuf::from("/sys/fs/cgroup/machine/x"))]
        );
        // Without `devices`, neither the v1 devices cgroup nor the filter.
        let dirs = l.domain_dirs(Path::new("machine/x"), Some(&[CgroupController::Cpu]));
        assert_eq!(
            dirs,
            vec![(
                Some("cpu".into()),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/machine/x")
            )]
        );
    }

    #[test]
    fn rules_render_as_libvirt_writes_them() {
        let r = DeviceRule {
            kind: DeviceType::Char,
            major: PTY_MAJOR,
            minor: None,
            write: true,
        };
        assert_eq!(r.v1_line(), "c 136:* rw");
        let null = DeviceRule::for_path(Path::new("/dev/null"), true)
            .unwrap()
            .unwrap();
        assert_eq!(null.v1_line(), "c 1:3 rw");
        assert_eq!(
            DeviceRule::for_path(Path::new("/etc/hostname"), true).unwrap(),
            None
        );
        assert_eq!(
            DeviceRule::for_path(Path::new("/no/such/dev"), true).unwrap(),
            None
        );
        let merged = merge_rules(vec![
            DeviceRule {
                write: false,
                ..null
            },
            null,
        ]);
        assert_eq!(merged, vec![null]);
    }

    #[test]
    fn the_program_jumps_past_a_whole_rule_on_mismatch() {
        let rules = [DeviceRule {
            kind: DeviceType::Block,
            major: 7,
            minor: Some(3),
            write: false,
        }];
        let p = device_program(&rules);
        // 6 loads, a rule of 8, the final deny of 2.
        assert_eq!(p.len(), 16);
        // The type check skips the 7 remaining instructions of the rule.
        assert_eq!(p[6], insn(BPF_JNE_K, 2, 0, 7, DEVCG_DEV_BLOCK));
        // Read-only: any requested bit outside READ fails the rule.
        assert_eq!(p[8].imm, DEVCG_ACC_ALL & !DEVCG_ACC_READ);
        assert_eq!(p[15], insn(BPF_EXIT, 0, 0, 0, 0));
    }

    /// Runs `script` with sh inside a fresh v2 cgroup whose filter allows
    /// only `rules`; returns its exit status and stderr.
    fn run_filtered(rules: &[DeviceRule], script: &str) -> Option<(bool, String)> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: cgroups and BPF need root");
            return None;
        }
        let Some(v2) = Layout::host().v2 else {
            eprintln!("skipping: no cgroup v2 hierarchy mounted");
            return None;
        };
        let rel = PathBuf::from(format!(
            "qvisor-test-bpf-{}-{}",
            std::process::id(),
            script.len()
        ));
        let dir = v2.join(&rel);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap();
        let result = (|| {
            if let Err(e) = attach_device_filter(&dir, rules) {
                eprintln!("skipping: {e}");
                return None;
            }
            let procs = OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .unwrap();
            let fd = procs.as_raw_fd();
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(script);
            // SAFETY: write(2) on a descriptor opened before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let out = cmd.output().unwrap();
            Some((
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        })();
        remove_dir(&dir).unwrap();
        result
    }

    #[test]
    fn the_v2_filter_denies_devices_outside_the_list() {
        let null = DeviceRule::for_path(Path::new("/dev/null"), true)
            .unwrap()
            .unwrap();
        let Some((ok, err)) = run_filtered(&[null], "echo x > /dev/null && head -c1 /dev/zero")
        else {
            return;
        };
        assert!(!ok, "reading /dev/zero should be denied");
        assert!(err.contains("Operation not permitted"), "{err}");
    }

    #[test]
    fn the_v2_filter_honours_read_only_rules() {
        let zero_ro = DeviceRule::for_path(Path::new("/dev/zero"), false)
            .unwrap()
            .unwrap();
        let script = "head -c1 /dev/zero | wc -c; echo x > /dev/zero";
        let Some((ok, err)) = run_filtered(&[zero_ro], script) else {
            return;
        };
        // The read went through (no error about reading), the write did not.
        assert!(!ok);
        assert!(
            err.contains("/dev/zero") && err.contains("Operation not permitted"),
            "{err}"
        );
        assert!(!err.contains("head:"), "{err}");
    }
}
