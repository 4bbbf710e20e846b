//! Disks: the blockdev graph (storage node, optional slice, format node,
//! backing chain, secrets and TLS objects) and the guest-side `-device`.
//!
//! Every image of a chain gets node names `libvirt-N-storage` /
//! `libvirt-N-format`; `N` counts disks from the last one (as libvirt's
//! `qemuProcessPrepareDomainStorage` walks them) and, within a disk, from
//! the top image down.

use qvisor_caps::Flag;
use qvisor_domain::xml::Element;
use qvisor_domain::{Disk, DiskBus, DiskCache, DiskDevice, DiskType, SourceHost, StrEnum};

use super::devices::{drive_address_props, virtio_driver, virtio_options};
use super::Ctx;
use crate::env::SecretRef;
use crate::error::{Error, Result};
use crate::machine::is_q35;
use crate::model::Opt;
use crate::props::{Keyval, Props};

/// One image of a disk's chain, with what the command line needs.
#[derive(Debug, Clone, Default)]
struct Image {
    kind: String,
    path: Option<String>,
    protocol: Option<String>,
    name: Option<String>,
    hosts: Vec<SourceHost>,
    format: Option<String>,
    /// The `<source>` element (for untyped children such as `auth`,
    /// `encryption`, `slices`, `cookies`, `ssl`, `reconnect`, `config`,
    /// `snapshot`, `initiator`, `timeout`, `readahead`, `address`).
    source: Element,
    index: u32,
    /// `<metadata_cache><max_size>` in bytes.
    metadata_cache_max: Option<u64>,
    /// `None`: chain unknown; `Some(None)`: terminated; `Some(Some(b))`: backing image.
    backing: Option<Option<Box<Image>>>,
}

fn max_size_bytes(mc: Option<&Element>) -> Option<u64> {
    let m = mc?.find("max_size")?;
    let n = qvisor_domain::common::parse_uint(m.trimmed_text()?, false)?;
    let scale = qvisor_domain::common::unit_scale(m.get_attr("unit").unwrap_or("bytes"))?;
    n.checked_mul(scale)
}

fn backing_of(outer: &Element) -> Option<Option<Box<Image>>> {
    let b = outer.find("backingStore")?;
    if b.attrs.is_empty() && b.children.is_empty() {
        return Some(None);
    }
    let mut img = image_from(b);
    img.backing = backing_of(b);
    Some(Some(Box::new(img)))
}

/// An image described by an element with `type=`, `<format type=>` and
/// `<source>` (`<backingStore>`, `<nvram type=>`).
fn image_from(b: &Element) -> Image {
    let mut img = Image {
        kind: b.get_attr("type").unwrap_or("file").to_string(),
        format: b
            .find("format")
            .and_then(|f| f.get_attr("type"))
            .map(str::to_string),
        metadata_cache_max: max_size_bytes(b.find("format").and_then(|f| f.find("metadata_cache"))),
        ..Default::default()
    };
    if let Some(s) = b.find("source") {
        img.source = s.clone();
        img.path = match img.kind.as_str() {
            "file" => s.get_attr("file"),
            "block" => s.get_attr("dev"),
            "dir" => s.get_attr("dir"),
            _ => s.get_attr("path"),
        }
        .map(str::to_string);
        img.protocol = s.get_attr("protocol").map(str::to_string);
        img.name = s.get_attr("name").map(str::to_string);
        img.hosts = s
            .children
            .iter()
            .filter(|h| h.is("host"))
            .map(|h| SourceHost {
                name: h.get_attr("name").map(str::to_string),
                port: h.get_attr("port").map(str::to_string),
                transport: h.get_attr("transport").map(str::to_string),
                socket: h.get_attr("socket").map(str::to_string),
            })
            .collect();
    }
    img
}

fn top_image(ctx: &Ctx, disk: &Disk) -> Result<Image> {
    let src = disk.source.clone().unwrap_or_default();
    let mut source = src.residue.clone();
    source.name = "source".into();
    let mut img = Image {
        kind: disk.kind.as_str().to_string(),
        path: src.path.clone(),
        protocol: src.protocol.clone(),
        name: src.name.clone(),
        hosts: src.hosts.clone(),
        format: disk.driver.as_ref().and_then(|d| d.format.clone()),
        source,
        metadata_cache_max: max_size_bytes(
            disk.driver
                .as_ref()
                .and_then(|d| d.residue.find("metadata_cache")),
        ),
        ..Default::default()
    };
    // <auth> and <encryption> may sit on the disk instead of the source
    for child in ["auth", "encryption"] {
        if img.source.find(child).is_none() {
            if let Some(e) = disk.residue.find(child) {
                img.source.children.push(e.clone());
            }
        }
    }
    if disk.kind == DiskType::Volume {
        let pool = src.pool.clone().unwrap_or_default();
        let vol = src.volume.clone().unwrap_or_default();
        let r = ctx
            .env
            .host
            .resolve_volume(&pool, &vol)
            .map_err(Error::NotFound)?;
        let mode = src.residue.get_attr("mode");
        match (&r.network, mode) {
            (Some(n), Some("direct")) => {
                img.source.take_child("auth");
                if let Some((user, usage)) = &n.auth {
                    img.source.children.push(
                        Element::new("auth").attr("username", user).child(
                            Element::new("secret")
                                .attr("type", "iscsi")
                                .attr("usage", usage),
                        ),
                    );
                }
                img.kind = "network".into();
                img.protocol = Some(n.protocol.clone());
                img.name = Some(n.name.clone());
                img.hosts = vec![SourceHost {
                    name: Some(n.host.clone()),
                    port: n.port.clone(),
                    transport: None,
                    socket: None,
                }];
                if let Some(iqn) = &n.initiator {
                    if img.source.find("initiator").is_none() {
                        img.source.children.push(
                            Element::new("initiator").child(Element::new("iqn").attr("name", iqn)),
                        );
                    }
                }
            }
            _ => {
                img.kind = r.kind.clone();
                img.path = r.path.clone();
            }
        }
        if img.format.is_none() {
            img.format = Some(if img.kind == "dir" { "fat" } else { "raw" }.into());
        }
    }
    if img.format.is_none() {
        img.format = Some("raw".into());
    }
    img.backing = backing_of(&disk.residue);
    Ok(img)
}

