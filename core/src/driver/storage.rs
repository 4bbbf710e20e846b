//! The storage step of the per-domain pipeline, and where a connection keeps
//! its storage.
//!
//! At start the storage plugin's `Prepare` resolves every `<disk
//! type='volume'>` to its file, block device or directory and reads the
//! backing chain of every local disk whose format can have one. The result
//! goes three ways: the command-line builder's volume map
//! ([`PreparedStorage::volumes`], read by `RealHost::resolve_volume`); the
//! live XML (the volume's path as the `<source>`'s `file`/`dev`/`dir`
//! attribute, the detected `<driver type>` when the XML named none, and the
//! chain as nested `<backingStore>` elements, which the builder turns into
//! the blockdev graph); and the security plugins' context
//! ([`PreparedStorage::context_for`]: every image of every chain as a
//! resource).

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use abi_stable::std_types::RBox;
use qvisor_cmdline::env::ResolvedVolume;
use qvisor_conf::{DriverPaths, Mode};
use qvisor_domain::xml::Element;
use qvisor_domain::{DiskDriver, DiskType, Domain};
use qvisor_sdk::{
    DomainContext, PluginKind, PoolInfo, Reply, Request, ResolvedSource, Resource, Setting,
    StorageContext, StorageOp, StorageReply, StorageRequest, VolumeInfo, VolumeRef,
};

use super::error::{DriverError, Result};
use super::{Driver, Inner};
use crate::plugins::CallError;

/// The directory holding which pools are active: system
/// `/run/libvirt/storage`, session `$XDG_RUNTIME_DIR/libvirt/storage/run`,
/// embedded `ROOT/run/storage` (libvirt's storage driver state directories).
pub fn storage_state_dir(paths: &DriverPaths) -> PathBuf {
    let up = |p: &Path, n: usize| {
        let mut p = p.to_path_buf();
        for _ in 0..n {
            p.pop();
        }
        p
    };
    match paths.mode {
        Mode::Session => up(&paths.state_dir, 2).join("storage/run"),
        Mode::System | Mode::Embed { .. } => up(&paths.state_dir, 1).join("storage"),
    }
}

/// The storage directories of a connection, as the storage plugin takes them.
pub fn storage_context(paths: &DriverPaths) -> StorageContext {
    StorageContext {
        config_dir: paths.storage_config_dir.display().to_string().into(),
        state_dir: storage_state_dir(paths).display().to_string().into(),
        images_dir: paths.images_dir.display().to_string().into(),
    }
}

/// What the storage step produced.
#[derive(Debug, Default)]
pub(crate) struct PreparedStorage {
    /// (pool, volume) → where the volume is, for the command-line builder.
    pub volumes: BTreeMap<(String, String), ResolvedVolume>,
    /// Every image of every resolved disk (top first, then its chain).
    pub resources: Vec<Resource>,
}

impl PreparedStorage {
    /// `ctx` with the resolved images added to its resources.
    pub fn context_for(&self, mut ctx: DomainContext) -> DomainContext {
        ctx.resources.extend(self.resources.iter().cloned());
        ctx
    }
}

/// Formats whose backing chain the storage plugin reads from the headers
/// (the chain of any other format is left to QEMU, unspelled).
fn chain_is_read(format: &str) -> bool {
    matches!(format, "qcow2" | "qcow" | "qed")
}

/// Whether any disk needs the storage plugin: a volume disk, or a local
/// image in a format with backing files whose chain the XML does not spell.
fn needs_storage(def: &Domain) -> (bool, bool) {
    let volumes = def.devices.disks.iter().any(|d| d.kind == DiskType::Volume);
    let chains = def.devices.disks.iter().any(|d| {
        matches!(d.kind, DiskType::File | DiskType::Block)
            && d.source_path().is_some()
            && d.residue.find("backingStore").is_none()
            && d.driver
                .as_ref()
                .and_then(|x| x.format.as_deref())
                .is_some_and(chain_is_read)
    });
    (volumes, chains)
}

