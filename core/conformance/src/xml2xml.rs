//! `qvisor-conformance xml2xml`: parse, expand and validate a domain XML in
//! conformance mode and print the inactive definition libvirt would write.
//!
//! `--live` (not used by the checker) parses and prints the live form
//! instead, as libvirt's xml2xml test does in its "active" pass: for a
//! definition without runtime state both forms are the same document.

use std::path::PathBuf;

/// Inputs shared by the `xml2xml` and `argv` modes.
pub struct Inputs {
    /// Capabilities cache file (`--caps`).
    pub caps: Option<PathBuf>,
    /// qemu.conf (`--conf`).
    pub conf: Option<PathBuf>,
    /// Auxiliary data root (`--aux`).
    pub aux: Option<PathBuf>,
    /// The domain XML file.
    pub xml: PathBuf,
    /// `--live`: parse and format the live (running) form.
    pub live: bool,
}

/// Parses `--caps CAPS --conf CONF --aux AUX DOMAIN_XML`.
pub fn parse_args(args: &[String]) -> Result<Inputs, String> {
    let mut caps = None;
    let mut conf = None;
    let mut aux = None;
    let mut xml = None;
    let mut live = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        match a.as_str() {
            "--caps" => caps = Some(value("--caps")?),
            "--conf" => conf = Some(value("--conf")?),
            "--aux" => aux = Some(value("--aux")?),
            "--live" => live = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => {
                if xml.replace(PathBuf::from(s)).is_some() {
                    return Err("more than one domain XML given".into());
                }
            }
        }
    }
    Ok(Inputs {
        caps,
        conf,
        aux,
        xml: xml.ok_or("no domain XML given")?,
        live,
    })
}

/// The emulator that has capabilities in conformance mode.
const EMULATOR: &str = "/usr/bin/qemu-system-x86_64";

/// Reads a boolean key from qemu.conf text (`key = 1` / `key = true`).
fn conf_bool(conf: &str, key: &str) -> bool {
    conf.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .any(|(k, v)| k.trim() == key && matches!(v.trim(), "1" | "true"))
}

/// Reads, parses, expands and validates the domain in conformance mode as
/// a new definition (what `argv` and `errors` score).
pub fn load_domain(inputs: &Inputs) -> Result<qvisor_domain::Domain, String> {
    load_domain_as(inputs, true)
}

/// Like [`load_domain`]; `new_definition` false parses as libvirt's
/// xml2xml harness does (no `VIR_DOMAIN_DEF_PARSE_ABI_UPDATE`).
pub fn load_domain_as(
    inputs: &Inputs,
    new_definition: bool,
) -> Result<qvisor_domain::Domain, String> {
    let text = std::fs::read_to_string(&inputs.xml)
        .map_err(|e| format!("cannot read {}: {e}", inputs.xml.display()))?;
    let opts = qvisor_domain::ParseOptions {
        inactive: !inputs.live,
    };
    let parsed = if new_definition {
        qvisor_domain::parse(&text, opts)
    } else {
        qvisor_domain::parse_existing(&text, opts)
    };
    let mut def = parsed.map_err(|e| e.to_string())?;
    let mut caps = match &inputs.caps {
        Some(p) => Some(qvisor_caps::QemuCaps::load_cache_file(p).map_err(|e| e.to_string())?),
        None => None,
    };
    if let Some(c) = &mut caps {
        c.strip_machine_aliases();
    }
    let conf = match &inputs.conf {
        Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
        None => String::new(),
    };
    let emulator = def
        .devices
        .emulator
        .clone()
        .unwrap_or_else(|| EMULATOR.to_string());
    // only the conformance emulator has capabilities
    let caps_ref = caps.as_ref().filter(|_| emulator == EMULATOR);
    let mut random = |buf: &mut [u8]| {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
    };
    let mut ctx = qvisor_domain::ExpandContext {
        caps: caps_ref,
        default_emulator: EMULATOR.to_string(),
        nvram_dir: "/var/lib/libvirt/qemu/nvram".to_string(),
        vnc_allow_host_audio: conf_bool(&conf, "vnc_allow_host_audio"),
        nographics_allow_host_audio: conf_bool(&conf, "nographics_allow_host_audio"),
        audio_env: std::env::var("QEMU_AUDIO_DRV").ok(),
        sdl_audio_env: std::env::var("SDL_AUDIODRIVER").ok(),
        random: &mut random,
    };
    qvisor_domain::expand(&mut def, &mut ctx).map_err(|e| e.to_string())?;
    qvisor_domain::validate(&def).map_err(|e| e.to_string())?;
    let _ = &inputs.aux;
    Ok(def)
}

/// Runs the `xml2xml` mode; returns what to print on stdout, or the error message.
pub fn run(args: &[String]) -> Result<String, String> {
    let inputs = parse_args(args)?;
    let def = load_domain_as(&inputs, false)?;
    Ok(qvisor_domain::format(
        &def,
        &qvisor_domain::FormatOptions {
            inactive: !inputs.live,
            secure: true,
            migratable: false,
        },
    ))
}