fn is_empty_source(disk: &Disk, img: &Image) -> bool {
    match img.kind.as_str() {
        "network" => false,
        "nvme" | "vhostuser" => false,
        _ => img.path.is_none() && disk.source.as_ref().and_then(|s| s.pool.as_ref()).is_none(),
    }
}

/// Cache mode flags: (write-back, direct, no-flush).
fn cache_flags(c: DiskCache) -> Option<(bool, bool, bool)> {
    Some(match c {
        DiskCache::Default => return None,
        DiskCache::None => (true, true, false),
        DiskCache::Writethrough => (false, false, false),
        DiskCache::Writeback => (true, false, false),
        DiskCache::Directsync => (false, true, false),
        DiskCache::Unsafe => (true, false, true),
    })
}

/// Per-disk settings applied to every image of the chain.
struct DiskCtx {
    cache: Option<DiskCache>,
    io: Option<String>,
    discard: Option<String>,
    detect_zeroes: Option<String>,
    readonly: bool,
    floppy: bool,
    cdrom_host: bool,
}

fn cache_obj(dc: &DiskCtx) -> Option<serde_json::Value> {
    let (_, direct, noflush) = cache_flags(dc.cache?)?;
    Some(serde_json::json!({"direct": direct, "no-flush": noflush}))
}

