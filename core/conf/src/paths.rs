//! The QEMU driver's directory trees, as libvirt 9.0 lays them out
//! (`virQEMUDriverConfigNew`), plus qvisor's own files, and the UNIX socket
//! path-length check.
//!
//! | what            | system                           | session                              | embedded (`ROOT`)   |
//! |-----------------|----------------------------------|--------------------------------------|---------------------|
//! | config base     | `/etc/libvirt`                   | `$XDG_CONFIG_HOME/libvirt`           | `ROOT/etc`          |
//! | `qemu.conf`     | `/etc/libvirt/qemu.conf`         | `$XDG_CONFIG_HOME/libvirt/qemu.conf` | `ROOT/etc/qemu.conf`|
//! | domain configs  | `BASE/qemu`                      | `BASE/qemu`                          | `ROOT/etc/qemu`     |
//! | logs            | `/var/log/libvirt/qemu`          | `$XDG_CACHE_HOME/libvirt/qemu/log`   | `ROOT/log/qemu`     |
//! | swtpm logs      | `/var/log/swtpm/libvirt/qemu`    | `$XDG_CACHE_HOME/libvirt/qemu/log`   | `ROOT/log/swtpm`    |
//! | state (status)  | `/run/libvirt/qemu`              | `$XDG_RUNTIME_DIR/libvirt/qemu/run`  | `ROOT/run/qemu`     |
//! | swtpm state     | `/run/libvirt/qemu/swtpm`        | `STATE/swtpm`                        | `ROOT/run/swtpm`    |
//! | cache           | `/var/cache/libvirt/qemu`        | `$XDG_CACHE_HOME/libvirt/qemu/cache` | `ROOT/cache/qemu`   |
//! | lib (private)   | `/var/lib/libvirt/qemu`          | `BASE/qemu/lib`                      | `ROOT/lib/qemu`     |
//! | swtpm storage   | `/var/lib/libvirt/swtpm`         | `BASE/qemu/swtpm`                    | `ROOT/lib/swtpm`    |
//! | save, snapshot, checkpoint, dump, channel/target, nvram, ram | `LIB/…` | `BASE/qemu/…` | `ROOT/lib/qemu/…` |
//! | TLS default     | `/etc/pki/qemu`                  | `/etc/pki/qemu`                      | `ROOT/etc/pki/qemu` |
//! | storage configs | `/etc/libvirt/storage`           | `BASE/storage`                       | `ROOT/etc/storage`  |
//! | images          | `/var/lib/libvirt/images`        | `$XDG_DATA_HOME/libvirt/images`      | `ROOT/lib/images`   |
//! | plugins         | `/etc/libvirt/plugins.ron`       | `BASE/plugins.ron`                   | `ROOT/etc/plugins.ron` |
//!
//! (`$XDG_RUNTIME_DIR` unset → `$XDG_CACHE_HOME`, as GLib; the session
//! `libvirt` directories hang off the XDG ones exactly as above.)
//!
//! ## UNIX socket paths
//!
//! `sun_path` holds 108 bytes including the terminating NUL, so a socket
//! path has at most [`SUN_PATH_MAX`] = 107 bytes. The sockets the driver
//! creates are listed in [`SOCKETS`]; for a domain they are named with
//! libvirt's short name `ID-NAME20` (the id, a dash, the first 20
//! characters of the name). [`DriverPaths::check_socket_paths`] checks the
//! worst case **up front** and [`DriverPaths::new`] refuses an embedded root
//! that fails it. The worst case assumed:
//! - a domain id of at most 5 digits ([`MAX_DOMAIN_ID`] = 99999): ids
//!   count up from 1 for as long as a driver runs, so this is 99999 domain
//!   starts; a 10-digit `int` id would cost every user 5 bytes of root
//!   for a case [`DriverPaths::check_domain_sockets`] catches at start;
//! - a name whose first 20 characters are single-byte (ASCII), so the
//!   short name is 26 bytes. A name with multi-byte characters can be up to
//!   60 bytes longer; [`DriverPaths::check_domain_sockets`] checks the real
//!   id and name when the domain starts;
//! - the fixed-name sockets of [`SOCKETS`]: in the domain's private
//!   directory `monitor.sock`, `vnc.sock`, `spice.sock`; in the state
//!   directories `SWTPM/ID-NAME-swtpm.sock` and `STATE/dbus/ID-NAME-dbus.sock`;
//!   the supervisor's `STATE/supervisor.sock` and, for system and session,
//!   the daemon's socket.
//!
//! The longest is `LIB/domain-ID-NAME/monitor.sock`: the length of `LIB`
//! plus 47 bytes (`/domain-` 8, short name 26, `/monitor.sock` 13). For an
//! embedded root, `ROOT/lib/qemu` adds 9, which leaves 51 bytes for `ROOT`
//! (the default root `/home/USER/.local/state/qvisor/embed` fits for user
//! names of up to 19 characters). Sockets whose names come from the domain XML
//! (channel targets, virtiofs aliases, passt interface aliases) are not part
//! of the up-front check; [`DriverPaths::check_domain_sockets`] takes them.

