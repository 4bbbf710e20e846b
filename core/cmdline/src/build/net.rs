//! Network interfaces: host descriptors (TAP, vhost-net, vDPA), the
//! `-netdev` backend and the NIC `-device`.

use qvisor_domain::{Interface, NetType, VirtioModel};

use super::chardev::{chardev, ChrUse};
use super::devices::{address_props, rom_props, virtio_props};
use super::Ctx;
use crate::error::{Error, Result};
use crate::model::{FdPurpose, Opt};
use crate::props::Props;

fn driver_attr<'a>(n: &'a Interface, a: &str) -> Option<&'a str> {
    n.driver.as_ref().and_then(|d| d.get_attr(a))
}

fn queues(n: &Interface) -> u32 {
    driver_attr(n, "queues")
        .and_then(|q| q.parse().ok())
        .unwrap_or(0)
}

fn onoff(v: Option<&str>) -> Option<bool> {
    match v {
        Some("on") => Some(true),
        Some("off") => Some(false),
        _ => None,
    }
}

fn hostnet_props(ctx: &mut Ctx, n: &Interface, alias: &str) -> Result<Props> {
    let mut p = Props::new();
    match n.kind {
        NetType::Bridge | NetType::Network | NetType::Direct | NetType::Ethernet => {
            let ifname = n
                .target
                .as_ref()
                .and_then(|t| t.get_attr("dev"))
                .unwrap_or(&ctx.env.default_tap_name)
                .to_string();
            let nq = queues(n).max(1);
            let mut tapfds = Vec::new();
            for _ in 0..nq {
                tapfds.push(ctx.pass_fd(FdPurpose::Tap(ifname.clone()))?.to_string());
            }
            let mut vhostfds = Vec::new();
            if n.is_virtio() && driver_attr(n, "name") != Some("qemu") {
                for _ in 0..nq {
                    vhostfds.push(
                        ctx.pass_fd(FdPurpose::VhostNet(ifname.clone()))?
                            .to_string(),
                    );
                }
            }
            p.set("type", "tap");
            if tapfds.len() > 1 {
                p.set("fds", tapfds.join(":"));
            } else {
                p.set("fd", tapfds.join(":"));
            }
            if !vhostfds.is_empty() {
                p.set("vhost", true);
                if vhostfds.len() > 1 {
                    p.set("vhostfds", vhostfds.join(":"));
                } else {
                    p.set("vhostfd", vhostfds.join(":"));
                }
            }
            if let Some(sb) = n
                .residue
                .find("tune")
                .and_then(|t| t.find("sndbuf"))
                .and_then(|s| s.trimmed_text())
                .and_then(|s| s.parse::<u64>().ok())
            {
                p.set("sndbuf", sb);
            }
        }
        NetType::Client | NetType::Server | NetType::Mcast | NetType::Udp => {
            let addr = n.source_attr("address").unwrap_or("");
            let port = n.source_attr("port").unwrap_or("0");
            p.set("type", "socket");
            let key = match n.kind {
                NetType::Client => "connect",
                NetType::Server => "listen",
                NetType::Mcast => "mcast",
                _ => "udp",
            };
            p.set(key, format!("{addr}:{port}"));
            if n.kind == NetType::Udp {
                let local = n.source.as_ref().and_then(|s| s.find("local"));
                p.set(
                    "localaddr",
                    format!(
                        "{}:{}",
                        local.and_then(|l| l.get_attr("address")).unwrap_or(""),
                        local.and_then(|l| l.get_attr("port")).unwrap_or("0")
                    ),
                );
            }
        }
        NetType::User => {
            let passt = n.residue.find("backend").and_then(|b| b.get_attr("type")) == Some("passt");
            if passt {
                let path = format!(
                    "{}/{}-{alias}.socket",
                    ctx.env.passt_dir.display(),
                    ctx.short_name
                );
                p.set("type", "stream");
                p.set("addr", serde_json::json!({"type": "unix", "path": path}));
                p.set("server", false);
            } else {
                p.set("type", "user");
                for ip in n.residue.children.iter().filter(|c| c.is("ip")) {
                    let Some(addr) = ip.get_attr("address") else {
                        continue;
                    };
                    let prefix = ip.get_attr("prefix").and_then(|v| v.parse::<u64>().ok());
                    if addr.contains(':') {
                        p.set("ipv6-prefix", addr);
                        if let Some(pr) = prefix.filter(|x| *x > 0) {
                            p.set("ipv6-prefixlen", pr);
                        }
                    } else {
                        match prefix.filter(|x| *x > 0) {
                            Some(pr) => p.set("net", format!("{addr}/{pr}")),
                            None => p.set("net", addr),
                        }
                    }
                }
            }
        }
        NetType::Internal => p.set("type", "user"),
        NetType::VhostUser => {
            p.set("type", "vhost-user");
            p.set("chardev", format!("char{alias}"));
            if queues(n) > 1 {
                p.set("queues", queues(n));
            }
        }
        NetType::Vdpa => {
            let dev = n.source_attr("dev").unwrap_or("").to_string();
            let path = ctx.pass_fdset(FdPurpose::Vdpa(dev), &format!("{alias}-vdpa"))?;
            p.set("type", "vhost-vdpa");
            p.set("vhostdev", path);
            if queues(n) > 1 {
                p.set("queues", queues(n));
            }
        }
        other => {
            return Err(Error::unsupported(format!(
                "unsupported network type '{other}'"
            )))
        }
    }
    p.set("id", format!("host{alias}"));
    Ok(p)
}