fn url_for(img: &Image, proto: &str) -> Result<String> {
    let h = img
        .hosts
        .first()
        .ok_or_else(|| Error::internal(format!("protocol '{proto}' accepts only one host")))?;
    let default_port = match proto {
        "http" => "80",
        "https" => "443",
        "ftp" => "21",
        "ftps" => "990",
        "tftp" => "69",
        _ => "",
    };
    let port = h.port.as_deref().unwrap_or(default_port);
    let name = img.name.as_deref().unwrap_or("");
    let path = if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    };
    let mut url = format!("{proto}://{}", h.name.as_deref().unwrap_or(""));
    if !port.is_empty() {
        url.push_str(&format!(":{port}"));
    }
    url.push_str(&path);
    if let Some(q) = img.source.get_attr("query") {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

fn inet_server(h: &SourceHost, default_port: &str) -> serde_json::Value {
    serde_json::json!({
        "host": h.name.clone().unwrap_or_default(),
        "port": h.port.clone().unwrap_or_else(|| default_port.to_string()),
    })
}

fn socket_server(h: &SourceHost, default_port: &str) -> serde_json::Value {
    if h.transport.as_deref() == Some("unix") {
        serde_json::json!({"type": "unix", "path": h.socket.clone().unwrap_or_default()})
    } else {
        serde_json::json!({
            "type": "inet",
            "host": h.name.clone().unwrap_or_default(),
            "port": h.port.clone().unwrap_or_else(|| default_port.to_string()),
        })
    }
}

/// Secret objects a layer needs, emitted before its blockdevs.
#[derive(Default)]
struct LayerObjects {
    objects: Vec<Props>,
    auth_alias: Option<String>,
    auth_user: Option<String>,
    enc_alias: Option<String>,
    cookie_alias: Option<String>,
    tls_alias: Option<String>,
}

fn secret_ref(sec: &Element, default_kind: &str) -> SecretRef {
    match sec.get_attr("uuid") {
        Some(u) => SecretRef::Uuid(u.to_string()),
        None => SecretRef::Usage {
            kind: sec.get_attr("type").unwrap_or(default_kind).to_string(),
            usage: sec.get_attr("usage").unwrap_or("").to_string(),
        },
    }
}

fn secret_value(ctx: &Ctx, r: &SecretRef) -> Result<Vec<u8>> {
    ctx.env.host.secret(r).map_err(Error::NotFound)
}

fn layer_objects(ctx: &mut Ctx, img: &Image, storage: &str, format: &str) -> Result<LayerObjects> {
    let mut lo = LayerObjects::default();
    if let Some(auth) = img.source.find("auth") {
        let kind = if img.protocol.as_deref() == Some("rbd") {
            "ceph"
        } else {
            "iscsi"
        };
        if let Some(sec) = auth.find("secret") {
            let r = secret_ref(sec, kind);
            let value = secret_value(ctx, &r)?;
            let alias = format!("{storage}-auth-secret0");
            let enc = ctx.encrypt_secret(&value);
            lo.objects.push(enc.object_props(&alias));
            lo.auth_alias = Some(alias);
            lo.auth_user = auth.get_attr("username").map(str::to_string);
        }
    }
    if let Some(enc) = img.source.find("encryption") {
        if let Some(sec) = enc.find("secret") {
            let r = secret_ref(sec, "volume");
            let value = secret_value(ctx, &r)?;
            let alias = format!("{format}-encryption-secret0");
            let e = ctx.encrypt_secret(&value);
            lo.objects.push(e.object_props(&alias));
            lo.enc_alias = Some(alias);
        }
    }
    if let Some(cookies) = img.source.find("cookies") {
        let text: Vec<String> = cookies
            .children
            .iter()
            .filter(|c| c.is("cookie"))
            .map(|c| {
                format!(
                    "{}={}",
                    c.get_attr("name").unwrap_or(""),
                    c.trimmed_text().unwrap_or("")
                )
            })
            .collect();
        if !text.is_empty() {
            let alias = format!("{storage}-httpcookie-secret0");
            let e = ctx.encrypt_secret(text.join("; ").as_bytes());
            lo.objects.push(e.object_props(&alias));
            lo.cookie_alias = Some(alias);
        }
    }
    // TLS for NBD (and VxHS)
    if img.kind == "network" && matches!(img.protocol.as_deref(), Some("nbd") | Some("vxhs")) {
        let (enabled, service) = if img.protocol.as_deref() == Some("nbd") {
            (ctx.conf.nbd_tls, qvisor_conf::qemu::TlsService::Nbd)
        } else {
            (ctx.conf.vxhs_tls, qvisor_conf::qemu::TlsService::Vxhs)
        };
        let tlsconf = ctx.tls(service);
        let (dir, secret) = (tlsconf.cert_dir, tlsconf.secret_uuid);
        let tls = match img.source.get_attr("tls") {
            Some("yes") => true,
            Some("no") => false,
            _ => enabled,
        };
        if tls {
            let alias = format!("obj{storage}_tls0");
            let mut pw = None;
            if let Some(uuid) = secret {
                let value = secret_value(ctx, &SecretRef::Uuid(uuid))?;
                let salias = format!("{alias}-secret0");
                let e = ctx.encrypt_secret(&value);
                lo.objects.push(e.object_props(&salias));
                pw = Some(salias);
            }
            lo.objects.push(
                Props::new()
                    .with("qom-type", "tls-creds-x509")
                    .with("id", alias.as_str())
                    .with("dir", dir.to_string_lossy().into_owned())
                    .with("endpoint", "client")
                    .with("verify-peer", true)
                    .opt("passwordid", pw),
            );
            lo.tls_alias = Some(alias);
        }
    }
    Ok(lo)
}

/// The storage (protocol) node of an image.
fn storage_props(
    ctx: &Ctx,
    img: &Image,
    dc: &DiskCtx,
    lo: &LayerObjects,
    node: &str,
    top: bool,
) -> Result<Props> {
    let mut p = Props::new();
    match img.kind.as_str() {
        "file" | "block" => {
            let path = img.path.clone().unwrap_or_default();
            let driver = if img.kind == "block" {
                if dc.cdrom_host && ctx.env.host.is_cdrom(&path) {
                    "host_cdrom"
                } else {
                    "host_device"
                }
            } else {
                "file"
            };
            p.set("driver", driver);
            p.set("filename", path);
            p.set_opt("aio", dc.io.as_deref());
            if let Some(r) = img.source.find("reservations") {
                if r.get_attr("enabled") != Some("no") {
                    let managed = r.get_attr("managed") != Some("no");
                    p.set(
                        "pr-manager",
                        if managed {
                            "pr-helper0".to_string()
                        } else {
                            format!("pr-helper-{node}")
                        },
                    );
                }
            }
        }
        "dir" => {
            p.set("driver", "vvfat");
            p.set("dir", img.path.clone().unwrap_or_default());
            p.set("floppy", dc.floppy);
            p.set("rw", !dc.readonly && top);
        }
        "nvme" => {
            let a = img.source.find("address");
            let num = |k: &str| -> u32 {
                a.and_then(|a| a.get_attr(k))
                    .and_then(|v| qvisor_domain::common::parse_uint(v, true))
                    .unwrap_or(0) as u32
            };
            p.set("driver", "nvme");
            p.set(
                "device",
                format!(
                    "{:04x}:{:02x}:{:02x}.{:x}",
                    num("domain"),
                    num("bus"),
                    num("slot"),
                    num("function")
                ),
            );
            let ns: u64 = img
                .source
                .get_attr("namespace")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            p.set("namespace", ns);
        }
        "network" => {
            let proto = img.protocol.clone().unwrap_or_default();
            let name = img.name.clone().unwrap_or_default();
            match proto.as_str() {
                "gluster" => {
                    let (vol, path) = name.split_once('/').unwrap_or((name.as_str(), ""));
                    p.set("driver", "gluster");
                    p.set("volume", vol);
                    p.set("path", path);
                    p.set(
                        "server",
                        serde_json::Value::Array(
                            img.hosts
                                .iter()
                                .map(|h| socket_server(h, "24007"))
                                .collect(),
                        ),
                    );
                    p.set("debug", ctx.conf.gluster_debug_level);
                }
                "nbd" => {
                    let h = img.hosts.first().cloned().unwrap_or_default();
                    p.set("driver", "nbd");
                    p.set("server", socket_server(&h, "10809"));
                    if !name.is_empty() {
                        p.set("export", name.as_str());
                    }
                    p.set_opt("tls-creds", lo.tls_alias.clone());
                    p.set_opt("tls-hostname", img.source.get_attr("tlsHostname"));
                    if let Some(r) = img.source.find("reconnect") {
                        p.set_opt(
                            "reconnect-delay",
                            r.get_attr("delay").and_then(|d| d.parse::<u64>().ok()),
                        );
                    }
                }
                "rbd" => {
                    let (pool, image) = name.split_once('/').unwrap_or((name.as_str(), ""));
                    p.set("driver", "rbd");
                    p.set("pool", pool);
                    p.set("image", image);
                    p.set_opt(
                        "snapshot",
                        img.source.find("snapshot").and_then(|s| s.get_attr("name")),
                    );
                    p.set_opt(
                        "conf",
                        img.source.find("config").and_then(|s| s.get_attr("file")),
                    );
                    if !img.hosts.is_empty() {
                        p.set(
                            "server",
                            serde_json::Value::Array(
                                img.hosts.iter().map(|h| inet_server(h, "6789")).collect(),
                            ),
                        );
                    }
                    if let Some(enc) = img.source.find("encryption") {
                        if enc.get_attr("engine") == Some("librbd") {
                            if let Some(a) = &lo.enc_alias {
                                let f = enc.get_attr("format").unwrap_or("luks");
                                p.set("encrypt", serde_json::json!({"format": f, "key-secret": a}));
                            }
                        }
                    }
                    if let Some(a) = &lo.auth_alias {
                        p.set_opt("user", lo.auth_user.clone());
                        p.set("auth-client-required", serde_json::json!(["cephx", "none"]));
                        p.set("key-secret", a.as_str());
                    }
                }
                "iscsi" => {
                    let (target, lun) = match name.split_once('/') {
                        Some((t, l)) => (t.to_string(), l.parse::<u32>().unwrap_or(0)),
                        None => (name.clone(), 0),
                    };
                    let h = img.hosts.first().cloned().unwrap_or_default();
                    let host = h.name.clone().unwrap_or_default();
                    let port = h.port.clone().unwrap_or_else(|| "3260".into());
                    let portal = if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    };
                    p.set("driver", "iscsi");
                    p.set("portal", portal);
                    p.set("target", target);
                    p.set("lun", lun);
                    p.set("transport", "tcp");
                    p.set_opt("user", lo.auth_user.clone());
                    p.set_opt("password-secret", lo.auth_alias.clone());
                    p.set_opt(
                        "initiator-name",
                        img.source
                            .find("initiator")
                            .and_then(|i| i.find("iqn"))
                            .and_then(|i| i.get_attr("name")),
                    );
                }
                "http" | "https" | "ftp" | "ftps" | "tftp" => {
                    p.set("driver", proto.as_str());
                    p.set("url", url_for(img, &proto)?);
                    p.set_opt("username", lo.auth_alias.as_ref().and(lo.auth_user.clone()));
                    p.set_opt("password-secret", lo.auth_alias.clone());
                    if let Some(ssl) = img.source.find("ssl") {
                        match ssl.get_attr("verify") {
                            Some("yes") => p.set("sslverify", true),
                            Some("no") => p.set("sslverify", false),
                            _ => {}
                        }
                    }
                    p.set_opt("cookie-secret", lo.cookie_alias.clone());
                    p.set_opt(
                        "timeout",
                        img.source
                            .find("timeout")
                            .and_then(|t| t.get_attr("seconds"))
                            .and_then(|v| v.parse::<u64>().ok())
                            .filter(|v| *v > 0),
                    );
                    p.set_opt(
                        "readahead",
                        img.source
                            .find("readahead")
                            .and_then(|t| t.get_attr("size"))
                            .and_then(|v| v.parse::<u64>().ok())
                            .filter(|v| *v > 0),
                    );
                }
                "ssh" => {
                    let h = img.hosts.first().cloned().unwrap_or_default();
                    p.set("driver", "ssh");
                    p.set("path", name.as_str());
                    p.set("server", inet_server(&h, "22"));
                    p.set_opt("user", lo.auth_user.clone());
                }
                "nfs" => {
                    let h = img.hosts.first().cloned().unwrap_or_default();
                    p.set("driver", "nfs");
                    p.set(
                        "server",
                        serde_json::json!({"host": h.name.unwrap_or_default(), "type": "inet"}),
                    );
                    p.set("path", name.as_str());
                    if let Some(id) = img.source.find("identity") {
                        let num = |a: &str| {
                            id.get_attr(a)
                                .map(|v| v.trim_start_matches('+'))
                                .and_then(|v| v.parse::<i64>().ok())
                        };
                        p.set_opt("user", num("user"));
                        p.set_opt("group", num("group"));
                    }
                }
                other => {
                    return Err(Error::unsupported(format!(
                        "unsupported network disk protocol '{other}'"
                    )))
                }
            }
        }
        other => {
            return Err(Error::internal(format!(
                "unable to create blockdev props for disk type '{other}'"
            )))
        }
    }
    p.set("node-name", node);
    if let Some(c) = cache_obj(dc) {
        p.set("cache", c);
    }
    p.set("auto-read-only", true);
    p.set("discard", "unmap");
    Ok(p)
}

