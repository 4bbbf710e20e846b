//! Storage pool and volume commands, with virsh's names, options and output.
//!
//! These run in process: the CLI loads the connection's storage plugin
//! through the plugin loader (the same ABI checks as the supervisor) and
//! sends it `Request::Storage`. Pools live in files under the connection's
//! tree, so no daemon is needed and the running driver sees the same state.
//! That keeps a command to one process start plus a dlopen (`vol-list` of
//! 1,000 volumes reads one directory and no image header), and lets
//! `vol-upload`/`vol-download` copy through a descriptor the plugin opens
//! instead of an RPC stream.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abi_stable::std_types::{RBox, RStr};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use qvisor_sdk::{
    Access, PluginBox, PluginKind, PoolInfo, Reply, Request, Request_NE, StorageContext, StorageOp,
    StorageReply, StorageRequest, VolumeInfo, VolumeRef,
};

use crate::connection::resolve;
use crate::driver::storage::storage_context;
use crate::plugins::{host::host_for, load_plugin, load_specs, plugin_dir, PluginSpec};

use super::Globals;

/// A pool name (or UUID).
#[derive(Debug, Args)]
pub struct PoolArg {
    /// Pool name or UUID.
    pub pool: String,
}

/// `pool-define-as` options (virsh's positional order).
#[derive(Debug, Args)]
pub struct PoolDefineAsArgs {
    /// Name of the pool.
    pub name: String,
    /// Type of the pool (`dir`, `fs`, ...).
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Source host (network pools).
    #[arg(long = "source-host")]
    pub source_host: Option<String>,
    /// Source path (network pools).
    #[arg(long = "source-path")]
    pub source_path: Option<String>,
    /// Source device (`fs` pools).
    #[arg(long = "source-dev")]
    pub source_dev: Option<String>,
    /// Source name.
    #[arg(long = "source-name")]
    pub source_name: Option<String>,
    /// Target directory.
    #[arg(long)]
    pub target: Option<String>,
    /// Source format (`fs`: ext4, xfs, auto...).
    #[arg(long = "source-format")]
    pub source_format: Option<String>,
    /// Print the XML instead of defining the pool.
    #[arg(long = "print-xml")]
    pub print_xml: bool,
}

/// `pool-start` options.
#[derive(Debug, Args)]
pub struct PoolStartArgs {
    /// Pool name or UUID.
    pub pool: String,
    /// Build the pool (create its directory) first.
    #[arg(long)]
    pub build: bool,
}

/// `pool-list` options.
#[derive(Debug, Args)]
pub struct PoolListArgs {
    /// List inactive pools too.
    #[arg(long)]
    pub all: bool,
    /// List only inactive pools.
    #[arg(long)]
    pub inactive: bool,
    /// Only pools that autostart.
    #[arg(long)]
    pub autostart: bool,
    /// Only pools that do not autostart.
    #[arg(long = "no-autostart")]
    pub no_autostart: bool,
    /// Only persistent pools.
    #[arg(long)]
    pub persistent: bool,
    /// Only transient pools.
    #[arg(long)]
    pub transient: bool,
    /// Capacity, allocation and available space.
    #[arg(long)]
    pub details: bool,
    /// Only names.
    #[arg(long)]
    pub name: bool,
    /// Only UUIDs.
    #[arg(long)]
    pub uuid: bool,
}

/// `pool-info` options.
#[derive(Debug, Args)]
pub struct PoolInfoArgs {
    /// Pool name or UUID.
    pub pool: String,
    /// Sizes in bytes.
    #[arg(long)]
    pub bytes: bool,
}

/// `pool-dumpxml` options.
#[derive(Debug, Args)]
pub struct PoolDumpXmlArgs {
    /// Pool name or UUID.
    pub pool: String,
    /// The persistent definition, not the live one.
    #[arg(long)]
    pub inactive: bool,
}

/// `pool-autostart` options.
#[derive(Debug, Args)]
pub struct PoolAutostartArgs {
    /// Pool name or UUID.
    pub pool: String,
    /// Turn autostart off.
    #[arg(long)]
    pub disable: bool,
}

/// A volume: name (with `--pool`), key or path.
#[derive(Debug, Args)]
pub struct VolArg {
    /// Volume name, key or path.
    pub vol: String,
    /// The pool the volume is in.
    #[arg(long)]
    pub pool: Option<String>,
}

/// `vol-info` options.
#[derive(Debug, Args)]
pub struct VolInfoArgs {
    /// Volume name, key or path.
    pub vol: String,
    /// The pool the volume is in.
    #[arg(long)]
    pub pool: Option<String>,
    /// Sizes in bytes.
    #[arg(long)]
    pub bytes: bool,
    /// Show the physical size instead of the allocation.
    #[arg(long)]
    pub physical: bool,
}

