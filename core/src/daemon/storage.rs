//! The storage pool and volume procedures: decoded by qvisor-rpc, served by
//! the driver's storage API (which reaches the storage plugin's actor),
//! encoded back. Which of them a read-only client may call is the procedure
//! table's business (lookups, info, lists and XML are; changes are not).

use qvisor_domain::Uuid;
use qvisor_rpc::remote::*;
use qvisor_rpc::{Call, ErrorCode, ErrorDomain, RemoteError, Response};
use qvisor_sdk::{PoolInfo, StorageOp, VolumeInfo, VolumeRef, POOL_TYPES};

use crate::driver::{Driver, DriverError};

/// `VIR_STORAGE_XML_INACTIVE`.
const XML_INACTIVE: u32 = 1;

/// `VIR_CONNECT_LIST_STORAGE_POOLS_*`: the pairs of opposite filters (a pool
/// passes a pair when neither or both bits are set, or the one it matches).
const LIST_INACTIVE: u32 = 1 << 0;
const LIST_ACTIVE: u32 = 1 << 1;
const LIST_PERSISTENT: u32 = 1 << 2;
const LIST_TRANSIENT: u32 = 1 << 3;
const LIST_AUTOSTART: u32 = 1 << 4;
const LIST_NO_AUTOSTART: u32 = 1 << 5;
/// The bit of the first pool type of [`POOL_TYPES`] in the list flags.
const LIST_TYPE_SHIFT: u32 = 6;

type R<T> = Result<T, RemoteError>;

/// A driver error as libvirt's storage driver reports it.
fn storage_error(e: DriverError) -> RemoteError {
    let code = ErrorCode::from_i32(e.number() as i32).unwrap_or(ErrorCode::InternalError);
    RemoteError::new(code, ErrorDomain::Storage, e.detail())
}

fn pool_ref(p: &PoolInfo) -> R<NonnullStoragePool> {
    let uuid = Uuid::parse(&p.uuid).ok_or_else(|| {
        RemoteError::internal(
            ErrorDomain::Storage,
            format!("storage pool '{}' has an invalid UUID '{}'", p.name, p.uuid),
        )
    })?;
    Ok(NonnullStoragePool {
        name: p.name.to_string(),
        uuid: uuid.0,
    })
}

fn vol_ref(v: &VolumeInfo) -> NonnullStorageVol {
    NonnullStorageVol {
        pool: v.pool.to_string(),
        name: v.name.to_string(),
        key: v.key.to_string(),
    }
}

/// The pool a client names, looked up by its UUID as libvirt does.
fn pool(d: &Driver, p: &NonnullStoragePool) -> R<PoolInfo> {
    pool_by_uuid(d, p.uuid, Some(&p.name))
}

/// The pool with `uuid`; libvirt's "not found" message names the UUID (and
/// the name the client gave, when it gave one).
fn pool_by_uuid(d: &Driver, uuid: [u8; 16], name: Option<&str>) -> R<PoolInfo> {
    let uuid = Uuid(uuid).to_string();
    d.storage_pool(&uuid).map_err(|e| match e {
        DriverError::NoStoragePool(_) => {
            let named = name.map(|n| format!(" ({n})")).unwrap_or_default();
            storage_error(DriverError::NoStoragePool(format!(
                "no storage pool with matching uuid '{uuid}'{named}"
            )))
        }
        other => storage_error(other),
    })
}

/// The volume a client names, by its pool and name.
fn volume(d: &Driver, v: &NonnullStorageVol) -> R<VolumeInfo> {
    d.storage_volume(VolumeRef::in_pool(&v.pool, &v.name))
        .map_err(storage_error)
}

/// `virStorageVolType` of a volume type word.
fn vol_type(kind: &str) -> i8 {
    match kind {
        "block" => 1,
        "dir" => 2,
        "network" => 3,
        "netdir" => 4,
        "ploop" => 5,
        _ => 0,
    }
}

/// Whether `p` passes `virConnectListAllStoragePools`' `flags`.
fn pool_matches(p: &PoolInfo, flags: u32) -> bool {
    let pair = |on: u32, off: u32, cond: bool| {
        let (a, b) = (flags & on != 0, flags & off != 0);
        a == b || (a && cond) || (b && !cond)
    };
    let types = flags >> LIST_TYPE_SHIFT;
    let type_ok = types == 0
        || POOL_TYPES
            .iter()
            .enumerate()
            .any(|(i, t)| types & (1 << i) != 0 && *t == p.kind.as_str());
    pair(LIST_ACTIVE, LIST_INACTIVE, p.state.is_active())
        && pair(LIST_PERSISTENT, LIST_TRANSIENT, p.persistent)
        && pair(LIST_AUTOSTART, LIST_NO_AUTOSTART, p.autostart)
        && type_ok
}