/// The nested `<backingStore>` elements of a chain, ending with the empty
/// terminator.
fn backing_elements(chain: &[Setting]) -> Element {
    let mut inner = Element::new("backingStore");
    for layer in chain.iter().rev() {
        let path = layer.key.as_str();
        let block = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
        let (kind, attr) = if block {
            ("block", "dev")
        } else {
            ("file", "file")
        };
        inner = Element::new("backingStore")
            .attr("type", kind)
            .child(Element::new("format").attr("type", layer.value.as_str()))
            .child(Element::new("source").attr(attr, path))
            .child(inner);
    }
    inner
}

/// Applies one resolved source to the live definition.
fn apply(
    def: &mut Domain,
    rs: &ResolvedSource,
    volumes: &mut BTreeMap<(String, String), ResolvedVolume>,
) {
    let Some(disk) = def
        .devices
        .disks
        .iter_mut()
        .find(|d| d.target.dev == rs.target.as_str())
    else {
        return;
    };
    if disk.kind == DiskType::Volume {
        if let Some(src) = disk.source.as_mut() {
            let key = (
                src.pool.clone().unwrap_or_default(),
                src.volume.clone().unwrap_or_default(),
            );
            volumes.insert(
                key,
                ResolvedVolume {
                    kind: rs.source_type.to_string(),
                    path: Some(rs.path.to_string()),
                    network: None,
                },
            );
            let attr = match rs.source_type.as_str() {
                "block" => "dev",
                "dir" => "dir",
                _ => "file",
            };
            if src.residue.get_attr(attr).is_none() {
                src.residue.push_attr(attr, rs.path.as_str());
            }
        }
    }
    let driver = disk.driver.get_or_insert_with(|| DiskDriver {
        name: Some("qemu".into()),
        ..DiskDriver::default()
    });
    if driver.format.is_none() {
        driver.format = Some(rs.format.to_string());
    }
    if chain_is_read(rs.format.as_str()) && disk.residue.find("backingStore").is_none() {
        // libvirt's order: <auth> (kept in the residue) before <backingStore>.
        let at = disk
            .residue
            .children
            .iter()
            .position(|c| !c.is("auth"))
            .unwrap_or(disk.residue.children.len());
        disk.residue
            .children
            .insert(at, backing_elements(&rs.backing_chain));
    }
}

impl Inner {
    /// The storage step: asks the storage plugin to resolve `live`'s disks
    /// (`ctx` is the context of the accelerator step) and applies the answer.
    pub(crate) fn prepare_storage(
        &self,
        live: &mut Domain,
        ctx: &DomainContext,
        pipeline: &mut Vec<(String, String)>,
    ) -> Result<PreparedStorage> {
        let (volumes, chains) = needs_storage(live);
        if !volumes && !chains {
            return Ok(PreparedStorage::default());
        }
        let plugin = self.plugin_statuses.iter().find(|s| {
            s.usable()
                && s.kind() == Some(PluginKind::Storage)
                && s.description
                    .as_ref()
                    .is_some_and(|d| d.provided("disk-source").any(|v| v == "volume"))
        });
        let Some(plugin) = plugin else {
            if volumes {
                return Err(DriverError::ConfigUnsupported(format!(
                    "domain '{}': no usable storage plugin provides disks of type 'volume' (is libqvisor_storage.so in the plugin set?)",
                    live.name
                )));
            }
            tracing::debug!(domain = %live.name, "no storage plugin: backing chains are left to QEMU");
            return Ok(PreparedStorage::default());
        };
        let name = plugin.name();
        let mut ctx = ctx.clone();
        let sc = storage_context(&self.paths);
        ctx.settings.extend([
            Setting::new("storage_config_dir", sc.config_dir),
            Setting::new("storage_state_dir", sc.state_dir),
            Setting::new("images_dir", sc.images_dir),
        ]);
        let reply = self
            .call_plugin(&name, Request::Prepare(Box::new(ctx).into()))
            .map_err(|e| match e {
                CallError::Plugin { source, .. } => {
                    DriverError::Plain(format!("domain '{}': {}", live.name, source.message()))
                }
                other => DriverError::Internal(other.to_string()),
            })?;
        let Reply::Prepared(result) = reply else {
            return Err(DriverError::Internal(format!(
                "plugin '{name}' answered prepare with {reply:?}"
            )));
        };
        let mut prepared = PreparedStorage {
            resources: result.resources.iter().cloned().collect(),
            ..PreparedStorage::default()
        };
        for rs in result.sources.iter() {
            apply(live, rs, &mut prepared.volumes);
        }
        tracing::debug!(domain = %live.name, sources = result.sources.len(), "storage prepared");
        pipeline.push(("storage".into(), name));
        Ok(prepared)
    }
}