/// `vol-create-as` options.
#[derive(Debug, Args)]
pub struct VolCreateAsArgs {
    /// Pool name.
    pub pool: String,
    /// Name of the volume.
    pub name: String,
    /// Size of the volume, as scaled integer (default bytes): 1G, 512M, 10GiB.
    #[arg(allow_hyphen_values = true)]
    pub capacity: String,
    /// Initial allocation, as scaled integer (default bytes).
    #[arg(long)]
    pub allocation: Option<String>,
    /// File format: raw, qcow2, qcow, qed, vmdk, vdi, vpc.
    #[arg(long)]
    pub format: Option<String>,
    /// The backing volume (name in the pool, key or path).
    #[arg(long = "backing-vol")]
    pub backing_vol: Option<String>,
    /// Format of the backing volume.
    #[arg(long = "backing-vol-format")]
    pub backing_vol_format: Option<String>,
    /// Print the XML instead of creating the volume.
    #[arg(long = "print-xml")]
    pub print_xml: bool,
}

/// `vol-create` options.
#[derive(Debug, Args)]
pub struct VolCreateArgs {
    /// Pool name.
    pub pool: String,
    /// File with the volume XML.
    pub file: PathBuf,
}

/// `vol-list` options.
#[derive(Debug, Args)]
pub struct VolListArgs {
    /// Pool name or UUID.
    pub pool: String,
    /// Type, capacity and allocation too (reads each image header).
    #[arg(long)]
    pub details: bool,
}

/// `vol-clone` options.
#[derive(Debug, Args)]
pub struct VolCloneArgs {
    /// The volume to copy (name, key or path).
    pub vol: String,
    /// Name of the new volume.
    pub newname: String,
    /// The pool the volume is in.
    #[arg(long)]
    pub pool: Option<String>,
}

/// `vol-upload` / `vol-download` options.
#[derive(Debug, Args)]
pub struct VolTransferArgs {
    /// Volume name, key or path.
    pub vol: String,
    /// The local file.
    pub file: PathBuf,
    /// The pool the volume is in.
    #[arg(long)]
    pub pool: Option<String>,
    /// Volume offset to start at, in bytes.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Bytes to transfer (0: all).
    #[arg(long, default_value_t = 0)]
    pub length: u64,
    /// Show a progress bar on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

/// `vol-wipe` options.
#[derive(Debug, Args)]
pub struct VolWipeArgs {
    /// Volume name, key or path.
    pub vol: String,
    /// The pool the volume is in.
    #[arg(long)]
    pub pool: Option<String>,
    /// zero, nnsa, dod, bsi, gutmann, schneier, pfitzner7, pfitzner33, random.
    #[arg(long, default_value = "zero")]
    pub algorithm: String,
}

/// The storage commands.
#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Define an inactive persistent storage pool from an XML file.
    #[command(name = "pool-define")]
    PoolDefine {
        /// File with the pool XML.
        file: PathBuf,
    },
    /// Define a pool from a set of arguments.
    #[command(name = "pool-define-as")]
    PoolDefineAs(PoolDefineAsArgs),
    /// Build a pool (create its directory).
    #[command(name = "pool-build")]
    PoolBuild(PoolArg),
    /// Start a (previously defined) inactive pool.
    #[command(name = "pool-start")]
    PoolStart(PoolStartArgs),
    /// Stop a pool (its volumes stay).
    #[command(name = "pool-destroy")]
    PoolDestroy(PoolArg),
    /// Undefine an inactive pool.
    #[command(name = "pool-undefine")]
    PoolUndefine(PoolArg),
    /// List pools.
    #[command(name = "pool-list")]
    PoolList(PoolListArgs),
    /// Storage pool information.
    #[command(name = "pool-info")]
    PoolInfo(PoolInfoArgs),
    /// Pool information in XML.
    #[command(name = "pool-dumpxml")]
    PoolDumpxml(PoolDumpXmlArgs),
    /// Autostart a pool.
    #[command(name = "pool-autostart")]
    PoolAutostart(PoolAutostartArgs),
    /// Refresh a pool.
    #[command(name = "pool-refresh")]
    PoolRefresh(PoolArg),
    /// Create a volume from a set of arguments.
    #[command(name = "vol-create-as")]
    VolCreateAs(VolCreateAsArgs),
    /// Create a volume from an XML file.
    #[command(name = "vol-create")]
    VolCreate(VolCreateArgs),
    /// Delete a volume.
    #[command(name = "vol-delete")]
    VolDelete(VolArg),
    /// List the volumes of a pool.
    #[command(name = "vol-list")]
    VolList(VolListArgs),
    /// Storage volume information.
    #[command(name = "vol-info")]
    VolInfo(VolInfoArgs),
    /// The path of a volume.
    #[command(name = "vol-path")]
    VolPath(VolArg),
    /// Volume information in XML.
    #[command(name = "vol-dumpxml")]
    VolDumpxml(VolArg),
    /// Clone a volume.
    #[command(name = "vol-clone")]
    VolClone(VolCloneArgs),
    /// Upload file contents into a volume (bytes written as they are).
    #[command(name = "vol-upload")]
    VolUpload(VolTransferArgs),
    /// Download a volume's contents to a file.
    #[command(name = "vol-download")]
    VolDownload(VolTransferArgs),
    /// Wipe a volume's contents.
    #[command(name = "vol-wipe")]
    VolWipe(VolWipeArgs),
}

