//! Real QEMU accepts the command lines qvisor builds.
//!
//! For every case of the libvirt argv corpus (`../shared/conformance/argv.txt`)
//! the test builds the command line with the conformance builder (the parse,
//! expansion and `qvisor_cmdline::build` of `qvisor-conformance argv`, with the
//! harness's `FakeHost` for secrets, pools and firmware descriptors), makes it
//! runnable on this machine without changing what QEMU is asked to build, starts
//! `qemu-system-x86_64 -S` and asks it `query-status` over QMP.
//!
//! Making it runnable:
//! - every absolute host path moves under a per-case sandbox directory and what
//!   it names is faked: disk images made with `qemu-img` in the format of the
//!   node reading them (LUKS and qcow2 encryption keyed with the harness's
//!   secret, qcow2 external data files), firmware copied from the host when it
//!   has it, directories for vvfat, 9p and memory backing, self-signed TLS
//!   certificates for x509 directories, a pty behind host serial ports, a FIFO
//!   behind pipes, a listening socket behind client sockets and `swtpm` behind
//!   emulated TPMs;
//! - descriptors are real (the builder's `Host::pass_fd`): the monitor is a
//!   listening socket the test connects to, chardev files are opened, TAP
//!   queues come from /dev/net/tun;
//! - `host_device`/`host_cdrom` storage reads the fake image with `file`.
//!
//! Cases run [`MAX_JOBS`] at a time at most (`QVISOR_QA_JOBS` overrides),
//! each worker thread in its own network namespace so the fixed VNC/SPICE
//! ports of the corpus never clash; without namespaces they run one at a
//! time. Every QEMU and helper is killed and reaped by a guard, panics
//! included. A case asking for SMM runs with TCG when KVM here lacks it.
//!
//! Selection: all corpus cases, minus the ones these rules exclude before
//! anything runs (each is printed with its rule): the case needs a host
//! resource a test cannot fake (host PCI/USB/SCSI/NVMe/TPM/input devices,
//! storage servers, vhost devices and vhost-user backends, audio servers, GPU
//! render nodes, display servers, NUMA nodes or huge pages this host lacks,
//! more RAM to commit than [`MAX_COMMIT_BYTES`]); this QEMU build lacks a
//! device, object, file system or audio driver the command line names;
//! KVM here cannot set the Hyper-V VP index; `maxmem` exceeds the host's
//! physical address bits; SDL audio would need a sound server; the case
//! needs per-case capability flags; or it carries verbatim
//! `<qemu:commandline>` arguments (the user's, not ours). Of the rest at
//! least [`MIN_RATIO`] must start, and at least [`MIN_SAMPLE`] must be tried;
//! the others are printed with QEMU's reason.
//!
//! `QVISOR_TEST_QEMU` overrides the binary, `QVISOR_CONFORMANCE_DIR` the corpus;
//! `QVISOR_QA_CASES=a,b` runs only these cases and `QVISOR_QA_VERBOSE=1`
//! prints the arguments of each case that did not start.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use qvisor_cmdline::env::{GraphicsPort, Host, ResolvedVolume, SecretRef};
use qvisor_cmdline::fake::{self, FakeHost};
use qvisor_cmdline::props::{Keyval, KvItem, Props};
use qvisor_cmdline::{CommandLine, FdPurpose, Opt};
use qvisor_domain::{CpuSet, Domain};
use serde_json::Value;

/// The emulator the conformance capabilities describe.
const CONFORMANCE_EMULATOR: &str = "/usr/bin/qemu-system-x86_64";
/// At least this many cases must be tried.
const MIN_SAMPLE: usize = 40;
/// Cases run side by side at most (each worker starts one QEMU at a time).
const MAX_JOBS: usize = 4;
/// Share of the tried cases that must start.
const MIN_RATIO: f64 = 0.8;
/// How long one QEMU may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Guest RAM a case may make QEMU allocate up front (prealloc, mem-lock).
const MAX_COMMIT_BYTES: u64 = 2 << 30;
/// Host paths QEMU may use as they are.
const REAL_PATHS: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/dev/kvm",
    "/dev/net/tun",
    "/dev/ptmx",
];
/// Block drivers that talk to a storage server.
const NETWORK_BLOCK_DRIVERS: &[&str] = &[
    "iscsi", "rbd", "nbd", "gluster", "http", "https", "ftp", "ftps", "ssh", "nfs", "vxhs",
];
/// Audio backends that need a sound server.
const AUDIO_SERVERS: &[&str] = &["pa", "jack", "sndio", "dbus"];

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("QVISOR_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    };
    dir.join("argv.txt").exists().then_some(dir)
}

fn mkparent(p: &Path) -> io::Result<()> {
    match p.parent() {
        Some(d) => fs::create_dir_all(d),
        None => Ok(()),
    }
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// The QEMU binary

/// What the installed QEMU offers.
struct Qemu {
    binary: PathBuf,
    img: PathBuf,
    version: String,
    devices: BTreeSet<String>,
    objects: BTreeSet<String>,
    audio: BTreeSet<String>,
    kvm: bool,
    /// KVM here emulates System Management Mode.
    kvm_smm: bool,
    /// KVM here lets QEMU set the Hyper-V VP index (hv-vpindex, hv-synic).
    kvm_hv_vpindex: bool,
    /// The host CPU's physical address bits.
    phys_bits: u32,
    /// `-fsdev` drivers probed so far and whether this build has them.
    fsdev: std::sync::Mutex<BTreeMap<String, bool>>,
}

/// KVM_CHECK_EXTENSION on /dev/kvm (`_IO(KVMIO, 0x03)`).
const KVM_CHECK_EXTENSION: libc::c_ulong = 0xAE03;
/// KVM_CAP_X86_SMM.
const KVM_CAP_X86_SMM: libc::c_ulong = 117;
/// KVM_CAP_HYPERV_VP_INDEX.
const KVM_CAP_HYPERV_VP_INDEX: libc::c_ulong = 149;

/// Whether KVM offers the extension `cap`.
fn kvm_extension(kvm: &fs::File, cap: libc::c_ulong) -> bool {
    // SAFETY: KVM_CHECK_EXTENSION takes an integer argument and only
    // returns a number; the descriptor is ours.
    unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CHECK_EXTENSION, cap) > 0 }
}

/// The host CPU's physical address width (`address sizes` in /proc/cpuinfo).
fn host_phys_bits() -> u32 {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("address sizes"))
                .and_then(|l| l.trim_start_matches([' ', '\t', ':']).split(' ').next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(40)
}

impl Qemu {
    fn probe(binary: PathBuf) -> Option<Qemu> {
        let help = |what: &str| -> Option<String> {
            let out = Command::new(&binary)
                .args([what, "help"])
                .stdin(Stdio::null())
                .output()
                .ok()?;
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            Some(text)
        };
        let version = Command::new(&binary).arg("-version").output().ok()?;
        let version = String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let mut devices = BTreeSet::new();
        for line in help("-device")?.lines() {
            for key in ["name \"", "alias \""] {
                if let Some(i) = line.find(key) {
                    let rest = &line[i + key.len()..];
                    if let Some(name) = rest.split('"').next() {
                        devices.insert(name.to_string());
                    }
                }
            }
        }
        let listed = |text: String, header: &str| -> BTreeSet<String> {
            text.lines()
                .skip_while(|l| !l.starts_with(header))
                .skip(1)
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.contains(' '))
                .map(str::to_string)
                .collect()
        };
        let objects = listed(help("-object")?, "List of user creatable objects");
        let audio = listed(help("-audiodev")?, "Available audio drivers");
        let kvm_dev = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .ok();
        let has = |cap| kvm_dev.as_ref().is_some_and(|k| kvm_extension(k, cap));
        let img = binary.with_file_name("qemu-img");
        Some(Qemu {
            binary,
            img,
            version,
            devices,
            objects,
            audio,
            kvm: kvm_dev.is_some(),
            kvm_smm: has(KVM_CAP_X86_SMM),
            kvm_hv_vpindex: has(KVM_CAP_HYPERV_VP_INDEX),
            phys_bits: host_phys_bits(),
            fsdev: Default::default(),
        })
    }

    /// Whether this build has the `-fsdev` driver `driver`. QEMU creates
    /// file system backends before devices, so with a device that does not
    /// exist it exits at once, naming whichever failed first.
    fn has_fsdev(&self, driver: &str) -> bool {
        let mut known = self.fsdev.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = known.get(driver) {
            return *v;
        }
        let out = Command::new(&self.binary)
            .args([
                "-machine",
                "none",
                "-nodefaults",
                "-display",
                "none",
                "-fsdev",
            ])
            .arg(format!("{driver},id=probe,path=/,security_model=none"))
            .args(["-device", "qvisor-no-such-device"])
            .stdin(Stdio::null())
            .output();
        let has = out.is_ok_and(|o| {
            !String::from_utf8_lossy(&o.stderr).contains(&format!("fsdriver {driver} not found"))
        });
        known.insert(driver.to_string(), has);
        has
    }
}

