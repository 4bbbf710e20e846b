//! Device aliases: the QEMU `id` of every device, assigned at start-up the
//! way libvirt's QEMU driver does (`qemuAssignDeviceAliases`), so monitor
//! commands, migration streams and `<qemu:override>` find the same names.
//!
//! User aliases (`ua-...`) are kept; every other device gets
//! `<prefix><n>` with libvirt's prefixes and numbering.

use qvisor_domain::{
    Address, ControllerModel, ControllerType, DeviceInfo, DiskBus, Domain, NetType, PciModel,
    ScsiModel,
};

use crate::machine::{has_builtin_ide, is_q35};

/// Index of `alias` after `prefix` (`net3` → 3), like libvirt's
/// `qemuDomainDeviceAliasIndex`.
fn alias_index(info: &DeviceInfo, prefix: &str) -> Option<u32> {
    info.alias.as_deref()?.strip_prefix(prefix)?.parse().ok()
}

fn next_index<'a>(infos: impl Iterator<Item = &'a DeviceInfo>, prefix: &str) -> u32 {
    infos
        .filter_map(|i| alias_index(i, prefix))
        .map(|n| n + 1)
        .max()
        .unwrap_or(0)
}

/// The alias prefix of a disk bus.
fn disk_prefix(bus: DiskBus) -> &'static str {
    match bus {
        DiskBus::Ide => "ide",
        DiskBus::Fdc => "fdc",
        DiskBus::Scsi => "scsi",
        DiskBus::Virtio => "virtio",
        DiskBus::Xen => "xen",
        DiskBus::Usb => "usb",
        DiskBus::Uml => "uml",
        DiskBus::Sata => "sata",
        DiskBus::Sd => "sd",
    }
}

/// Assigns an alias to every device that has none.
pub fn assign_aliases(def: &mut Domain) {
    let machine = def.os.machine.clone().unwrap_or_default();
    let q35 = is_q35(&machine);
    let builtin_ide = has_builtin_ide(&machine);

    // disks
    let scsi_models: Vec<(u32, Option<ScsiModel>)> = def
        .devices
        .controllers
        .iter()
        .filter(|c| c.kind == ControllerType::Scsi)
        .map(|c| (c.idx(), c.scsi_model()))
        .collect();
    for disk in &mut def.devices.disks {
        if disk.info.alias.is_some() {
            continue;
        }
        let prefix = disk_prefix(disk.bus());
        let alias = match &disk.info.address {
            Some(Address::Drive(d)) => {
                let lsi = scsi_models
                    .iter()
                    .find(|(i, _)| *i == d.controller)
                    .is_some_and(|(_, m)| *m == Some(ScsiModel::Lsilogic));
                if disk.bus() != DiskBus::Scsi || lsi {
                    format!("{prefix}{}-{}-{}", d.controller, d.bus, d.unit)
                } else {
                    format!("{prefix}{}-{}-{}-{}", d.controller, d.bus, d.target, d.unit)
                }
            }
            _ => {
                let idx = qvisor_domain::disk_name_to_index(&disk.target.dev).unwrap_or(0);
                format!("{prefix}-disk{idx}")
            }
        };
        disk.info.alias = Some(alias);
    }

    // nets (type='hostdev' interfaces share the hostdevN space)
    for i in 0..def.devices.interfaces.len() {
        if def.devices.interfaces[i].info.alias.is_some() {
            continue;
        }
        let alias = if def.devices.interfaces[i].kind == NetType::Hostdev {
            format!("hostdev{}", next_hostdev_index(def))
        } else {
            let n = next_index(def.devices.interfaces.iter().map(|n| &n.info), "net");
            format!("net{n}")
        };
        def.devices.interfaces[i].info.alias = Some(alias);
    }

    for i in 0..def.devices.filesystems.len() {
        if def.devices.filesystems[i].info.alias.is_none() {
            let n = next_index(def.devices.filesystems.iter().map(|f| &f.info), "fs");
            def.devices.filesystems[i].info.alias = Some(format!("fs{n}"));
        }
    }
    for (i, s) in def.devices.sounds.iter_mut().enumerate() {
        s.info.alias.get_or_insert_with(|| format!("sound{i}"));
    }
    for i in 0..def.devices.hostdevs.len() {
        if def.devices.hostdevs[i].info.alias.is_none() {
            let n = next_hostdev_index(def);
            def.devices.hostdevs[i].info.alias = Some(format!("hostdev{n}"));
        }
    }
    for i in 0..def.devices.redirdevs.len() {
        if def.devices.redirdevs[i].info.alias.is_none() {
            def.devices.redirdevs[i].info.alias = Some(format!("redir{i}"));
        }
    }
    for (i, v) in def.devices.videos.iter_mut().enumerate() {
        v.info.alias.get_or_insert_with(|| format!("video{i}"));
    }
    for c in &mut def.devices.controllers {
        if c.info.alias.is_some() {
            continue;
        }
        let idx = c.idx();
        let alias = match c.kind {
            ControllerType::Pci => {
                if c.model == Some(ControllerModel::Pci(PciModel::PcieRoot)) {
                    format!("pcie.{idx}")
                } else {
                    format!("pci.{idx}")
                }
            }
            ControllerType::Ide if builtin_ide && idx == 0 => "ide".into(),
            ControllerType::Sata if q35 && idx == 0 => "ide".into(),
            ControllerType::Usb if idx == 0 => "usb".into(),
            ControllerType::Scsi if idx == 0 && c.scsi_model() == Some(ScsiModel::Ncr53c90) => {
                "scsi".into()
            }
            kind => format!("{kind}{idx}"),
        };
        c.info.alias = Some(alias);
    }
    for (i, inp) in def.devices.inputs.iter_mut().enumerate() {
        inp.info.alias.get_or_insert_with(|| format!("input{i}"));
    }
    for (i, c) in def.devices.parallels.iter_mut().enumerate() {
        c.info.alias.get_or_insert_with(|| format!("parallel{i}"));
    }
    for (i, c) in def.devices.serials.iter_mut().enumerate() {
        c.info.alias.get_or_insert_with(|| format!("serial{i}"));
    }
    for (i, c) in def.devices.channels.iter_mut().enumerate() {
        c.info.alias.get_or_insert_with(|| format!("channel{i}"));
    }
    for (i, c) in def.devices.consoles.iter_mut().enumerate() {
        c.info.alias.get_or_insert_with(|| format!("console{i}"));
    }
    for (i, h) in def.devices.hubs.iter_mut().enumerate() {
        h.info.alias.get_or_insert_with(|| format!("hub{i}"));
    }
    for (i, s) in def.devices.shmems.iter_mut().enumerate() {
        s.info.alias.get_or_insert_with(|| format!("shmem{i}"));
    }
    for (i, s) in def.devices.smartcards.iter_mut().enumerate() {
        s.info.alias.get_or_insert_with(|| format!("smartcard{i}"));
    }
    for w in &mut def.devices.watchdogs {
        w.info.alias.get_or_insert_with(|| "watchdog0".into());
    }
    if let Some(b) = &mut def.devices.memballoon {
        if b.model != "none" {
            b.info.alias.get_or_insert_with(|| "balloon0".into());
        }
    }
    for i in 0..def.devices.rngs.len() {
        if def.devices.rngs[i].info.alias.is_none() {
            let n = next_index(def.devices.rngs.iter().map(|r| &r.info), "rng");
            def.devices.rngs[i].info.alias = Some(format!("rng{n}"));
        }
    }
    for (i, t) in def.devices.tpms.iter_mut().enumerate() {
        t.info.alias.get_or_insert_with(|| format!("tpm{i}"));
    }
    for i in 0..def.devices.memories.len() {
        if def.devices.memories[i].info.alias.is_some() {
            continue;
        }
        let model = def.devices.memories[i]
            .attr("model")
            .unwrap_or("dimm")
            .to_string();
        let prefix = match model.as_str() {
            "nvdimm" => "nvdimm",
            "virtio-pmem" => "virtiopmem",
            "virtio-mem" => "virtiomem",
            "sgx-epc" => "epc",
            _ => "dimm",
        };
        let idx = match (&def.devices.memories[i].info.address, prefix) {
            (Some(Address::Dimm { slot, .. }), "dimm" | "nvdimm") => *slot,
            _ => next_index(def.devices.memories.iter().map(|m| &m.info), prefix),
        };
        def.devices.memories[i].info.alias = Some(format!("{prefix}{idx}"));
    }
    if let Some(v) = &mut def.devices.vsock {
        v.info.alias.get_or_insert_with(|| "vsock0".into());
    }
    if let Some(io) = &mut def.devices.iommu {
        io.info.alias.get_or_insert_with(|| "iommu0".into());
    }
}

