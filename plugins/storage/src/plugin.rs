//! The plugin object: requests in, module calls, replies out.

use qvisor_sdk::prelude::*;
use qvisor_sdk::StorageOp;

use crate::error::StorageError;
use crate::pool::Store;
use crate::{prepare, qemu_img, volume};

/// Storage pools and volumes.
pub struct StoragePlugin {
    host: HostHandle,
}

impl StoragePlugin {
    /// Creates the plugin; it takes no settings.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        Ok(StoragePlugin { host })
    }
}

/// Answers one storage operation on the connection's store.
pub fn storage_op(store: &Store, op: &StorageOp) -> Result<StorageReply, StorageError> {
    use StorageReply as R;
    Ok(match op {
        StorageOp::ListPools => R::Pools(store.list().iter().map(|p| p.info()).collect()),
        StorageOp::LookupPool(name) => R::Pool(store.lookup(name)?.info()),
        StorageOp::DefinePool(xml) => R::Pool(store.define(xml)?.info()),
        StorageOp::BuildPool(name) => {
            store.build(name)?;
            R::Done
        }
        StorageOp::StartPool(name) => {
            store.start(name)?;
            R::Done
        }
        StorageOp::DestroyPool(name) => {
            store.destroy(name)?;
            R::Done
        }
        StorageOp::UndefinePool(name) => {
            store.undefine(name)?;
            R::Done
        }
        StorageOp::RefreshPool(name) => {
            store.refresh(name)?;
            R::Done
        }
        StorageOp::SetPoolAutostart { pool, autostart } => {
            store.set_autostart(pool, *autostart)?;
            R::Done
        }
        StorageOp::PoolXml { pool, inactive } => R::Xml(store.lookup(pool)?.xml(*inactive).into()),
        StorageOp::ListVolumes { pool, details } => {
            R::Volumes(volume::list(store, pool, *details)?.into())
        }
        StorageOp::LookupVolume(r) => R::Volume(volume::lookup(store, r)?.info()?),
        StorageOp::VolumeXml(r) => R::Xml(volume::lookup(store, r)?.xml()?.into()),
        StorageOp::CreateVolume {
            pool,
            xml,
            clone_of,
        } => R::Volume(volume::create(
            store,
            pool,
            xml,
            clone_of.as_ref().into_option(),
        )?),
        StorageOp::DeleteVolume(r) => {
            volume::delete(&volume::lookup(store, r)?)?;
            R::Done
        }
        StorageOp::WipeVolume {
            volume: r,
            algorithm,
        } => {
            volume::wipe(&volume::lookup(store, r)?, algorithm)?;
            R::Done
        }
        StorageOp::OpenVolume {
            volume: r,
            access,
            offset,
        } => R::Fd(volume::open(&volume::lookup(store, r)?, *access, *offset)?),
        _ => {
            return Err(StorageError::Unsupported(
                "storage operation unknown to this plugin version".into(),
            ))
        }
    })
}

impl QvisorPlugin for StoragePlugin {
    fn describe(&self) -> Description {
        Description::new(
            "storage",
            PluginKind::Storage,
            env!("CARGO_PKG_VERSION"),
            &[
                "disk-source:volume",
                "pool-type:dir",
                "pool-type:fs",
                "backing-chain:local",
            ],
        )
    }

    fn probe(&self) -> ProbeResult {
        match qemu_img::find() {
            Some(img) => {
                self.host
                    .debug(&format!("probe: qemu-img at {}", img.display()));
                ProbeResult::usable(format!(
                    "dir and fs pools; raw, qcow2 and other volumes ({})",
                    img.display()
                ))
                .with_detail("qemu-img", img.display().to_string())
            }
            None => ProbeResult::usable("dir and fs pools; raw volumes only (qemu-img not found)"),
        }
    }

    fn prepare(&self, domain: &DomainContext) -> Result<PrepareResult, PluginError> {
        let ctx = prepare::storage_context(domain)?;
        let store = Store::open(&ctx);
        let result = prepare::prepare(&store, domain)?;
        self.host.debug(&format!(
            "domain '{}': {} disk source(s) resolved",
            domain.name,
            result.sources.len()
        ));
        Ok(result)
    }

    fn storage(&self, request: &StorageRequest) -> Result<StorageReply, PluginError> {
        let Ok(op) = request.op.as_enum() else {
            return Err(PluginError::unsupported(
                "storage operation unknown to this plugin (built against an older qvisor-sdk)",
            ));
        };
        let store = Store::open(&request.context);
        storage_op(&store, op).map_err(PluginError::from)
    }
}