/// Whether `call` is one of libvirt's storage procedures (`virStorage*`,
/// `virConnectListAllStoragePools`...), which [`handle`] answers.
pub(super) fn serves(call: &Call) -> bool {
    call.procedure().error_domain == ErrorDomain::Storage
}

/// Answers a storage procedure; those not served yet get libvirt's
/// "unsupported" error.
pub(super) fn handle(d: &Driver, call: Call) -> Response {
    match call {
        Call::ConnectListAllStoragePools(r) => r.respond(|a| {
            let pools: Vec<PoolInfo> = d
                .storage_pools()
                .map_err(storage_error)?
                .into_iter()
                .filter(|p| pool_matches(p, a.flags))
                .collect();
            let ret = pools.len() as u32;
            let pools = if a.need_results != 0 {
                pools.iter().map(pool_ref).collect::<R<_>>()?
            } else {
                Vec::new()
            };
            Ok(ConnectListAllStoragePoolsRet { pools, ret })
        }),
        Call::StoragePoolLookupByName(r) => r.respond(|a| {
            let p = d.storage_pool(&a.name).map_err(storage_error)?;
            Ok(StoragePoolLookupByNameRet {
                pool: pool_ref(&p)?,
            })
        }),
        Call::StoragePoolLookupByUuid(r) => r.respond(|a| {
            let p = pool_by_uuid(d, a.uuid, None)?;
            Ok(StoragePoolLookupByUuidRet {
                pool: pool_ref(&p)?,
            })
        }),
        Call::StoragePoolLookupByVolume(r) => r.respond(|a| {
            let v = volume(d, &a.vol)?;
            let p = d.storage_pool(&v.pool).map_err(storage_error)?;
            Ok(StoragePoolLookupByVolumeRet {
                pool: pool_ref(&p)?,
            })
        }),
        Call::StoragePoolGetInfo(r) => r.respond(|a| {
            let p = pool(d, &a.pool)?;
            Ok(StoragePoolGetInfoRet {
                state: p.state as u8,
                capacity: p.capacity,
                allocation: p.allocation,
                available: p.available,
            })
        }),
        Call::StoragePoolGetXmlDesc(r) => r.respond(|a| {
            let p = pool(d, &a.pool)?;
            let xml = d
                .storage_xml(StorageOp::PoolXml {
                    pool: p.name,
                    inactive: a.flags & XML_INACTIVE != 0,
                })
                .map_err(storage_error)?;
            Ok(StoragePoolGetXmlDescRet { xml })
        }),
        Call::StoragePoolGetAutostart(r) => r.respond(|a| {
            Ok(StoragePoolGetAutostartRet {
                autostart: i32::from(pool(d, &a.pool)?.autostart),
            })
        }),
        Call::StoragePoolIsActive(r) => r.respond(|a| {
            Ok(StoragePoolIsActiveRet {
                active: i32::from(pool(d, &a.pool)?.state.is_active()),
            })
        }),
        Call::StoragePoolIsPersistent(r) => r.respond(|a| {
            Ok(StoragePoolIsPersistentRet {
                persistent: i32::from(pool(d, &a.pool)?.persistent),
            })
        }),
        Call::StoragePoolRefresh(r) => r.respond(|a| {
            let p = pool(d, &a.pool)?;
            d.storage(StorageOp::RefreshPool(p.name))
                .map(drop)
                .map_err(storage_error)
        }),
        Call::StoragePoolListAllVolumes(r) => r.respond(|a| {
            let p = pool(d, &a.pool)?;
            let vols = d.storage_volumes(&p.name, false).map_err(storage_error)?;
            let ret = vols.len() as u32;
            let vols = if a.need_results != 0 {
                vols.iter().map(vol_ref).collect()
            } else {
                Vec::new()
            };
            Ok(StoragePoolListAllVolumesRet { vols, ret })
        }),
        Call::StoragePoolNumOfVolumes(r) => r.respond(|a| {
            let p = pool(d, &a.pool)?;
            let vols = d.storage_volumes(&p.name, false).map_err(storage_error)?;
            Ok(StoragePoolNumOfVolumesRet {
                num: vols.len() as i32,
            })
        }),
        Call::StorageVolLookupByName(r) => r.respond(|a| {
            let p = pool(d, &a.pool)?;
            let v = d
                .storage_volume(VolumeRef::in_pool(&p.name, &a.name))
                .map_err(storage_error)?;
            Ok(StorageVolLookupByNameRet { vol: vol_ref(&v) })
        }),
        Call::StorageVolLookupByPath(r) => r.respond(|a| {
            let v = d
                .storage_volume(VolumeRef::by_key_or_path(&a.path))
                .map_err(storage_error)?;
            Ok(StorageVolLookupByPathRet { vol: vol_ref(&v) })
        }),
        Call::StorageVolLookupByKey(r) => r.respond(|a| {
            let v = d
                .storage_volume(VolumeRef::by_key_or_path(&a.key))
                .map_err(|e| match e {
                    DriverError::NoStorageVol(_) => storage_error(DriverError::NoStorageVol(
                        format!("no storage vol with matching key {}", a.key),
                    )),
                    other => storage_error(other),
                })?;
            Ok(StorageVolLookupByKeyRet { vol: vol_ref(&v) })
        }),
        Call::StorageVolGetInfo(r) => r.respond(|a| {
            let v = volume(d, &a.vol)?;
            Ok(StorageVolGetInfoRet {
                r#type: vol_type(&v.kind),
                capacity: v.capacity,
                allocation: v.allocation,
            })
        }),
        Call::StorageVolGetPath(r) => r.respond(|a| {
            Ok(StorageVolGetPathRet {
                name: volume(d, &a.vol)?.path.into(),
            })
        }),
        Call::StorageVolGetXmlDesc(r) => r.respond(|a| {
            let xml = d
                .storage_xml(StorageOp::VolumeXml(VolumeRef::in_pool(
                    &a.vol.pool,
                    &a.vol.name,
                )))
                .map_err(storage_error)?;
            Ok(StorageVolGetXmlDescRet { xml })
        }),
        Call::StorageVolCreateXml(r) => r.respond(|a| {
            let p = pool(d, &a.pool)?;
            let v = d
                .storage_create_volume(&p.name, &a.xml)
                .map_err(storage_error)?;
            Ok(StorageVolCreateXmlRet { vol: vol_ref(&v) })
        }),
        Call::StorageVolDelete(r) => r.respond(|a| {
            d.storage(StorageOp::DeleteVolume(VolumeRef::in_pool(
                &a.vol.pool,
                &a.vol.name,
            )))
            .map(drop)
            .map_err(storage_error)
        }),
        other => other.unsupported(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvisor_sdk::PoolState;

    fn pool_info(kind: &str, state: PoolState, persistent: bool, autostart: bool) -> PoolInfo {
        PoolInfo {
            name: "p".into(),
            uuid: "c7a5fdbd-cdaf-9455-926a-d65c16db1809".into(),
            kind: kind.into(),
            path: "/p".into(),
            state,
            persistent,
            autostart,
            capacity: 0,
            allocation: 0,
            available: 0,
        }
    }

    #[test]
    fn pool_list_filters_pair_up_like_libvirt() {
        let running = pool_info("dir", PoolState::Running, true, false);
        assert!(pool_matches(&running, 0));
        assert!(pool_matches(&running, LIST_ACTIVE));
        assert!(!pool_matches(&running, LIST_INACTIVE));
        assert!(pool_matches(&running, LIST_ACTIVE | LIST_INACTIVE));
        assert!(!pool_matches(&running, LIST_TRANSIENT));
        assert!(pool_matches(&running, LIST_NO_AUTOSTART));
        assert!(!pool_matches(&running, LIST_AUTOSTART));
    }

    #[test]
    fn pool_list_type_filter_selects_by_pool_type() {
        let dir = pool_info("dir", PoolState::Inactive, true, false);
        let fs = pool_info("fs", PoolState::Inactive, true, false);
        let only_dir = 1 << LIST_TYPE_SHIFT;
        assert!(pool_matches(&dir, only_dir));
        assert!(!pool_matches(&fs, only_dir));
        assert!(pool_matches(&fs, only_dir | (1 << (LIST_TYPE_SHIFT + 1))));
    }

    #[test]
    fn pool_reference_carries_the_binary_uuid() {
        let p = pool_info("dir", PoolState::Running, true, false);
        let r = pool_ref(&p).unwrap();
        assert_eq!(r.name, "p");
        assert_eq!(Uuid(r.uuid).to_string(), p.uuid.as_str());
    }

    #[test]
    fn volume_types_follow_vir_storage_vol_type() {
        assert_eq!(vol_type("file"), 0);
        assert_eq!(vol_type("block"), 1);
        assert_eq!(vol_type("dir"), 2);
    }
}