/// The storage API: pools and volumes, served by the connection's storage
/// plugin (its actor), for the RPC server as for an embedding application.
impl Driver {
    /// Sends one storage operation to the storage plugin and waits for its
    /// answer. The plugin's libvirt-worded errors keep their libvirt code.
    pub fn storage(&self, op: StorageOp) -> Result<StorageReply> {
        let inner = &self.inner;
        let plugin = inner
            .plugin_statuses
            .iter()
            .find(|s| s.usable() && s.kind() == Some(PluginKind::Storage))
            .ok_or_else(|| {
                DriverError::NoSupport(
                    "no usable storage plugin (is libqvisor_storage.so in the plugin set?)".into(),
                )
            })?;
        let name = plugin.name();
        let request = StorageRequest::new(storage_context(&inner.paths), op);
        let reply = inner
            .call_plugin(&name, Request::Storage(RBox::new(request)))
            .map_err(|e| match e {
                CallError::Plugin { source, .. } => {
                    DriverError::from_storage_message(source.message())
                }
                other => DriverError::Internal(other.to_string()),
            })?;
        match reply {
            Reply::Storage(r) => r.as_enum().cloned().map_err(|_| {
                DriverError::Internal(format!(
                    "plugin '{name}' answered a storage request with a reply this qvisor does not know"
                ))
            }),
            other => Err(DriverError::Internal(format!(
                "plugin '{name}' answered a storage request with {other:?}"
            ))),
        }
    }

    /// Every pool, active or not.
    pub fn storage_pools(&self) -> Result<Vec<PoolInfo>> {
        match self.storage(StorageOp::ListPools)? {
            StorageReply::Pools(p) => Ok(p.into_iter().collect()),
            other => Err(unexpected("pool list", &other)),
        }
    }

    /// One pool, by name or UUID.
    pub fn storage_pool(&self, name_or_uuid: &str) -> Result<PoolInfo> {
        match self.storage(StorageOp::LookupPool(name_or_uuid.into()))? {
            StorageReply::Pool(p) => Ok(p),
            other => Err(unexpected("pool lookup", &other)),
        }
    }

    /// The volumes of an active pool, sorted by name; `details` also reads
    /// each image's type, format and sizes.
    pub fn storage_volumes(&self, pool: &str, details: bool) -> Result<Vec<VolumeInfo>> {
        let op = StorageOp::ListVolumes {
            pool: pool.into(),
            details,
        };
        match self.storage(op)? {
            StorageReply::Volumes(v) => Ok(v.into_iter().collect()),
            other => Err(unexpected("volume list", &other)),
        }
    }

    /// One volume, with its type, format and sizes.
    pub fn storage_volume(&self, volume: VolumeRef) -> Result<VolumeInfo> {
        match self.storage(StorageOp::LookupVolume(volume))? {
            StorageReply::Volume(v) => Ok(v),
            other => Err(unexpected("volume lookup", &other)),
        }
    }

    /// Creates a volume in `pool` from libvirt's volume XML.
    pub fn storage_create_volume(&self, pool: &str, xml: &str) -> Result<VolumeInfo> {
        let op = StorageOp::CreateVolume {
            pool: pool.into(),
            xml: xml.into(),
            clone_of: abi_stable::std_types::ROption::RNone,
        };
        match self.storage(op)? {
            StorageReply::Volume(v) => Ok(v),
            other => Err(unexpected("volume creation", &other)),
        }
    }

    /// A pool's or a volume's XML (`StorageOp::PoolXml`, `StorageOp::VolumeXml`).
    pub fn storage_xml(&self, op: StorageOp) -> Result<String> {
        match self.storage(op)? {
            StorageReply::Xml(x) => Ok(x.into()),
            other => Err(unexpected("XML request", &other)),
        }
    }
}

