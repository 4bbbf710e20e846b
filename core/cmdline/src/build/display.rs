//! Audio backends, graphics (VNC, SPICE, SDL, egl-headless, D-Bus),
//! video adapters and sound cards.

use qvisor_domain::xml::Element;
use qvisor_domain::Audio;

use super::Ctx;
use crate::error::Result;
use crate::props::Props;

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

pub(super) fn graphics(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}

pub(super) fn videos(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}

pub(super) fn sounds(_ctx: &mut Ctx) -> Result<()> {
    Ok(())
}