fn format_supports_backing(f: &str) -> bool {
    matches!(f, "cow" | "qcow" | "qcow2" | "qed" | "vmdk")
}

/// Where a format node sits in the chain.
struct FormatNode<'a> {
    node: &'a str,
    file: &'a str,
    readonly: bool,
    top: bool,
    /// `None`: unknown chain; `Some(None)`: terminated; `Some(Some(n))`.
    backing: Option<Option<String>>,
}

fn format_props(img: &Image, dc: &DiskCtx, lo: &LayerObjects, fnode: FormatNode) -> Result<Props> {
    let FormatNode {
        node,
        file,
        readonly,
        top,
        backing: backing_node,
    } = fnode;
    let format = img.format.clone().unwrap_or_else(|| "raw".into());
    let mut p = Props::new()
        .with("node-name", node)
        .with("read-only", readonly);
    p.set_opt("discard", dc.discard.clone());
    if top {
        let dz = match (dc.detect_zeroes.as_deref(), dc.discard.as_deref()) {
            (Some("unmap"), d) if d != Some("unmap") => Some("on".to_string()),
            (dz, _) => dz.map(str::to_string),
        };
        p.set_opt("detect-zeroes", dz);
    }
    if let Some(c) = cache_obj(dc) {
        p.set("cache", c);
    }
    let enc_engine_qemu = img
        .source
        .find("encryption")
        .is_some_and(|e| e.get_attr("engine").is_none_or(|en| en == "qemu"));
    let enc_format = img
        .source
        .find("encryption")
        .and_then(|e| e.get_attr("format"));
    match format.as_str() {
        "raw" | "fat" => {
            if enc_engine_qemu && enc_format == Some("luks") {
                p.set("driver", "luks");
                p.set_opt("key-secret", lo.enc_alias.clone());
            } else {
                p.set("driver", "raw");
                if let Some(s) = slice(img).filter(|_| !needs_slice_layer(img)) {
                    p.set("offset", s.0);
                    p.set("size", s.1);
                }
            }
        }
        "qcow2" | "qcow" => {
            p.set("driver", format.as_str());
            if enc_engine_qemu {
                if let Some(a) = &lo.enc_alias {
                    let f = if enc_format == Some("qcow") {
                        "aes"
                    } else {
                        "luks"
                    };
                    p.set("encrypt", serde_json::json!({"format": f, "key-secret": a}));
                }
            }
            if format == "qcow2" {
                let bytes = img.metadata_cache_max.unwrap_or(0);
                if bytes > 0 {
                    p.set("cache-size", bytes);
                }
            }
        }
        "ploop" => p.set("driver", "parallels"),
        "vhd" => p.set("driver", "vhdx"),
        "bochs" | "cloop" | "dmg" | "vdi" | "vpc" | "qed" | "vmdk" => {
            p.set("driver", format.as_str())
        }
        other => {
            return Err(Error::internal(format!(
                "mishandled storage format '{other}'"
            )));
        }
    }
    p.set("file", file);
    if let Some(b) = backing_node {
        if format_supports_backing(&format) {
            match b {
                Some(n) => p.set("backing", n),
                None => p.set("backing", serde_json::Value::Null),
            }
        } else if b.is_some() {
            return Err(Error::unsupported(format!(
                "storage format '{format}' does not support backing store"
            )));
        }
    }
    Ok(p)
}

