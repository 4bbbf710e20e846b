//! Audio backends, graphics (VNC, SPICE, SDL, egl-headless, D-Bus),
//! video adapters and sound cards.

use qvisor_caps::Flag;
use qvisor_domain::xml::Element;
use qvisor_domain::{Audio, Graphics, GraphicsType, Listen, ListenType, StrEnum, Video, VideoType};

use super::Ctx;
use crate::error::{Error, Result};
use crate::model::FdPurpose;
use crate::props::{escape_comma, Keyval, Props};

fn yes_no(e: &Element, attr: &str) -> Option<bool> {
    match e.get_attr(attr) {
        Some("yes") => Some(true),
        Some("no") => Some(false),
        _ => None,
    }
}

fn num(e: &Element, attr: &str) -> Option<u64> {
    e.get_attr(attr)
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
}

/// `in`/`out` properties of an audio backend (`qemuBuildAudioCommonProps`
/// plus the per-driver ones).
fn audio_direction(kind: &str, e: Option<&Element>) -> Option<Props> {
    let e = e?;
    let fixed = yes_no(e, "fixedSettings");
    let mut p = Props::new()
        .opt("mixing-engine", yes_no(e, "mixingEngine"))
        .opt("fixed-settings", fixed)
        .opt("voices", num(e, "voices"))
        .opt("buffer-length", num(e, "bufferLength"));
    if fixed == Some(true) {
        if let Some(s) = e.find("settings") {
            p.set_opt("frequency", num(s, "frequency"));
            p.set_opt("channels", num(s, "channels"));
            p.set_opt("format", s.get_attr("format"));
        }
    }
    match kind {
        "alsa" => p.set_opt("dev", e.get_attr("dev")),
        "coreaudio" | "sdl" => p.set_opt("buffer-count", num(e, "bufferCount")),
        "jack" => {
            p.set_opt("server-name", e.get_attr("serverName"));
            p.set_opt("client-name", e.get_attr("clientName"));
            p.set_opt("connect-ports", e.get_attr("connectPorts"));
            p.set_opt("exact-name", yes_no(e, "exactName"));
        }
        "oss" => {
            p.set_opt("dev", e.get_attr("dev"));
            p.set_opt("buffer-count", num(e, "bufferCount"));
            p.set_opt("try-poll", yes_no(e, "tryPoll"));
        }
        "pulseaudio" => {
            p.set_opt("name", e.get_attr("name"));
            p.set_opt("stream-name", e.get_attr("streamName"));
            p.set_opt("latency", num(e, "latency"));
        }
        _ => {}
    }
    (!p.is_empty()).then_some(p)
}

fn audiodev(ctx: &mut Ctx, a: &Audio) {
    let r = &a.residue;
    let driver = match a.kind.as_str() {
        "pulseaudio" => "pa",
        "file" => "wav",
        other => other,
    };
    let mut p = Props::new()
        .with("id", format!("audio{}", a.id))
        .with("driver", driver)
        .opt("timer-period", num(r, "timerPeriod"));
    match a.kind.as_str() {
        "oss" => {
            p.set_opt("try-mmap", yes_no(r, "tryMMap"));
            p.set_opt("exclusive", yes_no(r, "exclusive"));
            p.set_opt(
                "dsp-policy",
                r.get_attr("dspPolicy").and_then(|v| v.parse::<i64>().ok()),
            );
        }
        "pulseaudio" => p.set_opt("server", r.get_attr("serverName")),
        "sdl" => {
            if let Some(d) = r.get_attr("driver") {
                ctx.extra_env
                    .push(("SDL_AUDIODRIVER".into(), d.to_string()));
            }
        }
        "file" => p.set_opt("path", r.get_attr("path")),
        _ => {}
    }
    p.set_opt("in", audio_direction(&a.kind, r.find("input")));
    p.set_opt("out", audio_direction(&a.kind, r.find("output")));
    ctx.push(crate::model::Opt::Audiodev(p));
}

pub(super) fn audio(ctx: &mut Ctx) -> Result<()> {
    let audios = ctx.def.devices.audios.clone();
    for a in &audios {
        audiodev(ctx, a);
    }
    Ok(())
}

