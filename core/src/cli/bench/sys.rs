//! Processes and the machine: timed runs with their CPU time (`wait4`
//! rusage), `/proc` readers for another process's CPU time and RSS, and
//! the machine description printed with the results.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Why a benchmark step failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A program could not be started.
    #[error("cannot run {what}: {source}")]
    Spawn {
        /// The command.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A program exited with a failure.
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        what: String,
        /// Its exit status.
        status: String,
        /// The end of what it wrote on stderr.
        stderr: String,
    },
    /// A file operation failed.
    #[error("cannot {op} '{path}': {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The QMP conversation with a plain QEMU failed.
    #[error("QMP with plain QEMU ({what}): {reason}")]
    Qmp {
        /// The step.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Shorthand for this module's results.
pub type Result<T> = std::result::Result<T, BenchError>;

/// An `Io` error builder for `map_err`.
pub fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.to_path_buf();
    move |source| BenchError::Io { op, path, source }
}

/// A finished process: its wall time (exec to reaped) and its own CPU time
/// (user + system, from `wait4`'s rusage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Wall time from just before `fork` to just after `wait4`.
    pub wall: Duration,
    /// User + system CPU time of the process.
    pub cpu: Duration,
}

/// A started process, timed from just before its spawn.
pub struct Running {
    what: String,
    child: Child,
    started: Instant,
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts `cmd` with stdin and stdout on `/dev/null` and stderr on a pipe.
pub fn spawn(cmd: &mut Command) -> Result<Running> {
    let what = describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().map_err(|source| BenchError::Spawn {
        what: what.clone(),
        source,
    })?;
    Ok(Running {
        what,
        child,
        started,
    })
}

/// How long one benchmarked command may run before it counts as hung (a
/// stuck peer daemon must not hang the whole run).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

impl Running {
    /// Reaps the process with `wait4`; an error when it did not exit 0, or
    /// did not exit within [`COMMAND_TIMEOUT`] (it is killed then).
    pub fn wait(mut self) -> Result<Finished> {
        let pid = self.child.id() as libc::pid_t;
        if !exits_within(pid, COMMAND_TIMEOUT.saturating_sub(self.started.elapsed())) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return Err(BenchError::Timeout(format!(
                "{} did not finish within {COMMAND_TIMEOUT:?}",
                self.what
            )));
        }
        let (status, rusage) = wait4(pid).map_err(|source| BenchError::Spawn {
            what: self.what.clone(),
            source,
        })?;
        let wall = self.started.elapsed();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            return Err(BenchError::Failed {
                what: self.what,
                status: format!("wait status {status:#x}"),
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join("; "),
            });
        }
        Ok(Finished {
            wall,
            cpu: rusage_cpu(&rusage),
        })
    }
}

/// Whether our child `pid` exits (becomes reapable) within `timeout`,
/// waiting on a pidfd (no polling loop; the exit is seen at once).
fn exits_within(pid: libc::pid_t, timeout: Duration) -> bool {
    let Ok(fd) = crate::driver::process::pidfd_open(pid) else {
        // No pidfd (old kernel): wait without a limit.
        return true;
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut pfd = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)) {
            Ok(0) if left.is_zero() => return false,
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) | Err(_) => return true,
        }
    }
}

/// Runs `cmd` to completion and times it.
pub fn run(cmd: &mut Command) -> Result<Finished> {
    spawn(cmd)?.wait()
}

/// `wait4(pid)`, retried on EINTR.
pub fn wait4(pid: libc::pid_t) -> std::io::Result<(i32, libc::rusage)> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; zeroed is a valid value for the
        // kernel to overwrite.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live locals of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            return Ok((status, ru));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn rusage_cpu(ru: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Milliseconds of a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// User + system CPU time of a live process's own threads, live and exited
/// (`/proc/PID/stat` utime + stime; its reaped children are not included).
pub fn process_cpu(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command: state is field 3, utime 14.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

/// Waits (at most `limit`) until the whole machine is quiet: less than a
/// tenth of its CPU time busy over two 50 ms windows in a row. Work that
/// outlives a timed command (a QEMU being torn down, a daemon cleaning up,
/// a log daemon flushing) then does not land in the next measurement.
pub fn settle_system(limit: Duration) {
    fn busy_idle() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = cpu
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let idle = v.get(3)? + v.get(4)?;
        let busy = v.iter().take(8).sum::<u64>() - idle;
        Some((busy, idle))
    }
    let deadline = std::time::Instant::now() + limit;
    let mut quiet = 0;
    let mut last = busy_idle();
    while quiet < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = busy_idle();
        quiet = match (last, now) {
            (Some((b0, i0)), Some((b1, i1))) => {
                let (busy, idle) = (b1.saturating_sub(b0), i1.saturating_sub(i0));
                if busy * 10 <= busy + idle {
                    quiet + 1
                } else {
                    0
                }
            }
            _ => return,
        };
        last = now;
    }
}

