//! Starting a driver process on demand: the per-root supervisor of an
//! embedded connection, or a session daemon.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh supervisor may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Idle timeout of an on-demand supervisor (seconds without clients and
/// without running domains).
pub const SUPERVISOR_IDLE_SECS: &str = "30";

/// The `qvisord` binary: beside the running program, else on PATH.
pub fn qvisord_binary() -> PathBuf {
    beside_this_program("qvisord")
}

/// The program `name` installed beside the running one (or, for test
/// binaries in `target/<profile>/deps`, in the profile directory); else
/// `name` alone, to be looked up on PATH.
pub fn beside_this_program(name: &str) -> PathBuf {
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(std::path::Path::parent);
    dir.map(|d| d.join(name))
        .filter(|p| p.is_file())
        .or_else(|| {
            dir.and_then(std::path::Path::parent)
                .map(|d| d.join(name))
                .filter(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The descriptor number the supervisor reports readiness on.
const READY_FD: i32 = 3;

/// Starts `qvisord ARGS` detached (its own session, not our child: it must
/// outlive us), logging to `log_dir/qvisord.log`, and waits until it reports
/// that `socket` accepts connections (or exits, which closes the pipe).
pub fn start_supervisor(args: &[OsString], socket: &Path, log_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(log_dir)?;
    let log_path = log_dir.join("qvisord.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let ready_w_raw = ready_w.as_raw_fd();
    let mut cmd = Command::new(qvisord_binary());
    cmd.args(args)
        .arg("--timeout")
        .arg(SUPERVISOR_IDLE_SECS)
        .arg("--ready-fd")
        .arg(READY_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    // SAFETY: dup2, fork and setsid are async-signal-safe. The intermediate
    // child exits at once so the supervisor is re-parented (never our zombie).
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(ready_w_raw, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => return Err(std::io::Error::last_os_error()),
                0 => {}
                _ => libc::_exit(0),
            }
            libc::setsid();
            Ok(())
        });
    }
    let mut intermediate = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", qvisord_binary().display()))?;
    let _ = intermediate.wait();
    drop(ready_w);
    if wait_ready(ready_r) && UnixStream::connect(socket).is_ok() {
        return Ok(());
    }
    let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(3).collect();
    anyhow::bail!(
        "the supervisor for '{}' did not start: {}",
        socket.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("; ")
    )
}

/// Waits for the supervisor's "ready" line; false when it exited first (the
/// pipe closes without one) or the timeout passed.
fn wait_ready(pipe: OwnedFd) -> bool {
    let mut file = std::fs::File::from(pipe);
    let deadline = Instant::now() + START_TIMEOUT;
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    while Instant::now() < deadline {
        let mut pfd = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&file),
            nix::poll::PollFlags::POLLIN,
        )];
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)) {
            Ok(0) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
            Ok(_) => {}
        }
        match file.read(&mut buf) {
            Ok(0) | Err(_) => return got.starts_with(b"ready"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.starts_with(b"ready") {
            return true;
        }
    }
    false
}