use std::io;
use std::path::{Path, PathBuf};

use crate::env::{self, Environment};
use crate::qemu::QemuConf;
use crate::{ErrorCode, Mode};

/// The longest UNIX socket path: `sun_path` is 108 bytes with the NUL.
pub const SUN_PATH_MAX: usize = 107;

/// libvirt's limit on the name part of a domain's short name.
pub const SHORT_NAME_MAX_CHARS: usize = 20;

/// The largest domain id the up-front socket check assumes.
pub const MAX_DOMAIN_ID: u32 = 99_999;

/// File name of the per-driver supervisor socket in the state directory.
pub const SUPERVISOR_SOCKET: &str = "supervisor.sock";

/// Where a socket lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDir {
    /// The domain's private directory (`LIB/domain-ID-NAME`).
    DomainPrivate,
    /// The swtpm state directory.
    SwtpmState,
    /// The D-Bus state directory.
    DbusState,
    /// The driver's state directory.
    State,
}

/// A socket the driver creates: its directory and its file name, where
/// `{short}` stands for the domain's short name `ID-NAME20`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketTemplate {
    /// The directory.
    pub dir: SocketDir,
    /// The file name pattern.
    pub name: &'static str,
}

/// The sockets of every domain and of the driver, checked up front.
pub const SOCKETS: &[SocketTemplate] = &[
    SocketTemplate {
        dir: SocketDir::DomainPrivate,
        name: "monitor.sock",
    },
    SocketTemplate {
        dir: SocketDir::DomainPrivate,
        name: "vnc.sock",
    },
    SocketTemplate {
        dir: SocketDir::DomainPrivate,
        name: "spice.sock",
    },
    SocketTemplate {
        dir: SocketDir::SwtpmState,
        name: "{short}-swtpm.sock",
    },
    SocketTemplate {
        dir: SocketDir::DbusState,
        name: "{short}-dbus.sock",
    },
    SocketTemplate {
        dir: SocketDir::State,
        name: SUPERVISOR_SOCKET,
    },
];

/// Errors from computing, checking or creating the tree.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A per-user directory could not be determined.
    #[error(transparent)]
    Environment(#[from] env::Error),
    /// The embedded root is not absolute.
    #[error("unsupported configuration: root path must be absolute: '{}'", root.display())]
    RelativeRoot {
        /// The root.
        root: PathBuf,
    },
    /// A socket path would not fit in `sun_path`.
    #[error("unsupported configuration: UNIX socket path '{}' is {len} bytes, longer than the limit of {limit} bytes (sun_path holds {} bytes including the terminating NUL){hint}", path.display(), limit + 1)]
    SocketPathTooLong {
        /// The (worst-case) path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// [`SUN_PATH_MAX`].
        limit: usize,
        /// What to change (`; use a root of at most 46 bytes`).
        hint: String,
    },
    /// Something that is not a directory is in the way.
    #[error("cannot create directory '{}': a non-directory is in the way", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// `mkdir` failed.
    #[error("cannot create directory '{}': {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The libvirt error code this error maps to.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Environment(_) => ErrorCode::Internal,
            Error::RelativeRoot { .. } | Error::SocketPathTooLong { .. } => {
                ErrorCode::ConfigUnsupported
            }
            Error::NotADirectory { .. } | Error::CreateDir { .. } => ErrorCode::SystemError,
        }
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Every directory and file location of one driver instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverPaths {
    /// The driver instance.
    pub mode: Mode,
    /// Whether the driver runs privileged (system, or embedded as root).
    pub privileged: bool,
    /// `/etc/libvirt`, `$XDG_CONFIG_HOME/libvirt`, `ROOT/etc`.
    pub config_base_dir: PathBuf,
    /// `BASE/qemu.conf`.
    pub qemu_conf: PathBuf,
    /// qvisor's plugin set: `/etc/qvisor/plugins.ron` (system),
    /// `$XDG_CONFIG_HOME/qvisor/plugins.ron` (session), `ROOT/etc/plugins.ron` (embedded).
    pub plugins_conf: PathBuf,
    /// `BASE/qemu`: persistent domain XML.
    pub config_dir: PathBuf,
    /// `BASE/qemu/autostart`.
    pub autostart_dir: PathBuf,
    /// `BASE/storage`: storage pool XML.
    pub storage_config_dir: PathBuf,
    /// Default TLS certificate directory.
    pub default_tls_dir: PathBuf,
    /// Domain logs (`NAME.log`).
    pub log_dir: PathBuf,
    /// swtpm logs.
    pub swtpm_log_dir: PathBuf,
    /// Runtime state: status XML (`NAME.xml`), pid files.
    pub state_dir: PathBuf,
    /// swtpm runtime state and sockets.
    pub swtpm_state_dir: PathBuf,
    /// `STATE/slirp`.
    pub slirp_state_dir: PathBuf,
    /// `STATE/passt`.
    pub passt_state_dir: PathBuf,
    /// `STATE/dbus`.
    pub dbus_state_dir: PathBuf,
    /// Capabilities cache and the like.
    pub cache_dir: PathBuf,
    /// Per-domain private directories live here.
    pub lib_dir: PathBuf,
    /// `LIB/save` (managed save images).
    pub save_dir: PathBuf,
    /// `LIB/snapshot`.
    pub snapshot_dir: PathBuf,
    /// `LIB/checkpoint`.
    pub checkpoint_dir: PathBuf,
    /// `LIB/dump`, or `auto_dump_path`.
    pub auto_dump_dir: PathBuf,
    /// `LIB/channel/target`: guest agent and other channel sockets.
    pub channel_target_dir: PathBuf,
    /// `LIB/nvram`: per-domain UEFI variable stores.
    pub nvram_dir: PathBuf,
    /// `LIB/ram`, or `memory_backing_dir/libvirt/qemu`.
    pub memory_backing_dir: PathBuf,
    /// swtpm persistent state.
    pub swtpm_storage_dir: PathBuf,
    /// Default storage pool directory.
    pub images_dir: PathBuf,
    /// The daemon's socket (`virtqemud-sock`) for system and session;
    /// `None` for an embedded driver, which has no daemon.
    pub daemon_socket: Option<PathBuf>,
    /// The daemon's read-only socket (system only).
    pub daemon_socket_ro: Option<PathBuf>,
}

