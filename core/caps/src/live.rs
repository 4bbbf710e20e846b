//! Probing a real QEMU binary: start it with `-machine none` and a QMP
//! socket, run the probe phases, kill and reap it.
//!
//! When KVM is usable (the caller decides, from the accel-kvm plugin), the
//! KVM-phase QEMU (`accel=kvm:tcg`) and the TCG-phase QEMU (`accel=tcg`) are
//! started together, so the second phase costs no extra start-up time.
//! Several binaries are probed in parallel threads by [`probe_binaries`].
//! Every wait has a deadline; a QEMU that hangs is killed (its whole process
//! group) and reaped, and the error says so.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use qvisor_qmp::{ClientOptions, QmpClient};

use crate::host::HostFacts;
use crate::model::QemuCaps;
use crate::probe::{self, ProbeError};

/// Inputs of a live probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Whether `/dev/kvm` is usable (decided by the accel-kvm plugin).
    pub kvm_usable: bool,
    /// Whether macOS Hypervisor.framework is usable (accel-hvf plugin).
    pub hvf_usable: bool,
    /// Deadline for QEMU to start, and for each QMP reply.
    pub timeout: Duration,
    /// Where the per-probe socket directories are created.
    pub work_dir: PathBuf,
    /// QEMU's module directory, whose mtime is recorded (libvirt's
    /// `qemumoddirmtime`), if any.
    pub module_dir: Option<PathBuf>,
    /// Host facts recorded when a hardware accelerator is found.
    pub host: HostFacts,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            kvm_usable: false,
            hvf_usable: false,
            timeout: Duration::from_secs(30),
            work_dir: std::env::temp_dir(),
            module_dir: [
                "/usr/lib/x86_64-linux-gnu/qemu",
                "/usr/lib64/qemu",
                "/usr/lib/qemu",
            ]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir()),
            host: HostFacts::default(),
        }
    }
}

/// Why a live probe failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveProbeError {
    /// The binary cannot be stat'ed.
    #[error("Cannot check QEMU binary {binary}: {source}")]
    StatBinary {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The binary is not an executable file.
    #[error("QEMU binary {binary} is not executable")]
    NotExecutable {
        /// The binary.
        binary: PathBuf,
    },
    /// The probe directory could not be created.
    #[error("Failed to create directory '{path}' for probing QEMU: {source}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The binary could not be executed.
    #[error("Failed to start QEMU binary {binary} for probing: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The binary exited instead of serving QMP (not a QEMU, or it failed).
    #[error("Failed to start QEMU binary {binary} for probing: {detail}")]
    Exited {
        /// The binary.
        binary: PathBuf,
        /// Exit status and stderr.
        detail: String,
    },
    /// The binary did not open its monitor, or stopped answering, in time.
    #[error("QEMU binary {binary} did not answer within {after:?} while probing ({what}); it was killed")]
    Timeout {
        /// The binary.
        binary: PathBuf,
        /// The deadline that expired.
        after: Duration,
        /// What it was waiting for.
        what: String,
    },
    /// The monitor failed otherwise.
    #[error("QEMU binary {binary}: monitor failed while probing: {source}")]
    Monitor {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: qvisor_qmp::Error,
    },
    /// The replies did not make sense.
    #[error(transparent)]
    Probe(ProbeError),
}

/// Identity of a binary for cache invalidation: ctime and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryStamp {
    /// ctime in seconds.
    pub ctime: i64,
    /// Size in bytes.
    pub size: u64,
}