/// A storage slice needs its own `raw` node unless the format node (plain
/// raw) can apply offset and size itself.
fn needs_slice_layer(img: &Image) -> bool {
    if img.format.as_deref().unwrap_or("raw") != "raw" {
        return true;
    }
    img.source
        .find("encryption")
        .is_some_and(|e| e.get_attr("engine").is_none_or(|en| en == "qemu"))
}

fn slice(img: &Image) -> Option<(u64, u64)> {
    let s = img.source.find("slices")?.find("slice")?;
    if s.get_attr("type") != Some("storage") {
        return None;
    }
    Some((
        s.get_attr("offset")?.parse().ok()?,
        s.get_attr("size")?.parse().ok()?,
    ))
}

/// Emits the blockdev graph of a chain (deepest image first) and returns
/// the top format node name.
fn chain(ctx: &mut Ctx, disk: &Disk, top: Image, dc: &DiskCtx) -> Result<String> {
    // flatten top-down
    let mut layers: Vec<Image> = Vec::new();
    let mut cur = Some(Box::new(top));
    let mut terminated = Vec::new();
    while let Some(img) = cur {
        let mut img = *img;
        let next = match img.backing.take() {
            None => {
                terminated.push(None);
                None
            }
            Some(None) => {
                terminated.push(Some(None));
                None
            }
            Some(Some(b)) => {
                terminated.push(Some(Some(())));
                Some(b)
            }
        };
        layers.push(img);
        cur = next;
    }
    let n = layers.len();
    let mut opts: Vec<Vec<Opt>> = Vec::new();
    let mut top_format = String::new();
    for (i, img) in layers.iter().enumerate() {
        let prefix = format!("libvirt-{}", img.index);
        let storage = format!("{prefix}-storage");
        let format = format!("{prefix}-format");
        if i == 0 {
            top_format = format.clone();
        }
        let lo = layer_objects(ctx, img, &storage, &format)?;
        let readonly = if i == 0 {
            disk.readonly || disk.device == DiskDevice::Cdrom
        } else {
            true
        };
        let backing_node = match terminated.get(i) {
            Some(Some(Some(()))) => Some(Some(format!("libvirt-{}-format", layers[i + 1].index))),
            Some(Some(None)) => Some(None),
            _ => None,
        };
        let mut group: Vec<Opt> = lo.objects.iter().cloned().map(Opt::Object).collect();
        if let Some(r) = img.source.find("reservations") {
            if r.get_attr("enabled") != Some("no") && r.get_attr("managed") == Some("no") {
                let path = r
                    .find("source")
                    .and_then(|s| s.get_attr("path"))
                    .unwrap_or("")
                    .to_string();
                group.insert(
                    0,
                    Opt::Object(
                        Props::new()
                            .with("qom-type", "pr-manager-helper")
                            .with("id", format!("pr-helper-{storage}"))
                            .with("path", path),
                    ),
                );
            }
        }
        let sp = storage_props(ctx, img, dc, &lo, &storage, i == 0)?;
        group.push(Opt::Blockdev(sp));
        let mut file = storage.clone();
        if let Some((off, size)) = slice(img).filter(|_| needs_slice_layer(img)) {
            let slice_node = format!("libvirt-{}-slice-sto", img.index);
            let mut sl = Props::new()
                .with("driver", "raw")
                .with("node-name", slice_node.as_str())
                .with("offset", off)
                .with("size", size)
                .with("file", storage.as_str())
                .with("auto-read-only", true)
                .with("discard", "unmap");
            if let Some(c) = cache_obj(dc) {
                sl.set("cache", c);
            }
            group.push(Opt::Blockdev(sl));
            file = slice_node;
        }
        let fp = format_props(
            img,
            dc,
            &lo,
            FormatNode {
                node: &format,
                file: &file,
                readonly,
                top: i == 0,
                backing: backing_node,
            },
        )?;
        group.push(Opt::Blockdev(fp));
        opts.push(group);
    }
    let _ = n;
    for group in opts.into_iter().rev() {
        for o in group {
            ctx.push(o);
        }
    }
    Ok(top_format)
}

