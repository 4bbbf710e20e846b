//! `qvisord`: the driver served over libvirt's RPC protocol, so the stock
//! `virsh`, python-libvirt and the tools built on them drive qvisor unchanged.
//! The same program is the per-root supervisor of embedded connections
//! (`qvisord --root DIR`), started on demand by the client library.
//!
//! The daemon is only a transport in front of [`crate::driver::Driver`]: the
//! handler decodes a call (qvisor-rpc did), calls the driver, encodes the reply.

mod handler;
pub(crate) mod heap;
mod pages;
mod storage;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use qvisor_conf::{ConnectUri, DriverPaths, Environment};
use qvisor_rpc::{PeerPolicy, Server, ServerConfig, SocketConfig};

use crate::driver::{Driver, DriverOptions};
use crate::plugins::{load_specs, plugin_dir};

pub use handler::ConnHandler;

/// The libvirt version whose protocol and behaviour we follow, reported by
/// `virConnectGetLibVersion` (`virsh version` prints it as the daemon's).
pub const LIBVIRT_PROTOCOL_VERSION: u64 = 9_000_000;

/// qvisord: serve qvisor's QEMU driver over libvirt's RPC protocol.
#[derive(Debug, Parser)]
#[command(name = "qvisord", version, about, long_about = None)]
pub struct Args {
    /// Serve a driver whose whole tree lives under DIR (like an embedded root):
    /// nothing under /etc or /run is touched. Clients' qemu:///system and
    /// qemu:///session then name this driver.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Read-write socket (default: libvirt's path for the mode).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Read-only socket (system mode default: /run/libvirt/libvirt-sock-ro).
    #[arg(long, value_name = "PATH")]
    pub ro_socket: Option<PathBuf>,
    /// Permissions of the read-write socket (octal, libvirt's unix_sock_rw_perms).
    #[arg(long, default_value = "0700", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Exit after this many seconds with no client connected and no domain running.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Write our pid here (removed at exit).
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
    /// Serve qemu:///session even when running as root.
    #[arg(long)]
    pub session: bool,
    /// Write "ready" to this inherited descriptor once serving, then close it
    /// (used by clients that start a supervisor on demand).
    #[arg(long, hide = true, value_name = "FD")]
    pub ready_fd: Option<i32>,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|e| format!("invalid mode '{s}': {e}"))
}

/// Which driver to serve and where.
struct Plan {
    uri: ConnectUri,
    paths: DriverPaths,
    sockets: Vec<SocketConfig>,
    peer_policy: PeerPolicy,
}

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let env = Environment::from_process();
    // SAFETY: geteuid cannot fail.
    let root_user = unsafe { libc::geteuid() } == 0;
    let uri = match &args.root {
        Some(root) => ConnectUri::embed(root)?,
        None if root_user && !args.session => ConnectUri::parse("qemu:///system", true)?,
        None => ConnectUri::parse("qemu:///session", root_user)?,
    };
    let paths = DriverPaths::new(&uri.mode, &env)?;
    let system = matches!(uri.mode, qvisor_conf::Mode::System);
    let rw = match (&args.socket, &args.root, system) {
        (Some(path), _, _) => path.clone(),
        (None, Some(_), _) => paths.supervisor_socket(),
        (None, None, true) => PathBuf::from("/run/libvirt/libvirt-sock"),
        (None, None, false) => env.runtime_dir()?.join("libvirt/libvirt-sock"),
    };
    let mut sockets = vec![SocketConfig {
        path: rw,
        mode: args.socket_mode,
        read_only: false,
    }];
    let ro = args.ro_socket.clone().or_else(|| {
        (system && args.root.is_none()).then(|| PathBuf::from("/run/libvirt/libvirt-sock-ro"))
    });
    if let Some(ro) = ro {
        sockets.push(SocketConfig::read_only(ro));
    }
    let peer_policy = if system {
        PeerPolicy::AnyUser
    } else {
        PeerPolicy::SameUser
    };
    Ok(Plan {
        uri,
        paths,
        sockets,
        peer_policy,
    })
}