/// Modes of the directories of [`DriverPaths::create_tree`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dir<'a> {
    path: &'a Path,
    mode: u32,
}

impl DriverPaths {
    /// The layout for `mode`. The caller's uid (from `env`) makes an
    /// embedded driver privileged when it is root. An embedded root must be
    /// absolute and short enough for every socket the driver will create
    /// (see [`DriverPaths::check_socket_paths`]); both are checked here.
    pub fn new(mode: &Mode, env: &Environment) -> Result<Self> {
        let paths = match mode {
            Mode::System => Self::system(),
            Mode::Session => Self::session(env)?,
            Mode::Embed { root } => {
                if !root.is_absolute() {
                    return Err(Error::RelativeRoot { root: root.clone() });
                }
                let paths = Self::embedded(root, env.is_root());
                paths.check_socket_paths()?;
                paths
            }
        };
        Ok(paths)
    }

    fn system() -> Self {
        let lib = PathBuf::from("/var/lib/libvirt/qemu");
        let state = PathBuf::from("/run/libvirt/qemu");
        let base = PathBuf::from("/etc/libvirt");
        DriverPaths {
            mode: Mode::System,
            privileged: true,
            qemu_conf: base.join("qemu.conf"),
            plugins_conf: PathBuf::from("/etc/qvisor/plugins.ron"),
            config_dir: base.join("qemu"),
            autostart_dir: base.join("qemu/autostart"),
            storage_config_dir: base.join("storage"),
            config_base_dir: base,
            default_tls_dir: PathBuf::from("/etc/pki/qemu"),
            log_dir: PathBuf::from("/var/log/libvirt/qemu"),
            swtpm_log_dir: PathBuf::from("/var/log/swtpm/libvirt/qemu"),
            swtpm_state_dir: state.join("swtpm"),
            slirp_state_dir: state.join("slirp"),
            passt_state_dir: state.join("passt"),
            dbus_state_dir: state.join("dbus"),
            state_dir: state,
            cache_dir: PathBuf::from("/var/cache/libvirt/qemu"),
            save_dir: lib.join("save"),
            snapshot_dir: lib.join("snapshot"),
            checkpoint_dir: lib.join("checkpoint"),
            auto_dump_dir: lib.join("dump"),
            channel_target_dir: lib.join("channel/target"),
            nvram_dir: lib.join("nvram"),
            memory_backing_dir: lib.join("ram"),
            lib_dir: lib,
            swtpm_storage_dir: PathBuf::from("/var/lib/libvirt/swtpm"),
            images_dir: PathBuf::from("/var/lib/libvirt/images"),
            daemon_socket: Some(PathBuf::from("/run/libvirt/virtqemud-sock")),
            daemon_socket_ro: Some(PathBuf::from("/run/libvirt/virtqemud-sock-ro")),
        }
    }

