//! The remaining device families: filesystems, smartcards, TPMs,
//! watchdogs, USB redirection, host devices, RNGs, vmcoreinfo, launch
//! security, panic devices, shared memory and vsock.
//!
//! These classes are still untyped in the domain model
//! ([`qvisor_domain::GenericDevice`]); their attributes are read from the
//! element as written.

use qvisor_caps::Flag;
use qvisor_domain::common::parse_uint;
use qvisor_domain::xml::Element;
use qvisor_domain::{Address, ChrSource, ChrType, GenericDevice, OnOff, VirtioModel};

use super::chardev::{chardev, ChrUse};
use super::devices::{address_props, drive_address_props, rom_props, virtio_props};
use super::Ctx;
use crate::env::SecretRef;
use crate::error::{Error, Result};
use crate::model::{FdPurpose, Opt};
use crate::props::{Keyval, Props};

fn alias(d: &GenericDevice) -> String {
    d.info.alias.clone().unwrap_or_default()
}

fn virtio_model(d: &GenericDevice) -> Option<VirtioModel> {
    match d.attr("model") {
        Some("virtio-transitional") => Some(VirtioModel::VirtioTransitional),
        Some("virtio-non-transitional") => Some(VirtioModel::VirtioNonTransitional),
        _ => None,
    }
}

/// A chardev `<source>` (plus `type=` on `elem`) of an untyped device,
/// read into the typed [`ChrSource`].
fn chr_source(elem: &Element, kind_attr: Option<&str>) -> ChrSource {
    let kind = kind_attr
        .and_then(<ChrType as qvisor_domain::StrEnum>::from_name)
        .unwrap_or(ChrType::Pty);
    let mut s = ChrSource::new(kind);
    for src in elem.children.iter().filter(|c| c.is("source")) {
        let mode = src.get_attr("mode");
        match kind {
            ChrType::Udp => {
                if mode == Some("bind") {
                    s.bind_host = src.get_attr("host").map(str::to_string);
                    s.bind_service = src.get_attr("service").map(str::to_string);
                } else {
                    s.host = src.get_attr("host").map(str::to_string);
                    s.service = src.get_attr("service").map(str::to_string);
                }
            }
            ChrType::Tcp => {
                s.listen = mode == Some("bind");
                s.host = src.get_attr("host").map(str::to_string);
                s.service = src.get_attr("service").map(str::to_string);
                s.tls = src
                    .get_attr("tls")
                    .and_then(<qvisor_domain::YesNo as qvisor_domain::StrEnum>::from_name);
            }
            _ => {
                s.path = src.get_attr("path").map(str::to_string);
                s.listen = mode == Some("bind");
                s.channel = src.get_attr("channel").map(str::to_string);
            }
        }
        s.source_residue
            .children
            .extend(src.children.iter().cloned());
    }
    if let Some(p) = elem.find("protocol").and_then(|p| p.get_attr("type")) {
        s.protocol = <qvisor_domain::ChrTcpProtocol as qvisor_domain::StrEnum>::from_name(p);
    }
    if kind == ChrType::Spicevmc && s.channel.is_none() {
        s.channel = None;
    }
    s
}

