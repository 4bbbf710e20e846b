//! Character devices: `-chardev` backends (with fd passing for listening
//! sockets and files, TLS for TCP) and serial, parallel, channel and
//! console frontends.

use qvisor_domain::{
    Address, ChrDevice, ChrSource, ChrTcpProtocol, ChrType, OnOff, StrEnum, YesNo,
};

use super::Ctx;
use crate::env::SecretRef;
use crate::error::{Error, Result};
use crate::model::{FdPurpose, Opt};
use crate::props::{Keyval, Props};

/// How a chardev backend is being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChrUse {
    /// A device frontend (serial, channel, RNG, smartcard, redirdev ...):
    /// listening UNIX sockets and files are passed as descriptors; TCP gets
    /// qemu.conf's chardev TLS.
    Device,
    /// vhost-user net: sockets are opened by QEMU and it waits.
    VhostUserNet,
}

fn reconnect(kv: &mut Keyval, src: &ChrSource) {
    if let Some(r) = src.source_residue.find("reconnect") {
        match r.get_attr("enabled") {
            Some("yes") => kv.push("reconnect", r.get_attr("timeout").unwrap_or("0")),
            Some("no") => kv.push("reconnect", "0"),
            _ => {}
        }
    }
}

/// Emits the objects and the `-chardev` of a backend with id `id`;
/// `devalias` is the device alias used for fd-set names.
pub(super) fn chardev(
    ctx: &mut Ctx,
    src: &ChrSource,
    id: &str,
    devalias: &str,
    usage: ChrUse,
) -> Result<()> {
    let passing = usage == ChrUse::Device && ctx.env.host.passes_chardev_fds();
    let mut kv;
    match src.kind {
        ChrType::Null => kv = Keyval::head("null").kv("id", id),
        ChrType::Vc => kv = Keyval::head("vc").kv("id", id),
        ChrType::Pty => kv = Keyval::head("pty").kv("id", id),
        ChrType::Stdio => kv = Keyval::head("stdio").kv("id", id),
        ChrType::Dev => {
            let backend = if id.starts_with("charparallel") {
                "parallel"
            } else {
                "serial"
            };
            kv = Keyval::head(backend)
                .kv("id", id)
                .kv("path", src.path.clone().unwrap_or_default());
        }
        ChrType::Pipe => {
            kv = Keyval::head("pipe")
                .kv("id", id)
                .kv("path", src.path.clone().unwrap_or_default());
        }
        ChrType::File => {
            kv = Keyval::head("file").kv("id", id);
            let path = src.path.clone().unwrap_or_default();
            if passing {
                let append = src.append == Some(OnOff::On);
                let p = ctx.pass_fdset(
                    FdPurpose::ChardevFile { path, append },
                    &format!("{devalias}-source"),
                )?;
                kv.push("path", p);
                kv.push("append", "on");
            } else {
                kv.push("path", path);
                if let Some(a) = src.append {
                    kv.push("append", a);
                }
            }
        }
        ChrType::Udp => {
            kv = Keyval::head("udp")
                .kv("id", id)
                .kv("host", src.host.clone().unwrap_or_default())
                .kv("port", src.service.clone().unwrap_or_default())
                .kv("localaddr", src.bind_host.clone().unwrap_or_default())
                .kv(
                    "localport",
                    src.bind_service.clone().unwrap_or_else(|| "0".into()),
                );
        }
        ChrType::Tcp => {
            let mut tls_alias = None;
            if passing {
                let tls = match src.tls {
                    Some(t) => t == YesNo::Yes,
                    None => ctx.conf.chardev_tls,
                };
                if tls {
                    let conf = ctx.tls(qvisor_conf::qemu::TlsService::Chardev);
                    let mut pw = None;
                    if let Some(uuid) = &conf.secret_uuid {
                        let value = ctx
                            .env
                            .host
                            .secret(&SecretRef::Uuid(uuid.clone()))
                            .map_err(Error::NotFound)?;
                        let salias = format!("{id}-secret0");
                        let e = ctx.encrypt_secret(&value);
                        ctx.object(e.object_props(&salias));
                        pw = Some(salias);
                    }
                    let alias = format!("obj{id}_tls0");
                    ctx.object(
                        Props::new()
                            .with("qom-type", "tls-creds-x509")
                            .with("id", alias.as_str())
                            .with("dir", conf.cert_dir.to_string_lossy().into_owned())
                            .with("endpoint", if src.listen { "server" } else { "client" })
                            .with(
                                "verify-peer",
                                if src.listen {
                                    conf.verify.unwrap_or(false)
                                } else {
                                    true
                                },
                            )
                            .opt("passwordid", pw),
                    );
                    tls_alias = Some(alias);
                }
            }
            kv = Keyval::head("socket")
                .kv("id", id)
                .kv("host", src.host.clone().unwrap_or_default())
                .kv("port", src.service.clone().unwrap_or_default());
            if src.protocol == Some(ChrTcpProtocol::Telnet) {
                kv.push("telnet", "on");
            }
            if src.listen {
                kv.push("server", "on");
                kv.push("wait", "off");
            }
            reconnect(&mut kv, src);
            if let Some(a) = tls_alias {
                kv.push("tls-creds", a);
            }
        }
        ChrType::Unix => {
            kv = Keyval::head("socket").kv("id", id);
            let path = src.path.clone().unwrap_or_default();
            if passing && src.listen {
                let fd = ctx.pass_fd(FdPurpose::ListenSocket(path))?;
                kv.push("fd", fd);
            } else {
                kv.push("path", path);
            }
            if src.listen {
                kv.push("server", "on");
                if usage != ChrUse::VhostUserNet {
                    kv.push("wait", "off");
                }
            }
            reconnect(&mut kv, src);
        }
        ChrType::Spicevmc => {
            kv = Keyval::head("spicevmc").kv("id", id).kv(
                "name",
                src.channel.clone().unwrap_or_else(|| "vdagent".into()),
            );
        }
        ChrType::Spiceport => {
            kv = Keyval::head("spiceport")
                .kv("id", id)
                .kv("name", src.channel.clone().unwrap_or_default());
        }
        ChrType::QemuVdagent => {
            kv = Keyval::head("qemu-vdagent")
                .kv("id", id)
                .kv("name", "vdagent");
            let r = &src.source_residue;
            if let Some(c) = r.find("clipboard").and_then(|c| c.get_attr("copypaste")) {
                kv.push("clipboard", if c == "yes" { "on" } else { "off" });
            }
            match r.find("mouse").and_then(|m| m.get_attr("mode")) {
                Some("client") => kv.push("mouse", "on"),
                Some("server") => kv.push("mouse", "off"),
                _ => {}
            }
        }
        ChrType::Dbus => {
            kv = Keyval::head("dbus")
                .kv("id", id)
                .kv("name", src.channel.clone().unwrap_or_default());
        }
        ChrType::Nmdm => {
            return Err(Error::unsupported(format!(
                "unsupported chardev '{}'",
                src.kind.as_str()
            )))
        }
    }
    if let Some(log) = &src.log_file {
        if passing {
            let append = src.log_append == Some(OnOff::On);
            let p = ctx.pass_fdset(
                FdPurpose::ChardevLog {
                    path: log.clone(),
                    append,
                },
                &format!("{devalias}-log"),
            )?;
            kv.push("logfile", p);
            kv.push("logappend", "on");
        } else {
            kv.push("logfile", log.clone());
            if let Some(a) = src.log_append {
                kv.push("logappend", a);
            }
        }
    }
    ctx.keyval("-chardev", kv);
    Ok(())
}