fn next_hostdev_index(def: &Domain) -> u32 {
    let a = next_index(def.devices.hostdevs.iter().map(|h| &h.info), "hostdev");
    let b = next_index(def.devices.interfaces.iter().map(|n| &n.info), "hostdev");
    a.max(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_libvirt_prefixes_and_keep_user_aliases() {
        let mut d = qvisor_domain::parse(
            "<domain type='kvm'><name>a</name><memory>1</memory>\
             <os><type machine='pc'>hvm</type></os><devices>\
             <disk type='file'><source file='/a'/><target dev='vdb' bus='virtio'/></disk>\
             <disk type='file'><source file='/b'/><target dev='hda' bus='ide'/>\
             <address type='drive' controller='0' bus='1' target='0' unit='0'/></disk>\
             <controller type='ide' index='0'/><controller type='usb' index='0'/>\
             <interface type='user'><alias name='ua-nic'/></interface>\
             <interface type='user'/>\
             </devices></domain>",
            qvisor_domain::ParseOptions { inactive: true },
        )
        .unwrap();
        assign_aliases(&mut d);
        let disks: Vec<_> = d
            .devices
            .disks
            .iter()
            .map(|x| x.info.alias.clone().unwrap())
            .collect();
        assert_eq!(disks, vec!["virtio-disk1", "ide0-1-0"]);
        let ctl: Vec<_> = d
            .devices
            .controllers
            .iter()
            .map(|c| c.info.alias.clone().unwrap())
            .collect();
        assert_eq!(ctl, vec!["ide", "usb"]);
        let nets: Vec<_> = d
            .devices
            .interfaces
            .iter()
            .map(|n| n.info.alias.clone().unwrap())
            .collect();
        assert_eq!(nets, vec!["ua-nic", "net0"]);
    }
}
