//! Firmware: autoselection from QEMU firmware descriptor files
//! (`<os firmware='efi|bios'>`, libvirt's `qemuFirmwareFillDomain`), the
//! pflash blockdevs of UEFI code and varstore, `-bios`, and the secure
//! pflash global.
//!
//! Descriptors are read from [`BuildEnv::firmware_dirs`] in priority
//! order; a file name in a higher-priority directory shadows the same name
//! below it, and an empty file disables it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use qvisor_domain::{Domain, Firmware, Loader, LoaderType, Nvram, OnOff, YesNo};
use serde_json::Value;

use super::Ctx;
use crate::env::BuildEnv;
use crate::error::{Error, Result};
use crate::model::Opt;
use crate::props::Props;

/// Whether the loader is a pflash (UEFI) image handed over as blockdevs.
pub(super) fn old_style_uefi(def: &Domain) -> bool {
    def.os
        .loader
        .as_ref()
        .is_some_and(|l| l.kind == Some(LoaderType::Pflash) && l.path.is_some())
}

/// A parsed firmware descriptor (the parts libvirt matches on).
#[derive(Debug, Clone, Default)]
struct Descriptor {
    interfaces: Vec<String>,
    device: String,
    mode: String,
    executable: Option<String>,
    executable_format: String,
    nvram_template: Option<String>,
    memory_filename: Option<String>,
    kernel_filename: Option<String>,
    targets: Vec<(String, Vec<String>)>,
    features: Vec<String>,
}