fn assign_indexes(img: &mut Image, next: &mut u32) {
    *next += 1;
    img.index = *next;
    if let Some(Some(b)) = &mut img.backing {
        assign_indexes(b, next);
    }
}

fn error_policy(disk: &Disk) -> (Option<String>, Option<String>) {
    let d = disk.driver.as_ref();
    let get = |a: &str| {
        d.and_then(|d| d.residue.get_attr(a))
            .filter(|v| *v != "default")
            .map(|v| {
                if v == "enospace" {
                    "enospc".to_string()
                } else {
                    v.to_string()
                }
            })
    };
    let w = get("error_policy");
    let mut r = get("rerror_policy");
    if r.is_none() {
        r = w.clone();
    }
    let r = r.filter(|v| v != "enospc");
    (w, r)
}

/// The disk's cache mode; shared writable disks default to `none`
/// (`qemuDomainPrepareDiskCachemode`).
/// The legacy `-drive` of an SD card (`qemuBuildDriveStr`): QEMU has no
/// `-device` for it, so the drive carries everything.
fn sd_drive(d: &Disk, img: &Image, dc: &DiskCtx, empty: bool) -> Keyval {
    let path = img.path.clone().unwrap_or_default();
    let mut kv = Keyval::new().kv(
        "file",
        match img.kind.as_str() {
            "dir" if dc.floppy => format!("fat:floppy:{path}"),
            "dir" => format!("fat:{path}"),
            _ => path,
        },
    );
    if !empty && img.kind != "dir" {
        kv.push("format", img.format.as_deref().unwrap_or("raw"));
    }
    kv.push("if", "sd");
    kv.push(
        "index",
        qvisor_domain::disk_name_to_index(&d.target.dev).unwrap_or(0),
    );
    if dc.readonly {
        kv.push("readonly", "on");
    }
    if !empty {
        if let Some(c) = dc.cache.filter(|c| *c != DiskCache::Default) {
            kv.push("cache", c.as_str());
        }
        let drv = d.driver.as_ref();
        if let Some(cor) = drv.and_then(|x| x.residue.get_attr("copy_on_read")) {
            kv.push("copy-on-read", cor);
        }
        if let Some(v) = &dc.discard {
            kv.push("discard", v);
        }
        match (dc.detect_zeroes.as_deref(), dc.discard.as_deref()) {
            (Some("unmap"), discard) if discard != Some("unmap") => kv.push("detect-zeroes", "on"),
            (Some(v), _) => kv.push("detect-zeroes", v),
            (None, _) => {}
        }
        if let Some(v) = &dc.io {
            kv.push("aio", v);
        }
    }
    kv
}

fn effective_cache(d: &Disk) -> Option<DiskCache> {
    let cache = d.driver.as_ref().and_then(|x| x.cache);
    if cache.is_none_or(|c| c == DiskCache::Default) && d.shareable && !d.readonly {
        return Some(DiskCache::None);
    }
    cache
}