// ---------------------------------------------------------------------------
// Cases and their harness settings

struct Case {
    name: String,
    conf: PathBuf,
    env: BTreeMap<String, String>,
    caps_flags: bool,
}

/// libvirt's qemu.conf spelling of a JSON value (check.py's `conf_value`).
fn conf_value(v: &Value) -> String {
    match v {
        Value::Bool(b) => if *b { "1" } else { "0" }.into(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(conf_value).collect::<Vec<_>>().join(", ")
        ),
        Value::String(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        Value::Null | Value::Object(_) => String::new(),
    }
}

/// The case with its per-case settings (`NAME.conformance.json`) applied the
/// way check.py applies them.
fn load_case(corpus: &Path, name: &str, scratch: &Path) -> io::Result<Case> {
    let base = corpus.join("qemu.conf");
    let mut case = Case {
        name: name.to_string(),
        conf: base.clone(),
        env: BTreeMap::new(),
        caps_flags: false,
    };
    let sidecar = corpus
        .join("cases")
        .join(format!("{name}.conformance.json"));
    let Ok(text) = fs::read_to_string(sidecar) else {
        return Ok(case);
    };
    let v: Value = serde_json::from_str(&text).map_err(io::Error::other)?;
    if let Some(env) = v.get("env").and_then(Value::as_object) {
        for (k, v) in env {
            case.env
                .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    case.caps_flags = v
        .get("caps_add_flags")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if let Some(over) = v.get("qemu_conf").and_then(Value::as_object) {
        let mut out: Vec<String> = fs::read_to_string(&base)?
            .lines()
            .filter(|l| {
                let key = l.split('=').next().unwrap_or_default().trim();
                !(l.contains('=') && over.contains_key(key))
            })
            .map(str::to_string)
            .collect();
        for (k, v) in over {
            if !v.is_null() {
                out.push(format!("{k} = {}", conf_value(v)));
            }
        }
        case.conf = scratch.join(format!("{name}.qemu.conf"));
        fs::write(&case.conf, out.join("\n") + "\n")?;
    }
    Ok(case)
}

// ---------------------------------------------------------------------------
// Path mapping and the builder's host

/// Moves host paths under the case's sandbox directory.
#[derive(Clone)]
struct Mapper {
    root: PathBuf,
}

impl Mapper {
    fn keeps(&self, p: &str) -> bool {
        REAL_PATHS.contains(&p)
            || p.starts_with("/dev/fdset/")
            || Path::new(p).starts_with(&self.root)
    }

    fn path(&self, p: &str) -> PathBuf {
        if self.keeps(p) {
            PathBuf::from(p)
        } else {
            self.root.join(p.trim_start_matches('/'))
        }
    }
}

fn open_rw(path: &str) -> Result<OwnedFd, String> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("{path} ({e})"))
}

/// A TAP queue from /dev/net/tun, named by the kernel.
fn open_tap() -> Result<OwnedFd, String> {
    let tun = open_rw("/dev/net/tun")?;
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and updates the ifreq we own, on a tun
    // descriptor we own.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(format!("a TAP device ({})", io::Error::last_os_error()));
    }
    Ok(tun)
}

/// The builder's host: the conformance harness, except that descriptors are
/// real (opened or listening under the sandbox).
struct TestHost {
    inner: FakeHost,
    map: Mapper,
    /// (number in QEMU, descriptor in the test)
    fds: Vec<(RawFd, OwnedFd)>,
    next_fd: RawFd,
    monitor: Option<PathBuf>,
    unfakeable: Vec<String>,
}

impl TestHost {
    fn open(&mut self, purpose: &FdPurpose) -> Result<OwnedFd, String> {
        match purpose {
            FdPurpose::Monitor(p) | FdPurpose::ListenSocket(p) => {
                let path = self.map.path(p);
                mkparent(&path).map_err(|e| e.to_string())?;
                let _ = fs::remove_file(&path);
                let l = UnixListener::bind(&path)
                    .map_err(|e| format!("a socket at {} ({e})", path.display()))?;
                if matches!(purpose, FdPurpose::Monitor(_)) {
                    self.monitor = Some(path);
                }
                Ok(l.into())
            }
            FdPurpose::ChardevFile { path, append } | FdPurpose::ChardevLog { path, append } => {
                let path = self.map.path(path);
                mkparent(&path).map_err(|e| e.to_string())?;
                fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(*append)
                    .truncate(!*append)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|e| format!("a file at {} ({e})", path.display()))
            }
            FdPurpose::Tap(_) => open_tap(),
            FdPurpose::VhostNet(_) => open_rw("/dev/vhost-net"),
            FdPurpose::VhostVsock => open_rw("/dev/vhost-vsock"),
            FdPurpose::VhostScsi(wwpn) => Err(format!("a host vhost-scsi target ({wwpn})")),
            FdPurpose::Vdpa(p) => Err(format!("a host vDPA device ({p})")),
            FdPurpose::TpmPassthrough(p) => Err(format!("a host TPM ({p})")),
        }
    }
}