fn serial_model(c: &ChrDevice) -> Option<String> {
    if let Some(m) = &c.target.model {
        return Some(m.clone());
    }
    Some(
        match c.target.kind.as_deref()? {
            "isa-serial" => "isa-serial",
            "usb-serial" => "usb-serial",
            "pci-serial" => "pci-serial",
            "isa-debug" => "isa-debugcon",
            "spapr-vio-serial" => "spapr-vty",
            "system" => return None,
            _ => return None,
        }
        .to_string(),
    )
}

pub(super) fn serials(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    let have_spice = def
        .devices
        .graphics
        .iter()
        .any(|g| g.kind == qvisor_domain::GraphicsType::Spice);
    for s in &def.devices.serials {
        if s.source.kind == ChrType::Spiceport && !have_spice {
            continue;
        }
        let alias = s.info.alias.clone().unwrap_or_default();
        let id = format!("char{alias}");
        chardev(ctx, &s.source, &id, &alias, ChrUse::Device)?;
        match serial_model(s) {
            Some(model) => {
                let mut p = Props::new()
                    .with("driver", model.as_str())
                    .with("chardev", id.as_str())
                    .with("id", alias.as_str());
                if model == "isa-serial" {
                    p.set("index", s.target.port.unwrap_or(0));
                }
                super::devices::address_props(ctx, &mut p, &s.info)?;
                ctx.device(p);
            }
            None => ctx.word("-serial", format!("chardev:{id}")),
        }
    }
    Ok(())
}

