//! libvirt's test-harness environment (`qemuxml2argvtest`), as a
//! [`Host`] and a [`BuildEnv`]: fixed paths under `/tmp/lib`, the monitor
//! on fd 1729, deterministic "random" bytes 0, 1, 2, ..., a secret driver
//! where every secret has the same value, fake storage pools read from the
//! auxiliary data directory, and so on. See the conformance kit's README.
//!
//! Used by `qvisor-conformance argv` and by this crate's golden tests; the
//! real start-up path supplies its own [`Host`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qvisor_conf::QemuConf;
use qvisor_domain::{CpuSet, Domain};

use crate::env::{
    AccelContribution, BuildEnv, Host, HugetlbfsMount, NetworkVolume, ResolvedVolume, SecretRef,
};
use crate::model::FdPurpose;

/// The value of every secret in the harness.
pub const SECRET_VALUE: &str = "AQCVn5hO6HzFAhAAq0NCv8jtJcIcE+HOBlMQ1A";

/// The harness host. `aux` is the auxiliary data root (libvirt's `tests/`
/// layout).
#[derive(Debug, Clone)]
pub struct FakeHost {
    aux: PathBuf,
    next_tap: i32,
    next_vhost: i32,
}

impl FakeHost {
    /// A host whose descriptor files live under `aux`.
    pub fn new(aux: impl Into<PathBuf>) -> Self {
        FakeHost {
            aux: aux.into(),
            next_tap: 3,
            next_vhost: 44,
        }
    }

    fn pool_xml(&self, pool: &str) -> Option<String> {
        std::fs::read_to_string(
            self.aux
                .join("storagepoolxml2xmlout")
                .join(format!("{pool}.xml")),
        )
        .ok()
    }
}

fn attr_in<'a>(text: &'a str, element: &str, attr: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{element}"))?;
    let rest = &text[start..];
    let end = rest.find('>')?;
    let tag = &rest[..end];
    let key = format!("{attr}='");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('\'')?;
    Some(&tag[i..i + j])
}

impl Host for FakeHost {
    fn random_bytes(&mut self, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
    }

    fn secret(&self, r: &SecretRef) -> Result<Vec<u8>, String> {
        match r {
            SecretRef::Uuid(_) => Ok(SECRET_VALUE.as_bytes().to_vec()),
            SecretRef::Usage { kind, usage } => {
                let ok = usage.starts_with("/storage/guest_disks/")
                    || usage == "mycluster_myname"
                    || usage == "client.admin secret";
                if ok {
                    Ok(SECRET_VALUE.as_bytes().to_vec())
                } else {
                    Err(format!("no secret with matching usage '{usage}' ({kind})"))
                }
            }
        }
    }

    fn resolve_volume(&self, pool: &str, volume: &str) -> Result<ResolvedVolume, String> {
        if pool == "inactive" {
            return Err(format!(
                "storage pool '{pool}' containing volume '{volume}' is not active"
            ));
        }
        let xml = self.pool_xml(pool).ok_or_else(|| {
            format!("Storage pool not found: no storage pool with matching name '{pool}'")
        })?;
        if volume == "nonexistent" {
            return Err(format!(
                "Storage volume not found: no storage vol with matching name '{volume}'"
            ));
        }
        let pool_type = attr_in(&xml, "pool", "type").unwrap_or("dir");
        if pool_type == "iscsi" || pool_type == "iscsi-direct" {
            let host = attr_in(&xml, "host", "name").unwrap_or("").to_string();
            let port = attr_in(&xml, "host", "port").map(str::to_string);
            let device = attr_in(&xml, "device", "path").unwrap_or("").to_string();
            let lun = volume.rsplit(':').next().unwrap_or("0").to_string();
            let auth = attr_in(&xml, "auth", "username").map(|u| {
                let usage = attr_in(&xml, "secret", "usage")
                    .or_else(|| attr_in(&xml, "secret", "uuid"))
                    .unwrap_or("")
                    .to_string();
                (u.to_string(), usage)
            });
            return Ok(ResolvedVolume {
                kind: "block".into(),
                path: Some(format!("/some/block/device/{volume}")),
                network: Some(NetworkVolume {
                    protocol: "iscsi".into(),
                    host,
                    port,
                    name: format!("{device}/{lun}"),
                    initiator: attr_in(&xml, "iqn", "name").map(str::to_string),
                    auth,
                }),
            });
        }
        let (kind, name) = match volume.split_once('+') {
            Some((t, n)) => (t.to_string(), n.to_string()),
            None => ("block".to_string(), volume.to_string()),
        };
        Ok(ResolvedVolume {
            path: Some(format!("/some/{kind}/device/{name}")),
            kind,
            network: None,
        })
    }

    fn pass_fd(&mut self, purpose: &FdPurpose) -> Result<i32, String> {
        Ok(match purpose {
            FdPurpose::Monitor(_) | FdPurpose::ListenSocket(_) => 1729,
            FdPurpose::ChardevFile { .. } => 1750,
            FdPurpose::ChardevLog { .. } => 1751,
            FdPurpose::TpmPassthrough(p) => {
                if p.ends_with("/cancel") {
                    1731
                } else {
                    1730
                }
            }
            FdPurpose::Vdpa(_) => 1732,
            FdPurpose::Tap(_) => {
                let fd = self.next_tap;
                self.next_tap += 1;
                fd
            }
            FdPurpose::VhostNet(_) => {
                let fd = self.next_vhost;
                self.next_vhost += 1;
                fd
            }
            FdPurpose::VhostScsi(_) => 3,
            FdPurpose::VhostVsock => 6789,
        })
    }