/// The audio backend a frontend uses: `audio<id>`, or the first backend
/// when the device names none (`virDomainDefFindAudioByID`).
fn audio_id(ctx: &Ctx, id: Option<u32>) -> Result<String> {
    let audios = &ctx.def.devices.audios;
    let a = match id.filter(|i| *i > 0) {
        Some(i) => audios.iter().find(|a| a.id == i),
        None => audios.first(),
    };
    a.map(|a| format!("audio{}", a.id))
        .ok_or_else(|| Error::internal("unable to find audio backend for sound device"))
}

fn graphics_audio(g: &Graphics) -> Option<u32> {
    g.residue
        .find("audio")
        .and_then(|a| a.get_attr("id"))
        .and_then(|v| v.parse().ok())
}

/// The effective first listen of a graphics device after libvirt's
/// start-up defaults (`qemuProcessGraphicsSetupListen`).
fn effective_listen(ctx: &Ctx, g: &Graphics) -> Listen {
    let (auto_socket, addr) = match g.kind {
        GraphicsType::Vnc => (ctx.conf.vnc_auto_unix_socket, ctx.conf.vnc_listen.clone()),
        _ => (
            ctx.conf.spice_auto_unix_socket,
            ctx.conf.spice_listen.clone(),
        ),
    };
    let mut l = g.listens.first().cloned().unwrap_or(Listen {
        kind: ListenType::Address,
        address: None,
        network: None,
        socket: None,
        auto_generated: false,
        from_config: false,
    });
    match l.kind {
        ListenType::Address if l.address.is_none() => {
            if auto_socket {
                l.kind = ListenType::Socket;
                l.socket = Some(ctx.private_path(&format!("{}.sock", g.kind)));
            } else {
                l.address = Some(addr);
            }
        }
        ListenType::Socket if l.socket.is_none() => {
            l.socket = Some(ctx.private_path(&format!("{}.sock", g.kind)));
        }
        _ => {}
    }
    l
}

fn vnc(ctx: &mut Ctx, g: &Graphics) -> Result<()> {
    let audio = audio_id(ctx, graphics_audio(g))?;
    let l = effective_listen(ctx, g);
    let mut kv = Keyval::new();
    match l.kind {
        ListenType::Socket => kv.push_bare(format!(
            "vnc=unix:{}",
            escape_comma(l.socket.as_deref().unwrap_or(""))
        )),
        ListenType::Address | ListenType::Network => {
            let port = if g.autoport {
                i32::from(
                    ctx.env
                        .host
                        .graphics_port(crate::env::GraphicsPort::Vnc)
                        .map_err(Error::Host)?,
                )
            } else {
                g.port
            };
            if !g.autoport && !(5900..=65535).contains(&port) {
                return Err(Error::unsupported("vnc port must be in range [5900,65535]"));
            }
            let mut s = String::new();
            if let Some(a) = &l.address {
                if a.contains(':') {
                    s.push_str(&format!("[{a}]"));
                } else {
                    s.push_str(a);
                }
            }
            s.push_str(&format!(":{}", port - 5900));
            kv.push_bare(s);
            if let Some(w) = g.websocket.filter(|w| *w != 0) {
                kv.push("websocket", w);
            }
        }
        ListenType::None => kv.push_bare("none"),
    }
    if let Some(p) = g.residue.get_attr("sharePolicy") {
        kv.push("share", p);
    }
    if g.residue.get_attr("passwd").is_some() || ctx.conf.vnc_password.is_some() {
        kv.push("password", "on");
    }
    if ctx.conf.vnc_tls {
        let alias = "vnc-tls-creds0";
        let tls = ctx.tls(qvisor_conf::qemu::TlsService::Vnc);
        let mut pw = None;
        if let Some(uuid) = &tls.secret_uuid {
            let value = ctx
                .env
                .host
                .secret(&crate::env::SecretRef::Uuid(uuid.clone()))
                .map_err(Error::NotFound)?;
            let salias = format!("{alias}-secret0");
            let e = ctx.encrypt_secret(&value);
            ctx.object(e.object_props(&salias));
            pw = Some(salias);
        }
        ctx.object(
            Props::new()
                .with("qom-type", "tls-creds-x509")
                .with("id", alias)
                .with("dir", tls.cert_dir.to_string_lossy().into_owned())
                .with("endpoint", "server")
                .with("verify-peer", tls.verify.unwrap_or(false))
                .opt("passwordid", pw),
        );
        kv.push("tls-creds", alias);
    }
    if ctx.conf.vnc_sasl {
        kv.push("sasl", "on");
        if let Some(d) = &ctx.conf.vnc_sasl_dir {
            ctx.extra_env
                .push(("SASL_CONF_PATH".into(), d.to_string_lossy().into_owned()));
        }
    }
    match g.residue.get_attr("powerControl") {
        Some("yes") => kv.push("power-control", "on"),
        Some("no") => kv.push("power-control", "off"),
        _ => {}
    }
    kv.push("audiodev", audio);
    ctx.keyval("-vnc", kv);
    if let Some(k) = &g.keymap {
        ctx.word("-k", k.clone());
    }
    Ok(())
}