fn device_props(
    ctx: &Ctx,
    disk: &Disk,
    drive: Option<&str>,
    chardev: Option<&str>,
) -> Result<Props> {
    let bus = disk.bus();
    let mut scsi_device_id = None;
    let drv = disk.driver.as_ref();
    let drv_attr = |a: &str| drv.and_then(|d| d.residue.get_attr(a));
    let mut p = match bus {
        DiskBus::Ide | DiskBus::Sata => Props::new().with(
            "driver",
            if disk.device == DiskDevice::Cdrom {
                "ide-cd"
            } else {
                "ide-hd"
            },
        ),
        DiskBus::Scsi => {
            let d = if disk.device == DiskDevice::Lun {
                "scsi-block"
            } else {
                scsi_device_id = Some(disk.serial.clone().unwrap_or_else(|| {
                    format!("drive-{}", disk.info.alias.clone().unwrap_or_default())
                }));
                if disk.device == DiskDevice::Cdrom {
                    "scsi-cd"
                } else {
                    "scsi-hd"
                }
            };
            Props::new().with("driver", d)
        }
        DiskBus::Virtio => {
            let base = if disk.kind == DiskType::VhostUser {
                "vhost-user-blk"
            } else {
                "virtio-blk"
            };
            let mut p = Props::new().with(
                "driver",
                virtio_driver(ctx, base, &disk.info, disk.model, true)?,
            );
            let mut drvel = drv.map(|d| d.residue.clone());
            if let Some(e) = &mut drvel {
                e.name = "driver".into();
            }
            virtio_options(&mut p, drvel.as_ref());
            if let Some(t) = drv.and_then(|d| d.iothread).filter(|t| *t > 0) {
                p.set("iothread", format!("iothread{t}"));
            }
            match drv_attr("ioeventfd") {
                Some("on") => p.set("ioeventfd", true),
                Some("off") => p.set("ioeventfd", false),
                _ => {}
            }
            match drv_attr("event_idx") {
                Some("on") => p.set("event_idx", true),
                Some("off") => p.set("event_idx", false),
                _ => {}
            }
            if disk.kind != DiskType::VhostUser && ctx.has(Flag::VirtioBlkScsi) {
                if disk.device == DiskDevice::Lun {
                    p.set("scsi", true);
                } else if !ctx.has(Flag::VirtioBlkScsiDefaultDisabled) {
                    p.set("scsi", false);
                }
            }
            p.set_opt("num-queues", drv.and_then(|d| d.queues).filter(|q| *q > 0));
            p.set_opt(
                "queue-size",
                drv_attr("queue_size")
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|q| *q > 0),
            );
            p
        }
        DiskBus::Usb => {
            let mut p = Props::new().with("driver", "usb-storage");
            if ctx.has(Flag::UsbStorageRemovable) {
                p.set(
                    "removable",
                    disk.target.removable.is_some_and(|r| r.is_on()),
                );
            }
            p
        }
        DiskBus::Fdc => Props::new().with("driver", "floppy"),
        other => {
            return Err(Error::internal(format!(
                "unsupported disk bus '{other}' with device setup"
            )))
        }
    };
    drive_address_props(ctx, &mut p, bus, &disk.info)?;
    if disk.shareable {
        p.set("share-rw", true);
    }
    p.set_opt("device_id", scsi_device_id);
    p.set_opt("drive", drive);
    p.set_opt("chardev", chardev);
    p.set("id", disk.info.alias.clone().unwrap_or_default());
    if disk.device != DiskDevice::Floppy {
        if let Some(b) = disk.info.boot.as_ref().map(|b| b.order) {
            p.set("bootindex", b);
        }
    }
    if let Some(bio) = disk.residue.find("blockio") {
        for (a, k) in [
            ("logical_block_size", "logical_block_size"),
            ("physical_block_size", "physical_block_size"),
        ] {
            if let Some(v) = bio
                .get_attr(a)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
            {
                p.set(k, v);
            }
        }
    }
    if let Some(w) = &disk.wwn {
        let v = u64::from_str_radix(w.trim_start_matches("0x"), 16)
            .map_err(|_| Error::InvalidArg(format!("Failed to parse wwn '{w}' as number")))?;
        p.set("wwn", v);
    }
    p.set_opt(
        "rotation_rate",
        disk.target.rotation_rate.filter(|r| *r > 0),
    );
    p.set_opt("vendor", disk.vendor.clone());
    p.set_opt("product", disk.product.clone());
    if disk.device != DiskDevice::Lun {
        if let Some((wb, _, _)) = effective_cache(disk).and_then(cache_flags) {
            p.set("write-cache", if wb { "on" } else { "off" });
        }
    }
    if let Some(g) = disk.residue.find("geometry") {
        for (a, k) in [("cyls", "cyls"), ("heads", "heads"), ("secs", "secs")] {
            if let Some(v) = g
                .get_attr(a)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
            {
                p.set(k, v);
            }
        }
        p.set_opt("bios-chs-trans", g.get_attr("trans"));
    }
    if let Some(s) = &disk.serial {
        p.set("serial", s.replace(' ', "\\ "));
    }
    let (w, r) = error_policy(disk);
    p.set_opt("werror", w);
    p.set_opt("rerror", r);
    Ok(p)
}

fn needs_fdc(ctx: &Ctx) -> bool {
    let m = ctx.machine();
    if !is_q35(m) {
        return false;
    }
    // pc-q35-4.2 and newer have no implicit floppy controller
    match m.strip_prefix("pc-q35-") {
        Some(v) => {
            let mut it = v.split('.');
            let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let minor: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            (major, minor) >= (4, 2)
        }
        None => true,
    }
}

fn floppy_controller(ctx: &mut Ctx) {
    let mut a = 0;
    let mut b = 0;
    let mut any = false;
    for d in ctx
        .def
        .devices
        .disks
        .iter()
        .filter(|d| d.bus() == DiskBus::Fdc)
    {
        any = true;
        let boot = d.info.boot.as_ref().map_or(0, |b| b.order);
        let unit = d
            .info
            .address
            .as_ref()
            .and_then(|a| a.as_drive())
            .map_or(0, |d| d.unit);
        if unit != 0 {
            b = boot;
        } else {
            a = boot;
        }
    }
    if !any {
        return;
    }
    if needs_fdc(ctx) {
        ctx.device(
            Props::new()
                .with("driver", "isa-fdc")
                .nz("bootindexA", a.into())
                .nz("bootindexB", b.into()),
        );
    } else {
        if a > 0 {
            ctx.word("-global", format!("isa-fdc.bootindexA={a}"));
        }
        if b > 0 {
            ctx.word("-global", format!("isa-fdc.bootindexB={b}"));
        }
    }
}