/// The connection's storage plugin, loaded in this process.
pub struct StorageClient {
    plugin: PluginBox,
    context: StorageContext,
}

/// The storage plugin of a plugin set: libraries whose file name says
/// `storage` are tried first (no other plugin needs loading then), then the
/// rest; the first that describes itself as a storage plugin wins.
fn load_storage_plugin(mut specs: Vec<PluginSpec>) -> anyhow::Result<PluginBox> {
    specs.sort_by_key(|s| {
        !s.path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("storage"))
    });
    let mut reasons = Vec::new();
    for spec in specs {
        let loaded = match load_plugin(&spec.path) {
            Ok(l) => l,
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        let name: Arc<str> = spec.path.display().to_string().into();
        let host = host_for(name, None);
        let Ok(plugin) =
            (loaded.module.new())(host, RStr::from(spec.settings.as_str())).into_result()
        else {
            continue;
        };
        let described = plugin
            .call(Request_NE::new(Request::Describe))
            .into_result();
        let is_storage = described
            .ok()
            .and_then(|r| r.into_enum().ok())
            .is_some_and(|r| matches!(r, Reply::Description(d) if d.kind == PluginKind::Storage));
        if is_storage {
            return Ok(plugin);
        }
    }
    let mut msg =
        "no storage plugin in this connection's plugin set (libqvisor_storage.so)".to_string();
    if !reasons.is_empty() {
        msg.push_str(": ");
        msg.push_str(&reasons.join("; "));
    }
    bail!(msg)
}

impl StorageClient {
    /// Loads the storage plugin of the connection `cli` names.
    pub fn open(cli: &Globals) -> anyhow::Result<StorageClient> {
        let target = resolve(cli.connect.as_deref())?;
        let specs = load_specs(&target.paths.plugins_conf, &plugin_dir())?;
        Ok(StorageClient {
            plugin: load_storage_plugin(specs)?,
            context: storage_context(&target.paths),
        })
    }

    /// Sends one operation; the plugin's error message becomes the error.
    pub fn call(&self, op: StorageOp) -> anyhow::Result<StorageReply> {
        let request = StorageRequest::new(self.context.clone(), op);
        let reply = self
            .plugin
            .call(Request_NE::new(Request::Storage(RBox::new(request))))
            .into_result()
            .map_err(|e| anyhow!("{}", e.message()))?;
        match reply.into_enum() {
            Ok(Reply::Storage(r)) => r.as_enum().cloned().map_err(|_| {
                anyhow!("the storage plugin answered with a reply this qvisor does not know")
            }),
            _ => bail!("the storage plugin answered a storage request with another reply"),
        }
    }

    fn done(&self, op: StorageOp) -> anyhow::Result<()> {
        self.call(op).map(|_| ())
    }

    fn pool(&self, name: &str) -> anyhow::Result<PoolInfo> {
        match self.call(StorageOp::LookupPool(name.into()))? {
            StorageReply::Pool(p) => Ok(p),
            other => bail!("unexpected reply {other:?}"),
        }
    }

    fn pools(&self) -> anyhow::Result<Vec<PoolInfo>> {
        match self.call(StorageOp::ListPools)? {
            StorageReply::Pools(p) => Ok(p.into_iter().collect()),
            other => bail!("unexpected reply {other:?}"),
        }
    }

    fn xml(&self, op: StorageOp) -> anyhow::Result<String> {
        match self.call(op)? {
            StorageReply::Xml(x) => Ok(x.into()),
            other => bail!("unexpected reply {other:?}"),
        }
    }

    fn volume(&self, r: VolumeRef) -> anyhow::Result<VolumeInfo> {
        match self.call(StorageOp::LookupVolume(r))? {
            StorageReply::Volume(v) => Ok(v),
            other => bail!("unexpected reply {other:?}"),
        }
    }

    fn volumes(&self, pool: &str, details: bool) -> anyhow::Result<Vec<VolumeInfo>> {
        let op = StorageOp::ListVolumes {
            pool: pool.into(),
            details,
        };
        match self.call(op)? {
            StorageReply::Volumes(v) => Ok(v.into_iter().collect()),
            other => bail!("unexpected reply {other:?}"),
        }
    }

    fn open_volume(&self, r: VolumeRef, access: Access, offset: u64) -> anyhow::Result<File> {
        let op = StorageOp::OpenVolume {
            volume: r,
            access,
            offset,
        };
        match self.call(op)? {
            // SAFETY: the plugin opened this descriptor for us and handed
            // over its ownership (StorageReply::Fd's contract).
            StorageReply::Fd(fd) if fd >= 0 => Ok(unsafe { File::from_raw_fd(fd) }),
            other => bail!("unexpected reply {other:?}"),
        }
    }
}