const SPICE_CHANNELS: &[&str] = &[
    "main",
    "display",
    "inputs",
    "cursor",
    "playback",
    "record",
    "smartcard",
    "usbredir",
];

fn spice(ctx: &mut Ctx, g: &Graphics) -> Result<()> {
    let l = effective_listen(ctx, g);
    let mut kv = Keyval::new();
    let (mut secure, mut insecure) = (false, false);
    let mut port = g.port.max(0);
    let mut tls_port = g.tls_port.max(0);
    if g.autoport && matches!(l.kind, ListenType::Address | ListenType::Network) {
        let (mut need_plain, mut need_tls) = (false, false);
        for c in g.residue.children.iter().filter(|c| c.is("channel")) {
            match c.get_attr("mode") {
                Some("secure") => need_tls = true,
                Some("insecure") => need_plain = true,
                _ => {}
            }
        }
        match g.residue.get_attr("defaultMode") {
            Some("secure") => need_tls = true,
            Some("insecure") => need_plain = true,
            _ => {
                if ctx.conf.spice_tls {
                    need_tls = true;
                }
                need_plain = true;
            }
        }
        if need_plain {
            port = i32::from(
                ctx.env
                    .host
                    .graphics_port(crate::env::GraphicsPort::Spice)
                    .map_err(Error::Host)?,
            );
        }
        if need_tls {
            if !ctx.conf.spice_tls {
                return Err(Error::unsupported(
                    "Auto allocation of spice TLS port requested but spice TLS is disabled in qemu.conf",
                ));
            }
            tls_port = i32::from(
                ctx.env
                    .host
                    .graphics_port(crate::env::GraphicsPort::SpiceTls)
                    .map_err(Error::Host)?,
            );
        }
    }
    match l.kind {
        ListenType::Socket => {
            kv.push_bare("unix");
            kv.push("addr", l.socket.clone().unwrap_or_default());
            insecure = true;
        }
        ListenType::Address | ListenType::Network => {
            if port > 0 {
                kv.push("port", port);
                insecure = true;
            }
            if tls_port > 0 {
                kv.push("tls-port", tls_port);
                secure = true;
            }
            if port > 0 || tls_port > 0 {
                if let Some(a) = &l.address {
                    kv.push_bare(format!("addr={a}"));
                }
            }
        }
        ListenType::None => {
            kv.push("port", 0);
            insecure = true;
        }
    }
    if ctx.conf.spice_sasl {
        kv.push("sasl", "on");
        if let Some(d) = &ctx.conf.spice_sasl_dir {
            ctx.extra_env
                .push(("SASL_CONF_PATH".into(), d.to_string_lossy().into_owned()));
        }
    }
    match g.residue.find("mouse").and_then(|m| m.get_attr("mode")) {
        Some("server") => kv.push("agent-mouse", "off"),
        Some("client") => kv.push("agent-mouse", "on"),
        _ => {}
    }
    if g.residue.get_attr("passwd").is_none() && ctx.conf.spice_password.is_none() {
        kv.push("disable-ticketing", "on");
    }
    if secure {
        let dir = ctx.tls(qvisor_conf::qemu::TlsService::Spice).cert_dir;
        kv.push("x509-dir", dir.to_string_lossy().into_owned());
    }
    match g.residue.get_attr("defaultMode") {
        Some("secure") => {
            if !secure {
                return Err(Error::unsupported(
                    "spice defaultMode secure requested in XML configuration, but TLS connection is not available",
                ));
            }
            kv.push("tls-channel", "default");
        }
        Some("insecure") => {
            if !insecure {
                return Err(Error::unsupported(
                    "spice defaultMode insecure requested in XML configuration, but plaintext connection is not available",
                ));
            }
            kv.push("plaintext-channel", "default");
        }
        _ => {}
    }
    for name in SPICE_CHANNELS {
        let mode = g
            .residue
            .children
            .iter()
            .find(|c| c.is("channel") && c.get_attr("name") == Some(name))
            .and_then(|c| c.get_attr("mode"));
        match mode {
            Some("secure") => {
                if !secure {
                    return Err(Error::unsupported(
                        "spice secure channels set in XML configuration, but TLS connection is not available",
                    ));
                }
                kv.push("tls-channel", name);
            }
            Some("insecure") => {
                if !insecure {
                    return Err(Error::unsupported(
                        "spice insecure channels set in XML configuration, but plaintext connection is not available",
                    ));
                }
                kv.push("plaintext-channel", name);
            }
            _ => {}
        }
    }
    let child_attr = |el: &str, attr: &str| g.residue.find(el).and_then(|e| e.get_attr(attr));
    if let Some(v) = child_attr("image", "compression") {
        kv.push("image-compression", v);
    }
    if let Some(v) = child_attr("jpeg", "compression") {
        kv.push("jpeg-wan-compression", v);
    }
    if let Some(v) = child_attr("zlib", "compression") {
        kv.push("zlib-glz-wan-compression", v);
    }
    if let Some(v) = child_attr("playback", "compression") {
        kv.push("playback-compression", v);
    }
    if let Some(v) = child_attr("streaming", "mode") {
        kv.push("streaming-video", v);
    }
    if child_attr("clipboard", "copypaste") == Some("no") {
        kv.push("disable-copy-paste", "on");
    }
    if child_attr("filetransfer", "enable") == Some("no") {
        kv.push("disable-agent-file-xfer", "on");
    }
    if child_attr("gl", "enable") == Some("yes") {
        kv.push("gl", "on");
        let rn = child_attr("gl", "rendernode")
            .map(str::to_string)
            .or_else(|| ctx.env.render_node.clone());
        if let Some(r) = rn {
            kv.push("rendernode", r);
        }
    }
    kv.push("seamless-migration", "on");
    ctx.keyval("-spice", kv);
    if let Some(k) = &g.keymap {
        ctx.word("-k", k.clone());
    }
    Ok(())
}