pub(super) fn filesystems(ctx: &mut Ctx) -> Result<()> {
    let fss = ctx.def.devices.filesystems.clone();
    for fs in &fss {
        let a = alias(fs);
        let drv = fs.child("driver");
        let drv_type = drv.and_then(|d| d.get_attr("type")).unwrap_or("path");
        let target = fs
            .child("target")
            .and_then(|t| t.get_attr("dir"))
            .unwrap_or("")
            .to_string();
        let src = fs.child("source");
        if drv_type == "virtiofs" {
            let chr = format!("chr-vu-{a}");
            let sock = src
                .and_then(|s| s.get_attr("socket"))
                .map(str::to_string)
                .unwrap_or_else(|| ctx.private_path(&format!("{a}-fs.sock")));
            ctx.keyval(
                "-chardev",
                Keyval::head("socket").kv("id", &chr).kv("path", sock),
            );
            let mut p = virtio_props(ctx, "vhost-user-fs", &fs.info, virtio_model(fs), drv)?;
            p.set("id", a.as_str());
            p.set("chardev", chr);
            p.set_opt(
                "queue-size",
                drv.and_then(|d| d.get_attr("queue"))
                    .and_then(|q| q.parse::<u64>().ok())
                    .filter(|q| *q > 0),
            );
            p.set("tag", target);
            if let Some(b) = fs.info.boot.as_ref().map(|b| b.order) {
                p.set("bootindex", b);
            }
            address_props(ctx, &mut p, &fs.info)?;
            ctx.device(p);
            continue;
        }
        let mut kv;
        if drv_type == "handle" {
            kv = Keyval::head("handle");
        } else {
            kv = Keyval::head("local");
            match fs.attr("accessmode").unwrap_or("passthrough") {
                "mapped" => kv.push("security_model", "mapped"),
                "squash" => kv.push("security_model", "none"),
                _ => kv.push("security_model", "passthrough"),
            }
            if let Some(m) = fs.attr("multidevs").filter(|m| *m != "default") {
                kv.push("multidevs", m);
            }
            if let Some(m) = fs.attr("fmode") {
                let v = u32::from_str_radix(m, 8).unwrap_or(0);
                kv.push("fmode", format!("{v:04o}"));
            }
            if let Some(m) = fs.attr("dmode") {
                let v = u32::from_str_radix(m, 8).unwrap_or(0);
                kv.push("dmode", format!("{v:04o}"));
            }
        }
        if let Some(w) = drv.and_then(|d| d.get_attr("wrpolicy")) {
            kv.push("writeout", w);
        }
        kv.push("id", format!("fsdev-{a}"));
        let path = src
            .and_then(|s| s.get_attr("dir").or_else(|| s.get_attr("file")))
            .unwrap_or("")
            .to_string();
        kv.push("path", path);
        if fs.child("readonly").is_some() {
            kv.push_bare("readonly");
        }
        ctx.keyval("-fsdev", kv);
        let mut p = virtio_props(ctx, "virtio-9p", &fs.info, virtio_model(fs), drv)?;
        p.set("id", a.as_str());
        p.set("fsdev", format!("fsdev-{a}"));
        p.set("mount_tag", target);
        address_props(ctx, &mut p, &fs.info)?;
        ctx.device(p);
    }
    Ok(())
}

pub(super) fn smartcards(ctx: &mut Ctx) -> Result<()> {
    let Some(sc) = ctx.def.devices.smartcards.first().cloned() else {
        return Ok(());
    };
    let a = alias(&sc);
    let mut p = match sc.attr("mode") {
        Some("host") => Props::new()
            .with("driver", "ccid-card-emulated")
            .with("backend", "nss-emulated"),
        Some("host-certificates") => {
            let certs: Vec<String> = sc
                .residue
                .children
                .iter()
                .filter(|c| c.is("certificate"))
                .map(|c| c.trimmed_text().unwrap_or("").to_string())
                .collect();
            let db = sc
                .child("database")
                .and_then(|d| d.trimmed_text())
                .unwrap_or("/etc/pki/nssdb")
                .to_string();
            Props::new()
                .with("driver", "ccid-card-emulated")
                .with("backend", "certificates")
                .with("cert1", certs.first().cloned().unwrap_or_default())
                .with("cert2", certs.get(1).cloned().unwrap_or_default())
                .with("cert3", certs.get(2).cloned().unwrap_or_default())
                .with("db", db)
        }
        _ => {
            let src = chr_source(&sc.residue, sc.attr("type"));
            let id = format!("char{a}");
            chardev(ctx, &src, &id, &a, ChrUse::Device)?;
            Props::new()
                .with("driver", "ccid-card-passthru")
                .with("chardev", id)
        }
    };
    let ccid = match &sc.info.address {
        Some(Address::Ccid { controller, .. }) => *controller,
        _ => 0,
    };
    let cont = ctx
        .def
        .devices
        .controllers
        .iter()
        .find(|c| c.kind == qvisor_domain::ControllerType::Ccid && c.idx() == ccid)
        .and_then(|c| c.info.alias.clone())
        .ok_or_else(|| Error::internal("Could not find CCID controller for smartcard"))?;
    p.set("id", a);
    p.set("bus", format!("{cont}.0"));
    ctx.device(p);
    Ok(())
}

