//! The `Prepare` step at domain start: every `<disk type='volume'>` resolved
//! to its file, block device or directory, and the backing chain of every
//! local disk whose format can have one, read from the image headers
//! (unless the XML already spells the chain out with `<backingStore>`).

use std::path::Path;

use qvisor_sdk::{
    Access, DomainContext, PluginError, PrepareResult, ResolvedSource, Resource, ResourceKind,
    Setting, StorageContext, VolumeRef,
};

use crate::chain::{backing_chain, Layer, MAX_DEPTH};
use crate::error::StorageError;
use crate::image::reads_backing;
use crate::pool::Store;
use crate::volume;
use crate::xml::{self, Element};

/// The settings keys the supervisor passes with the connection's directories.
pub const SETTING_CONFIG_DIR: &str = "storage_config_dir";
/// See [`SETTING_CONFIG_DIR`].
pub const SETTING_STATE_DIR: &str = "storage_state_dir";
/// See [`SETTING_CONFIG_DIR`].
pub const SETTING_IMAGES_DIR: &str = "images_dir";

/// The connection's storage directories, from the domain context's settings.
pub fn storage_context(domain: &DomainContext) -> Result<StorageContext, PluginError> {
    let get = |key: &str| {
        domain.setting(key).map(Into::into).ok_or_else(|| {
            PluginError::invalid(format!(
                "prepare: the supervisor did not pass setting '{key}'"
            ))
        })
    };
    Ok(StorageContext {
        config_dir: get(SETTING_CONFIG_DIR)?,
        state_dir: get(SETTING_STATE_DIR)?,
        images_dir: get(SETTING_IMAGES_DIR)?,
    })
}

/// One disk's part of the result.
struct Resolved {
    source_type: String,
    path: String,
    format: String,
    chain: Vec<Layer>,
}

fn disk_error(target: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::failed(format!("disk '{target}': {e}"))
}

fn resolve_volume(
    store: &Store,
    disk: &Element,
    target: &str,
    declared: Option<&str>,
) -> Result<Resolved, PluginError> {
    let source = disk.child("source");
    let pool = source.and_then(|s| s.attr("pool"));
    let name = source.and_then(|s| s.attr("volume"));
    let (Some(pool), Some(name)) = (pool, name) else {
        return Err(disk_error(
            target,
            StorageError::Xml("a volume disk's <source> needs both pool= and volume=".into()),
        ));
    };
    if source.and_then(|s| s.attr("mode")).is_some() {
        return Err(disk_error(
            target,
            StorageError::Xml(
                "disk source mode is only valid when storage pool is of iscsi type".into(),
            ),
        ));
    }
    crate::pooldef::check_name("volume", name).map_err(|e| disk_error(target, e))?;
    let p = store.lookup(pool).map_err(|e| disk_error(target, e))?;
    if !p.active {
        return Err(disk_error(
            target,
            StorageError::Unsupported(format!(
                "storage pool '{pool}' containing volume '{name}' is not active"
            )),
        ));
    }
    let vol = volume::lookup(store, &VolumeRef::in_pool(pool, name))
        .map_err(|e| disk_error(target, e))?;
    let detected = vol.probe().map_err(|e| disk_error(target, e))?.format;
    let format = match declared {
        Some(f) => f.to_string(),
        None if vol.kind == "dir" => "fat".to_string(),
        // libvirt's rule: a disk without a format is raw, never probed
        // (a guest could otherwise forge a header naming host files).
        None => "raw".to_string(),
    };
    if format != "raw" && vol.kind != "dir" && format != detected {
        return Err(disk_error(
            target,
            StorageError::OperationFailed(format!(
                "volume '{name}' of pool '{pool}' is a '{detected}' image, not '{format}' as the disk's driver type says"
            )),
        ));
    }
    let chain = if reads_backing(&format) && disk.child("backingStore").is_none() {
        backing_chain(&vol.path, &format, MAX_DEPTH).map_err(|e| disk_error(target, e))?
    } else {
        Vec::new()
    };
    Ok(Resolved {
        source_type: vol.kind.to_string(),
        path: vol.path.display().to_string(),
        format,
        chain,
    })
}