/// A volume named on the command line: by name with `--pool`, else by key
/// or path.
fn vol_ref(vol: &str, pool: Option<&str>) -> VolumeRef {
    match pool {
        Some(p) => VolumeRef::in_pool(p, vol),
        None => VolumeRef::by_key_or_path(vol),
    }
}

/// virsh's "failed to get vol" wording.
fn vol_context(vol: &str, pool: Option<&str>) -> String {
    match pool {
        Some(_) => format!("failed to get vol '{vol}'"),
        None => format!("failed to get vol '{vol}', specifying --pool might help"),
    }
}

/// virsh's `vshPrettyCapacity`.
pub fn pretty_capacity(val: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = val as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{:.2} B", val as f64)
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// virsh's table layout (as `list`): a leading space, columns separated by
/// three spaces, a dashed rule, a blank line at the end.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from(" ");
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    ));
    out.push('\n');
    let total: usize = widths.iter().sum::<usize>() + 3 * (widths.len().saturating_sub(1)) + 2;
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out.push('\n');
    // One write: a 1,000-row listing costs one system call.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("Failed to open file '{}'", path.display()))
}

fn xml_escape(s: &str) -> String {
    qvisor_domain::xml::escape(s)
}

/// Runs one storage command.
pub fn run(cli: &Globals, cmd: &StorageCommand) -> anyhow::Result<()> {
    use StorageCommand as C;
    // --print-xml needs no plugin.
    match cmd {
        C::PoolDefineAs(a) if a.print_xml => {
            print!("{}", pool_as_xml(a));
            return Ok(());
        }
        C::VolCreateAs(a) if a.print_xml && a.backing_vol.is_none() => {
            print!("{}", vol_as_xml(a, None)?);
            return Ok(());
        }
        _ => {}
    }
    let s = StorageClient::open(cli)?;
    match cmd {
        C::PoolDefine { file } => {
            let xml = read_file(file)?;
            let p = match s.call(StorageOp::DefinePool(xml.as_str().into())) {
                Ok(StorageReply::Pool(p)) => p,
                Ok(other) => bail!("unexpected reply {other:?}"),
                Err(e) => {
                    return Err(e.context(format!("Failed to define pool from {}", file.display())))
                }
            };
            println!("Pool {} defined from {}\n", p.name, file.display());
        }
        C::PoolDefineAs(a) => {
            let xml = pool_as_xml(a);
            s.call(StorageOp::DefinePool(xml.as_str().into()))
                .with_context(|| format!("Failed to define pool {}", a.name))?;
            println!("Pool {} defined\n", a.name);
        }
        C::PoolBuild(p) => {
            s.done(StorageOp::BuildPool(p.pool.as_str().into()))
                .with_context(|| format!("Failed to build pool {}", p.pool))?;
            println!("Pool {} built\n", p.pool);
        }
        C::PoolStart(a) => {
            let name = s.pool(&a.pool)?.name;
            if a.build {
                s.done(StorageOp::BuildPool(name.clone()))
                    .with_context(|| format!("Failed to build pool {name}"))?;
            }
            s.done(StorageOp::StartPool(name.clone()))
                .with_context(|| format!("Failed to start pool {name}"))?;
            println!("Pool {name} started\n");
        }
        C::PoolDestroy(p) => {
            let name = s.pool(&p.pool)?.name;
            s.done(StorageOp::DestroyPool(name.clone()))
                .with_context(|| format!("Failed to destroy pool {name}"))?;
            println!("Pool {name} destroyed\n");
        }
        C::PoolUndefine(p) => {
            let name = s.pool(&p.pool)?.name;
            s.done(StorageOp::UndefinePool(name.clone()))
                .with_context(|| format!("Failed to undefine pool {name}"))?;
            println!("Pool {name} has been undefined\n");
        }
        C::PoolRefresh(p) => {
            let name = s.pool(&p.pool)?.name;
            s.done(StorageOp::RefreshPool(name.clone()))
                .with_context(|| format!("Failed to refresh pool {name}"))?;
            println!("Pool {name} refreshed\n");
        }
        C::PoolAutostart(a) => {
            let name = s.pool(&a.pool)?.name;
            let op = StorageOp::SetPoolAutostart {
                pool: name.clone(),
                autostart: !a.disable,
            };
            if a.disable {
                s.done(op)
                    .with_context(|| format!("failed to unmark pool {name} as autostarted"))?;
                println!("Pool {name} unmarked as autostarted\n");
            } else {
                s.done(op)
                    .with_context(|| format!("failed to mark pool {name} as autostarted"))?;
                println!("Pool {name} marked as autostarted\n");
            }
        }
        C::PoolList(a) => pool_list(cli, &s, a)?,
        C::PoolInfo(a) => {
            let p = s
                .pool(&a.pool)
                .with_context(|| format!("failed to get pool '{}'", a.pool))?;
            let yn = |b: bool| if b { "yes" } else { "no" };
            println!("{:<15} {}", "Name:", p.name);
            println!("{:<15} {}", "UUID:", p.uuid);
            println!("{:<15} {}", "State:", p.state.as_str());
            println!("{:<15} {}", "Persistent:", yn(p.persistent));
            println!("{:<15} {}", "Autostart:", yn(p.autostart));
            if p.state.is_active() {
                for (label, v) in [
                    ("Capacity:", p.capacity),
                    ("Allocation:", p.allocation),
                    ("Available:", p.available),
                ] {
                    if a.bytes {
                        println!("{label:<15} {v}");
                    } else {
                        println!("{label:<15} {}", pretty_capacity(v));
                    }
                }
            }
            println!();
        }
        C::PoolDumpxml(a) => {
            let xml = s
                .xml(StorageOp::PoolXml {
                    pool: a.pool.as_str().into(),
                    inactive: a.inactive,
                })
                .with_context(|| format!("failed to get pool '{}'", a.pool))?;
            print!("{xml}");
            println!();
        }
        C::VolCreateAs(a) => {
            let backing = match &a.backing_vol {
                Some(b) => Some(
                    s.volume(VolumeRef::in_pool(&a.pool, b))
                        .or_else(|_| s.volume(VolumeRef::by_key_or_path(b)))
                        .with_context(|| format!("failed to get vol '{b}'"))?
                        .path
                        .to_string(),
                ),
                None => None,
            };
            let xml = vol_as_xml(a, backing.as_deref())?;
            if a.print_xml {
                print!("{xml}");
                return Ok(());
            }
            s.call(StorageOp::CreateVolume {
                pool: a.pool.as_str().into(),
                xml: xml.into(),
                clone_of: None.into(),
            })
            .with_context(|| format!("Failed to create vol {}", a.name))?;
            println!("Vol {} created\n", a.name);
        }
        C::VolCreate(a) => {
            let xml = read_file(&a.file)?;
            let v = match s.call(StorageOp::CreateVolume {
                pool: a.pool.as_str().into(),
                xml: xml.into(),
                clone_of: None.into(),
            }) {
                Ok(StorageReply::Volume(v)) => v,
                Ok(other) => bail!("unexpected reply {other:?}"),
                Err(e) => {
                    return Err(e.context(format!("Failed to create vol from {}", a.file.display())))
                }
            };
            println!("Vol {} created from {}\n", v.name, a.file.display());
        }
        C::VolDelete(a) => {
            let r = vol_ref(&a.vol, a.pool.as_deref());
            let v = s
                .volume(r.clone())
                .with_context(|| vol_context(&a.vol, a.pool.as_deref()))?;
            s.done(StorageOp::DeleteVolume(VolumeRef::in_pool(
                &v.pool, &v.name,
            )))
            .with_context(|| format!("Failed to delete vol {}", a.vol))?;
            println!("Vol {} deleted\n", a.vol);
        }
        C::VolList(a) => {
            let vols = s
                .volumes(&a.pool, a.details)
                .context("Failed to list volumes")?;
            if a.details {
                let rows: Vec<Vec<String>> = vols
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.to_string(),
                            v.path.to_string(),
                            v.kind.to_string(),
                            pretty_capacity(v.capacity),
                            pretty_capacity(v.allocation),
                        ]
                    })
                    .collect();
                print_table(&["Name", "Path", "Type", "Capacity", "Allocation"], &rows);
            } else {
                let rows: Vec<Vec<String>> = vols
                    .iter()
                    .map(|v| vec![v.name.to_string(), v.path.to_string()])
                    .collect();
                print_table(&["Name", "Path"], &rows);
            }
        }
        C::VolInfo(a) => {
            let v = s
                .volume(vol_ref(&a.vol, a.pool.as_deref()))
                .with_context(|| vol_context(&a.vol, a.pool.as_deref()))?;
            println!("{:<15} {}", "Name:", v.name);
            println!("{:<15} {}", "Type:", v.kind);
            let (label, second) = if a.physical {
                ("Physical:", v.physical)
            } else {
                ("Allocation:", v.allocation)
            };
            if a.bytes {
                println!("{:<15} {} bytes", "Capacity:", v.capacity);
                println!("{label:<15} {second} bytes");
            } else {
                println!("{:<15} {}", "Capacity:", pretty_capacity(v.capacity));
                println!("{label:<15} {}", pretty_capacity(second));
            }
            println!();
        }
        C::VolPath(a) => {
            let v = s
                .volume(vol_ref(&a.vol, a.pool.as_deref()))
                .with_context(|| vol_context(&a.vol, a.pool.as_deref()))?;
            println!("{}\n", v.path);
        }
        C::VolDumpxml(a) => {
            let xml = s
                .xml(StorageOp::VolumeXml(vol_ref(&a.vol, a.pool.as_deref())))
                .with_context(|| vol_context(&a.vol, a.pool.as_deref()))?;
            print!("{xml}");
            println!();
        }
        C::VolClone(a) => {
            let r = vol_ref(&a.vol, a.pool.as_deref());
            let v = s
                .volume(r.clone())
                .with_context(|| vol_context(&a.vol, a.pool.as_deref()))?;
            let xml = s.xml(StorageOp::VolumeXml(r.clone()))?;
            let new_xml = clone_xml(&xml, &a.newname)?;
            s.call(StorageOp::CreateVolume {
                pool: v.pool.clone(),
                xml: new_xml.into(),
                clone_of: Some(r).into(),
            })
            .with_context(|| format!("Failed to clone vol from {}", a.vol))?;
            println!("Vol {} cloned from {}\n", a.newname, v.name);
        }
        C::VolUpload(a) => upload(&s, a)?,
        C::VolDownload(a) => download(&s, a)?,
        C::VolWipe(a) => {
            const ALGORITHMS: &[&str] = &[
                "zero",
                "nnsa",
                "dod",
                "bsi",
                "gutmann",
                "schneier",
                "pfitzner7",
                "pfitzner33",
                "random",
                "trim",
            ];
            if !ALGORITHMS.contains(&a.algorithm.as_str()) {
                bail!("Unsupported algorithm '{}'", a.algorithm);
            }
            let v = s
                .volume(vol_ref(&a.vol, a.pool.as_deref()))
                .with_context(|| vol_context(&a.vol, a.pool.as_deref()))?;
            s.done(StorageOp::WipeVolume {
                volume: VolumeRef::in_pool(&v.pool, &v.name),
                algorithm: a.algorithm.as_str().into(),
            })
            .with_context(|| format!("Failed to wipe vol {}", a.vol))?;
            println!("Vol {} wiped\n", a.vol);
        }
    }
    Ok(())
}

