//! Starting a domain and re-attaching to one: the per-domain pipeline
//! (accelerator → storage → security), the command line, QEMU, the monitor.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use qvisor_caps::QemuCaps;
use qvisor_cmdline::env::{ResolvedVolume, SecretRef};
use qvisor_cmdline::props::{Keyval, KvItem};
use qvisor_cmdline::{AccelContribution, BuildEnv, CommandLine, FdPurpose, HugetlbfsMount};
use qvisor_domain::{CpuMode, CpuSet, Domain, StrEnum};
use qvisor_qmp::{ClientOptions, QmpClient};
use qvisor_sdk::{DomainContext, PluginKind, Reply, Request};

use super::actor::{DomainActor, Exited, QmpEvent};
use super::error::{DriverError, Result};
use super::process::{self, SpawnSpec};
use super::registry::DomainEntry;
use super::runtime::{ExitSignal, Runtime};
use super::state::{DomainState, EventKind, Lifecycle, PausedReason, RunningReason};
use super::status::Status;
use super::{log_tail, random_bytes, Inner};
use crate::fsutil::write_atomic_runtime;

/// How long QEMU may take to answer its monitor at start-up.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(30);

/// The first descriptor number handed to QEMU (0-2 are stdio).
const FIRST_PASSED_FD: i32 = 3;

