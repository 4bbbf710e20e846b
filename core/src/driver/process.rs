//! Starting QEMU as our direct child, and watching a QEMU process until it exits.
//!
//! QEMU is never daemonized: it stays the supervisor's child so its exit is
//! reaped at once (PID 1 on some hosts reaps orphans only every few seconds).
//! A QEMU adopted after a supervisor restart is no longer our child; it is
//! watched through a pidfd instead, never polled with `kill(pid, 0)`.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

/// Something to run in the child between `fork` and `exec` (security
/// plugins' confinement). Must be async-signal-safe.
pub type PreExecHook = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// Everything needed to start one QEMU.
pub struct SpawnSpec {
    /// The emulator binary.
    pub program: PathBuf,
    /// Arguments (without the program).
    pub args: Vec<OsString>,
    /// The whole environment of the child (nothing else is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// stdout and stderr are appended here.
    pub log_file: PathBuf,
    /// Descriptors to hand over: (descriptor in the parent, number in the child).
    pub fds: Vec<(OwnedFd, RawFd)>,
    /// `RLIMIT_NPROC`, from qemu.conf `max_processes` (0 = leave alone).
    pub max_processes: u64,
    /// `RLIMIT_NOFILE`, from qemu.conf `max_files` (0 = leave alone).
    pub max_files: u64,
    /// Confinement hooks, run last before exec, in order.
    pub pre_exec: Vec<PreExecHook>,
}

/// A started QEMU.
pub struct Spawned {
    /// The child handle (we are its parent).
    pub child: std::process::Child,
}

impl Spawned {
    /// The process id.
    pub fn pid(&self) -> i32 {
        // A pid always fits an i32 on Linux.
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }
}

/// Starts QEMU. The descriptors in `spec.fds` appear in the child under the
/// requested numbers; every other descriptor of ours is close-on-exec.
pub fn spawn(spec: SpawnSpec) -> io::Result<Spawned> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)?;
    let log_err = log.try_clone()?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));

    let moves: Vec<(RawFd, RawFd)> = spec
        .fds
        .iter()
        .map(|(fd, to)| (fd.as_raw_fd(), *to))
        .collect();
    let highest_target = moves.iter().map(|(_, to)| *to).max().unwrap_or(2);
    let (nproc, nofile) = (spec.max_processes, spec.max_files);
    let hooks = spec.pre_exec.clone();
    // SAFETY: the closure runs in the child after fork; it only makes
    // async-signal-safe system calls (sigprocmask, signal, setsid, fcntl,
    // dup2, close, setrlimit)
    // on values computed before the fork, then the plugins' hooks, which are
    // required to be async-signal-safe too.
    unsafe {
        cmd.pre_exec(move || {
            // QEMU must start with a clean signal state: the supervisor blocks
            // SIGTERM/SIGINT/SIGHUP (handled by one sigwait thread) and the
            // Rust runtime ignores SIGPIPE; both would be inherited by exec.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // Two steps so a source number that is also a target is not
            // clobbered: first lift every source above all targets...
            let mut lifted = [0 as RawFd; 64];
            if moves.len() > lifted.len() {
                return Err(io::Error::from_raw_os_error(libc::EMFILE));
            }
            for (i, (from, _)) in moves.iter().enumerate() {
                let fd = libc::fcntl(*from, libc::F_DUPFD_CLOEXEC, highest_target + 1);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                lifted[i] = fd;
            }
            // ...then place each at its number (dup2 clears close-on-exec).
            for (i, (_, to)) in moves.iter().enumerate() {
                if libc::dup2(lifted[i], *to) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(lifted[i]);
            }
            set_limit(libc::RLIMIT_NPROC, nproc)?;
            set_limit(libc::RLIMIT_NOFILE, nofile)?;
            for hook in &hooks {
                hook()?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // The parent's copies close when `spec.fds` drops here.
    drop(spec.fds);
    Ok(Spawned { child })
}

/// Sets a resource limit (soft and hard); 0 leaves it alone.
fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    if value == 0 {
        return Ok(());
    }
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    if unsafe { libc::setrlimit(resource, &lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a QEMU process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with a status code.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
    /// Not our child: it ended, status unknown.
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Unknown => write!(f, "ended"),
        }
    }
}

/// Waits for our child to exit and reaps it.
pub fn wait_child(mut child: std::process::Child) -> Exit {
    match child.wait() {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(c), _) => Exit::Code(c),
            (_, Some(s)) => Exit::Signal(s),
            _ => Exit::Unknown,
        },
        Err(_) => Exit::Unknown,
    }
}

/// Opens a pidfd for a process that is not our child.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Blocks until the process behind `pidfd` exits. If it happens to be our
/// child (a subreaper adopted it), it is reaped too.
pub fn wait_pidfd(pid: i32, pidfd: OwnedFd) -> Exit {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is a valid pollfd array of length 1.
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r > 0 {
            break;
        }
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    let mut status = 0;
    // SAFETY: WNOHANG waitpid on a pid; fails harmlessly if not our child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r == pid {
        if libc::WIFEXITED(status) {
            return Exit::Code(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            return Exit::Signal(libc::WTERMSIG(status));
        }
    }
    Exit::Unknown
}

/// Sends `signal` to the process behind `pidfd` (no pid-reuse race).
pub fn pidfd_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid descriptor, a signal number, no
    // siginfo and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        // Already gone is what the caller wanted.
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// Makes this process a child subreaper: orphans of our QEMUs' own children
/// come to us rather than to PID 1.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The command line of a running process, NUL-separated as in `/proc`.
pub fn proc_cmdline(pid: i32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn spec(program: &str, args: &[&str], log: PathBuf) -> SpawnSpec {
        SpawnSpec {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: "/".into(),
            log_file: log,
            fds: Vec::new(),
            max_processes: 0,
            max_files: 0,
            pre_exec: Vec::new(),
        }
    }

    #[test]
    fn passed_descriptor_appears_under_the_requested_number() {
        let dir = std::env::temp_dir().join(format!("qvisor-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut s = spec(
            "/bin/sh",
            &["-c", "echo hello >&7; echo logged"],
            log.clone(),
        );
        s.fds.push((OwnedFd::from(theirs), 7));
        let child = spawn(s).unwrap();
        assert_eq!(wait_child(child.child), Exit::Code(0));
        let mut buf = String::new();
        use std::io::Read;
        (&ours).read_to_string(&mut buf).unwrap();
        assert_eq!(buf, "hello\n");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "logged\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exit_by_signal_is_reported() {
        let log = std::env::temp_dir().join(format!("qvisor-spawn-sig-{}", std::process::id()));
        let child = spawn(spec("/bin/sh", &["-c", "kill -9 $$"], log.clone())).unwrap();
        assert_eq!(wait_child(child.child), Exit::Signal(9));
        let _ = std::fs::remove_file(log);
    }

    #[test]
    fn pidfd_wait_sees_a_process_end() {
        let log = std::env::temp_dir().join(format!("qvisor-spawn-pidfd-{}", std::process::id()));
        let child = spawn(spec("/bin/sleep", &["0.1"], log.clone())).unwrap();
        let pid = child.pid();
        let fd = pidfd_open(pid).unwrap();
        // We are the parent, so the pidfd wait also reaps it.
        assert_eq!(wait_pidfd(pid, fd), Exit::Code(0));
        let _ = std::fs::remove_file(log);
    }
}