fn pool_list(cli: &Globals, s: &StorageClient, a: &PoolListArgs) -> anyhow::Result<()> {
    let pools: Vec<PoolInfo> = s
        .pools()
        .context("Failed to list pools")?
        .into_iter()
        .filter(|p| {
            let active = p.state.is_active();
            let state_ok = if a.inactive { !active } else { a.all || active };
            state_ok
                && (!a.autostart || p.autostart)
                && (!a.no_autostart || !p.autostart)
                && (!a.persistent || p.persistent)
                && (!a.transient || !p.persistent)
        })
        .collect();
    if cli.json {
        let v: Vec<_> = pools
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name.as_str(), "uuid": p.uuid.as_str(), "type": p.kind.as_str(),
                    "state": p.state.as_str(), "autostart": p.autostart,
                    "persistent": p.persistent, "path": p.path.as_str(),
                    "capacity": p.capacity, "allocation": p.allocation, "available": p.available,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if !a.details && (a.name || a.uuid) {
        for p in &pools {
            match (a.uuid, a.name) {
                (true, true) => println!("{:<36} {:<20}", p.uuid, p.name),
                (true, false) => println!("{}", p.uuid),
                _ => println!("{:<20}", p.name),
            }
        }
        println!();
        return Ok(());
    }
    let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
    if a.details {
        let rows: Vec<Vec<String>> = pools
            .iter()
            .map(|p| {
                let sizes = |v: u64| {
                    if p.state.is_active() {
                        pretty_capacity(v)
                    } else {
                        "-".into()
                    }
                };
                vec![
                    p.name.to_string(),
                    p.state.as_str().to_string(),
                    yn(p.autostart),
                    yn(p.persistent),
                    sizes(p.capacity),
                    sizes(p.allocation),
                    sizes(p.available),
                ]
            })
            .collect();
        print_table(
            &[
                "Name",
                "State",
                "Autostart",
                "Persistent",
                "Capacity",
                "Allocation",
                "Available",
            ],
            &rows,
        );
    } else {
        let rows: Vec<Vec<String>> = pools
            .iter()
            .map(|p| {
                let state = if p.state.is_active() {
                    "active"
                } else {
                    "inactive"
                };
                vec![p.name.to_string(), state.to_string(), yn(p.autostart)]
            })
            .collect();
        print_table(&["Name", "State", "Autostart"], &rows);
    }
    Ok(())
}

/// virsh's `pool-define-as` XML.
fn pool_as_xml(a: &PoolDefineAsArgs) -> String {
    let mut x = format!(
        "<pool type='{}'>\n  <name>{}</name>\n",
        xml_escape(&a.kind),
        xml_escape(&a.name)
    );
    let has_source = a.source_host.is_some()
        || a.source_path.is_some()
        || a.source_dev.is_some()
        || a.source_format.is_some()
        || a.source_name.is_some();
    if has_source {
        x.push_str("  <source>\n");
        if let Some(h) = &a.source_host {
            x.push_str(&format!("    <host name='{}'/>\n", xml_escape(h)));
        }
        if let Some(p) = &a.source_path {
            x.push_str(&format!("    <dir path='{}'/>\n", xml_escape(p)));
        }
        if let Some(d) = &a.source_dev {
            x.push_str(&format!("    <device path='{}'/>\n", xml_escape(d)));
        }
        if let Some(f) = &a.source_format {
            x.push_str(&format!("    <format type='{}'/>\n", xml_escape(f)));
        }
        if let Some(n) = &a.source_name {
            x.push_str(&format!("    <name>{}</name>\n", xml_escape(n)));
        }
        x.push_str("  </source>\n");
    }
    if let Some(t) = &a.target {
        x.push_str(&format!(
            "  <target>\n    <path>{}</path>\n  </target>\n",
            xml_escape(t)
        ));
    }
    x.push_str("</pool>\n");
    x
}

/// Parses a size as virsh does (`virshVolSize`): digits and an optional
/// scale suffix; anything else is "Malformed size".
fn vol_size(text: &str) -> anyhow::Result<u64> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let value: u64 = digits
        .parse()
        .map_err(|_| anyhow!("Malformed size {text}"))?;
    let lower = suffix.to_ascii_lowercase();
    let factor: u64 = if suffix.is_empty() || matches!(lower.as_str(), "b" | "byte" | "bytes") {
        1
    } else {
        let (power, rest) = lower.split_at(1);
        let base: u64 = match rest {
            "" | "ib" => 1024,
            "b" => 1000,
            _ => bail!("Malformed size {text}"),
        };
        let exp = match power {
            "k" => 1,
            "m" => 2,
            "g" => 3,
            "t" => 4,
            "p" => 5,
            "e" => 6,
            _ => bail!("Malformed size {text}"),
        };
        base.pow(exp)
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| anyhow!("Malformed size {text}"))
}