fn nic_props(ctx: &Ctx, n: &Interface, alias: &str) -> Result<Props> {
    let mut p = if n.is_virtio() {
        let model = match n.model.as_deref() {
            Some("virtio-transitional") => Some(VirtioModel::VirtioTransitional),
            Some("virtio-non-transitional") => Some(VirtioModel::VirtioNonTransitional),
            _ => None,
        };
        let mut p = virtio_props(ctx, "virtio-net", &n.info, model, n.driver.as_ref())?;
        let d = n.driver.as_ref();
        let host = d.and_then(|d| d.find("host"));
        let guest = d.and_then(|d| d.find("guest"));
        match driver_attr(n, "txmode") {
            Some("iothread") => p.set("tx", "bh"),
            Some("timer") => p.set("tx", "timer"),
            _ => {}
        }
        p.set_opt("ioeventfd", onoff(driver_attr(n, "ioeventfd")));
        p.set_opt("event_idx", onoff(driver_attr(n, "event_idx")));
        for (e, attr, key) in [
            (host, "csum", "csum"),
            (host, "gso", "gso"),
            (host, "tso4", "host_tso4"),
            (host, "tso6", "host_tso6"),
            (host, "ecn", "host_ecn"),
            (host, "ufo", "host_ufo"),
            (host, "mrg_rxbuf", "mrg_rxbuf"),
            (guest, "csum", "guest_csum"),
            (guest, "tso4", "guest_tso4"),
            (guest, "tso6", "guest_tso6"),
            (guest, "ecn", "guest_ecn"),
            (guest, "ufo", "guest_ufo"),
        ] {
            p.set_opt(key, onoff(e.and_then(|e| e.get_attr(attr))));
        }
        if queues(n) > 1 {
            p.set("mq", true);
            if !matches!(n.info.address, Some(qvisor_domain::Address::Ccw { .. })) {
                p.set("vectors", 2 * u64::from(queues(n)) + 2);
            }
        }
        let num = |a: &str| {
            driver_attr(n, a)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
        };
        p.set_opt("rx_queue_size", num("rx_queue_size"));
        p.set_opt("tx_queue_size", num("tx_queue_size"));
        p.set_opt("rss", onoff(driver_attr(n, "rss")));
        p.set_opt("hash", onoff(driver_attr(n, "rss_hash_report")));
        p.set_opt(
            "host_mtu",
            n.residue
                .find("mtu")
                .and_then(|m| m.get_attr("size"))
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0),
        );
        if n.residue.find("teaming").and_then(|t| t.get_attr("type")) == Some("persistent") {
            p.set("failover", true);
        }
        p
    } else {
        Props::new().with(
            "driver",
            n.model.clone().unwrap_or_else(|| "rtl8139".into()),
        )
    };
    p.set("netdev", format!("host{alias}"));
    p.set("id", alias);
    p.set("mac", n.mac.map(|m| m.to_string()).unwrap_or_default());
    if let Some(b) = n.info.boot.as_ref().map(|b| b.order) {
        p.set("bootindex", b);
    }
    address_props(ctx, &mut p, &n.info)?;
    rom_props(&mut p, &n.info)?;
    Ok(p)
}

pub(super) fn interfaces(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    for n in &def.devices.interfaces {
        if n.kind == NetType::Hostdev {
            continue;
        }
        let alias = n.info.alias.clone().unwrap_or_default();
        if n.kind == NetType::VhostUser {
            let src = n
                .source
                .as_ref()
                .ok_or_else(|| Error::internal("vhost-user interface without source"))?;
            let mut cs = qvisor_domain::ChrSource::new(qvisor_domain::ChrType::Unix);
            cs.path = src.get_attr("path").map(str::to_string);
            cs.listen = src.get_attr("mode") == Some("server");
            if let Some(r) = src.find("reconnect") {
                cs.source_residue.children.push(r.clone());
            }
            chardev(
                ctx,
                &cs,
                &format!("char{alias}"),
                &alias,
                ChrUse::VhostUserNet,
            )?;
        }
        let hp = hostnet_props(ctx, n, &alias)?;
        ctx.push(Opt::Netdev(hp));
        let np = nic_props(ctx, n, &alias)?;
        ctx.device(np);
    }
    Ok(())
}
