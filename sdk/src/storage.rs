//! Storage requests (added in SDK 0.1.1): storage pools and volumes.
//!
//! The supervisor (or the `qvisor` CLI, which loads the storage plugin in
//! process) sends a [`StorageRequest`] inside [`crate::Request::Storage`]; the
//! plugin answers with a [`StorageReply`] inside [`crate::Reply::Storage`].
//! Every request carries the connection's [`StorageContext`], so one plugin
//! instance can serve several connections and keeps no per-connection state
//! in memory: pools live in files under those directories.
//!
//! [`StorageOp`] and [`StorageReply`] are non-exhaustive across the ABI like
//! [`crate::Request`]: operations may be appended in a later minor version and
//! an older plugin answers them with [`crate::PluginError::Unsupported`]. The
//! structs are fixed for this ABI epoch.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

use crate::Access;

/// Every storage pool type libvirt knows, in the order of the type filter
/// bits of `virConnectListAllStoragePools`
/// (`VIR_CONNECT_LIST_STORAGE_POOLS_DIR` is bit 6, then one bit each).
pub const POOL_TYPES: [&str; 14] = [
    "dir",
    "fs",
    "netfs",
    "logical",
    "disk",
    "iscsi",
    "scsi",
    "mpath",
    "rbd",
    "sheepdog",
    "gluster",
    "zfs",
    "vstorage",
    "iscsi-direct",
];

/// Where a connection keeps its storage.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct StorageContext {
    /// Persistent pool definitions, `NAME.xml`, and `autostart/`
    /// (system `/etc/libvirt/storage`, embedded `ROOT/etc/storage`).
    pub config_dir: RString,
    /// Run-time state: which pools are active (system `/run/libvirt/storage`,
    /// embedded `ROOT/run/storage`).
    pub state_dir: RString,
    /// The directory of the connection's `default` pool
    /// (system `/var/lib/libvirt/images`, embedded `ROOT/lib/images`).
    pub images_dir: RString,
}

/// A volume: by pool and name, or (without a pool) by key or path.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct VolumeRef {
    /// The pool's name, if known.
    pub pool: ROption<RString>,
    /// The volume's name (with a pool), else its key or path.
    pub name: RString,
}

impl VolumeRef {
    /// A volume named `name` in `pool`.
    pub fn in_pool(pool: &str, name: &str) -> Self {
        VolumeRef {
            pool: ROption::RSome(pool.into()),
            name: name.into(),
        }
    }

    /// A volume found by key or path in any active pool.
    pub fn by_key_or_path(key: &str) -> Self {
        VolumeRef {
            pool: ROption::RNone,
            name: key.into(),
        }
    }
}

/// A storage operation (virsh's `pool-*` and `vol-*` commands).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 32], traits(Debug, Clone, PartialEq, Eq))))]
#[non_exhaustive]
pub enum StorageOp {
    /// All pools, active or not. Answered with [`StorageReply::Pools`].
    ListPools,
    /// One pool by name or UUID. Answered with [`StorageReply::Pool`].
    LookupPool(RString),
    /// Defines (or redefines) a persistent pool from its XML. Answered with
    /// [`StorageReply::Pool`].
    DefinePool(RString),
    /// Builds a pool (creates its directory). Answered with [`StorageReply::Done`].
    BuildPool(RString),
    /// Starts a pool. Answered with [`StorageReply::Done`].
    StartPool(RString),
    /// Stops a pool (its volumes stay on disk). Answered with [`StorageReply::Done`].
    DestroyPool(RString),
    /// Forgets an inactive pool's definition. Answered with [`StorageReply::Done`].
    UndefinePool(RString),
    /// Re-reads an active pool's volumes. Answered with [`StorageReply::Done`].
    RefreshPool(RString),
    /// Marks a pool to be started automatically (or not). Answered with
    /// [`StorageReply::Done`].
    SetPoolAutostart {
        /// The pool.
        pool: RString,
        /// On or off.
        autostart: bool,
    },
    /// A pool's XML. Answered with [`StorageReply::Xml`].
    PoolXml {
        /// The pool.
        pool: RString,
        /// The persistent definition rather than the live one.
        inactive: bool,
    },
    /// The volumes of an active pool, sorted by name. Without `details` only
    /// names, keys and paths are filled (no image header is read). Answered
    /// with [`StorageReply::Volumes`].
    ListVolumes {
        /// The pool.
        pool: RString,
        /// Also read type, format, capacity and allocation.
        details: bool,
    },
    /// One volume. Answered with [`StorageReply::Volume`].
    LookupVolume(VolumeRef),
    /// A volume's XML, format and backing store read from the image header.
    /// Answered with [`StorageReply::Xml`].
    VolumeXml(VolumeRef),
    /// Creates a volume from its XML, empty or as a copy of `clone_of`.
    /// Answered with [`StorageReply::Volume`].
    CreateVolume {
        /// The pool.
        pool: RString,
        /// libvirt's volume XML.
        xml: RString,
        /// Copy this volume's contents (`vol-clone`, `vol-create-from`).
        clone_of: ROption<VolumeRef>,
    },
    /// Deletes a volume. Answered with [`StorageReply::Done`].
    DeleteVolume(VolumeRef),
    /// Wipes a volume's contents (`zero`, or a `scrub` pattern). Answered
    /// with [`StorageReply::Done`].
    WipeVolume {
        /// The volume.
        volume: VolumeRef,
        /// libvirt's algorithm name (`zero`, `nnsa`, `dod`, ...).
        algorithm: RString,
    },
    /// Opens a volume's file for `vol-upload` (write, never truncated) or
    /// `vol-download` (read), positioned at `offset`. Answered with
    /// [`StorageReply::Fd`].
    OpenVolume {
        /// The volume.
        volume: VolumeRef,
        /// Read for a download, read-write for an upload.
        access: Access,
        /// Byte offset to start at.
        offset: u64,
    },
}