fn parse_descriptor(text: &str) -> Option<Descriptor> {
    let v: Value = serde_json::from_str(text).ok()?;
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mapping = v.get("mapping")?;
    let s = |o: Option<&Value>, k: &str| {
        o.and_then(|o| o.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Some(Descriptor {
        interfaces: strs(v.get("interface-types")),
        device: s(Some(mapping), "device").unwrap_or_default(),
        mode: s(Some(mapping), "mode").unwrap_or_else(|| "split".into()),
        executable: s(mapping.get("executable"), "filename"),
        executable_format: s(mapping.get("executable"), "format").unwrap_or_else(|| "raw".into()),
        nvram_template: s(mapping.get("nvram-template"), "filename"),
        memory_filename: s(Some(mapping), "filename"),
        kernel_filename: s(Some(mapping), "filename"),
        targets: v
            .get("targets")
            .and_then(Value::as_array)
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        (
                            t.get("architecture")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            strs(t.get("machines")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        features: strs(v.get("features")),
    })
}

/// Shell-style glob with `*` and `?` (GLib's `g_pattern_match_simple`).
fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    fn rec(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| rec(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && rec(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && rec(rest, &t[1..]),
        }
    }
    rec(&p, &t)
}

/// Descriptors in libvirt's order: by file name, the highest-priority
/// directory winning; empty files drop the name.
fn descriptors(env: &BuildEnv) -> Vec<(PathBuf, Descriptor)> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in env.firmware_dirs.iter().rev() {
        for name in env.host.list_dir(dir) {
            if name.ends_with(".json") {
                by_name.insert(name.clone(), dir.join(&name));
            }
        }
    }
    by_name
        .into_values()
        .filter_map(|p| {
            let text = env.host.read_file(&p)?;
            if text.trim().is_empty() {
                return None;
            }
            parse_descriptor(&text).map(|d| (p, d))
        })
        .collect()
}

fn feature_wanted(def: &Domain, name: &str) -> Option<bool> {
    def.os
        .firmware_features
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.enabled == YesNo::Yes)
}

fn matches(def: &Domain, d: &Descriptor) -> bool {
    let arch = def.os.arch.as_deref().unwrap_or("x86_64");
    let machine = def.os.machine.as_deref().unwrap_or("");
    let loader = def.os.loader.as_ref();
    let want = match def.os.firmware {
        Some(Firmware::Bios) => "bios",
        Some(Firmware::Efi) => "uefi",
        None => {
            let Some(l) = loader else { return false };
            if d.device != "flash" || l.path != d.executable {
                return false;
            }
            match l.kind {
                Some(LoaderType::Rom) => "bios",
                _ => "uefi",
            }
        }
    };
    if !d.interfaces.iter().any(|i| i == want) {
        return false;
    }
    if !d
        .targets
        .iter()
        .any(|(a, ms)| a == arch && ms.iter().any(|m| glob(m, machine)))
    {
        return false;
    }
    let has = |f: &str| d.features.iter().any(|x| x == f);
    if let Some(pm) = &def.pm {
        if pm.suspend_to_mem == Some(YesNo::Yes) && !has("acpi-s3") {
            return false;
        }
        if pm.suspend_to_disk == Some(YesNo::Yes) && !has("acpi-s4") {
            return false;
        }
    }
    for (xml, fw) in [
        ("secure-boot", "secure-boot"),
        ("enrolled-keys", "enrolled-keys"),
    ] {
        match feature_wanted(def, xml) {
            Some(true) if !has(fw) => return false,
            Some(false) if has(fw) => return false,
            _ => {}
        }
    }
    if loader.and_then(|l| l.secure) == Some(YesNo::Yes) && !has("requires-smm") {
        return false;
    }
    if d.device == "flash" {
        let stateless = loader.and_then(|l| l.stateless) == Some(YesNo::Yes);
        if stateless != (d.mode == "stateless") {
            return false;
        }
        if !stateless && d.mode != "split" {
            return false;
        }
    }
    if let Some(ls) = &def.launch_security {
        if ls.get_attr("type") == Some("sev") {
            if !has("amd-sev") {
                return false;
            }
            let policy = ls
                .find("policy")
                .and_then(|p| p.trimmed_text())
                .and_then(|t| qvisor_domain::common::parse_uint(t, true))
                .unwrap_or(0);
            if policy & 0x4 != 0 && !has("amd-sev-es") {
                return false;
            }
        }
    }
    true
}

fn nvram_path(env: &BuildEnv, def: &Domain) -> String {
    env.nvram_dir
        .join(format!("{}_VARS.fd", def.name))
        .to_string_lossy()
        .into_owned()
}

/// Firmware autoselection (and the legacy NVRAM template lookup) before
/// building, as libvirt's `qemuFirmwareFillDomain` for a new start.
pub(super) fn fill(def: &mut Domain, env: &BuildEnv) -> Result<()> {
    let need_result = match def.os.firmware {
        Some(_) => true,
        None => {
            let ro_uefi = def.os.loader.as_ref().is_some_and(|l| {
                l.kind == Some(LoaderType::Pflash)
                    && l.readonly == Some(YesNo::Yes)
                    && l.path.is_some()
            });
            let template = def.os.nvram.as_ref().and_then(|n| n.template.as_ref());
            if !ro_uefi || template.is_some() {
                return Ok(());
            }
            if let Some(p) = def.os.nvram.as_ref().and_then(|n| n.path.as_ref()) {
                if env.host.exists(std::path::Path::new(p)) {
                    return Ok(());
                }
            }
            false
        }
    };
    let found = descriptors(env).into_iter().find(|(_, d)| matches(def, d));
    let Some((_, d)) = found else {
        if need_result {
            let what = match def.os.firmware {
                Some(Firmware::Bios) => "bios",
                _ => "efi",
            };
            return Err(Error::OperationFailed(format!(
                "Unable to find any firmware to satisfy '{what}'"
            )));
        }
        return Ok(());
    };
    match d.device.as_str() {
        "flash" => {
            if d.executable_format != "raw" {
                return Err(Error::unsupported(format!(
                    "unsupported flash format '{}'",
                    d.executable_format
                )));
            }
            let loader = def.os.loader.get_or_insert_with(Loader::default);
            loader.kind = Some(LoaderType::Pflash);
            loader.readonly = Some(YesNo::Yes);
            loader.path = d.executable.clone();
            if d.mode == "split" {
                let path = nvram_path(env, def);
                let nv = def.os.nvram.get_or_insert_with(Nvram::default);
                nv.template = d.nvram_template.clone();
                if nv.path.is_none() && nv.residue.find("source").is_none() {
                    nv.path = Some(path);
                }
            }
        }
        "kernel" => def.os.kernel = d.kernel_filename.clone(),
        "memory" => {
            let loader = def.os.loader.get_or_insert_with(Loader::default);
            loader.kind = Some(LoaderType::Rom);
            loader.path = d.memory_filename.clone();
        }
        _ => {}
    }
    if d.features.iter().any(|f| f == "requires-smm") {
        let f = def.features.get_or_insert_with(Default::default);
        match f.smm {
            Some(OnOff::Off) => {
                return Err(Error::OperationFailed(
                    "domain has SMM turned off but chosen firmware requires it".into(),
                ))
            }
            None => f.smm = Some(OnOff::On),
            Some(OnOff::On) => {}
        }
        if let Some(l) = def.os.loader.as_mut() {
            l.secure = Some(YesNo::Yes);
        }
    }
    def.os.firmware = None;
    Ok(())
}

/// The varstore of an old-style UEFI domain: path from `<nvram>` (text or
/// `<source file=>`), generated from the name when only a template is set.
fn nvram_file(ctx: &Ctx) -> Option<String> {
    let nv = ctx.def.os.nvram.as_ref()?;
    if let Some(p) = &nv.path {
        return Some(p.clone());
    }
    if let Some(f) = nv.residue.find("source").and_then(|s| s.get_attr("file")) {
        return Some(f.to_string());
    }
    Some(nvram_path(ctx.env, ctx.def))
}

fn pflash(ctx: &mut Ctx, prefix: &str, path: String, readonly: bool) {
    ctx.push(Opt::Blockdev(
        Props::new()
            .with("driver", "file")
            .with("filename", path)
            .with("node-name", format!("{prefix}-storage"))
            .with("auto-read-only", true)
            .with("discard", "unmap"),
    ));
    ctx.push(Opt::Blockdev(
        Props::new()
            .with("node-name", format!("{prefix}-format"))
            .with("read-only", readonly)
            .with("driver", "raw")
            .with("file", format!("{prefix}-storage")),
    ));
}

pub(super) fn pflash_blockdevs(ctx: &mut Ctx) -> Result<()> {
    if !old_style_uefi(ctx.def) {
        return Ok(());
    }
    let Some(loader) = ctx.def.os.loader.clone() else {
        return Ok(());
    };
    if let Some(p) = loader.path {
        pflash(
            ctx,
            "libvirt-pflash0",
            p,
            loader.readonly == Some(YesNo::Yes),
        );
    }
    let typed = ctx
        .def
        .os
        .nvram
        .as_ref()
        .filter(|n| n.path.is_none() && n.residue.get_attr("type").is_some())
        .map(|n| n.residue.clone());
    match typed {
        Some(el) => super::disk::nvram_blockdevs(ctx, &el)?,
        None => {
            if let Some(nv) = nvram_file(ctx) {
                pflash(ctx, "libvirt-pflash1", nv, false);
            }
        }
    }
    Ok(())
}

pub(super) fn loader(ctx: &mut Ctx) {
    let Some(l) = ctx.def.os.loader.clone() else {
        return;
    };
    match (l.kind, &l.path) {
        (Some(LoaderType::Rom), Some(path)) => ctx.word("-bios", path.clone()),
        (None, Some(path)) => ctx.word("-bios", path.clone()),
        (Some(LoaderType::Pflash), _) if l.secure == Some(YesNo::Yes) => {
            ctx.word("-global", "driver=cfi.pflash01,property=secure,value=on");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_machine_patterns() {
        assert!(glob("pc-q35-*", "pc-q35-4.0"));
        assert!(!glob("pc-q35-*", "pc-i440fx-4.0"));
        assert!(glob("virt-?.?", "virt-6.2"));
    }
}