/// A command line as libvirtd's `domxml-to-native` returns it
/// (`virCommandToString` without line breaks): environment assignments, the
/// binary and each argument, separated by single spaces, each quoted for a
/// POSIX shell only when it holds a shell metacharacter.
fn native_one_line(cmd: &CommandLine) -> String {
    fn quote(s: &str) -> String {
        const META: &[char] = &[
            '\r', '\t', '\n', ' ', '!', '"', '#', '$', '&', '\'', '(', ')', '*', ';', '<', '>',
            '?', '[', '\\', ']', '^', '`', '{', '|', '}', '~',
        ];
        if s.is_empty() {
            "''".to_string()
        } else if !s.contains(META) {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    }
    cmd.env
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .chain(std::iter::once(quote(&cmd.binary)))
        .chain(cmd.args().iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wall time of each step of a start, for the debug log (where the time
/// of a start goes, without a profiler).
struct Phases {
    last: std::time::Instant,
    marks: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Self {
        Phases {
            last: std::time::Instant::now(),
            marks: Vec::new(),
        }
    }

    fn mark(&mut self, what: &'static str) {
        let now = std::time::Instant::now();
        self.marks.push((what, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (what, d)) in self.marks.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{what} {:.1} ms", d.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

/// The real host side of the command-line builder: descriptors opened for
/// real, `getrandom`, the real file system.
struct RealHost {
    /// `domxml-to-native`: number descriptors but open nothing.
    pretend: bool,
    next_fd: i32,
    fds: Vec<(OwnedFd, i32)>,
    volumes: BTreeMap<(String, String), ResolvedVolume>,
}

impl RealHost {
    fn new(pretend: bool) -> Self {
        RealHost {
            pretend,
            next_fd: FIRST_PASSED_FD,
            fds: Vec::new(),
            volumes: BTreeMap::new(),
        }
    }

    fn keep(&mut self, fd: OwnedFd) -> i32 {
        let n = self.next_fd;
        self.next_fd += 1;
        self.fds.push((fd, n));
        n
    }

    fn listen(path: &str) -> std::result::Result<OwnedFd, String> {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).map_err(|e| format!("cannot listen on '{path}': {e}"))?;
        Ok(OwnedFd::from(l))
    }
}

impl qvisor_cmdline::Host for RealHost {
    fn random_bytes(&mut self, buf: &mut [u8]) {
        random_bytes(buf);
    }

    fn secret(&self, r: &SecretRef) -> std::result::Result<Vec<u8>, String> {
        Err(format!(
            "secret {r:?} not found: this driver has no secret store"
        ))
    }

    fn resolve_volume(
        &self,
        pool: &str,
        volume: &str,
    ) -> std::result::Result<ResolvedVolume, String> {
        self.volumes
            .get(&(pool.to_string(), volume.to_string()))
            .cloned()
            .ok_or_else(|| format!("Storage volume not found: no storage vol with matching name '{volume}' in pool '{pool}'"))
    }

    fn pass_fd(&mut self, purpose: &FdPurpose) -> std::result::Result<i32, String> {
        if self.pretend {
            let n = self.next_fd;
            self.next_fd += 1;
            return Ok(n);
        }
        let fd = match purpose {
            FdPurpose::Monitor(path) | FdPurpose::ListenSocket(path) => Self::listen(path)?,
            FdPurpose::ChardevFile { path, append } => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(*append)
                    .truncate(!*append)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| format!("cannot open '{path}': {e}"))?;
                OwnedFd::from(f)
            }
            other => {
                return Err(format!(
                    "passing {other:?} to QEMU is not supported by this driver"
                ))
            }
        };
        Ok(self.keep(fd))
    }

    fn passes_chardev_fds(&self) -> bool {
        !self.pretend
    }

    fn is_cdrom(&self, path: &str) -> bool {
        // SCSI CD-ROM block devices have major number 11.
        std::fs::metadata(path)
            .map(|m| m.file_type().is_block_device() && (m.rdev() >> 8) & 0xfff == 11)
            .unwrap_or(false)
    }

    fn read_file(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn list_dir(&self, dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn numa_nodes_available(&self, nodes: &CpuSet) -> bool {
        nodes
            .0
            .iter()
            .all(|n| Path::new(&format!("/sys/devices/system/node/node{n}")).exists())
    }

    fn auto_nodeset(&self) -> Option<CpuSet> {
        None
    }

    fn graphics_port(
        &mut self,
        _what: qvisor_cmdline::env::GraphicsPort,
    ) -> std::result::Result<u16, String> {
        // libvirt's remote_display_port_min..max: the first port nobody listens
        // on (a pretend run just reports the first of the range).
        if self.pretend {
            return Ok(5900);
        }
        (5900..=65535u16)
            .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
            .ok_or_else(|| {
                "Unable to find an unused port in range 'display' (5900-65535)".to_string()
            })
    }

    fn free_vsock_cid(&mut self) -> std::result::Result<u32, String> {
        Err("automatic vsock CIDs are not supported by this driver yet".into())
    }

    fn tpm_emulator_socket(&self, alias: &str) -> String {
        format!("/run/qvisor/swtpm/{alias}.sock")
    }

    fn scsi_host_device(
        &self,
        adapter: &str,
        bus: u32,
        target: u32,
        unit: u32,
    ) -> std::result::Result<String, String> {
        Err(format!(
            "SCSI host device {adapter}:{bus}:{target}:{unit} is not supported by this driver yet"
        ))
    }

    fn vhost_user_capabilities(&self, binary: &Path) -> Option<String> {
        let out = std::process::Command::new(binary)
            .arg("--print-capabilities")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Mounted hugetlbfs file systems from `/proc/mounts` (page size from the
/// `pagesize=` option, else the default 2 MiB).
fn host_hugetlbfs() -> Vec<HugetlbfsMount> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut out = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(2) != Some(&"hugetlbfs") {
            continue;
        }
        let size = f
            .get(3)
            .and_then(|o| o.split(',').find_map(|x| x.strip_prefix("pagesize=")))
            .and_then(parse_page_size)
            .unwrap_or(2048);
        out.push(HugetlbfsMount {
            path: PathBuf::from(f[1]),
            page_size_kib: size,
            default: size == 2048,
        });
    }
    out
}

fn parse_page_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1),
        'M' | 'm' => (&s[..s.len() - 1], 1024),
        'G' | 'g' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// The plugin taking part in each step, for recording (`step`, `plugin`).
type Pipeline = Vec<(String, String)>;

impl Inner {
    /// Context handed to plugins for `def`.
    fn plugin_context(&self, def: &Domain, private_dir: &Path) -> DomainContext {
        DomainContext {
            name: def.name.clone().into(),
            uuid: def.uuid.map(|u| u.to_string()).unwrap_or_default().into(),
            virt_type: def.kind.map(|k| k.as_str()).unwrap_or("qemu").into(),
            emulator: def.devices.emulator.clone().unwrap_or_default().into(),
            xml: qvisor_domain::format(def, &qvisor_domain::FormatOptions::default()).into(),
            private_dir: private_dir.display().to_string().into(),
            // SAFETY: getuid/getgid cannot fail.
            uid: unsafe { libc::getuid() },
            // SAFETY: as above.
            gid: unsafe { libc::getgid() },
            resources: Default::default(),
            settings: Default::default(),
            labels: Default::default(),
        }
    }

    /// Picks the usable accelerator plugin for the domain type and asks it
    /// for its part of the command line.
    fn accel_contribution(
        &self,
        def: &Domain,
        ctx: &DomainContext,
        pipeline: &mut Pipeline,
    ) -> Result<AccelContribution> {
        let virt_type = def.kind.map(|k| k.as_str()).unwrap_or("qemu");
        let plugin = self
            .plugin_statuses
            .iter()
            .filter(|s| s.kind() == Some(PluginKind::Accelerator))
            .find(|s| {
                s.description
                    .as_ref()
                    .is_some_and(|d| d.provided("domain-type").any(|t| t == virt_type))
            })
            .ok_or_else(|| {
                DriverError::ConfigUnsupported(format!(
                    "no accelerator plugin provides domain type '{virt_type}'"
                ))
            })?;
        if !plugin.usable() {
            return Err(DriverError::ConfigUnsupported(format!(
                "domain type '{virt_type}' is not usable on this host: {} ({})",
                plugin.state.reason(),
                plugin.name()
            )));
        }
        let name = plugin.name();
        let reply = self
            .call_plugin(&name, Request::CommandLine(Box::new(ctx.clone()).into()))
            .map_err(|e| DriverError::Internal(e.to_string()))?;
        let Reply::Accel(a) = reply else {
            return Err(DriverError::Internal(format!(
                "plugin '{name}' answered command-line with {reply:?}"
            )));
        };
        pipeline.push(("accelerator".into(), name));
        // The XML-derived properties (TCG cache size, KVM dirty ring) stay
        // libvirt's mapping; the plugin decides the accelerator and may add.
        let mut contribution = AccelContribution::for_domain(def);
        let head = contribution.accel.0.first().cloned();
        if head != Some(KvItem::Bare(a.accel.to_string())) {
            contribution.accel = Keyval::head(a.accel.as_str());
        }
        for s in a.accel_props.iter() {
            contribution.accel.push(s.key.as_str(), s.value.as_str());
        }
        contribution.cpu_modes = a
            .cpu_modes
            .iter()
            .filter_map(|m| CpuMode::from_name(m.as_str()))
            .collect();
        Ok(contribution)
    }

    /// Builds the command line for `def` with the real host.
    fn build_command(
        &self,
        def: &Domain,
        caps: &QemuCaps,
        id: i32,
        accel: AccelContribution,
        host: &mut RealHost,
        master_key: [u8; 32],
    ) -> Result<CommandLine> {
        let mut process_env = BTreeMap::new();
        // What libvirt reads while building, and what it passes on to QEMU
        // from its own environment (virCommandAddEnvPassCommon).
        for k in [
            "QEMU_AUDIO_DRV",
            "SDL_AUDIODRIVER",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PATH",
            "USER",
            "LOGNAME",
            "TMPDIR",
        ] {
            if let Ok(v) = std::env::var(k) {
                process_env.insert(k.to_string(), v);
            }
        }
        // qemu.conf's list when set, else what is mounted; page sizes from the mounts.
        let mounted = host_hugetlbfs();
        let hugetlbfs = match self.conf.hugetlbfs_mounts() {
            None => mounted,
            Some(list) => list
                .into_iter()
                .map(|path| {
                    let page_size_kib = mounted
                        .iter()
                        .find(|m| m.path == path)
                        .map_or(2048, |m| m.page_size_kib);
                    HugetlbfsMount {
                        path,
                        page_size_kib,
                        default: page_size_kib == 2048,
                    }
                })
                .collect(),
        };
        let mut env = BuildEnv {
            domain_id: id,
            privileged: self.paths.privileged,
            lib_dir: self.paths.lib_dir.clone(),
            channel_target_dir: self.paths.channel_target_dir.clone(),
            nvram_dir: self.paths.nvram_dir.clone(),
            memory_backing_dir: self.paths.memory_backing_dir.clone(),
            hugetlbfs,
            passt_dir: self.paths.passt_state_dir.clone(),
            // SAFETY: sysconf has no memory-safety preconditions.
            system_page_size_kib: (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64)
                / 1024,
            firmware_dirs: vec![
                PathBuf::from("/etc/qemu/firmware"),
                PathBuf::from("/usr/share/qemu/firmware"),
            ],
            vhost_user_dirs: vec![
                PathBuf::from("/etc/qemu/vhost-user"),
                PathBuf::from("/usr/share/qemu/vhost-user"),
            ],
            path_prefix_map: Vec::new(),
            accel,
            master_key,
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            local_offset: local_utc_offset(),
            process_env,
            render_node: first_render_node(),
            default_tap_name: "vnet0".into(),
            host,
        };
        qvisor_cmdline::build(def, caps, &self.conf, &mut env)
            .map_err(|e| DriverError::ConfigUnsupported(e.to_string()))
    }

    /// `domxml-to-native qemu-argv`: the command line for an XML, with the
    /// "pretend" environment libvirt uses (id -1), nothing started.
    pub(crate) fn domxml_to_native(&self, xml: &str) -> Result<String> {
        let mut def = self.parse_and_expand(xml)?;
        let emulator = self.emulator_for(&def);
        let caps = self.caps_for(&emulator)?;
        qvisor_cmdline::aliases::assign_aliases(&mut def);
        let ctx = self.plugin_context(&def, Path::new(""));
        let mut pipeline = Vec::new();
        let accel = self.accel_contribution(&def, &ctx, &mut pipeline)?;
        let storage = self.prepare_storage(&mut def, &ctx, &mut pipeline)?;
        let mut host = RealHost::new(true);
        host.volumes = storage.volumes;
        let mut key = [0u8; 32];
        random_bytes(&mut key);
        let cmd = self.build_command(&def, &caps, -1, accel, &mut host, key)?;
        Ok(native_one_line(&cmd))
    }

    /// Starts a domain: the whole sequence, cleaned up on any failure.
    pub(crate) fn start_entry(
        self: &Arc<Self>,
        entry: &Arc<DomainEntry>,
        paused: bool,
    ) -> Result<()> {
        let _job = entry.job.lock();
        let def = {
            let obj = entry.obj.lock();
            if obj.is_active() {
                return Err(DriverError::OperationInvalid(
                    "domain is already running".into(),
                ));
            }
            obj.def.clone()
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.paths
            .check_domain_sockets(id as u32, &def.name, &[])
            .map_err(|e| DriverError::ConfigUnsupported(e.to_string()))?;
        let private_dir = self.paths.domain_private_dir(id as u32, &def.name);
        match self.start_inner(entry, def, id, &private_dir, paused) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(domain = %entry.name, "start failed: {e}");
                // If QEMU was started, stop it and let the exit be processed.
                if entry.obj.lock().runtime.is_some() {
                    let _ = self.destroy_entry_locked(entry);
                }
                let _ = std::fs::remove_dir_all(&private_dir);
                let _ = crate::fsutil::remove_if_exists(&self.paths.domain_status(&entry.name));
                let mut obj = entry.obj.lock();
                obj.id = -1;
                obj.runtime = None;
                obj.state = DomainState::Shutoff(super::state::ShutoffReason::Failed);
                if let Some(p) = obj.persistent.clone() {
                    obj.def = p;
                }
                Err(e)
            }
        }
    }

    fn start_inner(
        self: &Arc<Self>,
        entry: &Arc<DomainEntry>,
        def: Domain,
        id: i32,
        private_dir: &Path,
        paused: bool,
    ) -> Result<()> {
        let mut phases = Phases::new();
        check_disk_sources(&def)?;
        let emulator = self.emulator_for(&def);
        let caps = self.caps_for(&emulator)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(private_dir)
            .map_err(|e| DriverError::io("create directory", private_dir, e))?;
        let mut live = def.clone();
        live.id = Some(id);
        qvisor_cmdline::aliases::assign_aliases(&mut live);

        let mut pipeline = Vec::new();
        let ctx = self.plugin_context(&live, private_dir);
        phases.mark("prepare");
        let accel = self.accel_contribution(&live, &ctx, &mut pipeline)?;
        phases.mark("accelerator");
        let storage = self.prepare_storage(&mut live, &ctx, &mut pipeline)?;
        let ctx = storage.context_for(self.plugin_context(&live, private_dir));
        phases.mark("storage");

        let mut master_key = [0u8; 32];
        random_bytes(&mut master_key);
        let key_path = private_dir.join("master-key.aes");
        write_atomic_runtime(&key_path, &master_key, 0o600)
            .map_err(|e| DriverError::io("write master key", &key_path, e))?;

        let mut host = RealHost::new(false);
        host.volumes = storage.volumes;
        let cmd = self.build_command(&live, &caps, id, accel, &mut host, master_key)?;
        // The live CPU is the one QEMU is asked for (libvirt updates its
        // live definition the same way before building); custom mode only.
        if let (Some(cpu), Some(asked)) = (live.cpu.as_mut(), &cmd.guest_cpu) {
            if super::guest_cpu::is_custom_model(cpu) && asked.mode == cpu.mode {
                *cpu = asked.clone();
            }
        }
        let monitor_path = self.paths.monitor_socket(id as u32, &def.name);
        let log_path = self.paths.domain_log(&def.name);
        write_log_header(&log_path, &cmd, self.conf.log_timestamp);
        phases.mark("command line");
        let security = self.setup_security(&mut live, &ctx, id, &monitor_path, &log_path)?;
        phases.mark("security");

        let spec = SpawnSpec {
            program: PathBuf::from(&cmd.binary),
            args: cmd.args().into_iter().map(OsString::from).collect(),
            env: cmd
                .env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
            cwd: PathBuf::from("/"),
            log_file: log_path.clone(),
            fds: std::mem::take(&mut host.fds),
            max_processes: u64::from(self.conf.max_processes),
            max_files: u64::from(self.conf.max_files),
            pre_exec: security.hooks.clone(),
        };
        let spawned = process::spawn(spec).map_err(|e| {
            DriverError::OperationFailed(format!("cannot execute '{}': {e}", cmd.binary))
        })?;
        let pid = spawned.pid();
        phases.mark("spawn");
        let pidfd = Arc::new(
            process::pidfd_open(pid)
                .map_err(|e| DriverError::Internal(format!("pidfd_open({pid}): {e}")))?,
        );

        let kill_and_reap = |child: std::process::Child| {
            let _ = process::pidfd_signal(&pidfd, libc::SIGKILL);
            process::wait_child(child)
        };
        let monitor = match connect_monitor(&monitor_path) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                let exit = kill_and_reap(spawned.child);
                let tail = log_tail(&log_path, 3);
                return Err(DriverError::QemuStart(format!("{e} (QEMU {exit}): {tail}")));
            }
        };
        let Some(qmp_events) = monitor.take_events() else {
            let _ = kill_and_reap(spawned.child);
            return Err(DriverError::Internal("monitor events already taken".into()));
        };
        phases.mark("monitor");
        resolve_pty_paths(&monitor, &mut live);
        if let Err(e) = super::guest_cpu::refresh(&monitor, &mut live) {
            let _ = kill_and_reap(spawned.child);
            return Err(e);
        }
        phases.mark("guest cpu");

        let exited = Arc::new(ExitSignal::default());
        let actor = {
            let inner = self.clone();
            let entry = entry.clone();
            DomainActor::start_in_arbiter(&self.arbiter, move |_| DomainActor { inner, entry })
        };
        let taint: Vec<String> = cmd.taints.iter().map(|t| t.as_str().to_string()).collect();
        for t in &taint {
            tracing::warn!(domain = %def.name, "domain is tainted: {t}");
        }
        let (labels, security_steps) = security.commit();
        pipeline.extend(security_steps);
        {
            let mut obj = entry.obj.lock();
            obj.id = id;
            obj.def = live;
            obj.state = DomainState::Paused(PausedReason::StartingUp);
            obj.runtime = Some(Runtime {
                pid,
                pidfd: pidfd.clone(),
                monitor: monitor.clone(),
                monitor_path: monitor_path.clone(),
                private_dir: private_dir.to_path_buf(),
                actor: actor.clone(),
                exited: exited.clone(),
                stopping: None,
                starting: true,
                shutdown_seen: false,
                taint,
                labels,
                pipeline,
            });
        }
        spawn_watchers(entry, actor, qmp_events, Watch::Child(spawned.child));

        let state = if paused {
            DomainState::Paused(PausedReason::User)
        } else {
            monitor.execute("cont", None).map_err(|e| {
                DriverError::OperationFailed(format!("cannot resume the guest CPUs: {e}"))
            })?;
            DomainState::Running(RunningReason::Booted)
        };
        phases.mark("cont");
        {
            let mut obj = entry.obj.lock();
            obj.state = state;
            if let Some(rt) = obj.runtime.as_mut() {
                rt.starting = false;
            }
        }
        self.save_status(entry)?;
        phases.mark("status");
        if !paused {
            self.emit(entry, id, EventKind::Lifecycle(Lifecycle::Resumed));
        }
        self.emit(entry, id, EventKind::Lifecycle(Lifecycle::Started));
        if paused {
            self.emit(
                entry,
                id,
                EventKind::Lifecycle(Lifecycle::Suspended(super::state::SuspendedDetail::Paused)),
            );
        }
        tracing::info!(domain = %entry.name, pid, "started");
        tracing::debug!(domain = %entry.name, "start phases: {phases}");
        Ok(())
    }

    /// Kills QEMU during a failed start (the job lock is already held).
    fn destroy_entry_locked(&self, entry: &DomainEntry) -> Result<()> {
        let (pidfd, exited) = {
            let mut obj = entry.obj.lock();
            let Some(rt) = obj.runtime.as_mut() else {
                return Ok(());
            };
            rt.stopping = Some(super::runtime::StopIntent::Destroy);
            (rt.pidfd.clone(), rt.exited.clone())
        };
        let _ = process::pidfd_signal(&pidfd, libc::SIGKILL);
        exited.wait(Duration::from_secs(30));
        Ok(())
    }

    /// Re-attaches to a QEMU recorded in a status file, or cleans up after it.
    pub(crate) fn reconnect_one(self: &Arc<Self>, status_path: &Path, st: Status) {
        let name = st.def.name.clone();
        let alive = process::pidfd_open(st.pid).ok().filter(|_| {
            process::proc_cmdline(st.pid).is_some_and(|c| {
                let text = String::from_utf8_lossy(&c);
                text.contains(&format!("guest={name}")) || text.contains(&name)
            })
        });
        let cleanup = |why: &str| {
            tracing::warn!(domain = %name, "{why}; marking it shut off");
            self.restore_after_lost_qemu(&st);
            let _ = std::fs::remove_file(status_path);
            let _ = std::fs::remove_dir_all(&st.private_dir);
        };
        let Some(pidfd) = alive else {
            cleanup("its QEMU is gone");
            return self.ensure_inactive_entry(&st);
        };
        let monitor = match QmpClient::connect_unix(
            &st.monitor_path,
            ClientOptions {
                timeout: MONITOR_TIMEOUT,
                ..ClientOptions::default()
            },
        ) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                tracing::error!(domain = %name, "cannot reconnect to the monitor: {e}; killing QEMU");
                let _ = process::pidfd_signal(&pidfd, libc::SIGKILL);
                cleanup("monitor unreachable");
                return self.ensure_inactive_entry(&st);
            }
        };
        let Some(qmp_events) = monitor.take_events() else {
            return;
        };
        let uuid = st.def.uuid.map(|u| u.0).unwrap_or_default();
        let entry = {
            let mut reg = self.registry.lock();
            match reg.by_name(&name) {
                Some(e) => e,
                None => reg.insert(
                    super::registry::DomainObj::inactive(st.def.clone(), false),
                    uuid,
                ),
            }
        };
        let actor = {
            let inner = self.clone();
            let entry = entry.clone();
            DomainActor::start_in_arbiter(&self.arbiter, move |_| DomainActor { inner, entry })
        };
        // The state may have changed while nobody watched: ask QEMU.
        let state = match monitor.execute("query-status", None) {
            Ok(v) if v.get("running").and_then(|r| r.as_bool()) == Some(true) => {
                DomainState::Running(RunningReason::Unknown)
            }
            Ok(_) => match st.state {
                DomainState::Paused(r) => DomainState::Paused(r),
                _ => DomainState::Paused(PausedReason::Unknown),
            },
            Err(_) => st.state,
        };
        let state = match (st.state, state) {
            (DomainState::Running(r), DomainState::Running(_)) => DomainState::Running(r),
            (_, s) => s,
        };
        {
            let mut obj = entry.obj.lock();
            if !st.persistent {
                obj.persistent = None;
            }
            obj.id = st.id;
            obj.def = st.def.clone();
            obj.state = state;
            obj.runtime = Some(Runtime {
                pid: st.pid,
                pidfd: Arc::new(pidfd),
                monitor,
                monitor_path: st.monitor_path.clone(),
                private_dir: st.private_dir.clone(),
                actor: actor.clone(),
                exited: Arc::new(ExitSignal::default()),
                stopping: None,
                starting: false,
                shutdown_seen: st.shutdown_seen,
                taint: st.taint.clone(),
                labels: st.labels.clone(),
                pipeline: Vec::new(),
            });
        }
        let pid = st.pid;
        let pidfd_for_wait = match process::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(_) => return,
        };
        spawn_watchers(&entry, actor, qmp_events, Watch::Pidfd(pid, pidfd_for_wait));
        self.save_status_logged(&entry);
        tracing::info!(domain = %name, pid, "re-attached to running QEMU");
    }

    /// After a dead status file: the domain stays known if it is persistent.
    fn ensure_inactive_entry(&self, st: &Status) {
        if let Some(e) = self.registry.lock().by_name(&st.def.name) {
            let mut obj = e.obj.lock();
            obj.state = DomainState::Shutoff(super::state::ShutoffReason::Crashed);
            obj.id = -1;
            obj.runtime = None;
        }
    }
}