/// `mb` megabytes (10^6 bytes) in MiB: the memory bars are in MB
/// and resident sets are read in MiB, so comparing the bare numbers would
/// be 5% lenient.
pub fn mb_in_mib(mb: f64) -> f64 {
    mb * 1e6 / (1024.0 * 1024.0)
}

/// Resident set size of a live process, MiB (`VmRSS`).
pub fn process_rss_mib(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Whether a pid still names a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 2..].chars().next())
                .map(|st| st != 'Z')
        })
        .unwrap_or(false)
}

/// The pids of processes whose argv[0] ends with `program` and whose
/// arguments contain `needle` as one whole argument.
pub fn find_processes(program: &str, needle: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let mut args = cmd.split(|b| *b == 0).map(String::from_utf8_lossy);
            let argv0 = args.next()?;
            (argv0.ends_with(program) && args.any(|a| a == needle)).then_some(pid)
        })
        .collect()
}

/// The supervisor (`qvisord --root ROOT`) serving an embedded root.
pub fn supervisor_pid(root: &Path) -> Option<i32> {
    find_processes("qvisord", &root.display().to_string())
        .into_iter()
        .next()
}

/// Sends SIGTERM to `pid` and waits up to `grace` for it to go.
pub fn terminate(pid: i32, grace: Duration) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !alive(pid)
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// First line of a program's `--version`.
pub fn version_line(program: &Path) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

/// Whether `/dev/kvm` opens read-write.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Online CPUs.
    pub cores: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Memory, MiB.
    pub mem_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// QEMU's version line.
    pub qemu: String,
    /// Whether /dev/kvm is usable.
    pub kvm: bool,
    /// Load averages when the run began.
    pub load_before: Option<[f64; 3]>,
    /// Load averages when it ended.
    pub load_after: Option<[f64; 3]>,
}

impl Machine {
    /// Describes this machine (load as of now).
    pub fn probe(qemu: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let mem_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map_or(0, |kib| kib / 1024);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_mib,
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            qemu: version_line(qemu).unwrap_or_else(|| "unknown".into()),
            kvm: kvm_usable(),
            load_before: loadavg(),
            load_after: None,
        }
    }

    /// One line for the report header.
    pub fn describe(&self) -> String {
        let load = |l: Option<[f64; 3]>| {
            l.map_or("?".into(), |l| {
                format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
            })
        };
        format!(
            "{} cores ({}), {} MiB, Linux {}, {}, KVM {}; load average {} at start, {} at end",
            self.cores,
            self.cpu_model,
            self.mem_mib,
            self.kernel,
            self.qemu,
            if self.kvm { "usable" } else { "not usable" },
            load(self.load_before),
            load(self.load_after),
        )
    }

    /// The machine as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "cores": self.cores,
            "cpu_model": self.cpu_model,
            "mem_mib": self.mem_mib,
            "kernel": self.kernel,
            "qemu": self.qemu,
            "kvm_usable": self.kvm,
            "loadavg_before": self.load_before,
            "loadavg_after": self.load_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_bars_in_mb_are_stricter_in_mib() {
        assert!((mb_in_mib(12.0) - 11.444).abs() < 0.001);
        assert!((mb_in_mib(16.0) - 15.259).abs() < 0.001);
    }

    #[test]
    fn a_timed_run_reports_its_own_cpu_time() {
        let f = run(
            Command::new("sh").args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
        )
        .unwrap();
        assert!(f.cpu > Duration::ZERO);
        assert!(f.wall >= f.cpu / 2);
    }

    #[test]
    fn a_failing_run_carries_its_stderr() {
        let e = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
    }

    #[test]
    fn our_own_process_has_cpu_time_and_rss() {
        let me = std::process::id() as i32;
        assert!(process_cpu(me).is_some());
        assert!(process_rss_mib(me).unwrap() > 0.0);
        assert!(alive(me));
    }
}