pub(super) fn tpms(ctx: &mut Ctx) -> Result<()> {
    let tpms = ctx.def.devices.tpms.clone();
    for t in &tpms {
        let a = alias(t);
        let model = t.attr("model").unwrap_or("tpm-tis");
        let backend = t.child("backend");
        let btype = backend
            .and_then(|b| b.get_attr("type"))
            .unwrap_or("passthrough");
        if model == "spapr-tpm-proxy" {
            let path = backend
                .and_then(|b| b.find("device"))
                .and_then(|d| d.get_attr("path"))
                .unwrap_or("/dev/tpm0");
            ctx.device(
                Props::new()
                    .with("driver", model)
                    .with("id", a.as_str())
                    .with("host-path", path),
            );
            continue;
        }
        let mut kv = Keyval::head(if btype == "external" {
            "emulator"
        } else {
            btype
        })
        .kv("id", format!("tpm-{a}"));
        match btype {
            "passthrough" => {
                let path = backend
                    .and_then(|b| b.find("device"))
                    .and_then(|d| d.get_attr("path"))
                    .unwrap_or("/dev/tpm0")
                    .to_string();
                let dev = path.rsplit('/').next().unwrap_or("tpm0").to_string();
                let cancel = format!("/sys/class/misc/{dev}/device/cancel");
                let p1 = ctx.pass_fdset(FdPurpose::TpmPassthrough(path), &format!("{a}-tpm"))?;
                let p2 =
                    ctx.pass_fdset(FdPurpose::TpmPassthrough(cancel), &format!("{a}-cancel"))?;
                kv.push("path", p1);
                kv.push("cancel-path", p2);
            }
            "emulator" => {
                let sock = ctx.env.host.tpm_emulator_socket(&a);
                ctx.keyval(
                    "-chardev",
                    Keyval::head("socket").kv("id", "chrtpm").kv("path", sock),
                );
                kv.push("chardev", "chrtpm");
            }
            "external" => {
                let path = backend
                    .and_then(|b| b.find("source"))
                    .and_then(|s| s.get_attr("path"))
                    .unwrap_or("")
                    .to_string();
                ctx.keyval(
                    "-chardev",
                    Keyval::head("socket").kv("id", "chrtpm").kv("path", path),
                );
                kv.push("chardev", "chrtpm");
            }
            other => {
                return Err(Error::unsupported(format!(
                    "unsupported TPM backend '{other}'"
                )))
            }
        }
        ctx.keyval("-tpmdev", kv);
        let driver = if model == "tpm-tis" && !ctx.arch().contains("86") {
            "tpm-tis-device"
        } else {
            model
        };
        let mut p = Props::new()
            .with("driver", driver)
            .with("tpmdev", format!("tpm-{a}"))
            .with("id", a.as_str());
        address_props(ctx, &mut p, &t.info)?;
        ctx.device(p);
    }
    Ok(())
}

pub(super) fn watchdogs(ctx: &mut Ctx) -> Result<()> {
    let Some(w) = ctx.def.devices.watchdogs.first().cloned() else {
        return Ok(());
    };
    let model = w.attr("model").unwrap_or("i6300esb");
    let mut p = Props::new().with("driver", model).with("id", alias(&w));
    address_props(ctx, &mut p, &w.info)?;
    ctx.device(p);
    let action = match w.attr("action").unwrap_or("reset") {
        "dump" => "pause",
        other => other,
    };
    ctx.word("-watchdog-action", action);
    Ok(())
}

fn usb_filter(ctx: &Ctx) -> Option<String> {
    let f = ctx.def.devices.redirfilter.as_ref()?;
    let fmt = |v: Option<&str>, w: usize| -> String {
        match v {
            None | Some("-1") => "-1".into(),
            Some(s) => {
                let n = parse_uint(s, true).unwrap_or(0);
                format!("0x{n:0w$X}")
            }
        }
    };
    let parts: Vec<String> = f
        .children
        .iter()
        .filter(|c| c.is("usbdev"))
        .map(|u| {
            let version = match u.get_attr("version") {
                None | Some("-1") => "-1".to_string(),
                Some(v) => {
                    // BCD version: "1.10" -> 0x0110
                    let (maj, min) = v.split_once('.').unwrap_or((v, "0"));
                    let maj: u32 = maj.parse().unwrap_or(0);
                    let min: u32 = min.parse().unwrap_or(0);
                    format!("0x{:04X}", (maj << 8) | min)
                }
            };
            format!(
                "{}:{}:{}:{}:{}",
                fmt(u.get_attr("class"), 2),
                fmt(u.get_attr("vendor"), 4),
                fmt(u.get_attr("product"), 4),
                version,
                u8::from(u.get_attr("allow") == Some("yes"))
            )
        })
        .collect();
    Some(parts.join("|"))
}