    fn session(env: &Environment) -> Result<Self> {
        let cache = env.cache_home()?.join("libvirt");
        let run = env.runtime_dir()?.join("libvirt");
        let base = env.config_home()?.join("libvirt");
        let data = env.data_home()?.join("libvirt");
        let state = run.join("qemu/run");
        let qemu = base.join("qemu");
        Ok(DriverPaths {
            mode: Mode::Session,
            privileged: false,
            qemu_conf: base.join("qemu.conf"),
            plugins_conf: env.config_home()?.join("qvisor/plugins.ron"),
            config_dir: qemu.clone(),
            autostart_dir: qemu.join("autostart"),
            storage_config_dir: base.join("storage"),
            default_tls_dir: PathBuf::from("/etc/pki/qemu"),
            log_dir: cache.join("qemu/log"),
            swtpm_log_dir: cache.join("qemu/log"),
            cache_dir: cache.join("qemu/cache"),
            swtpm_state_dir: state.join("swtpm"),
            slirp_state_dir: state.join("slirp"),
            passt_state_dir: state.join("passt"),
            dbus_state_dir: state.join("dbus"),
            state_dir: state,
            lib_dir: qemu.join("lib"),
            save_dir: qemu.join("save"),
            snapshot_dir: qemu.join("snapshot"),
            checkpoint_dir: qemu.join("checkpoint"),
            auto_dump_dir: qemu.join("dump"),
            channel_target_dir: qemu.join("channel/target"),
            nvram_dir: qemu.join("nvram"),
            memory_backing_dir: qemu.join("ram"),
            swtpm_storage_dir: qemu.join("swtpm"),
            images_dir: data.join("images"),
            daemon_socket: Some(run.join("virtqemud-sock")),
            daemon_socket_ro: None,
            config_base_dir: base,
        })
    }

    fn embedded(root: &Path, privileged: bool) -> Self {
        let base = root.join("etc");
        let lib = root.join("lib/qemu");
        let state = root.join("run/qemu");
        DriverPaths {
            mode: Mode::Embed {
                root: root.to_owned(),
            },
            privileged,
            qemu_conf: base.join("qemu.conf"),
            plugins_conf: base.join("plugins.ron"),
            config_dir: base.join("qemu"),
            autostart_dir: base.join("qemu/autostart"),
            storage_config_dir: base.join("storage"),
            default_tls_dir: base.join("pki/qemu"),
            config_base_dir: base,
            log_dir: root.join("log/qemu"),
            swtpm_log_dir: root.join("log/swtpm"),
            swtpm_state_dir: root.join("run/swtpm"),
            slirp_state_dir: state.join("slirp"),
            passt_state_dir: state.join("passt"),
            dbus_state_dir: state.join("dbus"),
            state_dir: state,
            cache_dir: root.join("cache/qemu"),
            save_dir: lib.join("save"),
            snapshot_dir: lib.join("snapshot"),
            checkpoint_dir: lib.join("checkpoint"),
            auto_dump_dir: lib.join("dump"),
            channel_target_dir: lib.join("channel/target"),
            nvram_dir: lib.join("nvram"),
            memory_backing_dir: lib.join("ram"),
            lib_dir: lib,
            swtpm_storage_dir: root.join("lib/swtpm"),
            images_dir: root.join("lib/images"),
            daemon_socket: None,
            daemon_socket_ro: None,
        }
    }

    /// Applies the directory settings of `qemu.conf`: `auto_dump_path` and
    /// `memory_backing_dir` (to which libvirt appends `libvirt/qemu`), and
    /// `default_tls_x509_cert_dir`.
    pub fn apply_conf(&mut self, conf: &QemuConf) {
        if let Some(dir) = &conf.auto_dump_path {
            self.auto_dump_dir = dir.clone();
        }
        if let Some(dir) = conf.memory_backing_subdir() {
            self.memory_backing_dir = dir;
        }
        self.default_tls_dir = conf.default_tls_x509_cert_dir.clone();
    }

    /// Loads this driver's `qemu.conf` ([`DriverPaths::qemu_conf`]; a
    /// missing file gives libvirt's defaults).
    pub fn load_qemu_conf(&self) -> crate::qemu::Result<crate::qemu::Loaded> {
        QemuConf::load(&self.qemu_conf, &self.mode, self.privileged)
    }

    /// libvirt's short name of a domain: `ID-` and the first 20 characters
    /// of its name.
    pub fn short_name(id: u32, name: &str) -> String {
        let prefix: String = name.chars().take(SHORT_NAME_MAX_CHARS).collect();
        format!("{id}-{prefix}")
    }

    /// The domain's private directory, `LIB/domain-ID-NAME20` (monitor
    /// socket, master key, auto-created graphics sockets).
    pub fn domain_private_dir(&self, id: u32, name: &str) -> PathBuf {
        self.lib_dir
            .join(format!("domain-{}", Self::short_name(id, name)))
    }

    /// The domain's channel directory, `LIB/channel/target/domain-ID-NAME20`.
    pub fn domain_channel_dir(&self, id: u32, name: &str) -> PathBuf {
        self.channel_target_dir
            .join(format!("domain-{}", Self::short_name(id, name)))
    }

    /// The QMP monitor socket, `PRIVATE/monitor.sock`.
    pub fn monitor_socket(&self, id: u32, name: &str) -> PathBuf {
        self.domain_private_dir(id, name).join("monitor.sock")
    }

    /// The persistent config, `CONFIG/NAME.xml`.
    pub fn domain_config(&self, name: &str) -> PathBuf {
        self.config_dir.join(format!("{name}.xml"))
    }

    /// The autostart link, `CONFIG/autostart/NAME.xml`.
    pub fn domain_autostart_link(&self, name: &str) -> PathBuf {
        self.autostart_dir.join(format!("{name}.xml"))
    }