impl Host for TestHost {
    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.inner.random_bytes(buf)
    }

    fn secret(&self, r: &SecretRef) -> Result<Vec<u8>, String> {
        self.inner.secret(r)
    }

    fn resolve_volume(&self, pool: &str, volume: &str) -> Result<ResolvedVolume, String> {
        self.inner.resolve_volume(pool, volume)
    }

    fn pass_fd(&mut self, purpose: &FdPurpose) -> Result<i32, String> {
        match self.open(purpose) {
            Ok(fd) => {
                let n = self.next_fd;
                self.next_fd += 1;
                self.fds.push((n, fd));
                Ok(n)
            }
            Err(e) => {
                self.unfakeable.push(e);
                Ok(-1)
            }
        }
    }

    fn is_cdrom(&self, path: &str) -> bool {
        self.inner.is_cdrom(path)
    }

    fn read_file(&self, path: &Path) -> Option<String> {
        self.inner.read_file(path)
    }

    fn list_dir(&self, dir: &Path) -> Vec<String> {
        self.inner.list_dir(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn numa_nodes_available(&self, nodes: &CpuSet) -> bool {
        self.inner.numa_nodes_available(nodes)
    }

    fn auto_nodeset(&self) -> Option<CpuSet> {
        self.inner.auto_nodeset()
    }

    fn vhost_user_capabilities(&self, binary: &Path) -> Option<String> {
        self.inner.vhost_user_capabilities(binary)
    }

    fn graphics_port(&mut self, what: GraphicsPort) -> Result<u16, String> {
        self.inner.graphics_port(what)
    }

    fn free_vsock_cid(&mut self) -> Result<u32, String> {
        self.inner.free_vsock_cid()
    }

    fn tpm_emulator_socket(&self, alias: &str) -> String {
        self.inner.tpm_emulator_socket(alias)
    }

    fn scsi_host_device(
        &self,
        adapter: &str,
        bus: u32,
        target: u32,
        unit: u32,
    ) -> Result<String, String> {
        self.inner.scsi_host_device(adapter, bus, target, unit)
    }
}

struct Built {
    cl: CommandLine,
    def: Domain,
    master_key: [u8; 32],
    /// Directories libvirt creates for file-backed guest memory.
    memory_dirs: Vec<PathBuf>,
    host: TestHost,
}

/// `qvisor-conformance argv` for one case, with [`TestHost`] for descriptors.
fn build(corpus: &Path, case: &Case, map: &Mapper) -> Result<Built, String> {
    let text = fs::read_to_string(corpus.join("cases").join(format!("{}.xml", case.name)))
        .map_err(|e| e.to_string())?;
    let mut def = qvisor_domain::parse(&text, qvisor_domain::ParseOptions { inactive: true })
        .map_err(|e| e.to_string())?;
    let mut caps =
        qvisor_caps::QemuCaps::load_cache_file(corpus.join("caps/caps_8.0.0.x86_64.xml"))
            .map_err(|e| e.to_string())?;
    caps.strip_machine_aliases();
    let conf = qvisor_conf::QemuConf::load(&case.conf, &qvisor_conf::Mode::System, true)
        .map_err(|e| e.to_string())?
        .conf;
    let emulator = def
        .devices
        .emulator
        .clone()
        .unwrap_or_else(|| CONFORMANCE_EMULATOR.into());
    let mut random = |buf: &mut [u8]| {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
    };
    let mut ectx = qvisor_domain::ExpandContext {
        caps: (emulator == CONFORMANCE_EMULATOR).then_some(&caps),
        default_emulator: CONFORMANCE_EMULATOR.into(),
        nvram_dir: "/var/lib/libvirt/qemu/nvram".into(),
        vnc_allow_host_audio: conf.vnc_allow_host_audio,
        nographics_allow_host_audio: conf.nographics_allow_host_audio,
        audio_env: case.env.get("QEMU_AUDIO_DRV").cloned(),
        sdl_audio_env: case.env.get("SDL_AUDIODRIVER").cloned(),
        random: &mut random,
    };
    qvisor_domain::expand(&mut def, &mut ectx).map_err(|e| e.to_string())?;
    qvisor_domain::validate(&def).map_err(|e| e.to_string())?;
    if emulator != CONFORMANCE_EMULATOR {
        caps = qvisor_caps::QemuCaps::new(emulator);
    }
    let aux = corpus.join("aux");
    let mut harness = FakeHost::new(&aux);
    let mut host = TestHost {
        inner: FakeHost::new(&aux),
        map: map.clone(),
        fds: Vec::new(),
        next_fd: 1729,
        monitor: None,
        unfakeable: Vec::new(),
    };
    let (cl, master_key, memory_dirs) = {
        let mut env = fake::conformance_env(&def, &conf, &aux, &mut harness, &case.env);
        env.host = &mut host;
        let key = env.master_key;
        let dirs: Vec<PathBuf> = std::iter::once(env.memory_backing_dir.clone())
            .chain(env.hugetlbfs.iter().map(|m| m.path.clone()))
            .collect();
        let cl = qvisor_cmdline::build(&def, &caps, &conf, &mut env).map_err(|e| e.to_string())?;
        (cl, key, dirs)
    };
    Ok(Built {
        cl,
        def,
        master_key,
        memory_dirs,
        host,
    })
}

// ---------------------------------------------------------------------------
// Which cases can be tried

/// Why a case is not tried.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Skip {
    /// This QEMU build does not have it.
    Lacks(String),
    /// A host resource the test cannot fake.
    Host(String),
    /// Anything else (harness settings, user arguments).
    Other(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Lacks(w) => write!(f, "this QEMU lacks {w}"),
            Skip::Host(w) => write!(f, "needs {w}"),
            Skip::Other(w) => write!(f, "{w}"),
        }
    }
}

fn kv_get<'a>(kv: &'a Keyval, key: &str) -> Option<&'a str> {
    kv.0.iter().find_map(|i| match i {
        KvItem::Pair(k, v) if k == key => Some(v.as_str()),
        _ => None,
    })
}

fn kv_set(kv: &mut Keyval, key: &str, value: String) {
    for i in kv.0.iter_mut() {
        if let KvItem::Pair(k, v) = i {
            if k == key {
                *v = value;
                return;
            }
        }
    }
}

fn kv_head(kv: &Keyval) -> &str {
    match kv.0.first() {
        Some(KvItem::Bare(w)) => w,
        _ => "",
    }
}

/// Who reads what, gathered before anything is changed.
#[derive(Default)]
struct Facts {
    /// `-blockdev` nodes by node name.
    nodes: BTreeMap<String, Props>,
    /// Storage node → the format node whose `file` it is.
    reader: BTreeMap<String, String>,
    /// Storage nodes that are qcow2 external data files.
    data_files: BTreeSet<String>,
    /// Format nodes used as pflash 0 (code) and 1 (variables).
    pflash: BTreeMap<String, u8>,
    /// Format nodes of floppy drives.
    floppy: BTreeSet<String>,
    /// Chardevs a vhost-user device or netdev talks to.
    vhost_user: BTreeSet<String>,
    /// Chardevs of emulated TPMs.
    tpm: BTreeSet<String>,
}

impl Facts {
    fn scan(cl: &CommandLine) -> Facts {
        let mut f = Facts::default();
        for opt in &cl.opts {
            match opt {
                Opt::Blockdev(p) => {
                    if let Some(n) = p.get_str("node-name") {
                        f.nodes.insert(n.to_string(), p.clone());
                        if let Some(file) = p.get_str("file") {
                            f.reader.insert(file.to_string(), n.to_string());
                        }
                        if let Some(d) = p.get_str("data-file") {
                            f.data_files.insert(d.to_string());
                        }
                    }
                }
                Opt::Keyval("-machine", kv) => {
                    for (key, unit) in [("pflash0", 0), ("pflash1", 1)] {
                        if let Some(n) = kv_get(kv, key) {
                            f.pflash.insert(n.to_string(), unit);
                        }
                    }
                }
                Opt::Device(p) => {
                    let driver = p.get_str("driver").unwrap_or_default();
                    if driver == "floppy" {
                        if let Some(d) = p.get_str("drive") {
                            f.floppy.insert(d.to_string());
                        }
                    }
                    if driver.starts_with("vhost-user") {
                        if let Some(c) = p.get_str("chardev") {
                            f.vhost_user.insert(c.to_string());
                        }
                    }
                }
                Opt::Netdev(p) if p.get_str("type") == Some("vhost-user") => {
                    if let Some(c) = p.get_str("chardev") {
                        f.vhost_user.insert(c.to_string());
                    }
                }
                Opt::Keyval("-tpmdev", kv) if kv_head(kv) == "emulator" => {
                    if let Some(c) = kv_get(kv, "chardev") {
                        f.tpm.insert(c.to_string());
                    }
                }
                _ => {}
            }
        }
        f
    }
}

fn host_numa_node(n: u64) -> bool {
    Path::new(&format!("/sys/devices/system/node/node{n}")).exists()
}

fn host_huge_pages() -> bool {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("HugePages_Total:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .is_some_and(|n| n > 0)
}

fn numbers(v: &Value) -> Vec<u64> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_u64).collect(),
        Value::Number(n) => n.as_u64().into_iter().collect(),
        _ => Vec::new(),
    }
}

fn check_device(p: &Props, qemu: &Qemu) -> Result<(), Skip> {
    let d = p.get_str("driver").unwrap_or_default();
    if !qemu.devices.contains(d) {
        return Err(Skip::Lacks(format!("device '{d}'")));
    }
    if d.starts_with("vfio") {
        return Err(Skip::Host("a host PCI/mediated device (vfio)".into()));
    }
    if d == "usb-host" {
        return Err(Skip::Host("a host USB device".into()));
    }
    if d == "scsi-generic" || d == "scsi-block" {
        return Err(Skip::Host("a host SCSI device".into()));
    }
    if d.starts_with("vhost-user") {
        return Err(Skip::Host(format!("a vhost-user backend ({d})")));
    }
    if p.get("evdev").is_some() {
        return Err(Skip::Host("a host input device (evdev)".into()));
    }
    if p.get("rendernode").is_some() {
        return Err(Skip::Host("a GPU render node".into()));
    }
    Ok(())
}

