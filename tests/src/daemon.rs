//! qvisord under test: a daemon serving a driver rooted in a temp directory
//! on temp sockets, driven by the stock `virsh` (and python3-libvirt) exactly
//! as a user would drive libvirtd. Dropping a [`Daemon`] destroys what still
//! runs, stops the daemon and kills any QEMU left over, so no guest outlives a
//! test.
//!
//! [`Peer`] brings up the real libvirt 9.0 daemon (`../shared/peer/`) for
//! side-by-side comparisons; tests skip with a printed reason when it cannot
//! be started.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::guest::{alive, DomainXml};
use crate::{bin, workspace_root, TempDir};

/// How long one `virsh` invocation may take before it counts as stuck.
pub const VIRSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the stock `virsh` can run here; prints why not.
pub fn virsh_available() -> bool {
    match Command::new("virsh").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("SKIP: virsh is not installed (Debian: apt-get install libvirt-clients)");
            false
        }
    }
}

/// Runs `cmd`, killing it when it takes longer than `timeout`.
pub fn run_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let mut pipes = (child.stdout.take(), child.stderr.take());
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(mut p) = pipes.0.take() {
            let _ = p.read_to_end(&mut b);
        }
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(mut p) = pipes.1.take() {
            let _ = p.read_to_end(&mut b);
        }
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {timeout:?}"));
            }
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// One finished `virsh` command: exit code and both streams as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirshRun {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl VirshRun {
    fn from_output(o: &Output) -> Self {
        VirshRun {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `virsh -c URI ARGS` (or `virsh -r -c URI` when `read_only`).
pub fn virsh(uri: &str, read_only: bool, args: &[&str]) -> VirshRun {
    let mut cmd = Command::new("virsh");
    if read_only {
        cmd.arg("-r");
    }
    cmd.arg("-c").arg(uri).args(args);
    match run_timeout(cmd, VIRSH_TIMEOUT) {
        Ok(o) => VirshRun::from_output(&o),
        Err(e) => panic!("{e}"),
    }
}

/// The shared material directory (`../shared` beside the repository;
/// `QVISOR_SHARED_DIR` overrides).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("QVISOR_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"))
}

/// A running qvisord on temp sockets with its tree under a temp root.
pub struct Daemon {
    dir: TempDir,
    root: PathBuf,
    socket: PathBuf,
    ro_socket: PathBuf,
    pidfile: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl Daemon {
    /// Starts `qvisord --root R --socket S --ro-socket S-ro --pidfile P`.
    pub fn start(tag: &str) -> Daemon {
        Self::start_with(tag, &[])
    }

    /// [`Daemon::start`] with extra arguments (e.g. `--timeout 1`).
    pub fn start_with(tag: &str, extra: &[&str]) -> Daemon {
        Self::start_configured(tag, None, extra)
    }

    /// [`Daemon::start_with`] with this `qemu.conf` in the root.
    pub fn start_configured(tag: &str, qemu_conf: Option<&str>, extra: &[&str]) -> Daemon {
        let files: Vec<(&str, &str)> = qemu_conf
            .map(|c| ("etc/qemu.conf", c))
            .into_iter()
            .collect();
        Self::start_with_files(tag, &files, extra)
    }

    /// [`Daemon::start_with`] with these files (path relative to the root,
    /// contents) written into the root first (`etc/qemu.conf`,
    /// `etc/plugins.ron`, a capabilities cache...).
    pub fn start_with_files(tag: &str, files: &[(&str, &str)], extra: &[&str]) -> Daemon {
        let dir = TempDir::new(tag);
        let root = dir.path().join("root");
        for (rel, text) in files {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create directory in root");
            }
            std::fs::write(&path, text).expect("write file in root");
        }
        let mut d = Daemon {
            socket: dir.path().join("sock"),
            ro_socket: dir.path().join("sock-ro"),
            pidfile: dir.path().join("qvisord.pid"),
            root,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            starts: 0,
        };
        d.spawn();
        d
    }

    /// Spawns the daemon and waits until its read-write socket accepts.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "qvisord is already running");
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open qvisord log");
        let child = Command::new(bin("qvisord"))
            .arg("--root")
            .arg(&self.root)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--ro-socket")
            .arg(&self.ro_socket)
            .arg("--pidfile")
            .arg(&self.pidfile)
            .args(&self.extra)
            .env(
                "QVISOR_LOG",
                std::env::var("QVISOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn qvisord");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.try_wait() {
                panic!("qvisord exited at start ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("qvisord did not listen within 60 s:\n{}", self.log());
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The daemon's pid (while it runs).
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Whether the daemon process is still running.
    pub fn running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// Waits up to `timeout` for the daemon to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends SIGTERM and waits for the exit (guests keep running).
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().expect("qvisord is not running");
        // SAFETY: sending a signal has no memory-safety implications.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("qvisord ignored SIGTERM for 30 s:\n{}", self.log()))
    }

    /// The temp directory holding root, sockets, pidfile and log.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The driver root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The read-write socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The read-only socket.
    pub fn ro_socket(&self) -> &Path {
        &self.ro_socket
    }

    /// The pidfile.
    pub fn pidfile(&self) -> &Path {
        &self.pidfile
    }

    /// `qemu+unix:///system?socket=<rw socket>`.
    pub fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.socket.display())
    }

    /// `qemu+unix:///system?socket=<ro socket>`.
    pub fn ro_uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.ro_socket.display())
    }

    /// Runs `virsh -c URI ARGS`.
    pub fn virsh(&self, args: &[&str]) -> VirshRun {
        virsh(&self.uri(), false, args)
    }

    /// Runs virsh and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.virsh(args);
        assert_eq!(
            r.code,
            0,
            "virsh {args:?} failed: {}\n{}",
            r.stderr,
            self.log()
        );
        r.stdout
    }

    /// Runs virsh and insists on failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let r = self.virsh(args);
        assert_ne!(r.code, 0, "virsh {args:?} should have failed: {}", r.stdout);
        r.stderr
    }

    /// Writes `xml` to a file and defines it.
    pub fn define(&self, xml: &DomainXml) -> String {
        let text = xml.to_xml();
        let name = text
            .split_once("<name>")
            .and_then(|(_, r)| r.split_once("</name>"))
            .map_or("domain", |(n, _)| n);
        let path = self.dir.path().join(format!("{name}.xml"));
        std::fs::write(&path, &text).expect("write domain xml");
        self.ok(&["define", &path.to_string_lossy()])
    }

    /// `domstate NAME`, trimmed.
    pub fn state(&self, name: &str) -> String {
        self.ok(&["domstate", name]).trim().to_string()
    }

    /// The QEMU processes of this daemon's root.
    pub fn qemu_pids(&self) -> Vec<i32> {
        qemu_pids_under(&self.root)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("qvisord.log")
    }

    /// The daemon's log and the tail of each domain log, for failure messages.
    pub fn log(&self) -> String {
        let mut out = format!(
            "--- qvisord log\n{}",
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        );
        if let Ok(rd) = std::fs::read_dir(self.root.join("log/qemu")) {
            for e in rd.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- {} (tail)\n", e.path().display()));
                for l in &lines[lines.len().saturating_sub(15)..] {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running() {
            let r = self.virsh(&["list", "--name"]);
            for name in r.stdout.lines().filter(|l| !l.trim().is_empty()) {
                let _ = self.virsh(&["destroy", name.trim()]);
            }
            if let Some(pid) = self.pid() {
                // SAFETY: sending a signal has no memory-safety implications.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                if self.wait_exit(Duration::from_secs(10)).is_none() {
                    // SAFETY: as above.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    let _ = self.wait_exit(Duration::from_secs(5));
                }
            }
        }
        for pid in self.qemu_pids() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// QEMU processes whose command line mentions `root`.
pub fn qemu_pids_under(root: &Path) -> Vec<i32> {
    let needle = root.display().to_string();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    let cmd = String::from_utf8_lossy(&cmd);
                    (cmd.contains("qemu-system") && cmd.contains(&needle) && alive(pid))
                        .then_some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The real libvirt 9.0 daemon for `qemu:///system`, brought up with
/// `../shared/peer/libvirt-peer.sh` (`QVISOR_LIBVIRT_PEER` overrides the
/// script). Stopped on drop when this process started it.
pub struct Peer {
    script: PathBuf,
    started_here: bool,
}

impl Peer {
    /// The URI the peer serves.
    pub const URI: &'static str = "qemu:///system";

    /// Starts the peer (or uses the one already running); `Err` says why it
    /// cannot be used.
    pub fn start() -> Result<Peer, String> {
        let script = std::env::var_os("QVISOR_LIBVIRT_PEER")
            .map(PathBuf::from)
            .unwrap_or_else(|| shared_dir().join("peer/libvirt-peer.sh"));
        if !script.is_file() {
            return Err(format!("{} not found", script.display()));
        }
        if !Path::new("/usr/sbin/libvirtd").exists() {
            return Err(format!(
                "libvirtd is not installed (run '{} install')",
                script.display()
            ));
        }
        let running = Command::new(&script)
            .arg("status")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !running {
            let out = run_timeout(
                {
                    let mut c = Command::new(&script);
                    c.arg("start");
                    c
                },
                Duration::from_secs(120),
            )?;
            if !out.status.success() {
                return Err(format!(
                    "'{} start' failed: {}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(Peer {
            script,
            started_here: !running,
        })
    }

    /// Runs `virsh -c qemu:///system ARGS` against the peer.
    pub fn virsh(&self, args: &[&str]) -> VirshRun {
        virsh(Self::URI, false, args)
    }

    /// The peer daemon's pid.
    pub fn pid(&self) -> Option<i32> {
        let out = Command::new(&self.script).arg("pid").output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.started_here {
            let _ = Command::new(&self.script).arg("stop").output();
        }
    }
}

/// Resident set size of a process in KiB (`VmRSS`).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User + system CPU time of a process in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after ')' start at field 3 (state); utime is 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Which side of a comparison a line is only on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Only in the reference (libvirtd's output).
    Reference,
    /// Only in qvisord's output.
    Qvisor,
}

/// The lines of `reference` and `qvisor` that the other lacks (a
/// longest-common-subsequence line diff), in order.
pub fn diff_lines(reference: &str, qvisor: &str) -> Vec<(Side, String)> {
    let a: Vec<&str> = reference.lines().collect();
    let b: Vec<&str> = qvisor.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push((Side::Qvisor, b[j].to_string()));
            j += 1;
        } else {
            out.push((Side::Reference, a[i].to_string()));
            i += 1;
        }
    }
    out
}