pub(super) fn redirdevs(ctx: &mut Ctx) -> Result<()> {
    let devs = ctx.def.devices.redirdevs.clone();
    for r in &devs {
        let a = alias(r);
        let mut src = chr_source(&r.residue, r.attr("type"));
        if src.kind == ChrType::Spicevmc {
            src.channel = Some("usbredir".into());
        }
        let id = format!("char{a}");
        chardev(ctx, &src, &id, &a, ChrUse::Device)?;
        let mut p = Props::new()
            .with("driver", "usb-redir")
            .with("chardev", id)
            .with("id", a.as_str())
            .opt("filter", usb_filter(ctx));
        if let Some(b) = r.info.boot.as_ref().map(|b| b.order) {
            p.set("bootindex", b);
        }
        address_props(ctx, &mut p, &r.info)?;
        ctx.device(p);
    }
    Ok(())
}

fn num_attr(e: Option<&Element>, a: &str) -> u32 {
    e.and_then(|e| e.get_attr(a))
        .and_then(|v| parse_uint(v, true))
        .unwrap_or(0) as u32
}

pub(super) fn hostdevs(ctx: &mut Ctx) -> Result<()> {
    let hds = ctx.def.devices.hostdevs.clone();
    for h in &hds {
        if h.attr("mode").unwrap_or("subsystem") != "subsystem" {
            continue;
        }
        let a = alias(h);
        let src = h.child("source");
        let boot = h.info.boot.as_ref().map(|b| b.order);
        match h.attr("type").unwrap_or("") {
            "usb" => {
                let addr = src.and_then(|s| s.find("address"));
                let bus = num_attr(addr, "bus");
                let dev = num_attr(addr, "device");
                let missing = h.attr("startupPolicy").is_some_and(|_| addr.is_none());
                let mut p = Props::new().with("driver", "usb-host");
                if !missing {
                    if bus == 0 && dev == 0 {
                        return Err(Error::internal(
                            "USB host device is missing bus/device information",
                        ));
                    }
                    if ctx.has(Flag::UsbHostHostdevice) {
                        p.set("hostdevice", format!("/dev/bus/usb/{bus:03}/{dev:03}"));
                    } else {
                        p.set("hostbus", bus);
                        p.set("hostaddr", dev);
                    }
                }
                p.set("id", a.as_str());
                p.set_opt("bootindex", boot);
                match src.and_then(|s| s.get_attr("guestReset")) {
                    Some("off") => p.set("guest-reset", false),
                    Some("uninitialized") => {
                        p.set("guest-reset", true);
                        p.set("guest-resets-all", false);
                    }
                    Some("on") => {
                        p.set("guest-reset", true);
                        p.set("guest-resets-all", true);
                    }
                    _ => {}
                }
                address_props(ctx, &mut p, &h.info)?;
                ctx.device(p);
            }
            "pci" => {
                if matches!(h.info.address, Some(Address::Unassigned)) {
                    continue;
                }
                let addr = src.and_then(|s| s.find("address"));
                let host = format!(
                    "{:04x}:{:02x}:{:02x}.{:x}",
                    num_attr(addr, "domain"),
                    num_attr(addr, "bus"),
                    num_attr(addr, "slot"),
                    num_attr(addr, "function")
                );
                let mut p = Props::new()
                    .with("driver", "vfio-pci")
                    .with("host", host)
                    .with("id", a.as_str())
                    .opt("bootindex", boot);
                if let Some(t) = h.child("teaming") {
                    if t.get_attr("type") == Some("transient") {
                        p.set_opt("failover_pair_id", t.get_attr("persistent"));
                    }
                }
                address_props(ctx, &mut p, &h.info)?;
                rom_props(&mut p, &h.info)?;
                ctx.device(p);
            }
            "scsi" => scsi_hostdev(ctx, h)?,
            "scsi_host" if src.and_then(|s| s.get_attr("protocol")) == Some("vhost") => {
                let wwpn = src
                    .and_then(|s| s.get_attr("wwpn"))
                    .unwrap_or("")
                    .to_string();
                let fd = ctx.pass_fd(FdPurpose::VhostScsi(wwpn.clone()))?;
                let mut p = virtio_props(ctx, "vhost-scsi", &h.info, virtio_model(h), None)?;
                p.set("wwpn", wwpn);
                p.set("vhostfd", fd.to_string());
                p.set("id", a.as_str());
                address_props(ctx, &mut p, &h.info)?;
                ctx.device(p);
            }
            "mdev" => {
                let uuid = src
                    .and_then(|s| s.find("address"))
                    .and_then(|ad| ad.get_attr("uuid"))
                    .unwrap_or("");
                let model = h.attr("model").unwrap_or("vfio-pci");
                let ramfb = h.attr("ramfb") == Some("on");
                let driver = if model == "vfio-pci" && ramfb {
                    "vfio-pci-nohotplug"
                } else {
                    model
                };
                let mut p = Props::new()
                    .with("driver", driver)
                    .with("id", a.as_str())
                    .with("sysfsdev", format!("/sys/bus/mdev/devices/{uuid}"))
                    .opt("display", h.attr("display"))
                    .flag("ramfb", ramfb)
                    .opt("bootindex", boot);
                address_props(ctx, &mut p, &h.info)?;
                ctx.device(p);
            }
            _ => {}
        }
    }
    Ok(())
}