fn resolve_local(
    disk: &Element,
    kind: &str,
    target: &str,
    declared: Option<&str>,
) -> Result<Option<Resolved>, PluginError> {
    let attr = if kind == "block" { "dev" } else { "file" };
    let Some(path) = disk
        .child("source")
        .and_then(|s| s.attr(attr))
        .filter(|p| !p.is_empty())
    else {
        return Ok(None);
    };
    let Some(format) = declared.filter(|f| reads_backing(f)) else {
        return Ok(None);
    };
    // A missing image is QEMU's (or the start-up policy's) to report.
    if disk.child("backingStore").is_some() || !Path::new(path).exists() {
        return Ok(None);
    }
    let chain =
        backing_chain(Path::new(path), format, MAX_DEPTH).map_err(|e| disk_error(target, e))?;
    Ok(Some(Resolved {
        source_type: kind.to_string(),
        path: path.to_string(),
        format: format.to_string(),
        chain,
    }))
}

/// Resolves the disks of `domain` against the pools of `store`.
pub fn prepare(store: &Store, domain: &DomainContext) -> Result<PrepareResult, PluginError> {
    let root = xml::parse(domain.xml.as_str(), "(domain_definition)")
        .map_err(|e| PluginError::invalid(format!("XML error: {e}")))?;
    let mut sources = Vec::new();
    let mut resources = Vec::new();
    let Some(devices) = root.child("devices") else {
        return Ok(PrepareResult {
            sources: sources.into(),
            resources: resources.into(),
        });
    };
    for disk in devices.children_named("disk") {
        let kind = disk.attr("type").unwrap_or("file");
        let target = disk
            .child("target")
            .and_then(|t| t.attr("dev"))
            .unwrap_or("");
        let declared = disk.child("driver").and_then(|d| d.attr("type"));
        let resolved = match kind {
            "volume" => Some(resolve_volume(store, disk, target, declared)?),
            "file" | "block" => resolve_local(disk, kind, target, declared)?,
            _ => None,
        };
        let Some(r) = resolved else { continue };
        let readonly = disk.child("readonly").is_some();
        resources.push(Resource {
            path: r.path.as_str().into(),
            kind: ResourceKind::Disk,
            access: if readonly {
                Access::ReadOnly
            } else {
                Access::ReadWrite
            },
            shared: disk.child("shareable").is_some(),
        });
        for layer in &r.chain {
            resources.push(Resource {
                path: layer.path.display().to_string().into(),
                kind: ResourceKind::Disk,
                access: Access::ReadOnly,
                shared: true,
            });
        }
        sources.push(ResolvedSource {
            target: target.into(),
            source_type: r.source_type.into(),
            path: r.path.into(),
            format: r.format.into(),
            backing_chain: r
                .chain
                .iter()
                .map(|l| Setting::new(l.path.display().to_string(), l.format.as_str()))
                .collect(),
        });
    }
    Ok(PrepareResult {
        sources: sources.into(),
        resources: resources.into(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    struct Root(PathBuf, StorageContext);

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn root(tag: &str) -> Root {
        let root = std::env::temp_dir().join(format!("qvisor-prep-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let ctx = StorageContext {
            config_dir: root.join("etc/storage").display().to_string().into(),
            state_dir: root.join("run/storage").display().to_string().into(),
            images_dir: root.join("lib/images").display().to_string().into(),
        };
        Root(root, ctx)
    }

    fn domain(r: &Root, disks: &str) -> DomainContext {
        DomainContext {
            name: "d".into(),
            uuid: "".into(),
            virt_type: "qemu".into(),
            emulator: "".into(),
            xml: format!("<domain type='qemu'><name>d</name><devices>{disks}</devices></domain>")
                .into(),
            private_dir: "".into(),
            uid: 0,
            gid: 0,
            resources: Default::default(),
            settings: vec![
                Setting::new(SETTING_CONFIG_DIR, r.1.config_dir.as_str()),
                Setting::new(SETTING_STATE_DIR, r.1.state_dir.as_str()),
                Setting::new(SETTING_IMAGES_DIR, r.1.images_dir.as_str()),
            ]
            .into(),
            labels: Default::default(),
        }
    }

    fn make(store: &Store, name: &str, format: &str, backing: Option<&str>) -> String {
        let b = backing
            .map(|p| format!("<backingStore><path>{p}</path></backingStore>"))
            .unwrap_or_default();
        let xml = format!("<volume><name>{name}</name><capacity>1048576</capacity><target><format type='{format}'/></target>{b}</volume>");
        volume::create(store, "default", &xml, None)
            .unwrap()
            .path
            .to_string()
    }

    const VOLUME_DISK: &str = "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='default' volume='top'/><target dev='vda' bus='virtio'/></disk>";

    #[test]
    fn volume_disk_resolves_to_its_file_and_chain() {
        let r = root("chain");
        let store = Store::open(&r.1);
        let base = make(&store, "base", "raw", None);
        let top = make(&store, "top", "qcow2", Some(&base));
        let out = prepare(&store, &domain(&r, VOLUME_DISK)).unwrap();
        assert_eq!(out.sources.len(), 1);
        let s = &out.sources[0];
        assert_eq!((s.target.as_str(), s.source_type.as_str()), ("vda", "file"));
        assert_eq!(
            (s.path.as_str(), s.format.as_str()),
            (top.as_str(), "qcow2")
        );
        assert_eq!(s.backing_chain[0], Setting::new(base.as_str(), "raw"));
        let paths: Vec<&str> = out.resources.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, [top.as_str(), base.as_str()]);
    }

    #[test]
    fn missing_volume_and_pool_name_the_disk() {
        let r = root("missing");
        let store = Store::open(&r.1);
        let err = prepare(&store, &domain(&r, VOLUME_DISK)).unwrap_err();
        assert_eq!(
            err.message(),
            "disk 'vda': Storage volume not found: no storage vol with matching name 'top' in pool 'default'"
        );
        let disk = VOLUME_DISK.replace("pool='default'", "pool='nopool'");
        let err = prepare(&store, &domain(&r, &disk)).unwrap_err();
        assert_eq!(
            err.message(),
            "disk 'vda': Storage pool not found: no storage pool with matching name 'nopool'"
        );
    }

    #[test]
    fn declared_format_must_match_the_header() {
        let r = root("mismatch");
        let store = Store::open(&r.1);
        make(&store, "top", "raw", None);
        let err = prepare(&store, &domain(&r, VOLUME_DISK)).unwrap_err();
        assert!(
            err.message().contains("is a 'raw' image, not 'qcow2'"),
            "{err}"
        );
    }

    #[test]
    fn disk_without_format_is_raw_and_not_probed() {
        let r = root("raw");
        let store = Store::open(&r.1);
        make(&store, "top", "qcow2", None);
        let disk = VOLUME_DISK.replace("<driver name='qemu' type='qcow2'/>", "");
        let out = prepare(&store, &domain(&r, &disk)).unwrap();
        assert_eq!(out.sources[0].format.as_str(), "raw");
        assert!(out.sources[0].backing_chain.is_empty());
    }

    #[test]
    fn inactive_pool_is_refused() {
        let r = root("inactive");
        let store = Store::open(&r.1);
        store.destroy("default").unwrap();
        let err = prepare(&store, &domain(&r, VOLUME_DISK)).unwrap_err();
        assert!(
            err.message()
                .ends_with("storage pool 'default' containing volume 'top' is not active"),
            "{err}"
        );
    }

    #[test]
    fn qcow2_file_disk_gets_its_chain_and_raw_file_disk_is_left_alone() {
        let r = root("file");
        let store = Store::open(&r.1);
        let base = make(&store, "base", "raw", None);
        let top = make(&store, "top", "qcow2", Some(&base));
        let disks = format!(
            "<disk type='file'><driver type='qcow2'/><source file='{top}'/><target dev='vda'/></disk>\
             <disk type='file'><driver type='raw'/><source file='{base}'/><target dev='vdb'/></disk>"
        );
        let out = prepare(&store, &domain(&r, &disks)).unwrap();
        assert_eq!(out.sources.len(), 1);
        assert_eq!(out.sources[0].backing_chain.len(), 1);
    }
}