pub(super) fn disks(ctx: &mut Ctx) -> Result<()> {
    floppy_controller(ctx);
    let def = ctx.def;
    // images, numbered from the last disk
    // (an empty drive still takes a number: libvirt names every source
    // whose type is set, then leaves the empty ones off the command line)
    let mut images: Vec<Option<Image>> = Vec::with_capacity(def.devices.disks.len());
    for d in &def.devices.disks {
        let img = if d.kind == DiskType::VhostUser {
            None
        } else {
            Some(top_image(ctx, d)?)
        };
        images.push(img);
    }
    // SD cards go through legacy -drive and take no node names
    let mut next = 0;
    for (d, img) in def.devices.disks.iter().zip(images.iter_mut()).rev() {
        if let Some(img) = img.as_mut().filter(|_| d.bus() != DiskBus::Sd) {
            assign_indexes(img, &mut next);
        }
    }
    let mut empty = Vec::with_capacity(images.len());
    for (d, img) in def.devices.disks.iter().zip(images.iter_mut()) {
        let is_empty = img.as_ref().is_some_and(|i| is_empty_source(d, i));
        if is_empty && d.bus() != DiskBus::Sd {
            *img = None;
        }
        empty.push(is_empty);
    }
    ctx.next_node_id = next;
    for ((d, img), is_empty) in def.devices.disks.iter().zip(images).zip(empty) {
        // transient disks sharing their backing image are hot-plugged later
        if d.residue
            .find("transient")
            .and_then(|t| t.get_attr("shareBacking"))
            == Some("yes")
        {
            continue;
        }
        let drv = d.driver.as_ref();
        let cache = effective_cache(d);
        let dc = DiskCtx {
            cache,
            io: drv.and_then(|x| x.io.clone()).filter(|v| v != "default"),
            discard: drv
                .and_then(|x| x.discard.clone())
                .filter(|v| v != "default"),
            detect_zeroes: drv
                .and_then(|x| x.detect_zeroes.clone())
                .filter(|v| v != "default" && v != "off"),
            readonly: d.readonly || d.device == DiskDevice::Cdrom,
            floppy: d.device == DiskDevice::Floppy,
            cdrom_host: d.device == DiskDevice::Cdrom,
        };
        let mut drive = None;
        let mut chardev = None;
        if d.kind == DiskType::VhostUser {
            let alias = format!("chr-vu-{}", d.info.alias.clone().unwrap_or_default());
            let path = d.source_path().unwrap_or("").to_string();
            let mut kv = crate::props::Keyval::head("socket")
                .kv("id", &alias)
                .kv("path", path);
            if let Some(r) = d.source.as_ref().and_then(|s| s.residue.find("reconnect")) {
                match r.get_attr("enabled") {
                    Some("yes") => kv.push("reconnect", r.get_attr("timeout").unwrap_or("0")),
                    Some("no") => kv.push("reconnect", "0"),
                    _ => {}
                }
            }
            ctx.keyval("-chardev", kv);
            chardev = Some(alias);
        } else if let Some(img) = img.as_ref().filter(|_| d.bus() == DiskBus::Sd) {
            ctx.keyval("-drive", sd_drive(d, img, &dc, is_empty));
        } else if let Some(img) = img {
            let top = chain(ctx, d, img, &dc)?;
            if drv.and_then(|x| x.residue.get_attr("copy_on_read")) == Some("on") {
                let cor = format!("libvirt-CoR-{}", d.target.dev);
                ctx.push(Opt::Blockdev(
                    Props::new()
                        .with("driver", "copy-on-read")
                        .with("node-name", cor.as_str())
                        .with("file", top.as_str())
                        .with("discard", "unmap"),
                ));
                drive = Some(cor);
            } else {
                drive = Some(top);
            }
        }
        if d.bus() == DiskBus::Sd {
            continue;
        }
        let p = device_props(ctx, d, drive.as_deref(), chardev.as_deref())?;
        ctx.device(p);
    }
    Ok(())
}

/// Whether any disk uses the managed persistent-reservation helper.
pub(super) fn has_managed_pr(def: &qvisor_domain::Domain) -> bool {
    def.devices.disks.iter().any(|d| {
        d.source
            .as_ref()
            .and_then(|s| s.residue.find("reservations"))
            .is_some_and(|r| {
                r.get_attr("enabled") != Some("no") && r.get_attr("managed") != Some("no")
            })
    })
}

/// The blockdevs of a pflash varstore described by `<nvram type=...>`
/// (file, block or network storage) with node names `libvirt-pflash1-*`.
pub(super) fn nvram_blockdevs(ctx: &mut Ctx, nvram: &Element) -> Result<()> {
    let mut img = image_from(nvram);
    if img.format.is_none() {
        img.format = Some("raw".into());
    }
    let dc = DiskCtx {
        cache: None,
        io: None,
        discard: None,
        detect_zeroes: None,
        readonly: false,
        floppy: false,
        cdrom_host: false,
    };
    let storage = "libvirt-pflash1-storage";
    let format = "libvirt-pflash1-format";
    let lo = layer_objects(ctx, &img, storage, format)?;
    for o in lo.objects.iter().cloned() {
        ctx.object(o);
    }
    let sp = storage_props(ctx, &img, &dc, &lo, storage, true)?;
    ctx.push(Opt::Blockdev(sp));
    let fp = format_props(
        &img,
        &dc,
        &lo,
        FormatNode {
            node: format,
            file: storage,
            readonly: false,
            top: false,
            backing: None,
        },
    )?;
    ctx.push(Opt::Blockdev(fp));
    Ok(())
}
