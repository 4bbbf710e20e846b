//! Plain QEMU, the baselines: the very command line qvisor ran (read back
//! from a running guest's `/proc/PID/cmdline`), started by us without any
//! driver around it.
//!
//! - the *floor* of a start: exec with `-S`, QMP handshake, `cont`, poll
//!   `query-status` until `running` (what `../shared/peer/qmp-floor.py` does);
//! - boot to exit: the same arguments without `-S` and `-no-shutdown`, from
//!   exec until QEMU exits after the guest powered off.
//!
//! Descriptors qvisor passed (`fd=N`: the monitor's listening socket, the
//! serial file) are recreated at the same numbers; files qvisor created
//! under its root (the master key) are copied to a mirror of that path.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sys::{io_err, BenchError, Result};

/// How long a plain QEMU may take to answer or to finish.
const PLAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What a descriptor passed to QEMU was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FdKind {
    /// A listening UNIX socket (`-chardev socket,...,fd=N,server=on`).
    Listener,
    /// A file QEMU writes (`-add-fd`, file chardevs).
    File,
}

/// A plain QEMU command line: program, arguments and the descriptors it
/// expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainSpec {
    /// The QEMU binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    fds: Vec<(i32, FdKind)>,
}

/// The `fd=N` values of one option argument.
fn fd_numbers(arg: &str) -> Vec<i32> {
    arg.split(',')
        .filter_map(|kv| kv.strip_prefix("fd="))
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Paths under `root` mentioned in `arg` (up to a `,`, `"` or `'`).
fn paths_under<'a>(arg: &'a str, root: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(i) = rest.find(root) {
        let tail = &rest[i..];
        let end = tail.find([',', '"', '\'']).unwrap_or(tail.len());
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

impl PlainSpec {
    /// The command line of the running QEMU `pid` (started by qvisor under
    /// `root`), with paths under `root` moved under `mirror` (files that
    /// exist now are copied there, so the plain QEMU finds them).
    pub fn capture(pid: i32, root: &Path, mirror: &Path) -> Result<PlainSpec> {
        let path = PathBuf::from(format!("/proc/{pid}/cmdline"));
        let raw = std::fs::read(&path).map_err(io_err("read", &path))?;
        let mut argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.is_empty() {
            return Err(BenchError::Io {
                op: "read a command line from",
                path,
                source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            });
        }
        let program = PathBuf::from(argv.remove(0));
        let root_s = root.display().to_string();
        let mirror_s = mirror.display().to_string();
        let mut fds = Vec::new();
        let mut prev = "";
        let mut args = Vec::with_capacity(argv.len());
        for arg in &argv {
            for n in fd_numbers(arg) {
                let kind = if prev == "-chardev" && arg.starts_with("socket,") {
                    FdKind::Listener
                } else {
                    FdKind::File
                };
                fds.push((n, kind));
            }
            for p in paths_under(arg, &root_s) {
                let src = Path::new(p);
                if src.is_file() {
                    let dst = PathBuf::from(p.replacen(&root_s, &mirror_s, 1));
                    if let Some(dir) = dst.parent() {
                        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
                    }
                    std::fs::copy(src, &dst).map_err(io_err("copy", src))?;
                }
            }
            args.push(arg.replace(&root_s, &mirror_s));
            prev = arg;
        }
        Ok(PlainSpec { program, args, fds })
    }

    /// The same command line without the options in `drop` (e.g. `-S`).
    pub fn without(&self, drop: &[&str]) -> PlainSpec {
        PlainSpec {
            args: self
                .args
                .iter()
                .filter(|a| !drop.contains(&a.as_str()))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// Whether QEMU starts with its vCPUs stopped.
    pub fn has_stop_flag(&self) -> bool {
        self.args.iter().any(|a| a == "-S")
    }

    /// Starts this QEMU in `slot` (a directory of its own: the monitor
    /// socket and the files it writes live there). Returns the child, the
    /// monitor's path (when it has one) and the start instant.
    fn start(&self, slot: &Path) -> Result<(ChildGuard, Option<PathBuf>, Instant)> {
        // A slot of an earlier run (a reused --work-dir) starts empty.
        let _ = std::fs::remove_dir_all(slot);
        std::fs::create_dir_all(slot).map_err(io_err("create", slot))?;
        let mut passed: Vec<(OwnedFd, i32)> = Vec::new();
        let mut monitor = None;
        for (n, kind) in &self.fds {
            let fd = match kind {
                FdKind::Listener => {
                    let path = slot.join(format!("socket-{n}.sock"));
                    let _ = std::fs::remove_file(&path);
                    let l = UnixListener::bind(&path).map_err(io_err("listen on", &path))?;
                    monitor.get_or_insert(path);
                    OwnedFd::from(l)
                }
                FdKind::File => {
                    let path = slot.join(format!("fd-{n}.log"));
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(io_err("open", &path))?;
                    OwnedFd::from(f)
                }
            };
            // Above every target number, so dup2 in the child never
            // overwrites a source it still needs.
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor we own.
            let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
            if high < 0 {
                return Err(io_err("duplicate a descriptor for", slot)(
                    std::io::Error::last_os_error(),
                ));
            }
            // SAFETY: `high` was just returned by fcntl and is ours alone.
            passed.push((
                unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(high) },
                *n,
            ));
        }
        let log_path = slot.join("qemu.log");
        let log = std::fs::File::create(&log_path).map_err(io_err("create", &log_path))?;
        let log2 = log.try_clone().map_err(io_err("duplicate", &log_path))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let map: Vec<(i32, i32)> = passed.iter().map(|(fd, n)| (fd.as_raw_fd(), *n)).collect();
        // SAFETY: only dup2 (async-signal-safe) runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for (src, dst) in &map {
                    if libc::dup2(*src, *dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let t0 = Instant::now();
        let child = cmd.spawn().map_err(|source| BenchError::Spawn {
            what: self.program.display().to_string(),
            source,
        })?;
        drop(passed);
        Ok((ChildGuard(Some(child)), monitor, t0))
    }

    /// The floor: exec → QMP handshake → `cont` → `running`. QEMU is quit
    /// afterwards (untimed). `hold` runs between "running" and the quit
    /// (parallel runs wait there until every QEMU runs).
    pub fn floor(&self, slot: &Path, hold: impl FnOnce()) -> Result<Duration> {
        let (mut child, monitor, t0) = self.start(slot)?;
        let monitor = monitor.ok_or_else(|| BenchError::Qmp {
            what: "start".into(),
            reason: "the command line has no monitor socket".into(),
        })?;
        let mut qmp = Qmp::connect(&monitor)?;
        qmp.execute("qmp_capabilities")?;
        qmp.execute("cont")?;
        loop {
            let r = qmp.execute("query-status")?;
            if r.get("status").and_then(Value::as_str) == Some("running") {
                break;
            }
            if t0.elapsed() > PLAIN_TIMEOUT {
                return Err(BenchError::Timeout(
                    "plain QEMU never reported running".into(),
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let elapsed = t0.elapsed();
        hold();
        let _ = qmp.execute("quit");
        child.reap(PLAIN_TIMEOUT);
        Ok(elapsed)
    }

    /// Boot to exit: exec → QEMU exits by itself (the guest powered off).
    /// Fails when it does not exit within the timeout or exits non-zero.
    pub fn run_to_exit(&self, slot: &Path) -> Result<Duration> {
        let (mut child, _, t0) = self.start(slot)?;
        let status = child.wait_for_exit(PLAIN_TIMEOUT)?;
        let elapsed = t0.elapsed();
        if !status.success() {
            return Err(BenchError::Failed {
                what: format!("plain {}", self.program.display()),
                status: status.to_string(),
                stderr: std::fs::read_to_string(slot.join("qemu.log")).unwrap_or_default(),
            });
        }
        Ok(elapsed)
    }

    /// The files QEMU wrote through passed descriptors in `slot` (the
    /// serial console).
    pub fn written_files(slot: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(slot)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("fd-"))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A QEMU child that is killed and reaped if dropped while running.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait_for_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let Some(child) = self.0.as_mut() else {
            return Err(BenchError::Timeout("no child".into()));
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => {
                    self.0 = None;
                    return Ok(s);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(500))
                }
                Ok(None) => return Err(BenchError::Timeout("plain QEMU did not exit".into())),
                Err(e) => {
                    return Err(BenchError::Spawn {
                        what: "wait for plain QEMU".into(),
                        source: e,
                    })
                }
            }
        }
    }

    /// Waits for the exit; kills after `timeout`.
    fn reap(&mut self, timeout: Duration) {
        if self.wait_for_exit(timeout).is_err() {
            if let Some(mut c) = self.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A minimal QMP client: one command at a time, events skipped.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects and reads the greeting.
    fn connect(path: &Path) -> Result<Qmp> {
        let qmp_err = |what: &str, e: std::io::Error| BenchError::Qmp {
            what: what.into(),
            reason: e.to_string(),
        };
        let stream = UnixStream::connect(path).map_err(|e| qmp_err("connect", e))?;
        stream
            .set_read_timeout(Some(PLAIN_TIMEOUT))
            .map_err(|e| qmp_err("connect", e))?;
        let writer = stream.try_clone().map_err(|e| qmp_err("connect", e))?;
        let mut q = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        q.read_message("greeting")?;
        Ok(q)
    }

    fn read_message(&mut self, what: &str) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| BenchError::Qmp {
                what: what.into(),
                reason: e.to_string(),
            })?;
        if n == 0 {
            return Err(BenchError::Qmp {
                what: what.into(),
                reason: "QEMU closed the monitor".into(),
            });
        }
        serde_json::from_str(&line).map_err(|e| BenchError::Qmp {
            what: what.into(),
            reason: format!("bad JSON {line:?}: {e}"),
        })
    }

    /// Runs `command` and returns its `return` value.
    fn execute(&mut self, command: &str) -> Result<Value> {
        let msg = format!("{{\"execute\":\"{command}\"}}\n");
        self.writer
            .write_all(msg.as_bytes())
            .map_err(|e| BenchError::Qmp {
                what: command.into(),
                reason: e.to_string(),
            })?;
        loop {
            let mut v = self.read_message(command)?;
            if let Some(r) = v.get_mut("return") {
                return Ok(r.take());
            }
            if let Some(e) = v.get("error") {
                return Err(BenchError::Qmp {
                    what: command.into(),
                    reason: e.to_string(),
                });
            }
            // An event: skip it.
        }
    }
}

/// A plain QEMU probing itself the way a capability probe starts: no
/// machine, QMP handshake, then `quit`; timed from exec to exit.
pub fn bare_qmp_start(qemu: &Path, slot: &Path) -> Result<Duration> {
    let spec = PlainSpec {
        program: qemu.to_path_buf(),
        args: [
            "-S",
            "-no-user-config",
            "-nodefaults",
            "-display",
            "none",
            "-machine",
            "none",
            "-chardev",
            "socket,id=charmonitor,fd=3,server=on,wait=off",
            "-mon",
            "chardev=charmonitor,id=monitor,mode=control",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        fds: vec![(3, FdKind::Listener)],
    };
    let (mut child, monitor, t0) = spec.start(slot)?;
    let monitor = monitor.ok_or_else(|| BenchError::Qmp {
        what: "start".into(),
        reason: "no monitor".into(),
    })?;
    let mut qmp = Qmp::connect(&monitor)?;
    qmp.execute("qmp_capabilities")?;
    let _ = qmp.execute("quit");
    child.wait_for_exit(PLAIN_TIMEOUT)?;
    Ok(t0.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_numbers_are_read_from_every_key() {
        assert_eq!(fd_numbers("socket,id=charmonitor,fd=3,server=on"), vec![3]);
        assert_eq!(fd_numbers("set=0,fd=4,opaque=serial0-source"), vec![4]);
        assert!(fd_numbers("file,id=x,path=/dev/fdset/0").is_empty());
    }

    #[test]
    fn paths_under_the_root_end_at_json_and_option_delimiters() {
        let arg = r#"{"qom-type":"secret","file":"/r/lib/domain-1-a/master-key.aes"},x=/r/b"#;
        assert_eq!(
            paths_under(arg, "/r"),
            vec!["/r/lib/domain-1-a/master-key.aes", "/r/b"]
        );
    }

    #[test]
    fn without_drops_only_whole_arguments() {
        let spec = PlainSpec {
            program: "/usr/bin/qemu-system-x86_64".into(),
            args: vec![
                "-S".into(),
                "-no-shutdown".into(),
                "-name".into(),
                "-S".into(),
            ],
            fds: Vec::new(),
        };
        let plain = spec.without(&["-S", "-no-shutdown"]);
        assert_eq!(plain.args, vec!["-name".to_string()]);
        assert!(!plain.has_stop_flag());
    }
}