pub(super) fn graphics(ctx: &mut Ctx) -> Result<()> {
    let graphics = ctx.def.devices.graphics.clone();
    for g in &graphics {
        match g.kind {
            GraphicsType::Sdl => {
                let r = &g.residue;
                if let Some(x) = r.get_attr("xauth") {
                    ctx.extra_env.push(("XAUTHORITY".into(), x.to_string()));
                }
                if let Some(d) = r.get_attr("display") {
                    ctx.extra_env.push(("DISPLAY".into(), d.to_string()));
                }
                if r.get_attr("fullscreen") == Some("yes") {
                    ctx.flag("-full-screen");
                }
                let mut kv = Keyval::head("sdl");
                match r.find("gl").and_then(|e| e.get_attr("enable")) {
                    Some("yes") => kv.push("gl", "on"),
                    Some("no") => kv.push("gl", "off"),
                    _ => {}
                }
                ctx.keyval("-display", kv);
            }
            GraphicsType::Vnc => vnc(ctx, g)?,
            GraphicsType::Spice => spice(ctx, g)?,
            GraphicsType::EglHeadless => {
                let mut kv = Keyval::head("egl-headless");
                let rn = g
                    .residue
                    .find("gl")
                    .and_then(|e| e.get_attr("rendernode"))
                    .map(str::to_string)
                    .or_else(|| ctx.env.render_node.clone());
                if let Some(r) = rn {
                    kv.push("rendernode", r);
                }
                ctx.keyval("-display", kv);
            }
            GraphicsType::Dbus => {
                let r = &g.residue;
                let mut kv = Keyval::head("dbus");
                if r.get_attr("p2p") == Some("yes") {
                    kv.push("p2p", "on");
                } else {
                    kv.push("addr", r.get_attr("address").unwrap_or(""));
                }
                match r.find("gl").and_then(|e| e.get_attr("enable")) {
                    Some("yes") => kv.push("gl", "on"),
                    Some("no") => kv.push("gl", "off"),
                    _ => {}
                }
                if let Some(rn) = r.find("gl").and_then(|e| e.get_attr("rendernode")) {
                    kv.push("rendernode", rn);
                }
                if let Some(id) = graphics_audio(g).filter(|i| *i > 0) {
                    kv.push("audiodev", audio_id(ctx, Some(id))?);
                }
                ctx.keyval("-display", kv);
            }
            other => {
                return Err(Error::unsupported(format!(
                    "unsupported graphics type '{other}'"
                )))
            }
        }
    }
    Ok(())
}