    fn is_cdrom(&self, path: &str) -> bool {
        path == "/dev/cdrom"
    }

    fn read_file(&self, path: &Path) -> Option<String> {
        let text = std::fs::read_to_string(path).ok()?;
        // The kit stores the symlinks of libvirt's test data as files
        // holding the relative link target.
        let t = text.trim();
        if !t.is_empty() && !t.contains('{') && !t.contains('\n') && t.ends_with(".json") {
            let target = path.parent()?.join(t);
            return std::fs::read_to_string(target).ok();
        }
        Some(text)
    }

    fn list_dir(&self, dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn numa_nodes_available(&self, nodes: &CpuSet) -> bool {
        nodes.last().is_none_or(|n| n <= 7)
    }

    fn auto_nodeset(&self) -> Option<CpuSet> {
        CpuSet::parse("0-3")
    }

    fn graphics_port(&mut self, what: crate::env::GraphicsPort) -> Result<u16, String> {
        // libvirt's "pretend" start: fixed ports, nothing reserved
        Ok(match what {
            crate::env::GraphicsPort::Vnc => 5900,
            crate::env::GraphicsPort::Spice => 5901,
            crate::env::GraphicsPort::SpiceTls => 5902,
        })
    }

    fn free_vsock_cid(&mut self) -> Result<u32, String> {
        Ok(42)
    }

    fn tpm_emulator_socket(&self, _alias: &str) -> String {
        "/dev/test".into()
    }

    fn scsi_host_device(
        &self,
        _adapter: &str,
        _bus: u32,
        _target: u32,
        _unit: u32,
    ) -> Result<String, String> {
        Ok("/dev/sg0".into())
    }

    fn vhost_user_capabilities(&self, binary: &Path) -> Option<String> {
        let out = std::process::Command::new(binary)
            .arg("--print-capabilities")
            .output()
            .ok()?;
        String::from_utf8(out.stdout).ok()
    }
}

/// The harness's [`BuildEnv`] for `def`: `process_env` is the tool's
/// environment (the harness reads `QEMU_AUDIO_DRV` and friends from it).
pub fn conformance_env<'h>(
    def: &Domain,
    conf: &QemuConf,
    aux: &Path,
    host: &'h mut FakeHost,
    process_env: &BTreeMap<String, String>,
) -> BuildEnv<'h> {
    let mounts = conf.hugetlbfs_mount.clone().unwrap_or_default();
    let hugetlbfs = mounts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let s = p.to_string_lossy();
            let page_size_kib = if s.ends_with("1G") { 1_048_576 } else { 2048 };
            HugetlbfsMount {
                path: p.clone(),
                page_size_kib,
                default: i == 0 || page_size_kib == 2048,
            }
        })
        .collect();
    let mut penv = BTreeMap::new();
    penv.insert("PATH".to_string(), "/bin".to_string());
    penv.insert("USER".to_string(), "test".to_string());
    penv.insert("LOGNAME".to_string(), "test".to_string());
    for k in ["QEMU_AUDIO_DRV", "SDL_AUDIODRIVER"] {
        if let Some(v) = process_env.get(k) {
            penv.insert(k.to_string(), v.clone());
        }
    }
    let fw = aux.join("qemufirmwaredata");
    let vu = aux.join("qemuvhostuserdata");
    BuildEnv {
        domain_id: -1,
        privileged: true,
        lib_dir: "/tmp/lib".into(),
        channel_target_dir: "/tmp/channel".into(),
        nvram_dir: "/var/lib/libvirt/qemu/nvram".into(),
        memory_backing_dir: conf
            .memory_backing_dir
            .clone()
            .unwrap_or_else(|| "/var/lib/libvirt/qemu/ram".into()),
        hugetlbfs,
        passt_dir: "/bad-test-used-env-xdg-runtime-dir/libvirt/qemu/run/passt".into(),
        system_page_size_kib: 4,
        firmware_dirs: vec![
            fw.join("etc/qemu/firmware"),
            fw.join("usr/share/qemu/firmware"),
        ],
        vhost_user_dirs: vec![
            vu.join("etc/qemu/vhost-user"),
            vu.join("usr/share/qemu/vhost-user"),
        ],
        path_prefix_map: vec![
            ("/usr/share/qemu".into(), fw.join("usr/share/qemu")),
            ("/etc/qemu".into(), fw.join("etc/qemu")),
            (
                "/usr/libexec/qemu/vhost-user".into(),
                vu.join("usr/libexec/qemu/vhost-user"),
            ),
        ],
        accel: AccelContribution::for_domain(def),
        master_key: std::array::from_fn(|i| i as u8),
        now: 1_234_567_890,
        local_offset: -1800,
        process_env: penv,
        render_node: Some("/dev/dri/foo".into()),
        default_tap_name: "vnet0".into(),
        host,
    }
}