/// How the waiter thread learns that QEMU exited.
enum Watch {
    /// Our child: `waitpid`.
    Child(std::process::Child),
    /// Adopted after a restart: a pidfd.
    Pidfd(i32, OwnedFd),
}

/// Starts the two threads of a running domain: the QMP event pump and the
/// exit waiter. The waiter forwards the exit only after the pump has drained
/// every event QEMU sent before it died, so a final SHUTDOWN is seen first.
fn spawn_watchers(
    entry: &Arc<DomainEntry>,
    actor: actix::Addr<DomainActor>,
    events: std::sync::mpsc::Receiver<qvisor_qmp::Event>,
    watch: Watch,
) {
    let name = entry.name.clone();
    let pump_actor = actor.clone();
    let pump = std::thread::Builder::new()
        .name(format!("qmp-{name}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            for ev in events.iter() {
                pump_actor.do_send(QmpEvent(ev));
            }
        });
    let _ = std::thread::Builder::new()
        .name(format!("wait-{name}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let exit = match watch {
                Watch::Child(child) => process::wait_child(child),
                Watch::Pidfd(pid, fd) => process::wait_pidfd(pid, fd),
            };
            if let Ok(pump) = pump {
                let _ = pump.join();
            }
            actor.do_send(Exited(exit));
        });
}