fn scsi_hostdev(ctx: &mut Ctx, h: &GenericDevice) -> Result<()> {
    let a = alias(h);
    let src = h.child("source");
    ctx.next_node_id += 1;
    let node = format!("libvirt-{}-backend", ctx.next_node_id);
    let readonly = h.child("readonly").is_some();
    let mut p = Props::new();
    if src.and_then(|s| s.get_attr("protocol")) == Some("iscsi") {
        let name = src.and_then(|s| s.get_attr("name")).unwrap_or("");
        let (target, lun) = match name.split_once('/') {
            Some((t, l)) => (t.to_string(), l.parse::<u32>().unwrap_or(0)),
            None => (name.to_string(), 0),
        };
        let host = src.and_then(|s| s.find("host"));
        let hname = host.and_then(|h| h.get_attr("name")).unwrap_or("");
        let port = host.and_then(|h| h.get_attr("port")).unwrap_or("3260");
        p.set("driver", "iscsi");
        p.set("portal", format!("{hname}:{port}"));
        p.set("target", target);
        p.set("lun", lun);
        p.set("transport", "tcp");
        if let Some(auth) = src.and_then(|s| s.find("auth")) {
            if let Some(sec) = auth.find("secret") {
                let r = match sec.get_attr("uuid") {
                    Some(u) => SecretRef::Uuid(u.to_string()),
                    None => SecretRef::Usage {
                        kind: "iscsi".into(),
                        usage: sec.get_attr("usage").unwrap_or("").to_string(),
                    },
                };
                let value = ctx.env.host.secret(&r).map_err(Error::NotFound)?;
                let salias = format!("{node}-secret0");
                let e = ctx.encrypt_secret(&value);
                ctx.object(e.object_props(&salias));
                p.set_opt("user", auth.get_attr("username"));
                p.set("password-secret", salias);
            }
        }
        p.set_opt(
            "initiator-name",
            src.and_then(|s| s.find("initiator"))
                .and_then(|i| i.find("iqn"))
                .and_then(|i| i.get_attr("name")),
        );
    } else {
        let adapter = src
            .and_then(|s| s.find("adapter"))
            .and_then(|ad| ad.get_attr("name"))
            .unwrap_or("");
        let addr = src.and_then(|s| s.find("address"));
        let dev = ctx
            .env
            .host
            .scsi_host_device(
                adapter,
                num_attr(addr, "bus"),
                num_attr(addr, "target"),
                num_attr(addr, "unit"),
            )
            .map_err(Error::Host)?;
        p.set("driver", "host_device");
        p.set("filename", dev);
    }
    p.set("node-name", node.as_str());
    p.set("read-only", readonly);
    ctx.push(Opt::Blockdev(p));
    let mut d = Props::new()
        .with("driver", "scsi-generic")
        .with("drive", node)
        .with("id", a)
        .opt("bootindex", h.info.boot.as_ref().map(|b| b.order));
    drive_address_props(ctx, &mut d, qvisor_domain::DiskBus::Scsi, &h.info)?;
    ctx.device(d);
    Ok(())
}