/// The object's check; returns the bytes it commits up front.
fn check_object(p: &Props, qemu: &Qemu, prealloc_all: bool) -> Result<u64, Skip> {
    let t = p.get_str("qom-type").unwrap_or_default();
    if !qemu.objects.contains(t) {
        return Err(Skip::Lacks(format!("object '{t}'")));
    }
    match t {
        "input-linux" => return Err(Skip::Host("a host input device (evdev)".into())),
        "sev-guest" | "sev-snp-guest" | "sgx-epc" | "memory-backend-epc" => {
            return Err(Skip::Host(format!("confidential-computing hardware ({t})")))
        }
        "memory-backend-memfd"
            if p.get("hugetlb") == Some(&Value::Bool(true)) && !host_huge_pages() =>
        {
            return Err(Skip::Host("huge pages (none reserved here)".into()))
        }
        _ => {}
    }
    for key in ["host-nodes", "node-affinity"] {
        let missing = p
            .get(key)
            .map(numbers)
            .and_then(|ns| ns.into_iter().find(|n| !host_numa_node(*n)));
        if let Some(n) = missing {
            return Err(Skip::Host(format!("host NUMA node {n}")));
        }
    }
    let prealloc = prealloc_all || p.get("prealloc") == Some(&Value::Bool(true));
    if t.starts_with("memory-backend") && prealloc {
        return Ok(p.get("size").and_then(Value::as_u64).unwrap_or(0));
    }
    Ok(0)
}

/// Bytes of a QEMU size (`1048576k`, `2G`, `4096`).
fn qemu_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn check_keyval(name: &str, kv: &Keyval, facts: &Facts, qemu: &Qemu) -> Result<(), Skip> {
    let head = kv_head(kv);
    match name {
        "-m" => {
            let maxmem = kv_get(kv, "maxmem").and_then(qemu_size).unwrap_or(0);
            if maxmem > 1 << qemu.phys_bits {
                return Err(Skip::Host(format!(
                    "a guest address space ({} GiB of maxmem) beyond this host's {} physical address bits",
                    maxmem >> 30,
                    qemu.phys_bits
                )));
            }
            Ok(())
        }
        "-fsdev" if !head.is_empty() && !qemu.has_fsdev(head) => {
            Err(Skip::Lacks(format!("file system driver '{head}'")))
        }
        "-display" if matches!(head, "gtk" | "sdl" | "cocoa" | "curses" | "dbus") => {
            Err(Skip::Host(format!("a display server ({head})")))
        }
        "-display" | "-spice"
            if head == "egl-headless"
                || kv_get(kv, "rendernode").is_some()
                || kv_get(kv, "gl") == Some("on") =>
        {
            Err(Skip::Host("a GPU render node".into()))
        }
        "-tpmdev" if head == "passthrough" => Err(Skip::Host("a host TPM".into())),
        "-chardev" if matches!(head, "parallel" | "parport") => {
            Err(Skip::Host("a host parallel port".into()))
        }
        "-chardev" => {
            let id = kv_get(kv, "id").unwrap_or_default();
            if facts.vhost_user.contains(id) {
                return Err(Skip::Host("a vhost-user backend".into()));
            }
            let client = head == "socket"
                && kv_get(kv, "server") != Some("on")
                && kv_get(kv, "fd").is_none();
            match kv_get(kv, "host") {
                Some(h) if client && !matches!(h, "localhost" | "127.0.0.1" | "::1") => {
                    Err(Skip::Host(format!("a server at {h}")))
                }
                _ => Ok(()),
            }
        }
        "-fsdev" if head == "proxy" || kv_get(kv, "socket").is_some() => {
            Err(Skip::Host("a virtfs proxy helper".into()))
        }
        _ => Ok(()),
    }
}