/// Connects to QEMU's monitor socket (already listening: we created it and
/// passed it to QEMU) and negotiates capabilities.
fn connect_monitor(path: &Path) -> std::result::Result<QmpClient, String> {
    let stream = UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to monitor '{}': {e}", path.display()))?;
    QmpClient::from_unix_stream(
        stream,
        ClientOptions {
            timeout: MONITOR_TIMEOUT,
            ..ClientOptions::default()
        },
    )
    .map_err(|e| e.to_string())
}

/// libvirt's log header: a timestamp, then the environment and command line.
fn write_log_header(path: &Path, cmd: &CommandLine, timestamp: bool) {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
    else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stamp = if timestamp {
        format!("{now}: ")
    } else {
        String::new()
    };
    let _ = writeln!(f, "{stamp}starting up qvisor {}", env!("CARGO_PKG_VERSION"));
    let _ = f.write_all(cmd.to_native().as_bytes());
    let _ = f.as_fd();
}

/// This host's offset of local time from UTC, in seconds east.
fn local_utc_offset() -> i64 {
    // SAFETY: time(NULL) and localtime_r with a valid output struct.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

/// The first DRM render node of the host (`/dev/dri/renderD128`), if any.
fn first_render_node() -> Option<String> {
    let mut nodes: Vec<String> = std::fs::read_dir("/dev/dri")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("renderD"))
        .collect();
    nodes.sort();
    nodes.first().map(|n| format!("/dev/dri/{n}"))
}