/// Stats `binary` and checks that it is an executable file.
pub fn stamp_binary(binary: &Path) -> Result<BinaryStamp, LiveProbeError> {
    let meta = std::fs::metadata(binary).map_err(|source| LiveProbeError::StatBinary {
        binary: binary.to_path_buf(),
        source,
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(LiveProbeError::NotExecutable {
            binary: binary.to_path_buf(),
        });
    }
    Ok(BinaryStamp {
        ctime: meta.ctime(),
        size: meta.size(),
    })
}

/// A QEMU started for probing; killed (with its process group), reaped
/// and its directory removed on drop.
struct QemuProcess {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    binary: PathBuf,
}

static PROBE_SEQ: AtomicU64 = AtomicU64::new(0);

impl QemuProcess {
    fn spawn(binary: &Path, accel: &str, work_dir: &Path) -> Result<QemuProcess, LiveProbeError> {
        let dir = work_dir.join(format!(
            "qvisor-probe-{}-{}",
            std::process::id(),
            PROBE_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| LiveProbeError::WorkDir {
                path: dir.clone(),
                source,
            })?;
        let socket = dir.join("qmp.monitor");
        let stderr =
            File::create(dir.join("stderr.log")).map_err(|source| LiveProbeError::WorkDir {
                path: dir.clone(),
                source,
            });
        let stderr = match stderr {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let spawned = Command::new(binary)
            .args([
                "-S",
                "-no-user-config",
                "-nodefaults",
                "-nographic",
                "-machine",
            ])
            .arg(format!("none,accel={accel}"))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", socket.display()))
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn();
        match spawned {
            Ok(child) => Ok(QemuProcess {
                child,
                dir,
                socket,
                binary: binary.to_path_buf(),
            }),
            Err(source) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(LiveProbeError::Spawn {
                    binary: binary.to_path_buf(),
                    source,
                })
            }
        }
    }

    fn stderr_text(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            "unknown error".to_string()
        } else {
            text.chars().take(2000).collect()
        }
    }

    /// Waits for the monitor socket and negotiates QMP.
    fn connect(&mut self, timeout: Duration) -> Result<QmpClient, LiveProbeError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(stream) = UnixStream::connect(&self.socket) {
                let options = ClientOptions {
                    timeout,
                    ..Default::default()
                };
                return QmpClient::from_unix_stream(stream, options)
                    .map_err(|e| self.monitor_error(e, timeout));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LiveProbeError::Exited {
                    binary: self.binary.clone(),
                    detail: format!("{status}: {}", self.stderr_text()),
                });
            }
            if Instant::now() >= deadline {
                return Err(LiveProbeError::Timeout {
                    binary: self.binary.clone(),
                    after: timeout,
                    what: "monitor socket".to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn monitor_error(&mut self, e: qvisor_qmp::Error, timeout: Duration) -> LiveProbeError {
        match e {
            qvisor_qmp::Error::Timeout { command, .. } => LiveProbeError::Timeout {
                binary: self.binary.clone(),
                after: timeout,
                what: format!("reply to {command}"),
            },
            qvisor_qmp::Error::Greeting { reason } if reason.starts_with("nothing") => {
                LiveProbeError::Timeout {
                    binary: self.binary.clone(),
                    after: timeout,
                    what: "QMP greeting".to_string(),
                }
            }
            other => {
                // A QEMU that died mid-probe explains itself on stderr.
                std::thread::sleep(Duration::from_millis(20));
                match self.child.try_wait() {
                    Ok(Some(status)) => LiveProbeError::Exited {
                        binary: self.binary.clone(),
                        detail: format!("{status}: {}", self.stderr_text()),
                    },
                    _ => LiveProbeError::Monitor {
                        binary: self.binary.clone(),
                        source: other,
                    },
                }
            }
        }
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn probe_error(p: &mut QemuProcess, e: ProbeError, timeout: Duration) -> LiveProbeError {
    match e {
        ProbeError::Qmp { source, .. } => p.monitor_error(source, timeout),
        other => LiveProbeError::Probe(other),
    }
}

/// Probes one binary. The result carries the binary's ctime and size and,
/// when a hardware accelerator was found, the host facts of `opts`.
pub fn probe_binary(binary: &Path, opts: &ProbeOptions) -> Result<QemuCaps, LiveProbeError> {
    let stamp = stamp_binary(binary)?;
    let hw = opts.kvm_usable || opts.hvf_usable;
    let main_accel = if opts.kvm_usable {
        "kvm:tcg"
    } else if opts.hvf_usable {
        "hvf:tcg"
    } else {
        "tcg"
    };
    let mut main = QemuProcess::spawn(binary, main_accel, &opts.work_dir)?;
    // Started now so that its start-up overlaps phase 1; discarded if
    // phase 1 finds no accelerator.
    let mut tcg = if hw {
        Some(QemuProcess::spawn(binary, "tcg", &opts.work_dir)?)
    } else {
        None
    };

    let mut caps = QemuCaps::new(binary.to_string_lossy());
    caps.qemu_ctime = stamp.ctime;
    caps.qemu_size = Some(stamp.size);
    caps.qemu_moddir_mtime = opts
        .module_dir
        .as_ref()
        .and_then(|d| std::fs::metadata(d).ok())
        .map(|m| m.mtime());

    {
        let mon = main.connect(opts.timeout)?;
        if let Err(e) = probe::probe_main_phase(&mut caps, &mon, opts.hvf_usable) {
            return Err(probe_error(&mut main, e, opts.timeout));
        }
    }
    drop(main);

    if probe::needs_tcg_phase(&caps) {
        let mut p = match tcg.take() {
            Some(p) => p,
            None => QemuProcess::spawn(binary, "tcg", &opts.work_dir)?,
        };
        let mon = p.connect(opts.timeout)?;
        if let Err(e) = probe::probe_tcg_phase(&mut caps, &mon) {
            return Err(probe_error(&mut p, e, opts.timeout));
        }
    }
    drop(tcg);

    if caps.has_hw_accel() {
        caps.host_cpu_signature = opts.host.cpu_signature.clone();
        caps.microcode_version = opts.host.microcode_version;
        caps.kernel_version = opts.host.kernel_version.clone();
    }
    if caps.has(crate::Flag::Kvm) {
        caps.kvm_supports_nesting = opts.host.kvm_supports_nesting;
        caps.kvm_supports_secure_guest = opts.host.kvm_supports_secure_guest;
    }
    Ok(caps)
}

/// Probes several binaries in parallel, one thread each; results are in the
/// order of `binaries`.
pub fn probe_binaries(
    binaries: &[PathBuf],
    opts: &ProbeOptions,
) -> Vec<Result<QemuCaps, LiveProbeError>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = binaries
            .iter()
            .map(|b| s.spawn(move || probe_binary(b, opts)))
            .collect();
        handles
            .into_iter()
            .zip(binaries)
            .map(|(h, b)| {
                h.join().unwrap_or_else(|_| {
                    Err(LiveProbeError::Exited {
                        binary: b.clone(),
                        detail: "probe thread panicked".to_string(),
                    })
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Accel, Flag};

    const QEMU: &str = "/usr/bin/qemu-system-x86_64";

    fn have_qemu() -> bool {
        let ok = Path::new(QEMU).exists();
        if !ok {
            eprintln!("skipping: {QEMU} is not installed");
        }
        ok
    }

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("qvisor-caps-live-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn opts(work: &Path, timeout_ms: u64) -> ProbeOptions {
        ProbeOptions {
            timeout: Duration::from_millis(timeout_ms),
            work_dir: work.to_path_buf(),
            ..Default::default()
        }
    }

    fn pid_alive(pid: i32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }

    #[test]
    fn missing_binary_is_reported() {
        let e = probe_binary(Path::new("/nonexistent/qemu"), &ProbeOptions::default()).unwrap_err();
        assert!(matches!(e, LiveProbeError::StatBinary { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/qemu"), "{e}");
    }

    #[test]
    fn non_executable_binary_is_reported() {
        let d = scratch("noexec");
        let f = d.join("qemu");
        std::fs::write(&f, "not a program").unwrap();
        let Err(e) = probe_binary(&f, &opts(&d, 2000)) else {
            panic!("probe unexpectedly succeeded");
        };
        assert_eq!(
            e.to_string(),
            format!("QEMU binary {} is not executable", f.display())
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn non_qemu_binary_is_reported_with_its_stderr() {
        let d = scratch("notqemu");
        let f = script(&d, "fake-qemu", "echo 'unknown option -S' >&2; exit 1");
        let Err(e) = probe_binary(&f, &opts(&d, 5000)) else {
            panic!("probe unexpectedly succeeded");
        };
        assert!(matches!(e, LiveProbeError::Exited { .. }), "{e}");
        assert!(e.to_string().contains("unknown option -S"), "{e}");
        // The probe directory is cleaned up.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn hanging_binary_times_out_and_is_killed() {
        let d = scratch("hang");
        let pidfile = d.join("pid");
        let f = script(
            &d,
            "hang-qemu",
            &format!("echo $$ > {}\nexec sleep 60", pidfile.display()),
        );
        let start = Instant::now();
        let Err(e) = probe_binary(&f, &opts(&d, 300)) else {
            panic!("probe unexpectedly succeeded");
        };
        assert!(matches!(e, LiveProbeError::Timeout { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!pid_alive(pid), "hung QEMU {pid} still running");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn qemu_that_stops_answering_times_out_and_is_killed() {
        if !have_qemu() {
            return;
        }
        let d = scratch("stop");
        let pidfile = d.join("pid");
        // A real QEMU that freezes once it has started.
        let f = script(
            &d,
            "freezing-qemu",
            &format!(
                "{QEMU} \"$@\" & echo $! > {}\nsleep 0.05\nkill -STOP $!\nwait",
                pidfile.display()
            ),
        );
        let Err(e) = probe_binary(&f, &opts(&d, 1500)) else {
            panic!("probe of a frozen QEMU succeeded");
        };
        assert!(matches!(e, LiveProbeError::Timeout { .. }), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!pid_alive(pid), "frozen QEMU {pid} still running");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn live_tcg_probe_of_installed_qemu() {
        if !have_qemu() {
            return;
        }
        let d = scratch("tcg");
        let caps = probe_binary(Path::new(QEMU), &opts(&d, 20_000)).unwrap();
        assert_eq!(caps.arch, "x86_64");
        assert!(caps.version() >= 4_002_000);
        assert!(caps.has(Flag::Tcg) && !caps.has(Flag::Kvm));
        assert!(caps.default_machine(Accel::Tcg).is_some());
        assert!(caps.kvm.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn several_binaries_probe_in_parallel() {
        if !have_qemu() {
            return;
        }
        let d = scratch("parallel");
        let bins = vec![
            PathBuf::from(QEMU),
            PathBuf::from("/nonexistent/qemu-system-x"),
        ];
        let res = probe_binaries(&bins, &opts(&d, 20_000));
        assert!(res[0].is_ok());
        assert!(res[1].is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