fn video_model(ctx: &Ctx, v: &Video, primary: bool) -> Result<(String, bool, bool)> {
    let vhost = v.driver.as_ref().and_then(|d| d.get_attr("name")) == Some("vhostuser");
    let accel3d = v
        .model_residue
        .find("acceleration")
        .and_then(|a| a.get_attr("accel3d"))
        == Some("yes");
    let kind = v.kind.unwrap_or(VideoType::Default);
    let primary_vga = primary
        && match kind {
            VideoType::Virtio => {
                if vhost {
                    ctx.has(Flag::DeviceVhostUserVga)
                } else {
                    ctx.has(Flag::DeviceVirtioVga)
                }
            }
            _ => true,
        };
    // (model, virtio, bus suffix)
    let r = if vhost {
        if primary_vga {
            ("vhost-user-vga", false, false)
        } else {
            ("vhost-user-gpu", true, true)
        }
    } else if primary_vga {
        match kind {
            VideoType::Vga => ("VGA", false, false),
            VideoType::Cirrus => ("cirrus-vga", false, false),
            VideoType::Vmvga => ("vmware-svga", false, false),
            VideoType::Qxl => ("qxl-vga", false, false),
            VideoType::Virtio => {
                if ctx.has(Flag::VirtioVgaGl) && accel3d {
                    ("virtio-vga-gl", true, false)
                } else {
                    ("virtio-vga", true, false)
                }
            }
            VideoType::Bochs => ("bochs-display", false, false),
            VideoType::Ramfb => ("ramfb", false, false),
            _ => ("", false, false),
        }
    } else {
        match kind {
            VideoType::Qxl => ("qxl", false, false),
            VideoType::Virtio => {
                if ctx.has(Flag::VirtioGpuGlPci) && accel3d {
                    ("virtio-gpu-gl", true, true)
                } else {
                    ("virtio-gpu", true, true)
                }
            }
            _ => ("", false, false),
        }
    };
    if r.0.is_empty() {
        return Err(Error::internal(format!(
            "invalid model for video type '{}'",
            kind.as_str()
        )));
    }
    Ok((r.0.to_string(), r.1, r.2))
}