/// Local disk images must exist before QEMU starts (libvirt checks this too,
/// giving a clearer error than QEMU's). An optional or empty CD-ROM is fine.
fn check_disk_sources(def: &Domain) -> Result<()> {
    for disk in &def.devices.disks {
        let Some(src) = &disk.source else { continue };
        let Some(path) = disk.source_path() else {
            continue;
        };
        if src.protocol.is_some() || src.startup_policy.as_deref() == Some("optional") {
            continue;
        }
        if let Err(e) = std::fs::metadata(path) {
            return Err(DriverError::OperationFailed(format!(
                "Cannot access storage file '{path}' for disk '{}': {e}",
                disk.target.dev
            )));
        }
    }
    Ok(())
}

/// Fills in the `/dev/pts/N` paths QEMU chose for `pty` character devices,
/// as libvirt does from `query-chardev`, so the live XML and `console` know them.
fn resolve_pty_paths(monitor: &QmpClient, def: &mut Domain) {
    use qvisor_domain::ChrType;
    let devices = &def.devices;
    let any_pty = devices
        .serials
        .iter()
        .chain(devices.consoles.iter())
        .any(|c| c.source.kind == ChrType::Pty);
    // No round trip to a QEMU that is still starting when nothing needs it.
    if !any_pty {
        return;
    }
    let Ok(list) = monitor.execute("query-chardev", None) else {
        return;
    };
    let ptys: BTreeMap<String, String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let label = c.get("label")?.as_str()?;
            let path = c.get("filename")?.as_str()?.strip_prefix("pty:")?;
            Some((label.to_string(), path.to_string()))
        })
        .collect();
    let devices = &mut def.devices;
    for chr in devices
        .serials
        .iter_mut()
        .chain(devices.consoles.iter_mut())
    {
        if chr.source.kind != ChrType::Pty {
            continue;
        }
        if let Some(alias) = &chr.info.alias {
            if let Some(path) = ptys.get(&format!("char{alias}")) {
                chr.source.path = Some(path.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_one_line_quotes_only_words_with_shell_metacharacters() {
        let cmd = CommandLine {
            env: vec![
                ("LC_ALL".into(), "C".into()),
                ("HOME".into(), "/var/lib/a b".into()),
            ],
            binary: "/usr/bin/qemu-system-x86_64".into(),
            ..CommandLine::default()
        };
        assert_eq!(
            native_one_line(&cmd),
            "LC_ALL=C HOME='/var/lib/a b' /usr/bin/qemu-system-x86_64"
        );
    }
}