/// The exclusion rules (see the module docs), applied to the built command line.
fn check_fakeable(cl: &CommandLine, facts: &Facts, qemu: &Qemu) -> Result<(), Skip> {
    let prealloc_all = cl.opts.iter().any(|o| match o {
        Opt::Flag(f) => *f == "-mem-prealloc",
        Opt::Keyval("-overcommit", kv) => kv_get(kv, "mem-lock") == Some("on"),
        _ => false,
    });
    let mut commit = 0u64;
    for opt in &cl.opts {
        match opt {
            Opt::Passthrough(t) => {
                return Err(Skip::Other(format!(
                    "verbatim <qemu:commandline> argument '{t}'"
                )))
            }
            Opt::Device(p) => check_device(p, qemu)?,
            Opt::Object(p) => commit += check_object(p, qemu, prealloc_all)?,
            Opt::Blockdev(p) => {
                let d = p.get_str("driver").unwrap_or_default();
                if NETWORK_BLOCK_DRIVERS.contains(&d) {
                    return Err(Skip::Host(format!("a storage server ({d})")));
                }
                if d == "nvme" {
                    return Err(Skip::Host("a host NVMe controller".into()));
                }
            }
            Opt::Netdev(p) => match p.get_str("type").unwrap_or_default() {
                "vhost-user" => return Err(Skip::Host("a vhost-user backend (netdev)".into())),
                "vhost-vdpa" => return Err(Skip::Host("a host vDPA device".into())),
                "bridge" => return Err(Skip::Host("qemu-bridge-helper".into())),
                "vde" => return Err(Skip::Host("a VDE switch".into())),
                _ => {}
            },
            Opt::Audiodev(p) => {
                let d = p.get_str("driver").unwrap_or_default();
                if !qemu.audio.contains(d) {
                    return Err(Skip::Lacks(format!("audio driver '{d}'")));
                }
                if AUDIO_SERVERS.contains(&d) {
                    return Err(Skip::Host(format!("an audio server ({d})")));
                }
                // SDL picks a sound server unless told to use a serverless
                // driver through the environment libvirt passes on
                let sdl_driver = cl
                    .env
                    .iter()
                    .find(|(k, _)| k == "SDL_AUDIODRIVER")
                    .map(|(_, v)| v.as_str());
                if d == "sdl" && !matches!(sdl_driver, Some("dummy" | "disk")) {
                    return Err(Skip::Host(format!(
                        "an audio server (sdl, SDL_AUDIODRIVER={})",
                        sdl_driver.unwrap_or("unset")
                    )));
                }
            }
            Opt::Keyval(name, kv) => check_keyval(name, kv, facts, qemu)?,
            Opt::Word("-cpu", w) => {
                let needs_vpindex = w.split(',').any(|f| {
                    matches!(
                        f,
                        "hv-vpindex=on" | "hv-synic=on" | "hv-vpindex" | "hv-synic"
                    )
                });
                if needs_vpindex && !qemu.kvm_hv_vpindex {
                    return Err(Skip::Host(
                        "KVM support for setting the Hyper-V VP index (hv-vpindex)".into(),
                    ));
                }
            }
            Opt::Word("-display", w) if w.starts_with("gtk") || w.starts_with("sdl") => {
                return Err(Skip::Host(format!("a display server ({w})")))
            }
            _ => {}
        }
    }
    if commit > MAX_COMMIT_BYTES {
        return Err(Skip::Host(format!(
            "{} MiB of host RAM committed up front",
            commit >> 20
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Faking what the command line names

/// Self-signed CA, server and client certificates for x509 directories.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn generate(dir: &Path) -> Result<Pki, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let run = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("openssl: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {}: {}",
                    args.first().unwrap_or(&""),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        run(&[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca-cert.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=qvisor test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])?;
        let pass = format!("pass:{}", fake::SECRET_VALUE);
        for (role, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let ext = format!(
                "basicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage={usage}\n\
                 subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            );
            let extfile = format!("{role}.ext");
            fs::write(dir.join(&extfile), ext).map_err(|e| e.to_string())?;
            let key = format!("{role}-key.pem");
            let csr = format!("{role}.csr");
            let cert = format!("{role}-cert.pem");
            let enc = format!("{role}-key.enc.pem");
            run(&[
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=localhost",
            ])?;
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca-cert.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "3650",
                "-extfile",
                &extfile,
            ])?;
            run(&[
                "pkcs8",
                "-topk8",
                "-in",
                &key,
                "-out",
                &enc,
                "-v2",
                "aes-256-cbc",
                "-passout",
                &pass,
            ])?;
        }
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// Fills `dir` the way libvirt's x509 directories look; keys encrypted
    /// with the harness's secret when QEMU gets a password for them.
    fn install(&self, dir: &Path, encrypted: bool) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        fs::copy(self.dir.join("ca-cert.pem"), dir.join("ca-cert.pem"))?;
        for role in ["server", "client"] {
            fs::copy(
                self.dir.join(format!("{role}-cert.pem")),
                dir.join(format!("{role}-cert.pem")),
            )?;
            let key = if encrypted {
                format!("{role}-key.enc.pem")
            } else {
                format!("{role}-key.pem")
            };
            fs::copy(self.dir.join(key), dir.join(format!("{role}-key.pem")))?;
        }
        Ok(())
    }
}

/// A helper process (swtpm) killed and reaped with the case.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn sparse_file(path: &Path, size: u64) -> io::Result<()> {
    mkparent(path)?;
    fs::File::create(path)?.set_len(size)
}

/// A master pty and the path of its slave.
fn open_pty() -> io::Result<(OwnedFd, PathBuf)> {
    // SAFETY: posix_openpt takes no pointers; it returns a new descriptor
    // or -1.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly opened descriptor nobody else owns.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: grantpt and unlockpt only take the master descriptor.
    if unsafe { libc::grantpt(fd) } < 0 || unsafe { libc::unlockpt(fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes at most buf.len() bytes, NUL included.
    if unsafe { libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ptsname_r succeeded, so buf holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok((master, PathBuf::from(name.to_string_lossy().into_owned())))
}

fn mkfifo(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: c is a NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Everything faked for one case; dropping it stops the helpers and closes
/// the listeners.
struct Sandbox<'a> {
    map: Mapper,
    qemu: &'a Qemu,
    pki: Option<&'a Pki>,
    master_key: [u8; 32],
    tpm2: bool,
    private_network: bool,
    holds: Vec<OwnedFd>,
    helpers: Vec<Helper>,
    /// Host paths storage nodes read, each given its own image.
    images: BTreeSet<String>,
    /// Substitutions worth reporting.
    notes: Vec<String>,
}

fn fail(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Skip {
    Skip::Host(format!("a fake {what} ({e})"))
}

impl Sandbox<'_> {
    /// A regular file at `mapped`: a copy of the host's `orig` when it has a
    /// small one, else `size` zero bytes.
    fn file(&self, orig: &str, mapped: &Path, size: u64) -> Result<(), Skip> {
        if mapped.exists() {
            return Ok(());
        }
        let host = Path::new(orig);
        let r = match fs::metadata(host) {
            Ok(m) if m.is_file() && m.len() <= 64 << 20 => {
                mkparent(mapped).and_then(|_| fs::copy(host, mapped).map(|_| ()))
            }
            _ => sparse_file(mapped, size),
        };
        r.map_err(|e| fail(format!("file for {orig}"), e))
    }

    fn dir(&self, mapped: &Path) -> Result<(), Skip> {
        fs::create_dir_all(mapped).map_err(|e| fail(format!("directory {}", mapped.display()), e))
    }

    fn parent(&self, mapped: &Path) -> Result<(), Skip> {
        mkparent(mapped).map_err(|e| fail(format!("directory for {}", mapped.display()), e))
    }

    fn listen_unix(&mut self, mapped: &Path) -> Result<(), Skip> {
        self.parent(mapped)?;
        let _ = fs::remove_file(mapped);
        let l = UnixListener::bind(mapped)
            .map_err(|e| fail(format!("server at {}", mapped.display()), e))?;
        self.holds.push(l.into());
        Ok(())
    }

    fn listen_tcp(&mut self, host: &str, port: &str) -> Result<(), Skip> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let l = TcpListener::bind(&addr).map_err(|e| fail(format!("server at {addr}"), e))?;
        self.holds.push(l.into());
        Ok(())
    }

    /// Makes an IP address QEMU must listen on exist (in the private
    /// network namespace only).
    fn local_address(&mut self, addr: &str) {
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let ordinary = matches!(addr, "" | "127.0.0.1" | "0.0.0.0" | "::" | "::1");
        if ordinary || !self.private_network || addr.parse::<std::net::IpAddr>().is_err() {
            return;
        }
        let prefix = if addr.contains(':') { "/128" } else { "/32" };
        let ok = Command::new("ip")
            .args(["addr", "add", &format!("{addr}{prefix}"), "dev", "lo"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            self.notes
                .push(format!("{addr} added to the private loopback"));
        }
    }

    fn swtpm(&mut self, ctrl: &Path) -> Result<(), Skip> {
        self.parent(ctrl)?;
        let _ = fs::remove_file(ctrl);
        let state = ctrl.with_extension("tpmstate");
        self.dir(&state)?;
        let mut cmd = Command::new("swtpm");
        cmd.arg("socket")
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", ctrl.display()))
            .arg("--terminate")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.tpm2 {
            cmd.arg("--tpm2");
        }
        let child = cmd
            .spawn()
            .map_err(|e| Skip::Host(format!("swtpm ({e})")))?;
        self.helpers.push(Helper(child));
        if !wait_for(ctrl, Duration::from_secs(5)) {
            return Err(Skip::Host("swtpm (its socket did not appear)".into()));
        }
        self.notes.push("swtpm behind the TPM".into());
        Ok(())
    }

    fn x509(&self, mapped: &Path, encrypted: bool) -> Result<(), Skip> {
        let pki = self
            .pki
            .ok_or_else(|| Skip::Host("TLS certificates (openssl did not make them)".into()))?;
        pki.install(mapped, encrypted)
            .map_err(|e| fail("x509 directory", e))
    }

    /// The image a storage node reads, in the format of the node reading it.
    fn image(&self, orig: &str, mapped: &Path, node: &str, facts: &Facts) -> Result<(), Skip> {
        if mapped.exists() {
            return Ok(());
        }
        let reader = facts
            .reader
            .get(node)
            .and_then(|f| facts.nodes.get(f).map(|p| (f, p)));
        let format = reader
            .and_then(|(_, p)| p.get_str("driver"))
            .unwrap_or("raw");
        if format == "raw" || facts.data_files.contains(node) {
            let mut size = 16 << 20;
            if let Some((name, p)) = reader {
                if facts.floppy.contains(name.as_str()) {
                    size = 1_474_560;
                }
                match facts.pflash.get(name.as_str()) {
                    Some(0) => size = 2 << 20,
                    Some(_) => size = 128 << 10,
                    None => {}
                }
                let end = p.get("offset").and_then(Value::as_u64).unwrap_or(0)
                    + p.get("size").and_then(Value::as_u64).unwrap_or(0);
                size = size.max(end);
            }
            return self.file(orig, mapped, size);
        }
        self.parent(mapped)?;
        let mut cmd = Command::new(&self.qemu.img);
        cmd.args(["create", "-q", "-f", format]);
        let mut opts = Vec::new();
        let secret = format!("secret,id=sec0,data={}", fake::SECRET_VALUE);
        if let Some((_, p)) = reader {
            if format == "luks" && p.get("key-secret").is_some() {
                cmd.args(["--object", &secret]);
                opts.push("key-secret=sec0".to_string());
            }
            let encrypt = p.get("encrypt").and_then(|e| e.get("format"));
            if encrypt.and_then(Value::as_str) == Some("luks") {
                cmd.args(["--object", &secret]);
                opts.push("encrypt.format=luks,encrypt.key-secret=sec0".into());
            }
            if let Some(data) = p
                .get_str("data-file")
                .and_then(|d| facts.nodes.get(d))
                .and_then(|d| d.get_str("filename"))
            {
                opts.push(format!("data_file={}", path_text(&self.map.path(data))));
            }
        }
        if !opts.is_empty() {
            cmd.args(["-o", &opts.join(",")]);
        }
        cmd.arg(mapped).arg("16M").stdin(Stdio::null());
        // LUKS key setup times PBKDF iterations against CPU time, which a
        // loaded machine can make fail: try again a few times
        let mut attempts = 0;
        let out = loop {
            attempts += 1;
            let out = cmd
                .output()
                .map_err(|e| fail(format!("{format} image"), e))?;
            let timing = String::from_utf8_lossy(&out.stderr).contains("accurate CPU usage");
            if out.status.success() || !timing || attempts == 5 {
                break out;
            }
            let _ = fs::remove_file(mapped);
        };
        if !out.status.success() {
            return Err(fail(
                format!("{format} image"),
                String::from_utf8_lossy(&out.stderr).trim(),
            ));
        }
        Ok(())
    }

    fn blockdev(&mut self, p: &mut Props, facts: &Facts) -> Result<(), Skip> {
        let driver = p.get_str("driver").unwrap_or_default().to_string();
        match driver.as_str() {
            "file" | "host_device" | "host_cdrom" => {
                let Some(orig) = p.get_str("filename").map(str::to_string) else {
                    return Ok(());
                };
                if self.map.keeps(&orig) {
                    return Ok(());
                }
                let node = p.get_str("node-name").unwrap_or_default().to_string();
                let mut mapped = self.map.path(&orig);
                if !self.images.insert(orig.clone()) {
                    // libvirt's test data reuses one path for several disks;
                    // QEMU's image locking would refuse the second writer
                    let mut name = mapped.into_os_string();
                    name.push(format!(".{node}"));
                    mapped = PathBuf::from(name);
                    self.notes
                        .push(format!("{orig} shared: {node} has its own image"));
                }
                self.image(&orig, &mapped, &node, facts)?;
                p.set("filename", path_text(&mapped));
                if driver != "file" {
                    p.set("driver", "file");
                    self.notes.push(format!("{driver} {orig} read as a file"));
                }
            }
            "vvfat" => {
                if let Some(orig) = p.get_str("dir").map(str::to_string) {
                    let mapped = self.map.path(&orig);
                    self.dir(&mapped)?;
                    p.set("dir", path_text(&mapped));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn object(&mut self, p: &mut Props, memory_dirs: &[PathBuf]) -> Result<(), Skip> {
        let t = p.get_str("qom-type").unwrap_or_default().to_string();
        match t.as_str() {
            "secret" => {
                if let Some(orig) = p.get_str("file").map(str::to_string) {
                    let mapped = self.map.path(&orig);
                    self.parent(&mapped)?;
                    let content: Vec<u8> = if p.get_str("id") == Some("masterKey0") {
                        self.master_key.to_vec()
                    } else {
                        fake::SECRET_VALUE.as_bytes().to_vec()
                    };
                    fs::write(&mapped, content).map_err(|e| fail("secret file", e))?;
                    p.set("file", path_text(&mapped));
                }
            }
            "memory-backend-file" => {
                if let Some(orig) = p.get_str("mem-path").map(str::to_string) {
                    let mapped = self.map.path(&orig);
                    if memory_dirs.iter().any(|d| Path::new(&orig).starts_with(d)) {
                        self.dir(&mapped)?;
                    } else {
                        self.parent(&mapped)?;
                    }
                    p.set("mem-path", path_text(&mapped));
                }
            }
            "tls-creds-x509" => {
                if let Some(orig) = p.get_str("dir").map(str::to_string) {
                    let mapped = self.map.path(&orig);
                    self.x509(&mapped, p.get("passwordid").is_some())?;
                    p.set("dir", path_text(&mapped));
                }
            }
            "rng-random" => {
                if let Some(orig) = p.get_str("filename").map(str::to_string) {
                    if !self.map.keeps(&orig) {
                        let mapped = self.map.path(&orig);
                        self.file(&orig, &mapped, 0)?;
                        p.set("filename", path_text(&mapped));
                    }
                }
            }
            _ => {
                for key in ["file", "filename", "path", "dir"] {
                    if let Some(orig) = p.get_str(key).map(str::to_string) {
                        if orig.starts_with('/') && !self.map.keeps(&orig) {
                            let mapped = self.map.path(&orig);
                            self.parent(&mapped)?;
                            p.set(key, path_text(&mapped));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn chardev(&mut self, kv: &mut Keyval, facts: &Facts) -> Result<(), Skip> {
        let head = kv_head(kv).to_string();
        let id = kv_get(kv, "id").unwrap_or_default().to_string();
        let server = kv_get(kv, "server") == Some("on");
        if let Some(orig) = kv_get(kv, "logfile").map(str::to_string) {
            let mapped = self.map.path(&orig);
            self.parent(&mapped)?;
            kv_set(kv, "logfile", path_text(&mapped));
        }
        let Some(orig) = kv_get(kv, "path").map(str::to_string) else {
            let client = head == "socket" && !server && kv_get(kv, "fd").is_none();
            if let (true, Some(h), Some(port)) = (client, kv_get(kv, "host"), kv_get(kv, "port")) {
                let (h, port) = (h.to_string(), port.to_string());
                self.listen_tcp(&h, &port)?;
            }
            return Ok(());
        };
        if self.map.keeps(&orig) {
            return Ok(());
        }
        let mapped = self.map.path(&orig);
        match head.as_str() {
            "socket" if server => {
                self.parent(&mapped)?;
                let _ = fs::remove_file(&mapped);
            }
            "socket" if facts.tpm.contains(&id) => self.swtpm(&mapped)?,
            "socket" => self.listen_unix(&mapped)?,
            "pipe" => {
                self.parent(&mapped)?;
                if !mapped.exists() {
                    mkfifo(&mapped).map_err(|e| fail("FIFO", e))?;
                }
            }
            "serial" | "tty" => {
                self.parent(&mapped)?;
                let (master, slave) = open_pty().map_err(|e| fail("pty", e))?;
                let _ = fs::remove_file(&mapped);
                symlink(&slave, &mapped).map_err(|e| fail("pty link", e))?;
                self.holds.push(master);
                self.notes.push(format!("{orig} is a pty"));
            }
            _ => self.parent(&mapped)?,
        }
        kv_set(kv, "path", path_text(&mapped));
        Ok(())
    }

    fn keyval(&mut self, name: &str, kv: &mut Keyval, facts: &Facts) -> Result<(), Skip> {
        match name {
            "-chardev" => self.chardev(kv, facts)?,
            "-spice" => {
                if let Some(orig) = kv_get(kv, "x509-dir").map(str::to_string) {
                    let mapped = self.map.path(&orig);
                    self.x509(&mapped, false)?;
                    kv_set(kv, "x509-dir", path_text(&mapped));
                }
                if let Some(addr) = kv_get(kv, "addr").map(str::to_string) {
                    if addr.starts_with('/') {
                        let mapped = self.map.path(&addr);
                        self.parent(&mapped)?;
                        kv_set(kv, "addr", path_text(&mapped));
                    } else {
                        self.local_address(&addr);
                    }
                }
            }
            "-vnc" => {
                let mut addresses = Vec::new();
                for item in kv.0.iter_mut() {
                    let text = match item {
                        KvItem::Bare(w) => w,
                        KvItem::Pair(k, v) if k == "vnc" => v,
                        _ => continue,
                    };
                    let (key, rest) = match text.strip_prefix("vnc=") {
                        Some(rest) => ("vnc=", rest.to_string()),
                        None => ("", text.clone()),
                    };
                    if let Some(orig) = rest.strip_prefix("unix:") {
                        // the builder comma-escapes the path of this bare item
                        let orig = orig.replace(",,", ",");
                        let mapped = self.map.path(&orig);
                        self.parent(&mapped)?;
                        *text = format!("{key}unix:{}", path_text(&mapped).replace(',', ",,"));
                    } else if let Some((host, _)) = text.rsplit_once(':') {
                        addresses.push(host.to_string());
                    }
                }
                for a in addresses {
                    self.local_address(&a);
                }
            }
            "-fsdev" | "-drive" | "-acpitable" | "-smbios" => {
                for key in ["path", "file"] {
                    let Some(orig) = kv_get(kv, key).map(str::to_string) else {
                        continue;
                    };
                    if self.map.keeps(&orig) {
                        continue;
                    }
                    let mapped = self.map.path(&orig);
                    if name == "-fsdev" {
                        self.dir(&mapped)?;
                    } else {
                        self.file(&orig, &mapped, 1 << 20)?;
                    }
                    kv_set(kv, key, path_text(&mapped));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn netdev(&mut self, p: &mut Props) -> Result<(), Skip> {
        match p.get_str("type").unwrap_or_default() {
            "socket" => {
                if let Some((h, port)) = p.get_str("connect").and_then(|c| c.rsplit_once(':')) {
                    let h = if h.is_empty() { "127.0.0.1" } else { h };
                    let (h, port) = (h.to_string(), port.to_string());
                    self.listen_tcp(&h, &port)?;
                }
            }
            "stream" if p.get("server") != Some(&Value::Bool(true)) => {
                let Some(mut addr) = p.get("addr").cloned() else {
                    return Ok(());
                };
                match addr.get("type").and_then(Value::as_str) {
                    Some("inet") => {
                        let h = addr
                            .get("host")
                            .and_then(Value::as_str)
                            .unwrap_or("127.0.0.1");
                        let port = addr.get("port").and_then(Value::as_str).unwrap_or("0");
                        self.listen_tcp(h, port)?;
                    }
                    Some("unix") => {
                        if let Some(orig) = addr.get("path").and_then(Value::as_str) {
                            let mapped = self.map.path(orig);
                            self.listen_unix(&mapped)?;
                            addr["path"] = Value::String(path_text(&mapped));
                            p.set("addr", addr);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn audiodev(&mut self, p: &mut Props) -> Result<(), Skip> {
        match p.get_str("driver").unwrap_or_default() {
            "oss" => {
                for dir in ["in", "out"] {
                    let Some(mut v) = p.remove(dir) else {
                        continue;
                    };
                    if let Some(orig) = v.get("dev").and_then(Value::as_str).map(str::to_string) {
                        let mapped = self.map.path(&orig);
                        self.file(&orig, &mapped, 0)?;
                        v["dev"] = Value::String(path_text(&mapped));
                    }
                    p.set(dir, v);
                }
            }
            "wav" => {
                if let Some(orig) = p.get_str("path").map(str::to_string) {
                    let mapped = self.map.path(&orig);
                    self.parent(&mapped)?;
                    p.set("path", path_text(&mapped));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn word(&mut self, name: &str, w: &mut String) -> Result<(), Skip> {
        if !w.starts_with('/') || self.map.keeps(w) {
            return Ok(());
        }
        let mapped = self.map.path(w);
        match name {
            "-mem-path" => self.dir(&mapped)?,
            "-bios" | "-kernel" | "-initrd" | "-dtb" => self.file(w, &mapped, 256 << 10)?,
            _ => return Ok(()),
        }
        *w = path_text(&mapped);
        Ok(())
    }

    /// Rewrites `cl` to use fakes for everything it names on the host.
    fn fake_everything(
        &mut self,
        cl: &mut CommandLine,
        facts: &Facts,
        memory_dirs: &[PathBuf],
    ) -> Result<(), Skip> {
        for opt in cl.opts.iter_mut() {
            match opt {
                Opt::Blockdev(p) => self.blockdev(p, facts)?,
                Opt::Object(p) => self.object(p, memory_dirs)?,
                Opt::Netdev(p) => self.netdev(p)?,
                Opt::Audiodev(p) => self.audiodev(p)?,
                Opt::Device(p) => {
                    if let Some(orig) = p.get_str("romfile").map(str::to_string) {
                        if orig.starts_with('/') {
                            let mapped = self.map.path(&orig);
                            self.file(&orig, &mapped, 64 << 10)?;
                            p.set("romfile", path_text(&mapped));
                        }
                    }
                }
                Opt::Keyval(name, kv) => self.keyval(name, kv, facts)?,
                Opt::Word(name, w) => self.word(name, w)?,
                _ => {}
            }
        }
        for (k, v) in cl.env.iter_mut() {
            if k != "PATH" && v.starts_with('/') && !self.map.keeps(v) {
                let mapped = self.map.path(v);
                self.dir(&mapped)?;
                *v = path_text(&mapped);
            }
        }
        Ok(())
    }
}

/// Host paths still in the arguments (reported; QEMU opens none of them or
/// the case fails).
fn leftover_paths(cl: &CommandLine, map: &Mapper) -> Vec<String> {
    let mut out: Vec<String> = cl
        .args()
        .iter()
        .flat_map(|a| {
            a.split([',', '"', '=', ' '])
                .filter(|p| p.starts_with("/tmp/") || p.starts_with("/var/lib/libvirt"))
                .filter(|p| !map.keeps(p))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------
// Running QEMU

/// A started QEMU, killed and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(
    qemu: &Qemu,
    cl: &CommandLine,
    fds: Vec<(RawFd, OwnedFd)>,
    log: &Path,
) -> io::Result<Running> {
    let out = fs::File::create(log)?;
    let mut cmd = Command::new(&qemu.binary);
    cmd.args(cl.args())
        .env_clear()
        .envs(cl.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out));
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(n, fd)| (fd.as_raw_fd(), *n)).collect();
    let hook = move || {
        for (from, to) in &pairs {
            // SAFETY: dup2 and fcntl take descriptor numbers only and are
            // async-signal-safe; `pairs` was allocated before the fork.
            let rc = unsafe {
                if from == to {
                    libc::fcntl(*from, libc::F_SETFD, 0)
                } else {
                    libc::dup2(*from, *to)
                }
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and makes only the
    // async-signal-safe calls above.
    unsafe {
        cmd.pre_exec(hook);
    }
    let child = cmd.spawn()?;
    // the test's copies go now, so a QEMU that dies resets our connection
    drop(fds);
    Ok(Running(child))
}

/// Reads QMP messages, watching the process while it waits.
struct Qmp<'a> {
    stream: UnixStream,
    buf: Vec<u8>,
    qemu: &'a mut Running,
    deadline: Instant,
}

impl Qmp<'_> {
    fn next(&mut self) -> Result<Value, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return serde_json::from_slice(&line).map_err(|e| format!("bad QMP reply: {e}"));
            }
            if Instant::now() > self.deadline {
                return Err(format!("no QMP answer within {START_TIMEOUT:?}"));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("QEMU closed the monitor".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Ok(Some(st)) = self.qemu.0.try_wait() {
                        return Err(format!("QEMU exited ({st})"));
                    }
                }
                Err(e) => return Err(format!("monitor: {e}")),
            }
        }
    }

    fn execute(&mut self, command: &str) -> Result<Value, String> {
        let msg = format!("{{\"execute\":\"{command}\"}}\n");
        self.stream
            .write_all(msg.as_bytes())
            .map_err(|e| format!("monitor: {e}"))?;
        loop {
            let v = self.next()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("{command}: {e}"));
            }
        }
    }
}

/// `query-status` of the QEMU listening on `monitor`.
fn query_status(monitor: &Path, qemu: &mut Running) -> Result<String, String> {
    let stream = UnixStream::connect(monitor).map_err(|e| format!("connect monitor: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut qmp = Qmp {
        stream,
        buf: Vec::new(),
        qemu,
        deadline: Instant::now() + START_TIMEOUT,
    };
    while qmp.next()?.get("QMP").is_none() {}
    qmp.execute("qmp_capabilities")?;
    let st = qmp.execute("query-status")?;
    Ok(st
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string())
}

/// QEMU's own error lines from its log, timestamps stripped.
fn qemu_reason(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            let l = l.trim();
            match l.split_once(' ') {
                Some((ts, rest)) if ts.len() > 20 && ts.ends_with('Z') && ts.contains('T') => rest,
                _ => l,
            }
        })
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.contains("warning:"))
        .collect();
    let mut s = if errors.is_empty() { lines } else { errors }.join(" | ");
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Moves this thread (and the processes it starts) into a new network
/// namespace with a working loopback device. The loopback also gets one
/// documentation address per family: name resolution with AI_ADDRCONFIG
/// (SPICE, UDP chardevs) counts an address family as configured only when
/// some address other than 127.0.0.1 or ::1 exists.
fn private_network() -> Result<(), String> {
    // SAFETY: unshare takes no pointers; it changes this thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    let ok = ip(&["link", "set", "lo", "up"])
        && ip(&["addr", "add", "192.0.2.1/32", "dev", "lo"])
        && ip(&["addr", "add", "2001:db8::1/128", "dev", "lo", "nodad"]);
    if ok {
        Ok(())
    } else {
        Err("cannot set up the loopback device".into())
    }
}

/// A scratch directory removed at the end.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

enum Outcome {
    Skipped(Skip),
    Started { status: String, notes: Vec<String> },
    Failed(String),
}

#[derive(Clone, Copy)]
struct Env<'a> {
    corpus: &'a Path,
    qemu: &'a Qemu,
    pki: Option<&'a Pki>,
    scratch: &'a Path,
    private_network: bool,
}

/// Whether the emulated TPM is a TPM 2.0 (libvirt's default: 2.0 for CRB).
fn tpm2(def: &Domain) -> bool {
    def.devices.tpms.iter().any(
        |t| match t.child("backend").and_then(|b| b.get_attr("version")) {
            Some(v) => v == "2.0",
            None => t.attr("model") == Some("tpm-crb"),
        },
    )
}

fn run_case(env: &Env<'_>, index: usize, name: &str) -> Outcome {
    let root = env.scratch.join(index.to_string());
    let map = Mapper { root: root.clone() };
    let outcome = run_case_in(env, &map, index, name);
    let _ = fs::remove_dir_all(&root);
    outcome
}

fn run_case_in(env: &Env<'_>, map: &Mapper, index: usize, name: &str) -> Outcome {
    let case = match load_case(env.corpus, name, env.scratch) {
        Ok(c) => c,
        Err(e) => return Outcome::Skipped(Skip::Other(format!("cannot read the case: {e}"))),
    };
    if case.caps_flags {
        return Outcome::Skipped(Skip::Other("per-case capability flags".into()));
    }
    let Built {
        mut cl,
        def,
        master_key,
        memory_dirs,
        mut host,
    } = match build(env.corpus, &case, map) {
        Ok(b) => b,
        Err(e) => return Outcome::Skipped(Skip::Other(format!("does not build: {e}"))),
    };
    if let Some(what) = host.unfakeable.first() {
        return Outcome::Skipped(Skip::Host(what.clone()));
    }
    let facts = Facts::scan(&cl);
    if let Err(skip) = check_fakeable(&cl, &facts, env.qemu) {
        return Outcome::Skipped(skip);
    }
    let mut sandbox = Sandbox {
        map: map.clone(),
        qemu: env.qemu,
        pki: env.pki,
        master_key,
        tpm2: tpm2(&def),
        private_network: env.private_network,
        holds: Vec::new(),
        helpers: Vec::new(),
        images: BTreeSet::new(),
        notes: Vec::new(),
    };
    if let Err(skip) = sandbox.fake_everything(&mut cl, &facts, &memory_dirs) {
        return Outcome::Skipped(skip);
    }
    let smm = cl
        .opts
        .iter()
        .any(|o| matches!(o, Opt::Keyval("-machine", kv) if kv_get(kv, "smm") == Some("on")));
    let tcg = if !env.qemu.kvm {
        Some("/dev/kvm is not usable")
    } else if smm && !env.qemu.kvm_smm {
        Some("KVM here lacks System Management Mode")
    } else {
        None
    };
    if let Some(why) = tcg {
        for opt in cl.opts.iter_mut() {
            if let Opt::Keyval("-accel", kv) = opt {
                if kv_head(kv) == "kvm" {
                    *kv = Keyval::head("tcg");
                    sandbox.notes.push(format!("{why}: run with TCG"));
                }
            }
        }
    }
    let mut notes = std::mem::take(&mut sandbox.notes);
    notes.extend(
        leftover_paths(&cl, map)
            .into_iter()
            .map(|p| format!("unmapped path {p}")),
    );
    let Some(monitor) = host.monitor.clone() else {
        return Outcome::Failed("the command line has no monitor".into());
    };
    let log = env.scratch.join(format!("{index}.log"));
    let fds = std::mem::take(&mut host.fds);
    let result = match spawn(env.qemu, &cl, fds, &log) {
        Ok(mut running) => query_status(&monitor, &mut running),
        Err(e) => Err(format!("spawn: {e}")),
    };
    drop(sandbox);
    let reason = qemu_reason(&log);
    let _ = fs::remove_file(&log);
    let reason = match result {
        Ok(status) => return Outcome::Started { status, notes },
        Err(e) if reason.is_empty() => e,
        Err(_) => reason,
    };
    // QVISOR_QA_VERBOSE=1 shows what QEMU was given
    if std::env::var_os("QVISOR_QA_VERBOSE").is_some() {
        Outcome::Failed(format!("{reason}\n    {}", cl.args().join(" ")))
    } else {
        Outcome::Failed(reason)
    }
}

#[test]
fn qemu_accepts_the_command_lines_we_build() {
    let Some(corpus) = corpus_dir() else {
        println!("skipped: the conformance corpus (../shared/conformance) is not there");
        return;
    };
    let binary = std::env::var_os("QVISOR_TEST_QEMU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CONFORMANCE_EMULATOR));
    let Some(qemu) = Qemu::probe(binary.clone()) else {
        println!("skipped: {} does not run", binary.display());
        return;
    };
    println!("{} ({})", qemu.version, binary.display());
    if !qemu.kvm {
        println!("/dev/kvm is not usable: -accel kvm becomes -accel tcg");
    }
    // each worker thread gets its own network namespace, so the fixed
    // ports of cases running side by side never meet; without namespaces
    // the cases run one at a time
    let netns = std::thread::spawn(private_network)
        .join()
        .unwrap_or_else(|_| Err("the probe panicked".into()));
    let jobs = match &netns {
        Ok(()) => {
            let jobs = std::env::var("QVISOR_QA_JOBS")
                .ok()
                .and_then(|j| j.parse().ok())
                .unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_JOBS))
                })
                .max(1);
            println!("QEMU runs in private network namespaces, {jobs} case(s) at a time");
            jobs
        }
        Err(e) => {
            println!("QEMU runs in the host network namespace ({e}); one case at a time");
            1
        }
    };
    let scratch = Scratch(std::env::temp_dir().join(format!("qa{}", std::process::id())));
    fs::create_dir_all(&scratch.0).expect("scratch directory");
    let pki = match Pki::generate(&scratch.0.join("pki")) {
        Ok(p) => Some(p),
        Err(e) => {
            println!("no TLS certificates ({e}): x509 cases are excluded");
            None
        }
    };
    let env = Env {
        corpus: &corpus,
        qemu: &qemu,
        pki: pki.as_ref(),
        scratch: &scratch.0,
        private_network: false,
    };
    // QVISOR_QA_CASES=a,b runs only these cases
    let only: Option<BTreeSet<String>> = std::env::var("QVISOR_QA_CASES")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let names: Vec<String> = fs::read_to_string(corpus.join("argv.txt"))
        .expect("argv.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| only.as_ref().is_none_or(|o| o.contains(*l)))
        .map(str::to_string)
        .collect();

    let t0 = Instant::now();
    let mut skipped: Vec<(String, Skip)> = Vec::new();
    let mut started: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                let env = Env {
                    private_network: netns.is_ok() && private_network().is_ok(),
                    ..env
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = names.get(i) else { break };
                    let outcome = run_case(&env, i, name);
                    outcomes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, outcome));
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
    outcomes.sort_by_key(|(i, _)| *i);
    for (i, outcome) in outcomes {
        let name = names[i].clone();
        match outcome {
            Outcome::Skipped(s) => skipped.push((name, s)),
            Outcome::Started { status, notes } => started.push((name, status, notes)),
            Outcome::Failed(r) => failed.push((name, r)),
        }
    }

    skipped.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    println!("\nexcluded before running ({}):", skipped.len());
    for (name, why) in &skipped {
        println!("  {name}: {why}");
    }
    println!("\nstarted and answered query-status ({}):", started.len());
    for (name, status, notes) in &started {
        if notes.is_empty() {
            println!("  {name}: {status}");
        } else {
            println!("  {name}: {status} ({})", notes.join("; "));
        }
    }
    println!("\ndid not start ({}):", failed.len());
    for (name, reason) in &failed {
        println!("  {name}: {reason}");
    }
    let tried = started.len() + failed.len();
    let ratio = if tried == 0 {
        0.0
    } else {
        started.len() as f64 / tried as f64
    };
    println!(
        "\nqemu accepts: {} of {tried} tried cases started ({:.1}%); {} of {} excluded; {:.1?}",
        started.len(),
        ratio * 100.0,
        skipped.len(),
        names.len(),
        t0.elapsed()
    );
    assert!(
        tried >= MIN_SAMPLE || only.is_some(),
        "only {tried} cases could be tried (want at least {MIN_SAMPLE})"
    );
    assert!(
        ratio >= MIN_RATIO,
        "only {:.1}% of the tried cases started (want {:.0}%)",
        ratio * 100.0,
        MIN_RATIO * 100.0
    );
}