/// A reply of the wrong kind from the storage plugin.
fn unexpected(what: &str, reply: &StorageReply) -> DriverError {
    DriverError::Internal(format!(
        "the storage plugin answered a {what} with {reply:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvisor_domain::{parse, ParseOptions};

    fn domain(disk: &str) -> Domain {
        parse(
            &format!("<domain type='qemu'><name>d</name><memory>131072</memory><os><type>hvm</type></os><devices>{disk}</devices></domain>"),
            ParseOptions { inactive: false },
        )
        .unwrap()
    }

    fn source(target: &str, path: &str, format: &str, chain: &[(&str, &str)]) -> ResolvedSource {
        ResolvedSource {
            target: target.into(),
            source_type: "file".into(),
            path: path.into(),
            format: format.into(),
            backing_chain: chain.iter().map(|(p, f)| Setting::new(*p, *f)).collect(),
        }
    }

    #[test]
    fn volume_disk_gets_path_format_and_chain_in_the_live_xml() {
        let mut def = domain("<disk type='volume' device='disk'><source pool='default' volume='top'/><target dev='vda' bus='virtio'/></disk>");
        let mut volumes = BTreeMap::new();
        apply(
            &mut def,
            &source("vda", "/i/top", "qcow2", &[("/i/base", "raw")]),
            &mut volumes,
        );
        let vol = &volumes[&("default".to_string(), "top".to_string())];
        assert_eq!(vol.path.as_deref(), Some("/i/top"));
        let xml = qvisor_domain::format(&def, &qvisor_domain::FormatOptions::default());
        assert!(xml.contains("<driver name='qemu' type='qcow2'/>"), "{xml}");
        assert!(
            xml.contains("<source pool='default' volume='top' file='/i/top'/>"),
            "{xml}"
        );
        assert!(xml.contains("<backingStore type='file'>\n        <format type='raw'/>\n        <source file='/i/base'/>\n        <backingStore/>\n      </backingStore>"), "{xml}");
    }

    #[test]
    fn raw_disk_gets_no_backing_store() {
        let mut def = domain("<disk type='volume' device='disk'><source pool='p' volume='v'/><target dev='vda' bus='virtio'/></disk>");
        apply(
            &mut def,
            &source("vda", "/i/v", "raw", &[]),
            &mut BTreeMap::new(),
        );
        assert!(def.devices.disks[0].residue.find("backingStore").is_none());
    }

    #[test]
    fn only_volume_disks_and_unchained_qcow2_files_need_the_plugin() {
        let raw = domain(
            "<disk type='file'><driver type='raw'/><source file='/x'/><target dev='vda'/></disk>",
        );
        assert_eq!(needs_storage(&raw), (false, false));
        let q = domain(
            "<disk type='file'><driver type='qcow2'/><source file='/x'/><target dev='vda'/></disk>",
        );
        assert_eq!(needs_storage(&q), (false, true));
        let spelled = domain("<disk type='file'><driver type='qcow2'/><source file='/x'/><backingStore/><target dev='vda'/></disk>");
        assert_eq!(needs_storage(&spelled), (false, false));
    }

    #[test]
    fn storage_plugin_messages_keep_their_libvirt_code() {
        let e = DriverError::from_storage_message(
            "Storage pool not found: no storage pool with matching name 'x'",
        );
        assert!(
            matches!(&e, DriverError::NoStoragePool(m) if m == "no storage pool with matching name 'x'")
        );
        assert_eq!(
            e.to_string(),
            "Storage pool not found: no storage pool with matching name 'x'"
        );
        let e = DriverError::from_storage_message("cannot create path '/x': Permission denied");
        assert!(matches!(e, DriverError::System(_)), "{e:?}");
        assert_eq!(e.to_string(), "cannot create path '/x': Permission denied");
    }

    #[test]
    fn storage_state_dir_follows_libvirt() {
        let env = qvisor_conf::Environment::default();
        let root = Path::new("/srv/vm");
        let embed = DriverPaths::new(
            &Mode::Embed {
                root: root.to_path_buf(),
            },
            &env,
        )
        .unwrap();
        assert_eq!(storage_state_dir(&embed), root.join("run/storage"));
    }
}