    /// The runtime status XML, `STATE/NAME.xml`.
    pub fn domain_status(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.xml"))
    }

    /// The domain's log, `LOG/NAME.log`.
    pub fn domain_log(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// The supervisor's socket, `STATE/supervisor.sock`.
    pub fn supervisor_socket(&self) -> PathBuf {
        self.state_dir.join(SUPERVISOR_SOCKET)
    }

    fn socket_dir(&self, dir: SocketDir, id: u32, name: &str) -> PathBuf {
        match dir {
            SocketDir::DomainPrivate => self.domain_private_dir(id, name),
            SocketDir::SwtpmState => self.swtpm_state_dir.clone(),
            SocketDir::DbusState => self.dbus_state_dir.clone(),
            SocketDir::State => self.state_dir.clone(),
        }
    }

    /// The fixed-name sockets ([`SOCKETS`]) of domain `id`/`name`.
    pub fn domain_socket_paths(&self, id: u32, name: &str) -> Vec<PathBuf> {
        let short = Self::short_name(id, name);
        SOCKETS
            .iter()
            .map(|t| {
                self.socket_dir(t.dir, id, name)
                    .join(t.name.replace("{short}", &short))
            })
            .collect()
    }

    /// The longest socket path the driver can create for any domain under
    /// the assumptions in the module documentation, with its length.
    pub fn worst_case_socket_path(&self) -> (PathBuf, usize) {
        let name = "x".repeat(SHORT_NAME_MAX_CHARS);
        self.domain_socket_paths(MAX_DOMAIN_ID, &name)
            .into_iter()
            .chain(self.daemon_socket.iter().cloned())
            .chain(self.daemon_socket_ro.iter().cloned())
            .map(|p| {
                let len = p.as_os_str().len();
                (p, len)
            })
            .max_by_key(|(_, len)| *len)
            .unwrap_or_default()
    }

    /// Refuses a layout whose worst-case socket path exceeds
    /// [`SUN_PATH_MAX`], naming the path, its length and the limit.
    pub fn check_socket_paths(&self) -> Result<()> {
        let (path, len) = self.worst_case_socket_path();
        if len <= SUN_PATH_MAX {
            return Ok(());
        }
        let hint = match &self.mode {
            Mode::Embed { root } => {
                let budget = SUN_PATH_MAX.saturating_sub(len - root.as_os_str().len());
                format!("; choose an embedded root of at most {budget} bytes")
            }
            Mode::System | Mode::Session => String::new(),
        };
        Err(Error::SocketPathTooLong {
            path,
            len,
            limit: SUN_PATH_MAX,
            hint,
        })
    }

    /// Checks the real socket paths of domain `id`/`name` and any socket
    /// paths its XML adds (`extra`: channel targets, virtiofs or passt
    /// sockets), for when the domain starts.
    pub fn check_domain_sockets(&self, id: u32, name: &str, extra: &[PathBuf]) -> Result<()> {
        let all = self.domain_socket_paths(id, name);
        match all
            .iter()
            .chain(extra)
            .find(|p| p.as_os_str().len() > SUN_PATH_MAX)
        {
            None => Ok(()),
            Some(path) => Err(Error::SocketPathTooLong {
                path: path.clone(),
                len: path.as_os_str().len(),
                limit: SUN_PATH_MAX,
                hint: format!("; shorten the name of domain '{name}'"),
            }),
        }
    }

    /// The directories [`DriverPaths::create_tree`] makes, parents first,
    /// with their modes (libvirt's packaging modes: configuration and logs
    /// private, `lib` traversable by the QEMU user).
    fn tree(&self) -> Vec<Dir<'_>> {
        let private_base = match self.mode {
            // The embedded etc/ also holds pki/, which QEMU must read.
            Mode::Embed { .. } => 0o755,
            Mode::System | Mode::Session => 0o700,
        };
        let swtpm_log = if self.privileged { 0o730 } else { 0o700 };
        let mut dirs = vec![
            Dir {
                path: &self.config_base_dir,
                mode: private_base,
            },
            Dir {
                path: &self.config_dir,
                mode: 0o700,
            },
            Dir {
                path: &self.autostart_dir,
                mode: 0o700,
            },
            Dir {
                path: &self.storage_config_dir,
                mode: 0o700,
            },
            Dir {
                path: &self.log_dir,
                mode: 0o700,
            },
            Dir {
                path: &self.swtpm_log_dir,
                mode: swtpm_log,
            },
            Dir {
                path: &self.state_dir,
                mode: 0o755,
            },
            Dir {
                path: &self.swtpm_state_dir,
                mode: 0o755,
            },
            Dir {
                path: &self.slirp_state_dir,
                mode: 0o755,
            },
            Dir {
                path: &self.passt_state_dir,
                mode: 0o755,
            },
            Dir {
                path: &self.dbus_state_dir,
                mode: 0o770,
            },
            Dir {
                path: &self.cache_dir,
                mode: 0o750,
            },
            Dir {
                path: &self.lib_dir,
                mode: 0o751,
            },
            Dir {
                path: &self.save_dir,
                mode: 0o751,
            },
            Dir {
                path: &self.snapshot_dir,
                mode: 0o751,
            },
            Dir {
                path: &self.checkpoint_dir,
                mode: 0o751,
            },
            Dir {
                path: &self.auto_dump_dir,
                mode: 0o751,
            },
            Dir {
                path: &self.channel_target_dir,
                mode: 0o751,
            },
            Dir {
                path: &self.nvram_dir,
                mode: 0o751,
            },
            Dir {
                path: &self.memory_backing_dir,
                mode: 0o751,
            },
            Dir {
                path: &self.swtpm_storage_dir,
                mode: 0o711,
            },
            Dir {
                path: &self.images_dir,
                mode: 0o711,
            },
        ];
        if let Mode::Embed { .. } = self.mode {
            // An embedded root is self-contained: its TLS directory too.
            dirs.insert(
                1,
                Dir {
                    path: &self.default_tls_dir,
                    mode: 0o755,
                },
            );
        }
        dirs
    }