/// virsh's `vol-create-as` XML.
fn vol_as_xml(a: &VolCreateAsArgs, backing_path: Option<&str>) -> anyhow::Result<String> {
    let capacity = vol_size(&a.capacity)?;
    let mut x = format!(
        "<volume>\n  <name>{}</name>\n  <capacity>{capacity}</capacity>\n",
        xml_escape(&a.name)
    );
    if let Some(al) = &a.allocation {
        x.push_str(&format!("  <allocation>{}</allocation>\n", vol_size(al)?));
    }
    if let Some(f) = &a.format {
        x.push_str(&format!(
            "  <target>\n    <format type='{}'/>\n  </target>\n",
            xml_escape(f)
        ));
    }
    if let Some(p) = backing_path {
        x.push_str(&format!(
            "  <backingStore>\n    <path>{}</path>\n",
            xml_escape(p)
        ));
        if let Some(f) = &a.backing_vol_format {
            x.push_str(&format!("    <format type='{}'/>\n", xml_escape(f)));
        }
        x.push_str("  </backingStore>\n");
    }
    x.push_str("</volume>\n");
    Ok(x)
}

/// virsh's `vol-clone` XML: the original's XML with the new name.
fn clone_xml(original: &str, new_name: &str) -> anyhow::Result<String> {
    let mut doc = qvisor_domain::xml::parse_document(original)
        .map_err(|e| anyhow!("cannot read the volume XML: {e}"))?;
    match doc.children.iter_mut().find(|c| c.is("name")) {
        Some(n) => n.text = Some(new_name.to_string()),
        None => bail!("the volume XML has no <name>"),
    }
    Ok(doc.to_xml_string())
}

