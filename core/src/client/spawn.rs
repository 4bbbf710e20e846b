//! Starting a driver process on demand: the per-root supervisor of an
//! embedded connection, or a session daemon.

use std::ffi::OsString;
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
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("qvisord")))
        .filter(|p| p.is_file())
        .or_else(|| {
            // Test binaries live in target/<profile>/deps.
            std::env::current_exe()
                .ok()
                .and_then(|p| {
                    p.parent()
                        .and_then(|d| d.parent())
                        .map(|d| d.join("qvisord"))
                })
                .filter(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("qvisord"))
}

/// Starts `qvisord ARGS` detached (its own session, not our child: it must
/// outlive us), logging to `log_dir/qvisord.log`, and waits until `socket`
/// accepts connections.
pub fn start_supervisor(args: &[OsString], socket: &Path, log_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(log_dir)?;
    let log_path = log_dir.join("qvisord.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = Command::new(qvisord_binary());
    cmd.args(args)
        .arg("--timeout")
        .arg(SUPERVISOR_IDLE_SECS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    // SAFETY: fork and setsid are async-signal-safe. The intermediate child
    // exits at once so the supervisor is re-parented (never our zombie).
    unsafe {
        cmd.pre_exec(|| {
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
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(3).collect();
    anyhow::bail!(
        "the supervisor did not open '{}' within {START_TIMEOUT:?}: {}",
        socket.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("; ")
    )
}