pub(super) fn parallels(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    for p in &def.devices.parallels {
        let alias = p.info.alias.clone().unwrap_or_default();
        let id = format!("char{alias}");
        chardev(ctx, &p.source, &id, &alias, ChrUse::Device)?;
        ctx.device(
            Props::new()
                .with("driver", "isa-parallel")
                .with("chardev", id)
                .with("id", alias),
        );
    }
    Ok(())
}

fn virtio_serial_port(ctx: &mut Ctx, c: &ChrDevice, console: bool) -> Result<()> {
    let alias = c.info.alias.clone().unwrap_or_default();
    if !console && c.source.kind == ChrType::Spicevmc {
        if let Some(n) = &c.target.name {
            if n != "com.redhat.spice.0" {
                return Err(Error::unsupported(format!(
                    "Unsupported spicevmc target name '{n}'"
                )));
            }
        }
    }
    let mut p = Props::new().with(
        "driver",
        if console {
            "virtconsole"
        } else {
            "virtserialport"
        },
    );
    super::devices::address_props(ctx, &mut p, &c.info)?;
    p.set("chardev", format!("char{alias}"));
    p.set("id", alias.as_str());
    if !console && (c.source.kind == ChrType::Spicevmc || c.target.name.is_some()) {
        p.set(
            "name",
            c.target
                .name
                .clone()
                .unwrap_or_else(|| "com.redhat.spice.0".into()),
        );
    }
    ctx.device(p);
    Ok(())
}

/// The socket a virtio channel with a path-less UNIX source listens on:
/// `<channel target dir>/domain-<short name>/<target name>`, or a
/// `vioser-CC-BB-PP.sock` name from its virtio-serial address when the
/// target has no name (libvirt's `qemuDomainPrepareChannel`).
fn channel_socket_path(ctx: &Ctx, c: &ChrDevice) -> Option<String> {
    if c.target.kind.as_deref() != Some("virtio")
        || c.source.kind != ChrType::Unix
        || c.source.path.is_some()
    {
        return None;
    }
    let dir = ctx
        .env
        .channel_target_dir
        .join(format!("domain-{}", ctx.short_name));
    let file = match &c.target.name {
        Some(name) => name.clone(),
        None => {
            let (controller, bus, port) = match c.info.address {
                Some(Address::VirtioSerial {
                    controller,
                    bus,
                    port,
                }) => (controller, bus, port),
                _ => (0, 0, 0),
            };
            format!("vioser-{controller:02}-{bus:02}-{port:02}.sock")
        }
    };
    Some(dir.join(file).to_string_lossy().into_owned())
}

pub(super) fn channels(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    for c in &def.devices.channels {
        let alias = c.info.alias.clone().unwrap_or_default();
        let id = format!("char{alias}");
        match channel_socket_path(ctx, c) {
            Some(path) => {
                let mut src = c.source.clone();
                src.path = Some(path);
                chardev(ctx, &src, &id, &alias, ChrUse::Device)?;
            }
            None => chardev(ctx, &c.source, &id, &alias, ChrUse::Device)?,
        }
        match c.target.kind.as_deref() {
            Some("guestfwd") => {
                let s = format!(
                    "tcp:{}:{}-chardev:{id}",
                    c.target.address.clone().unwrap_or_default(),
                    c.target.guestfwd_port.clone().unwrap_or_default()
                );
                ctx.push(Opt::Netdev(
                    Props::new()
                        .with("type", "user")
                        .with("guestfwd", serde_json::json!([{ "str": s }]))
                        .with("id", alias.as_str()),
                ));
            }
            Some("virtio") => virtio_serial_port(ctx, c, false)?,
            _ => return Err(Error::unsupported("unsupported channel target type")),
        }
    }
    Ok(())
}

pub(super) fn consoles(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    for c in &def.devices.consoles {
        let alias = c.info.alias.clone().unwrap_or_default();
        let id = format!("char{alias}");
        match c.target.kind.as_deref() {
            Some("virtio") => {
                chardev(ctx, &c.source, &id, &alias, ChrUse::Device)?;
                virtio_serial_port(ctx, c, true)?;
            }
            Some("sclp") | Some("sclplm") => {
                chardev(ctx, &c.source, &id, &alias, ChrUse::Device)?;
                let drv = if c.target.kind.as_deref() == Some("sclp") {
                    "sclpconsole"
                } else {
                    "sclplmconsole"
                };
                ctx.device(
                    Props::new()
                        .with("driver", drv)
                        .with("chardev", id)
                        .with("id", alias),
                );
            }
            Some("serial") | None => {}
            Some(other) => {
                return Err(Error::unsupported(format!(
                    "unsupported console target type {other}"
                )))
            }
        }
    }
    Ok(())
}