pub(super) fn rngs(ctx: &mut Ctx) -> Result<()> {
    let rngs = ctx.def.devices.rngs.clone();
    for r in &rngs {
        let a = alias(r);
        let obj = format!("obj{a}");
        let backend = r.child("backend");
        let model = backend
            .and_then(|b| b.get_attr("model"))
            .unwrap_or("random");
        let props = match model {
            "random" => Props::new()
                .with("qom-type", "rng-random")
                .with("id", obj.as_str())
                .with(
                    "filename",
                    backend
                        .and_then(|b| b.trimmed_text())
                        .unwrap_or("/dev/random"),
                ),
            "egd" => {
                let b = backend.cloned().unwrap_or_default();
                let src = chr_source(&b, b.get_attr("type"));
                let id = format!("char{a}");
                chardev(ctx, &src, &id, &a, ChrUse::Device)?;
                Props::new()
                    .with("qom-type", "rng-egd")
                    .with("id", obj.as_str())
                    .with("chardev", id)
            }
            _ => Props::new()
                .with("qom-type", "rng-builtin")
                .with("id", obj.as_str()),
        };
        ctx.object(props);
        let mut p = virtio_props(
            ctx,
            "virtio-rng",
            &r.info,
            virtio_model(r),
            r.child("driver"),
        )?;
        p.set("rng", obj);
        p.set("id", a.as_str());
        if let Some(rate) = r.child("rate") {
            let bytes: u64 = rate
                .get_attr("bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if bytes > 0 {
                let period: u64 = rate
                    .get_attr("period")
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .unwrap_or(1000);
                p.set("max-bytes", bytes);
                p.set("period", period);
            }
        }
        address_props(ctx, &mut p, &r.info)?;
        ctx.device(p);
    }
    Ok(())
}

pub(super) fn vmcoreinfo(ctx: &mut Ctx) {
    if ctx.def.features.as_ref().and_then(|f| f.vmcoreinfo) == Some(OnOff::On) {
        ctx.device(Props::new().with("driver", "vmcoreinfo"));
    }
}

pub(super) fn launch_security(ctx: &mut Ctx) -> Result<()> {
    let Some(ls) = ctx.def.launch_security.clone() else {
        return Ok(());
    };
    match ls.get_attr("type") {
        Some("sev") => {
            let num = |n: &str| -> Option<u64> {
                ls.find(n)
                    .and_then(|e| e.trimmed_text())
                    .and_then(|t| parse_uint(t, true))
            };
            let dh = ls
                .find("dhCert")
                .map(|_| ctx.private_path("dh_cert.base64"));
            let session = ls
                .find("session")
                .map(|_| ctx.private_path("session.base64"));
            let hashes = match ls.get_attr("kernelHashes") {
                Some("yes") => Some(true),
                Some("no") => Some(false),
                _ => None,
            };
            ctx.object(
                Props::new()
                    .with("qom-type", "sev-guest")
                    .with("id", "lsec0")
                    .with("cbitpos", num("cbitpos").unwrap_or(0))
                    .with("reduced-phys-bits", num("reducedPhysBits").unwrap_or(0))
                    .with("policy", num("policy").unwrap_or(0))
                    .opt("dh-cert-file", dh)
                    .opt("session-file", session)
                    .opt("kernel-hashes", hashes),
            );
        }
        Some("s390-pv") => ctx.object(
            Props::new()
                .with("qom-type", "s390-pv-guest")
                .with("id", "lsec0"),
        ),
        _ => {}
    }
    Ok(())
}