pub(super) fn videos(ctx: &mut Ctx) -> Result<()> {
    let videos = ctx.def.devices.videos.clone();
    for (i, v) in videos.iter().enumerate() {
        let kind = v.kind.unwrap_or(VideoType::Default);
        if kind == VideoType::None {
            continue;
        }
        let alias = v.info.alias.clone().unwrap_or_default();
        let vhost = v.driver.as_ref().and_then(|d| d.get_attr("name")) == Some("vhostuser");
        if vhost {
            let chr = format!("chr-vu-{alias}");
            let fd = ctx.pass_fd(FdPurpose::ListenSocket(format!("{alias}-vhost-user")))?;
            ctx.keyval(
                "-chardev",
                Keyval::head("socket").kv("id", &chr).kv("fd", fd),
            );
        }
        let (model, virtio, suffix) = video_model(ctx, v, i == 0 || v.primary)?;
        let mut p = if virtio {
            let base = model.trim_end_matches("-pci");
            let mut p = Props::new().with(
                "driver",
                super::devices::virtio_driver(ctx, base, &v.info, None, suffix)?,
            );
            super::devices::virtio_options(&mut p, v.driver.as_ref());
            p
        } else {
            Props::new().with("driver", model.as_str())
        };
        p.set("id", alias.as_str());
        let accel3d = v
            .model_residue
            .find("acceleration")
            .and_then(|a| a.get_attr("accel3d"));
        if !vhost && kind == VideoType::Virtio && ctx.has(Flag::VirtioGpuVirgl) {
            match accel3d {
                Some("yes") => p.set("virgl", true),
                Some("no") => p.set("virgl", false),
                _ => {}
            }
        }
        if matches!(kind, VideoType::Qxl | VideoType::Virtio) {
            p.set_opt("max_outputs", v.heads.filter(|h| *h > 0));
        }
        if kind == VideoType::Qxl {
            p.set_opt(
                "ram_size",
                v.ram.filter(|r| *r > 0).map(|r| u64::from(r) * 1024),
            );
            p.set_opt(
                "vram_size",
                v.vram.filter(|r| *r > 0).map(|r| u64::from(r) * 1024),
            );
            if ctx.has(Flag::QxlVram64) {
                p.set("vram64_size_mb", v.vram64.unwrap_or(0) / 1024);
            }
            if ctx.has(Flag::QxlVgamem) {
                p.set("vgamem_mb", v.vgamem.unwrap_or(0) / 1024);
            }
        } else if vhost {
            p.set("chardev", format!("chr-vu-{alias}"));
        } else if (kind == VideoType::Vga && ctx.has(Flag::VgaVgamem))
            || (kind == VideoType::Vmvga && ctx.has(Flag::VmwareSvgaVgamem))
        {
            p.set_opt("vgamem_mb", v.vram.map(|r| r / 1024).filter(|r| *r > 0));
        } else if kind == VideoType::Bochs {
            p.set_opt(
                "vgamem",
                v.vram.filter(|r| *r > 0).map(|r| u64::from(r) * 1024),
            );
        }
        if let Some(res) = v.model_residue.find("resolution") {
            let n = |a: &str| {
                res.get_attr(a)
                    .and_then(|x| x.parse::<u64>().ok())
                    .filter(|x| *x > 0)
            };
            p.set_opt("xres", n("x"));
            p.set_opt("yres", n("y"));
        }
        super::devices::address_props(ctx, &mut p, &v.info)?;
        ctx.device(p);
    }
    Ok(())
}

pub(super) fn sounds(ctx: &mut Ctx) -> Result<()> {
    let sounds = ctx.def.devices.sounds.clone();
    for s in &sounds {
        let model = match s.model.as_str() {
            "pcspk" => {
                ctx.word("-soundhw", "pcspk");
                continue;
            }
            "es1370" => "ES1370",
            "ac97" => "AC97",
            "ich6" => "intel-hda",
            "usb" => "usb-audio",
            "ich9" => "ich9-intel-hda",
            "sb16" => "sb16",
            other => {
                return Err(Error::unsupported(format!(
                    "unsupported sound model '{other}'"
                )))
            }
        };
        let codecs = matches!(s.model.as_str(), "ich6" | "ich7" | "ich9");
        let alias = s.info.alias.clone().unwrap_or_default();
        let mut p = Props::new()
            .with("driver", model)
            .with("id", alias.as_str());
        if !codecs {
            p.set("audiodev", audio_id(ctx, s.audio_id)?);
        }
        super::devices::address_props(ctx, &mut p, &s.info)?;
        ctx.device(p);
        if codecs {
            let mut list: Vec<String> = s
                .residue
                .children
                .iter()
                .filter(|c| c.is("codec"))
                .map(|c| c.get_attr("type").unwrap_or("duplex").to_string())
                .collect();
            if list.is_empty() {
                list.push("duplex".into());
            }
            let audio = audio_id(ctx, s.audio_id)?;
            for (cad, t) in list.iter().enumerate() {
                ctx.device(
                    Props::new()
                        .with("driver", format!("hda-{t}"))
                        .with("id", format!("{alias}-codec{cad}"))
                        .with("bus", format!("{alias}.0"))
                        .with("cad", cad)
                        .with("audiodev", audio.as_str()),
                );
            }
        }
    }
    Ok(())
}