/// A progress bar on stderr for large transfers.
struct Progress {
    total: u64,
    done: u64,
    start: Instant,
    last: Instant,
    enabled: bool,
}

/// Transfers at least this large show a bar on a terminal.
const PROGRESS_MIN: u64 = 8 << 20;

impl Progress {
    fn new(total: u64, forced: bool) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            done: 0,
            start: now,
            last: now - Duration::from_secs(1),
            enabled: forced || (total >= PROGRESS_MIN && std::io::stderr().is_terminal()),
        }
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.enabled && self.last.elapsed() >= Duration::from_millis(200) {
            self.draw();
            self.last = Instant::now();
        }
    }

    fn draw(&self) {
        const WIDTH: u64 = 30;
        let frac = if self.total == 0 {
            1.0
        } else {
            (self.done as f64 / self.total as f64).min(1.0)
        };
        let filled = (frac * WIDTH as f64) as u64;
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = pretty_capacity((self.done as f64 / secs) as u64);
        eprint!(
            "\r[{}{}] {:>3}% {} / {} {rate}/s",
            "#".repeat(filled as usize),
            ".".repeat((WIDTH - filled) as usize),
            (frac * 100.0) as u32,
            pretty_capacity(self.done),
            pretty_capacity(self.total),
        );
    }

    fn finish(&self) {
        if self.enabled {
            self.draw();
            eprintln!();
        }
    }
}

