//! USB port assignment at start-up (libvirt's `qemuDomainAssignUSBAddresses`
//! for a new domain): every USB device without a port gets the first free
//! port of the first USB bus, searching hubs depth first.

use std::collections::BTreeMap;

use qvisor_domain::{Address, ControllerType, DeviceInfo, DiskBus, Domain, InputBus, UsbModel};

use crate::error::{Error, Result};

/// Maximum depth of a USB port path (`1.2.3.4`), plus one.
const MAX_DEPTH: usize = 5;
/// Ports of a `usb-hub`.
const HUB_PORTS: usize = 8;

#[derive(Debug, Default)]
struct Hub {
    used: Vec<bool>,
    hubs: Vec<Option<Hub>>,
}

impl Hub {
    fn new(n: usize) -> Self {
        Hub {
            used: vec![false; n],
            hubs: (0..n).map(|_| None).collect(),
        }
    }

    fn find_free(&self, path: &mut Vec<usize>) -> bool {
        if let Some(i) = self.used.iter().position(|u| !u) {
            path.push(i + 1);
            return true;
        }
        if path.len() + 1 >= MAX_DEPTH {
            return false;
        }
        for (i, h) in self.hubs.iter().enumerate() {
            if let Some(h) = h {
                path.push(i + 1);
                if h.find_free(path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }

    /// The hub holding the last element of `path`, and its index there.
    fn locate(&mut self, path: &[usize]) -> Option<(&mut Hub, usize)> {
        let (last, head) = path.split_last()?;
        let mut hub = self;
        for p in head {
            hub = hub.hubs.get_mut(p.checked_sub(1)?)?.as_mut()?;
        }
        let idx = last.checked_sub(1)?;
        (idx < hub.used.len()).then_some((hub, idx))
    }
}

fn model_ports(model: Option<UsbModel>, ports: Option<u32>) -> usize {
    match model {
        None | Some(UsbModel::Piix3Uhci | UsbModel::Piix4Uhci | UsbModel::Vt82c686bUhci) => 2,
        Some(UsbModel::Ehci | UsbModel::Ich9Ehci1) => 6,
        Some(UsbModel::Ich9Uhci1 | UsbModel::Ich9Uhci2 | UsbModel::Ich9Uhci3) => 0,
        Some(UsbModel::PciOhci) => 3,
        Some(UsbModel::NecXhci | UsbModel::QemuXhci) => ports.map_or(4, |p| p as usize),
        Some(UsbModel::Qusb1 | UsbModel::Qusb2) => ports.map_or(8, |p| p as usize),
        Some(UsbModel::None) => 0,
    }
}

fn parse_port(p: &str) -> Option<Vec<usize>> {
    p.split('.').map(|x| x.parse().ok()).collect()
}

fn has_port(info: &DeviceInfo) -> Option<(u32, Vec<usize>)> {
    match &info.address {
        Some(Address::Usb { bus, port: Some(p) }) => parse_port(p).map(|v| (*bus, v)),
        _ => None,
    }
}

/// Mutable references to the infos of USB devices, in libvirt's order.
fn usb_infos(def: &mut Domain, with_hubs: bool) -> Vec<&mut DeviceInfo> {
    let d = &mut def.devices;
    let mut v: Vec<&mut DeviceInfo> = Vec::new();
    if with_hubs {
        v.extend(d.hubs.iter_mut().map(|h| &mut h.info));
    }
    v.extend(
        d.hostdevs
            .iter_mut()
            .filter(|h| h.attr("type") == Some("usb"))
            .map(|h| &mut h.info),
    );
    v.extend(
        d.disks
            .iter_mut()
            .filter(|x| x.bus() == DiskBus::Usb)
            .map(|x| &mut x.info),
    );
    v.extend(
        d.controllers
            .iter_mut()
            .filter(|c| c.kind == ControllerType::Ccid)
            .map(|c| &mut c.info),
    );
    v.extend(
        d.inputs
            .iter_mut()
            .filter(|i| i.bus == Some(InputBus::Usb))
            .map(|i| &mut i.info),
    );
    v.extend(
        d.serials
            .iter_mut()
            .filter(|s| s.target.kind.as_deref() == Some("usb-serial"))
            .map(|s| &mut s.info),
    );
    v.extend(
        d.sounds
            .iter_mut()
            .filter(|s| s.model == "usb")
            .map(|s| &mut s.info),
    );
    v.extend(
        d.redirdevs
            .iter_mut()
            .filter(|r| r.attr("bus").unwrap_or("usb") == "usb")
            .map(|r| &mut r.info),
    );
    v
}

fn assign(buses: &mut BTreeMap<u32, Hub>, info: &mut DeviceInfo) -> Result<()> {
    let wanted_bus = match &info.address {
        Some(Address::Usb { bus, .. }) => Some(*bus),
        _ => None,
    };
    for (bus, hub) in buses.iter_mut() {
        if wanted_bus.is_some_and(|b| b != *bus) {
            continue;
        }
        let mut path = Vec::new();
        if hub.find_free(&mut path) {
            if let Some((h, i)) = hub.locate(&path) {
                h.used[i] = true;
            }
            info.address = Some(Address::Usb {
                bus: *bus,
                port: Some(
                    path.iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("."),
                ),
            });
            return Ok(());
        }
    }
    if let Some(b) = wanted_bus {
        if !buses.contains_key(&b) {
            return Err(Error::internal(format!(
                "USB bus {b} requested but no controller with that index is present"
            )));
        }
    }
    Err(Error::internal("No free USB ports"))
}

/// Assigns USB ports to devices that have none.
pub fn assign_usb_ports(def: &mut Domain) -> Result<()> {
    let mut buses: BTreeMap<u32, Hub> = BTreeMap::new();
    for c in def
        .devices
        .controllers
        .iter()
        .filter(|c| c.kind == ControllerType::Usb)
    {
        let n = model_ports(c.usb_model(), c.ports);
        if n > 0 {
            buses.entry(c.idx()).or_insert_with(|| Hub::new(n));
        }
    }
    // hubs that already have an address
    for h in &def.devices.hubs {
        if let Some((bus, path)) = has_port(&h.info) {
            if let Some((hub, i)) = buses.get_mut(&bus).and_then(|b| b.locate(&path)) {
                hub.used[i] = true;
                hub.hubs[i] = Some(Hub::new(HUB_PORTS));
            }
        }
    }
    // reserve existing addresses
    for info in usb_infos(def, false) {
        if let Some((bus, path)) = has_port(info) {
            if let Some((hub, i)) = buses.get_mut(&bus).and_then(|b| b.locate(&path)) {
                hub.used[i] = true;
            }
        }
    }
    // hubs without an address
    for i in 0..def.devices.hubs.len() {
        if has_port(&def.devices.hubs[i].info).is_some() {
            continue;
        }
        assign(&mut buses, &mut def.devices.hubs[i].info)?;
        if let Some((bus, path)) = has_port(&def.devices.hubs[i].info) {
            if let Some((hub, j)) = buses.get_mut(&bus).and_then(|b| b.locate(&path)) {
                hub.hubs[j] = Some(Hub::new(HUB_PORTS));
            }
        }
    }
    for info in usb_infos(def, false) {
        let needs = matches!(&info.address, None | Some(Address::Usb { port: None, .. }));
        if needs {
            assign(&mut buses, info)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(xml: &str) -> Domain {
        qvisor_domain::parse(xml, qvisor_domain::ParseOptions { inactive: true }).unwrap()
    }

    #[test]
    fn usb_devices_take_the_first_free_ports_in_libvirt_order() {
        let mut d = def("<domain type='kvm'><name>a</name><memory>1</memory>\
            <os><type>hvm</type></os><devices>\
            <controller type='usb' index='0' model='piix3-uhci'/>\
            <input type='tablet' bus='usb'/>\
            <hostdev mode='subsystem' type='usb'><source><address bus='1' device='2'/></source>\
            <address type='usb' bus='0' port='1'/></hostdev>\
            </devices></domain>");
        assign_usb_ports(&mut d).unwrap();
        assert_eq!(
            d.devices.inputs[0].info.address,
            Some(Address::Usb {
                bus: 0,
                port: Some("2".into())
            })
        );
    }

    #[test]
    fn running_out_of_usb_ports_is_an_error() {
        let mut d = def("<domain type='kvm'><name>a</name><memory>1</memory>\
            <os><type>hvm</type></os><devices>\
            <controller type='usb' index='0' model='piix3-uhci'/>\
            <input type='tablet' bus='usb'/><input type='mouse' bus='usb'/>\
            <input type='keyboard' bus='usb'/></devices></domain>");
        assert!(assign_usb_ports(&mut d).is_err());
    }
}