/// A request about storage: the connection and the operation.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct StorageRequest {
    /// The connection's directories.
    pub context: StorageContext,
    /// What to do.
    pub op: StorageOp_NE,
}

impl StorageRequest {
    /// A request for `op` on the connection `context`.
    pub fn new(context: StorageContext, op: StorageOp) -> Self {
        StorageRequest {
            context,
            op: StorageOp_NE::new(op),
        }
    }
}

/// libvirt's pool states (`virStoragePoolState`, same order).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolState {
    /// Not running.
    Inactive,
    /// Being built.
    Building,
    /// Running normally.
    Running,
    /// Running with degraded availability.
    Degraded,
    /// Running, but not accessible.
    Inaccessible,
}

impl PoolState {
    /// virsh's word for the state (`running`, `inactive`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Inactive => "inactive",
            PoolState::Building => "building",
            PoolState::Running => "running",
            PoolState::Degraded => "degraded",
            PoolState::Inaccessible => "inaccessible",
        }
    }

    /// Whether volumes can be used (running or degraded).
    pub fn is_active(self) -> bool {
        matches!(self, PoolState::Running | PoolState::Degraded)
    }
}

/// What `pool-info` and `pool-list` show about a pool.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    /// Name.
    pub name: RString,
    /// UUID, canonical text form.
    pub uuid: RString,
    /// Pool type (`dir`, `fs`).
    pub kind: RString,
    /// Target path (the directory volumes live in).
    pub path: RString,
    /// Running or not.
    pub state: PoolState,
    /// Has a persistent definition.
    pub persistent: bool,
    /// Starts automatically.
    pub autostart: bool,
    /// Bytes, when active.
    pub capacity: u64,
    /// Bytes used, when active.
    pub allocation: u64,
    /// Bytes free, when active.
    pub available: u64,
}

/// What `vol-info` and `vol-list` show about a volume.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Name.
    pub name: RString,
    /// The pool it is in.
    pub pool: RString,
    /// Key (for file volumes, the path).
    pub key: RString,
    /// Path on the host.
    pub path: RString,
    /// Volume type (`file`, `block`, `dir`); empty when not read.
    pub kind: RString,
    /// Image format detected from the header (`raw`, `qcow2`...); empty when
    /// not read.
    pub format: RString,
    /// Guest-visible size in bytes.
    pub capacity: u64,
    /// Bytes allocated on the host.
    pub allocation: u64,
    /// Size of the host file in bytes.
    pub physical: u64,
}

/// The answer to a [`StorageRequest`].
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 32], traits(Debug, Clone, PartialEq, Eq))))]
#[non_exhaustive]
pub enum StorageReply {
    /// Done, nothing to report.
    Done,
    /// Pools.
    Pools(RVec<PoolInfo>),
    /// One pool.
    Pool(PoolInfo),
    /// Volumes.
    Volumes(RVec<VolumeInfo>),
    /// One volume.
    Volume(VolumeInfo),
    /// An XML document.
    Xml(RString),
    /// An open file descriptor, owned by the caller from now on (plugins run in
    /// the caller's process, so the number is valid there).
    Fd(i32),
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RBox;

    use super::*;
    use crate::{
        dispatch, Description, PluginError, PluginKind, ProbeResult, QvisorPlugin, Reply, Request,
        Request_NE,
    };

    struct Pools;

    impl QvisorPlugin for Pools {
        fn describe(&self) -> Description {
            Description::new("pools", PluginKind::Storage, "0", &[])
        }
        fn probe(&self) -> ProbeResult {
            ProbeResult::usable("test")
        }
        fn storage(&self, request: &StorageRequest) -> Result<StorageReply, PluginError> {
            match request.op.as_enum() {
                Ok(StorageOp::PoolXml { pool, .. }) => {
                    Ok(StorageReply::Xml(format!("<pool>{pool}</pool>").into()))
                }
                _ => Err(PluginError::unsupported("op")),
            }
        }
    }

    struct NotStorage;

    impl QvisorPlugin for NotStorage {
        fn describe(&self) -> Description {
            Description::new("other", PluginKind::Device, "0", &[])
        }
        fn probe(&self) -> ProbeResult {
            ProbeResult::usable("test")
        }
    }

    fn request(op: StorageOp) -> Request_NE {
        let context = StorageContext {
            config_dir: "/c".into(),
            state_dir: "/s".into(),
            images_dir: "/i".into(),
        };
        Request_NE::new(Request::Storage(RBox::new(StorageRequest::new(
            context, op,
        ))))
    }

    #[test]
    fn storage_request_reaches_the_plugin_and_its_reply_comes_back() {
        let op = StorageOp::PoolXml {
            pool: "default".into(),
            inactive: false,
        };
        let reply = dispatch(&Pools, &request(op)).unwrap();
        let Reply::Storage(r) = reply else {
            panic!("wrong reply {reply:?}")
        };
        assert_eq!(
            r.as_enum().ok(),
            Some(&StorageReply::Xml("<pool>default</pool>".into()))
        );
    }

    #[test]
    fn plugin_without_storage_answers_unsupported() {
        let err = dispatch(&NotStorage, &request(StorageOp::ListPools)).unwrap_err();
        assert!(matches!(err, PluginError::Unsupported(_)), "{err:?}");
    }
}