/// Copies up to `limit` bytes (0: to EOF), reporting progress.
fn copy(
    from: &mut File,
    to: &mut File,
    limit: u64,
    progress: &mut Progress,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let want = if limit == 0 {
            buf.len()
        } else {
            (limit - copied).min(buf.len() as u64) as usize
        };
        if want == 0 {
            break;
        }
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        copied += n as u64;
        progress.advance(n as u64);
    }
    Ok(copied)
}

/// `vol-upload`: the file's bytes are written into the volume as they are,
/// from `--offset`, without truncating it.
fn upload(s: &StorageClient, a: &VolTransferArgs) -> anyhow::Result<()> {
    let mut input =
        File::open(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let size = input
        .metadata()
        .with_context(|| format!("unable to stat {}", a.file.display()))?
        .len();
    let v = s
        .volume(vol_ref(&a.vol, a.pool.as_deref()))
        .with_context(|| vol_context(&a.vol, a.pool.as_deref()))?;
    let mut out = s
        .open_volume(
            VolumeRef::in_pool(&v.pool, &v.name),
            Access::ReadWrite,
            a.offset,
        )
        .with_context(|| format!("cannot upload to volume {}", a.vol))?;
    let total = if a.length > 0 {
        a.length.min(size)
    } else {
        size
    };
    let mut progress = Progress::new(total, a.progress);
    copy(&mut input, &mut out, a.length, &mut progress)
        .with_context(|| format!("cannot send data to volume {}", a.vol))?;
    out.sync_data()
        .with_context(|| format!("cannot close volume {}", a.vol))?;
    progress.finish();
    Ok(())
}

/// `vol-download`: the volume's bytes from `--offset` into a new file.
fn download(s: &StorageClient, a: &VolTransferArgs) -> anyhow::Result<()> {
    let v = s
        .volume(vol_ref(&a.vol, a.pool.as_deref()))
        .with_context(|| vol_context(&a.vol, a.pool.as_deref()))?;
    let mut input = s
        .open_volume(
            VolumeRef::in_pool(&v.pool, &v.name),
            Access::ReadOnly,
            a.offset,
        )
        .with_context(|| format!("cannot download from volume {}", a.vol))?;
    let size = input.metadata().map(|m| m.len()).unwrap_or(v.physical);
    let avail = size.saturating_sub(a.offset);
    let total = if a.length > 0 {
        a.length.min(avail)
    } else {
        avail
    };
    let mut out =
        File::create(&a.file).with_context(|| format!("cannot create {}", a.file.display()))?;
    let mut progress = Progress::new(total, a.progress);
    copy(&mut input, &mut out, a.length, &mut progress)
        .with_context(|| format!("cannot receive data from volume {}", a.vol))?;
    out.sync_all()
        .with_context(|| format!("cannot close file {}", a.file.display()))?;
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_capacity_matches_virsh() {
        assert_eq!(pretty_capacity(0), "0.00 B");
        assert_eq!(pretty_capacity(1023), "1023.00 B");
        assert_eq!(pretty_capacity(1024), "1.00 KiB");
        assert_eq!(pretty_capacity(1 << 30), "1.00 GiB");
        assert_eq!(pretty_capacity(1536 << 20), "1.50 GiB");
    }

    #[test]
    fn vol_size_scales_and_rejects_like_virsh() {
        assert_eq!(vol_size("1G").unwrap(), 1 << 30);
        assert_eq!(vol_size("10MB").unwrap(), 10_000_000);
        assert_eq!(vol_size("4096").unwrap(), 4096);
        for bad in ["", "1.5G", "abc", "10X", "-1"] {
            let err = vol_size(bad).unwrap_err().to_string();
            assert_eq!(err, format!("Malformed size {bad}"));
        }
    }

    #[test]
    fn clone_xml_changes_only_the_name() {
        let x = clone_xml(
            "<volume type='file'><name>a</name><capacity unit='bytes'>1</capacity></volume>",
            "b",
        )
        .unwrap();
        assert!(x.contains("<name>b</name>"), "{x}");
        assert!(x.contains("<capacity unit='bytes'>1</capacity>"), "{x}");
    }

    #[test]
    fn pool_define_as_builds_virsh_xml() {
        let a = PoolDefineAsArgs {
            name: "p".into(),
            kind: "dir".into(),
            source_host: None,
            source_path: None,
            source_dev: None,
            source_name: None,
            target: Some("/srv/p".into()),
            source_format: None,
            print_xml: true,
        };
        assert_eq!(
            pool_as_xml(&a),
            "<pool type='dir'>\n  <name>p</name>\n  <target>\n    <path>/srv/p</path>\n  </target>\n</pool>\n"
        );
    }
}