    /// Creates every directory of the tree that is missing (missing parents
    /// with mode 0755), leaving existing ones as they are, as libvirt does.
    /// The modes are those listed by the tree (subject to the umask).
    pub fn create_tree(&self) -> Result<()> {
        for dir in self.tree() {
            mkdir_p(dir.path, dir.mode)?;
        }
        Ok(())
    }
}

/// `mkdir -p` with `mode` for the last component and 0755 for parents.
fn mkdir_p(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(Error::NotADirectory {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::CreateDir {
                path: path.to_owned(),
                source,
            })
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        mkdir_p(parent, 0o755)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        // Lost a race with another creator: fine if it is a directory.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(Error::CreateDir {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn env() -> Environment {
        Environment {
            uid: 1000,
            gid: 1000,
            home: Some(PathBuf::from("/home/u")),
            ..Environment::default()
        }
    }

    fn embed(root: &str) -> Mode {
        Mode::Embed {
            root: PathBuf::from(root),
        }
    }

    fn paths(mode: &Mode, env: &Environment) -> DriverPaths {
        match DriverPaths::new(mode, env) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn system_layout_matches_libvirt() {
        let d = paths(&Mode::System, &env());
        assert!(d.privileged);
        assert_eq!(d.qemu_conf, p("/etc/libvirt/qemu.conf"));
        assert_eq!(d.config_dir, p("/etc/libvirt/qemu"));
        assert_eq!(d.autostart_dir, p("/etc/libvirt/qemu/autostart"));
        assert_eq!(d.state_dir, p("/run/libvirt/qemu"));
        assert_eq!(d.lib_dir, p("/var/lib/libvirt/qemu"));
        assert_eq!(d.log_dir, p("/var/log/libvirt/qemu"));
        assert_eq!(d.cache_dir, p("/var/cache/libvirt/qemu"));
        assert_eq!(d.swtpm_log_dir, p("/var/log/swtpm/libvirt/qemu"));
        assert_eq!(d.swtpm_state_dir, p("/run/libvirt/qemu/swtpm"));
        assert_eq!(d.swtpm_storage_dir, p("/var/lib/libvirt/swtpm"));
        assert_eq!(d.nvram_dir, p("/var/lib/libvirt/qemu/nvram"));
        assert_eq!(
            d.channel_target_dir,
            p("/var/lib/libvirt/qemu/channel/target")
        );
        assert_eq!(d.memory_backing_dir, p("/var/lib/libvirt/qemu/ram"));
        assert_eq!(d.auto_dump_dir, p("/var/lib/libvirt/qemu/dump"));
        assert_eq!(d.save_dir, p("/var/lib/libvirt/qemu/save"));
        assert_eq!(d.dbus_state_dir, p("/run/libvirt/qemu/dbus"));
        assert_eq!(d.default_tls_dir, p("/etc/pki/qemu"));
        assert_eq!(d.daemon_socket, Some(p("/run/libvirt/virtqemud-sock")));
    }

    #[test]
    fn session_layout_with_xdg_defaults() {
        let d = paths(&Mode::Session, &env());
        assert!(!d.privileged);
        assert_eq!(d.qemu_conf, p("/home/u/.config/libvirt/qemu.conf"));
        assert_eq!(d.config_dir, p("/home/u/.config/libvirt/qemu"));
        assert_eq!(d.log_dir, p("/home/u/.cache/libvirt/qemu/log"));
        assert_eq!(d.swtpm_log_dir, p("/home/u/.cache/libvirt/qemu/log"));
        assert_eq!(d.cache_dir, p("/home/u/.cache/libvirt/qemu/cache"));
        // No XDG_RUNTIME_DIR: GLib falls back to the cache directory.
        assert_eq!(d.state_dir, p("/home/u/.cache/libvirt/qemu/run"));
        assert_eq!(
            d.swtpm_state_dir,
            p("/home/u/.cache/libvirt/qemu/run/swtpm")
        );
        assert_eq!(d.lib_dir, p("/home/u/.config/libvirt/qemu/lib"));
        assert_eq!(d.save_dir, p("/home/u/.config/libvirt/qemu/save"));
        assert_eq!(d.nvram_dir, p("/home/u/.config/libvirt/qemu/nvram"));
        assert_eq!(d.swtpm_storage_dir, p("/home/u/.config/libvirt/qemu/swtpm"));
        assert_eq!(d.images_dir, p("/home/u/.local/share/libvirt/images"));
        assert_eq!(
            d.daemon_socket,
            Some(p("/home/u/.cache/libvirt/virtqemud-sock"))
        );
    }

    #[test]
    fn session_layout_follows_xdg_variables() {
        let e = Environment {
            xdg_config_home: Some(p("/cfg")),
            xdg_cache_home: Some(p("/cache")),
            xdg_runtime_dir: Some(p("/run/user/1000")),
            xdg_data_home: Some(p("/data")),
            ..env()
        };
        let d = paths(&Mode::Session, &e);
        assert_eq!(d.qemu_conf, p("/cfg/libvirt/qemu.conf"));
        assert_eq!(d.log_dir, p("/cache/libvirt/qemu/log"));
        assert_eq!(d.state_dir, p("/run/user/1000/libvirt/qemu/run"));
        assert_eq!(d.images_dir, p("/data/libvirt/images"));
        assert_eq!(
            d.daemon_socket,
            Some(p("/run/user/1000/libvirt/virtqemud-sock"))
        );
    }

    #[test]
    fn session_without_home_is_an_error() {
        let e = Environment {
            home: None,
            ..env()
        };
        assert!(matches!(
            DriverPaths::new(&Mode::Session, &e),
            Err(Error::Environment(_))
        ));
    }

    #[test]
    fn embedded_layout_matches_libvirt_and_qvisor_files() {
        let d = paths(&embed("/srv/vm"), &env());
        assert!(!d.privileged);
        assert_eq!(d.log_dir, p("/srv/vm/log/qemu"));
        assert_eq!(d.swtpm_log_dir, p("/srv/vm/log/swtpm"));
        assert_eq!(d.config_dir, p("/srv/vm/etc/qemu"));
        assert_eq!(d.default_tls_dir, p("/srv/vm/etc/pki/qemu"));
        assert_eq!(d.state_dir, p("/srv/vm/run/qemu"));
        assert_eq!(d.swtpm_state_dir, p("/srv/vm/run/swtpm"));
        assert_eq!(d.cache_dir, p("/srv/vm/cache/qemu"));
        assert_eq!(d.lib_dir, p("/srv/vm/lib/qemu"));
        assert_eq!(d.swtpm_storage_dir, p("/srv/vm/lib/swtpm"));
        assert_eq!(d.qemu_conf, p("/srv/vm/etc/qemu.conf"));
        assert_eq!(d.plugins_conf, p("/srv/vm/etc/plugins.ron"));
        assert_eq!(d.storage_config_dir, p("/srv/vm/etc/storage"));
        assert_eq!(d.images_dir, p("/srv/vm/lib/images"));
        assert_eq!(d.daemon_socket, None);
        let root = Environment { uid: 0, ..env() };
        assert!(paths(&embed("/srv/vm"), &root).privileged);
    }

    #[test]
    fn relative_embedded_root_is_refused() {
        let e = DriverPaths::new(&embed("vm"), &env())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("unsupported configuration: root path must be absolute: 'vm'")
        );
    }

    #[test]
    fn domain_files_use_libvirt_short_name() {
        let d = paths(&embed("/r"), &env());
        assert_eq!(DriverPaths::short_name(3, "guest"), "3-guest");
        assert_eq!(
            DriverPaths::short_name(12, "a-very-long-domain-name-indeed"),
            "12-a-very-long-domain-n"
        );
        assert_eq!(
            DriverPaths::short_name(1, "ééééééééééééééééééééé"),
            format!("1-{}", "é".repeat(20))
        );
        assert_eq!(
            d.domain_private_dir(3, "guest"),
            p("/r/lib/qemu/domain-3-guest")
        );
        assert_eq!(
            d.monitor_socket(3, "guest"),
            p("/r/lib/qemu/domain-3-guest/monitor.sock")
        );
        assert_eq!(
            d.domain_channel_dir(3, "guest"),
            p("/r/lib/qemu/channel/target/domain-3-guest")
        );
        assert_eq!(d.domain_config("guest"), p("/r/etc/qemu/guest.xml"));
        assert_eq!(d.domain_status("guest"), p("/r/run/qemu/guest.xml"));
        assert_eq!(d.domain_log("guest"), p("/r/log/qemu/guest.log"));
        assert_eq!(
            d.domain_autostart_link("guest"),
            p("/r/etc/qemu/autostart/guest.xml")
        );
        assert_eq!(d.supervisor_socket(), p("/r/run/qemu/supervisor.sock"));
    }

    #[test]
    fn worst_case_socket_is_the_monitor_of_a_long_named_domain() {
        let d = paths(&embed("/r"), &env());
        let (path, len) = d.worst_case_socket_path();
        assert_eq!(
            path,
            p("/r/lib/qemu/domain-99999-xxxxxxxxxxxxxxxxxxxx/monitor.sock")
        );
        assert_eq!(len, 2 + 56);
    }

    #[test]
    fn embedded_root_of_51_bytes_fits_and_52_is_refused() {
        let fits = format!("/{}", "a".repeat(50));
        assert!(DriverPaths::new(&embed(&fits), &env()).is_ok());
        let too_long = format!("/{}", "a".repeat(51));
        let msg = DriverPaths::new(&embed(&too_long), &env())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            msg,
            Some(format!(
                "unsupported configuration: UNIX socket path '{too_long}/lib/qemu/domain-99999-xxxxxxxxxxxxxxxxxxxx/monitor.sock' is 108 bytes, longer than the limit of 107 bytes (sun_path holds 108 bytes including the terminating NUL); choose an embedded root of at most 51 bytes"
            ))
        );
    }

    #[test]
    fn default_state_dir_root_fits_for_ordinary_user_names() {
        let e = Environment {
            home: Some(p("/home/nineteen-chars-user")),
            ..env()
        };
        let root = crate::uri::default_embed_root(&e).ok();
        let root = root.unwrap_or_default();
        assert!(DriverPaths::new(&Mode::Embed { root }, &e).is_ok());
    }

    #[test]
    fn system_and_session_pass_the_socket_check() {
        assert!(paths(&Mode::System, &env()).check_socket_paths().is_ok());
        assert!(paths(&Mode::Session, &env()).check_socket_paths().is_ok());
    }

    #[test]
    fn domain_check_catches_multibyte_names_and_xml_sockets() {
        let d = paths(&embed(&format!("/{}", "a".repeat(40))), &env());
        assert!(d.check_domain_sockets(1, "short", &[]).is_ok());
        let wide = "語".repeat(20);
        let msg = d
            .check_domain_sockets(7, &wide, &[])
            .err()
            .map(|e| e.to_string());
        assert!(
            msg.as_deref()
                .is_some_and(|m| m.contains("shorten the name of domain")),
            "{msg:?}"
        );
        let agent = d
            .domain_channel_dir(1, "short")
            .join("org.qemu.guest_agent.0.with.a.long.suffix");
        assert!(d.check_domain_sockets(1, "short", &[agent]).is_err());
    }

    #[test]
    fn conf_moves_dump_memory_and_tls_dirs() {
        let mut d = paths(&Mode::System, &env());
        let conf = QemuConf::from_str(
            "qemu.conf",
            "auto_dump_path = \"/dumps\"\nmemory_backing_dir = \"/dev/shm\"\ndefault_tls_x509_cert_dir = \"/pki\"\n",
            &Mode::System,
            true,
        );
        let conf = match conf {
            Ok(l) => l.conf,
            Err(e) => panic!("{e}"),
        };
        d.apply_conf(&conf);
        assert_eq!(d.auto_dump_dir, p("/dumps"));
        assert_eq!(d.memory_backing_dir, p("/dev/shm/libvirt/qemu"));
        assert_eq!(d.default_tls_dir, p("/pki"));
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("qvc-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn create_tree_makes_the_embedded_layout_with_modes() {
        let tmp = TempDir::new("tree");
        let root = tmp.0.join("root");
        let d = paths(&Mode::Embed { root: root.clone() }, &env());
        assert!(d.create_tree().is_ok());
        for rel in [
            "log/qemu",
            "log/swtpm",
            "etc/qemu",
            "etc/pki/qemu",
            "run/qemu",
            "run/swtpm",
            "cache/qemu",
            "lib/qemu",
            "lib/swtpm",
            "etc/storage",
            "lib/images",
            "etc/qemu/autostart",
            "lib/qemu/channel/target",
            "lib/qemu/nvram",
        ] {
            assert!(root.join(rel).is_dir(), "{rel} missing");
        }
        // umask only removes bits, so check that nothing extra is granted.
        assert_eq!(mode_of(&root.join("etc/qemu")) & !0o700, 0);
        assert_eq!(mode_of(&root.join("log/qemu")) & !0o700, 0);
        assert_eq!(mode_of(&root.join("lib/qemu")) & !0o751, 0);
        assert_eq!(mode_of(&root.join("cache/qemu")) & !0o750, 0);
        // A second run leaves everything in place.
        assert!(d.create_tree().is_ok());
    }

    #[test]
    fn create_tree_refuses_a_file_in_the_way() {
        let tmp = TempDir::new("file");
        let root = tmp.0.join("root");
        let _ = std::fs::create_dir_all(root.join("log"));
        let _ = std::fs::write(root.join("log/qemu"), "");
        let d = paths(&Mode::Embed { root: root.clone() }, &env());
        let msg = d.create_tree().err().map(|e| e.to_string());
        assert_eq!(
            msg,
            Some(format!(
                "cannot create directory '{}': a non-directory is in the way",
                root.join("log/qemu").display()
            ))
        );
    }
}