/// Runs the daemon until SIGTERM/SIGINT or the idle timeout.
pub fn run(args: Args) -> anyhow::Result<()> {
    let plan = plan(&args)?;
    // Signals are handled by one thread with sigwait: block them everywhere
    // first (threads inherit the mask).
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGTERM);
    signals.add(nix::sys::signal::Signal::SIGINT);
    signals.add(nix::sys::signal::Signal::SIGHUP);
    signals.thread_block()?;

    crate::driver::process::become_subreaper()?;
    let mut paths = plan.paths;
    let loaded = paths.load_qemu_conf()?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    paths.apply_conf(&loaded.conf);
    for s in &plan.sockets {
        if let Some(dir) = s.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let lock = crate::lockfile::LockFile::acquire(&paths.state_dir.join("qvisord.lock"))?;
    // Before the sockets exist, as libvirtd: whoever can connect finds it.
    let pidfile = args.pidfile.as_deref().map(PidFile::write).transpose()?;
    let plugins = load_specs(&paths.plugins_conf, &plugin_dir())?;
    let driver = Driver::open(DriverOptions {
        uri: plan.uri,
        paths,
        conf: loaded.conf,
        plugins,
    })?;
    // Loading persistent domains and re-attaching to running ones parsed a
    // lot of XML that is garbage now, and ran code that will not run again.
    heap::release_idle_memory();
    let config = ServerConfig {
        sockets: plan.sockets.clone(),
        peer_policy: plan.peer_policy,
        ..ServerConfig::default()
    };
    let service = Service {
        driver: driver.clone(),
    };
    let server = Server::bind(config, service)?;
    let handle = server.handle();
    {
        let handle = handle.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Ok(sig) = signals.wait() {
                    tracing::info!(
                        "{sig:?} received; shutting down (running domains keep running)"
                    );
                }
                handle.shutdown();
            })?;
    }
    if let Some(secs) = args.timeout {
        let handle = handle.clone();
        let driver = driver.clone();
        let limit = Duration::from_secs(secs);
        std::thread::Builder::new()
            .name("idle".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250).min(limit));
                let idle = handle.idle_for().is_some_and(|d| d >= limit);
                if idle && driver.running_count() == 0 {
                    tracing::info!("idle for {limit:?} with no running domain; exiting");
                    handle.shutdown();
                    return;
                }
            })?;
    }
    tracing::info!(sockets = ?plan.sockets.iter().map(|s| &s.path).collect::<Vec<_>>(), "serving");
    if let Some(fd) = args.ready_fd {
        report_ready(fd);
    }
    let served = server.run();
    driver.shutdown_driver();
    drop(pidfile);
    drop(lock);
    served?;
    Ok(())
}

/// Our pid in a file for as long as we run; removed however `run` ends.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &std::path::Path) -> std::io::Result<PidFile> {
        let pid = format!("{}\n", std::process::id());
        crate::fsutil::write_atomic(path, pid.as_bytes(), 0o644)?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Tells the process that started us that the socket accepts connections.
fn report_ready(fd: i32) {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: the descriptor was handed to us for exactly this purpose by the
    // parent (--ready-fd); we take ownership and close it after writing.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = f.write_all(b"ready\n");
}

/// One handler per connection, all on the same driver.
struct Service {
    driver: Driver,
}

impl qvisor_rpc::Service for Service {
    type Handler = ConnHandler;

    fn connect(&self, peer: &qvisor_rpc::Peer, events: qvisor_rpc::EventSender) -> ConnHandler {
        ConnHandler::new(self.driver.clone(), peer, events)
    }
}

/// Entry point of the `qvisord` binary.
pub fn main() -> std::process::ExitCode {
    heap::limit_arenas();
    crate::cli::init_logging();
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qvisord: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Args {
        Args::parse_from(std::iter::once("qvisord").chain(a.iter().copied()))
    }

    #[test]
    fn a_daemon_over_a_root_serves_only_its_own_user() {
        let p = plan(&args(&[
            "--root",
            "/tmp/qvisor-plan",
            "--socket",
            "/tmp/qvisor-plan.sock",
        ]))
        .unwrap();
        assert_eq!(p.peer_policy, PeerPolicy::SameUser);
        assert_eq!(
            p.sockets,
            [SocketConfig::read_write("/tmp/qvisor-plan.sock")]
        );
    }

    #[test]
    fn a_session_daemon_serves_only_its_own_user() {
        let p = plan(&args(&["--session", "--socket", "/tmp/qvisor-plan.sock"])).unwrap();
        assert!(matches!(p.uri.mode, qvisor_conf::Mode::Session));
        assert_eq!(p.peer_policy, PeerPolicy::SameUser);
    }

    #[test]
    fn the_system_daemon_serves_any_user_on_libvirts_two_sockets() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: qvisord serves qemu:///system only as root");
            return;
        }
        let p = plan(&args(&[])).unwrap();
        assert!(matches!(p.uri.mode, qvisor_conf::Mode::System));
        assert_eq!(p.peer_policy, PeerPolicy::AnyUser);
        assert_eq!(
            p.sockets,
            [
                SocketConfig::read_write("/run/libvirt/libvirt-sock"),
                SocketConfig::read_only("/run/libvirt/libvirt-sock-ro"),
            ]
        );
    }
}