pub(super) fn panics(ctx: &mut Ctx) -> Result<()> {
    let panics = ctx.def.devices.panics.clone();
    let x86 = ctx.arch().contains("86");
    for p in &panics {
        let model = p.attr("model").unwrap_or(if x86 { "isa" } else { "" });
        match model {
            "isa" => {
                let mut props = Props::new().with("driver", "pvpanic");
                if let Some(Address::Isa { iobase, .. }) = &p.info.address {
                    props.set("ioport", *iobase);
                }
                ctx.device(props);
            }
            "pvpanic" => {
                let mut props = Props::new()
                    .with("driver", "pvpanic-pci")
                    .with("id", alias(p));
                address_props(ctx, &mut props, &p.info)?;
                ctx.device(props);
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn shmems(ctx: &mut Ctx) -> Result<()> {
    let shmems = ctx.def.devices.shmems.clone();
    for sh in &shmems {
        let a = alias(sh);
        let name = sh.attr("name").unwrap_or("").to_string();
        let model = sh
            .child("model")
            .and_then(|m| m.get_attr("type"))
            .unwrap_or("ivshmem-plain")
            .to_string();
        let size = sh
            .child("size")
            .and_then(|e| {
                let n = parse_uint(e.trimmed_text()?, false)?;
                let scale = qvisor_domain::common::unit_scale(e.get_attr("unit").unwrap_or("M"))?;
                n.checked_mul(scale)
            })
            .unwrap_or(0);
        if size != 0 && (size & (size - 1) != 0 || size < 1024 * 1024) {
            return Err(Error::unsupported(
                "shmem size must be a power of two and at least 1 MiB",
            ));
        }
        if !matches!(sh.info.address, Some(Address::Pci(_))) {
            return Err(Error::unsupported(
                "only 'pci' addresses are supported for the shared memory device",
            ));
        }
        let server = sh.child("server");
        let mut p = Props::new()
            .with("driver", model.as_str())
            .with("id", a.as_str());
        match model.as_str() {
            "ivshmem-plain" => {
                let memdev = format!("shmmem-{a}");
                ctx.object(
                    Props::new()
                        .with("qom-type", "memory-backend-file")
                        .with("id", memdev.as_str())
                        .with("mem-path", format!("/dev/shm/{name}"))
                        .with("size", size)
                        .with("share", true),
                );
                p.set("memdev", memdev);
                match sh.child("role").and_then(|r| r.trimmed_text()) {
                    Some("master") => p.set("master", "on"),
                    Some("peer") => p.set("master", "off"),
                    _ => {}
                }
            }
            "ivshmem-doorbell" => p.set("chardev", format!("char{a}")),
            other => {
                return Err(Error::unsupported(format!(
                    "shmem model '{other}' is not supported by this QEMU binary"
                )))
            }
        }
        if let Some(msi) = sh.child("msi") {
            p.set_opt(
                "vectors",
                msi.get_attr("vectors")
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|v| *v > 0),
            );
            match msi.get_attr("ioeventfd") {
                Some("on") => p.set("ioeventfd", true),
                Some("off") => p.set("ioeventfd", false),
                _ => {}
            }
        }
        address_props(ctx, &mut p, &sh.info)?;
        ctx.device(p);
        if model == "ivshmem-doorbell" {
            let mut cs = ChrSource::new(ChrType::Unix);
            cs.path = Some(
                server
                    .and_then(|s| s.get_attr("path"))
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("/var/lib/libvirt/shmem-{name}-sock")),
            );
            ctx.keyval(
                "-chardev",
                Keyval::head("socket")
                    .kv("id", format!("char{a}"))
                    .kv("path", cs.path.clone().unwrap_or_default()),
            );
        }
    }
    Ok(())
}

pub(super) fn vsock(ctx: &mut Ctx) -> Result<()> {
    let Some(v) = ctx.def.devices.vsock.clone() else {
        return Ok(());
    };
    let cid_el = v.child("cid");
    let cid: u64 = match cid_el.and_then(|c| c.get_attr("auto")) {
        Some("yes") | None if cid_el.and_then(|c| c.get_attr("address")).is_none() => {
            ctx.env.host.free_vsock_cid().map_err(Error::Host)?.into()
        }
        _ => cid_el
            .and_then(|c| c.get_attr("address"))
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
    };
    let fd = ctx.pass_fd(FdPurpose::VhostVsock)?;
    let mut p = virtio_props(
        ctx,
        "vhost-vsock",
        &v.info,
        virtio_model(&v),
        v.child("driver"),
    )?;
    p.set("id", alias(&v));
    p.set("guest-cid", cid);
    p.set("vhostfd", fd.to_string());
    address_props(ctx, &mut p, &v.info)?;
    ctx.device(p);
    Ok(())
}
