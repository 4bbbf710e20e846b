//! Reader and writer of libvirt's QEMU capability-cache document
//! (`<qemuCaps>`, `virQEMUCapsLoadCache` / `virQEMUCapsFormatCache`).
//!
//! The writer reproduces libvirt's layout byte for byte for every part that
//! libvirt writes. The reader is lenient where a newer libvirt's file may
//! differ: unknown flags are skipped with a warning (and kept in
//! [`QemuCaps::unknown_flags`]), unknown elements are kept verbatim in
//! [`QemuCaps::extra`], and a flag without its platform data (`sev-guest`
//! without `<sev>`) is accepted.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::flags::Flag;
use crate::model::*;
use crate::xmltree::{self, escape, Element};

impl QemuCaps {
    /// Parses a capability-cache document.
    pub fn from_cache_xml(xml: &str) -> Result<QemuCaps> {
        let root = xmltree::parse(xml).map_err(|reason| Error::ParseCacheXml { reason })?;
        from_element(&root)
    }

    /// Reads and parses a capability-cache file.
    pub fn load_cache_file(path: impl AsRef<Path>) -> Result<QemuCaps> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        QemuCaps::from_cache_xml(&text)
    }

    /// Formats the capabilities as libvirt's cache document.
    pub fn to_cache_xml(&self) -> String {
        format_cache(self)
    }
}

fn num<T: std::str::FromStr>(what: &'static str, s: &str) -> Result<T> {
    s.trim().parse().map_err(|_| Error::CacheMalformed {
        what,
        value: s.to_string(),
    })
}

fn opt_num<T: std::str::FromStr + Default>(el: &Element, name: &'static str) -> Result<T> {
    match el.child_text(name) {
        Some(t) => num(name, t),
        None => Ok(T::default()),
    }
}

fn yes(el: &Element, attr: &str) -> bool {
    el.attr(attr) == Some("yes")
}

fn yes_no(what: &'static str, s: &str) -> Result<bool> {
    match s.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => Err(Error::CacheMalformed {
            what,
            value: other.to_string(),
        }),
    }
}

const KNOWN: &[&str] = &[
    "emulator",
    "qemuctime",
    "qemusize",
    "qemumoddirmtime",
    "selfctime",
    "selfvers",
    "flag",
    "version",
    "kvmVersion",
    "microcodeVersion",
    "hostCPUSignature",
    "package",
    "kernelVersion",
    "cpudata",
    "arch",
    "hostCPU",
    "cpu",
    "machine",
    "gic",
    "sev",
    "sgx",
    "hypervCapabilities",
    "kvmSupportsNesting",
    "kvmSupportsSecureGuest",
];

fn from_element(root: &Element) -> Result<QemuCaps> {
    if root.name != "qemuCaps" {
        return Err(Error::CacheRoot {
            found: root.name.clone(),
        });
    }
    let mut caps = QemuCaps::new(
        root.child_text("emulator")
            .ok_or(Error::CacheMissing { what: "emulator" })?,
    );
    caps.qemu_ctime = opt_num(root, "qemuctime")?;
    caps.qemu_size = match root.child_text("qemusize") {
        Some(t) => Some(num("qemusize", t)?),
        None => None,
    };
    caps.qemu_moddir_mtime = match root.child_text("qemumoddirmtime") {
        Some(t) => Some(num("qemumoddirmtime", t)?),
        None => None,
    };
    caps.self_ctime = opt_num(root, "selfctime")?;
    caps.self_vers = opt_num(root, "selfvers")?;

    for f in root.children_named("flag") {
        let name = f
            .attr("name")
            .ok_or(Error::CacheMissing { what: "flag name" })?;
        match Flag::from_name(name) {
            Some(flag) => caps.set(flag),
            None => {
                tracing::warn!(
                    "unknown QEMU capability flag '{name}' in cache of {}, skipped",
                    caps.emulator
                );
                if !caps.unknown_flags.iter().any(|u| u == name) {
                    caps.unknown_flags.push(name.to_string());
                }
            }
        }
    }

    caps.version = num(
        "version",
        root.child_text("version")
            .ok_or(Error::CacheMissing { what: "version" })?,
    )?;
    caps.kvm_version = opt_num(root, "kvmVersion")?;
    caps.microcode_version = opt_num(root, "microcodeVersion")?;
    caps.host_cpu_signature = root.child_text("hostCPUSignature").map(str::to_string);
    caps.package = root.child_text("package").map(str::to_string);
    caps.kernel_version = root.child_text("kernelVersion").map(str::to_string);
    caps.cpudata = root.child("cpudata").cloned();
    caps.arch = root
        .child_text("arch")
        .filter(|a| !a.is_empty())
        .ok_or(Error::CacheMissing { what: "arch" })?
        .to_string();

    for accel in Accel::ALL {
        let ty = accel.as_str();
        let data = caps.accel_mut(accel);
        if let Some(h) = root
            .children_named("hostCPU")
            .find(|e| e.attr("type") == Some(ty))
        {
            data.host_cpu = Some(parse_host_cpu(h)?);
        }
        for c in root
            .children_named("cpu")
            .filter(|e| e.attr("type") == Some(ty))
        {
            data.cpu_models.push(parse_cpu_model(c)?);
        }
        for m in root
            .children_named("machine")
            .filter(|e| e.attr("type") == Some(ty))
        {
            data.machines.push(parse_machine(m)?);
        }
    }

    for g in root.children_named("gic") {
        caps.gic.push(GicCap {
            version: num(
                "GIC version",
                g.attr("version").ok_or(Error::CacheMissing {
                    what: "GIC version",
                })?,
            )?,
            kernel: yes_no(
                "in-kernel GIC information",
                g.attr("kernel").ok_or(Error::CacheMissing {
                    what: "in-kernel GIC information",
                })?,
            )?,
            emulated: yes_no(
                "emulated GIC information",
                g.attr("emulated").ok_or(Error::CacheMissing {
                    what: "emulated GIC information",
                })?,
            )?,
        });
    }

    if let Some(s) = root.child("sev") {
        caps.sev = Some(SevCaps {
            cbitpos: num("SEV cbitpos", s.child_text("cbitpos").unwrap_or(""))?,
            reduced_phys_bits: num(
                "SEV reducedPhysBits",
                s.child_text("reducedPhysBits").unwrap_or(""),
            )?,
            pdh: s.child_text("pdh").unwrap_or_default().to_string(),
            cert_chain: s.child_text("certChain").unwrap_or_default().to_string(),
            cpu0_id: s.child_text("cpu0Id").map(str::to_string),
            max_guests: 0,
            max_es_guests: 0,
        });
    }

    if let Some(s) = root.child("sgx") {
        let mut sgx = SgxCaps {
            flc: yes_no("SGX flc", s.child_text("flc").unwrap_or(""))?,
            sgx1: yes_no("SGX sgx1", s.child_text("sgx1").unwrap_or(""))?,
            sgx2: yes_no("SGX sgx2", s.child_text("sgx2").unwrap_or(""))?,
            section_size_kib: num(
                "SGX section_size",
                s.child_text("section_size").unwrap_or(""),
            )?,
            sections: Vec::new(),
        };
        if let Some(secs) = s.child("sections") {
            for sec in secs.children_named("section") {
                sgx.sections.push(SgxSection {
                    node: num("SGX section node", sec.attr("node").unwrap_or(""))?,
                    size_kib: num("SGX section size", sec.attr("size").unwrap_or(""))?,
                });
            }
        }
        caps.sgx = Some(sgx);
    }

    if let Some(h) = root.child("hypervCapabilities") {
        caps.hyperv = Some(HypervCaps {
            supported: yes_no(
                "hypervCapabilities supported",
                h.attr("supported").unwrap_or(""),
            )?,
            features: h
                .children_named("cap")
                .filter_map(|c| c.attr("name").map(str::to_string))
                .collect(),
        });
    }

    caps.kvm_supports_nesting = root.child("kvmSupportsNesting").is_some();
    caps.kvm_supports_secure_guest = root.child("kvmSupportsSecureGuest").is_some();
    caps.extra = root
        .children
        .iter()
        .filter(|c| !KNOWN.contains(&c.name.as_str()))
        .cloned()
        .collect();
    Ok(caps)
}

fn parse_host_cpu(el: &Element) -> Result<HostCpuInfo> {
    let model = el.attr("model").ok_or(Error::CacheMissing {
        what: "host CPU model name",
    })?;
    let migratability = yes_no(
        "host CPU migratability",
        el.attr("migratability").unwrap_or(""),
    )?;
    let mut props = Vec::new();
    for p in el.children_named("property") {
        let name = p.attr("name").ok_or(Error::CacheMissing {
            what: "'name' attribute for a host CPU model property",
        })?;
        let value = p.attr("value");
        let value = match p.attr("type") {
            Some("boolean") => CpuPropValue::Boolean(value == Some("true")),
            Some("string") => CpuPropValue::String(
                value
                    .ok_or(Error::CacheMissing {
                        what: "string value of a host CPU property",
                    })?
                    .to_string(),
            ),
            Some("number") => {
                CpuPropValue::Number(num("host CPU number property", value.unwrap_or(""))?)
            }
            other => {
                return Err(Error::CacheMalformed {
                    what: "CPU model property type",
                    value: other.unwrap_or("").to_string(),
                })
            }
        };
        let migratable = match p.attr("migratable") {
            None => None,
            Some(v) => Some(yes_no("host CPU property migratable", v)?),
        };
        props.push(CpuProperty {
            name: name.to_string(),
            value,
            migratable,
        });
    }
    Ok(HostCpuInfo {
        model: model.to_string(),
        migratability,
        props,
    })
}

fn parse_cpu_model(el: &Element) -> Result<CpuModel> {
    let usable = match el.attr("usable") {
        None | Some("unknown") => CpuUsable::Unknown,
        Some("yes") => CpuUsable::Yes,
        Some("no") => CpuUsable::No,
        Some(other) => {
            return Err(Error::CacheMalformed {
                what: "CPU model attribute 'usable'",
                value: other.to_string(),
            })
        }
    };
    Ok(CpuModel {
        name: el
            .attr("name")
            .ok_or(Error::CacheMissing { what: "cpu name" })?
            .to_string(),
        typename: el.attr("typename").map(str::to_string),
        usable,
        blockers: el
            .children_named("blocker")
            .map(|b| {
                b.attr("name")
                    .map(str::to_string)
                    .ok_or(Error::CacheMissing {
                        what: "blocker name",
                    })
            })
            .collect::<Result<_>>()?,
        deprecated: yes(el, "deprecated"),
    })
}

fn parse_machine(el: &Element) -> Result<MachineType> {
    Ok(MachineType {
        name: el
            .attr("name")
            .ok_or(Error::CacheMissing {
                what: "machine name",
            })?
            .to_string(),
        alias: el.attr("alias").map(str::to_string),
        max_cpus: match el.attr("maxCpus") {
            Some(v) => num("machine cpu count", v)?,
            None => 0,
        },
        hotplug_cpus: yes(el, "hotplugCpus"),
        default: yes(el, "default"),
        default_cpu: el.attr("defaultCPU").map(str::to_string),
        numa_mem_supported: yes(el, "numaMemSupported"),
        default_ram_id: el.attr("defaultRAMid").map(str::to_string),
        deprecated: yes(el, "deprecated"),
        acpi: el.attr("acpi").map(str::to_string),
    })
}

fn format_cache(c: &QemuCaps) -> String {
    let mut o = String::with_capacity(64 * 1024);
    o.push_str("<qemuCaps>\n");
    let _ = writeln!(o, "  <emulator>{}</emulator>", escape(&c.emulator));
    let _ = writeln!(o, "  <qemuctime>{}</qemuctime>", c.qemu_ctime);
    if let Some(s) = c.qemu_size {
        let _ = writeln!(o, "  <qemusize>{s}</qemusize>");
    }
    if let Some(m) = c.qemu_moddir_mtime.filter(|&m| m > 0) {
        let _ = writeln!(o, "  <qemumoddirmtime>{m}</qemumoddirmtime>");
    }
    let _ = writeln!(o, "  <selfctime>{}</selfctime>", c.self_ctime);
    let _ = writeln!(o, "  <selfvers>{}</selfvers>", c.self_vers);
    for f in c.flags.iter() {
        let _ = writeln!(o, "  <flag name='{}'/>", f.name());
    }
    for f in &c.unknown_flags {
        let _ = writeln!(o, "  <flag name='{}'/>", escape(f));
    }
    let _ = writeln!(o, "  <version>{}</version>", c.version);
    let _ = writeln!(o, "  <kvmVersion>{}</kvmVersion>", c.kvm_version);
    let _ = writeln!(
        o,
        "  <microcodeVersion>{}</microcodeVersion>",
        c.microcode_version
    );
    if let Some(s) = &c.host_cpu_signature {
        let _ = writeln!(o, "  <hostCPUSignature>{}</hostCPUSignature>", escape(s));
    }
    if let Some(p) = &c.package {
        let _ = writeln!(o, "  <package>{}</package>", escape(p));
    }
    if let Some(k) = &c.kernel_version {
        let _ = writeln!(o, "  <kernelVersion>{}</kernelVersion>", escape(k));
    }
    if let Some(cd) = &c.cpudata {
        cd.write_to(&mut o, 2);
    }
    let _ = writeln!(o, "  <arch>{}</arch>", escape(&c.arch));
    for accel in Accel::ALL {
        let include = match accel {
            Accel::Kvm => c.has(Flag::Kvm),
            Accel::Hvf => c.has(Flag::Hvf),
            Accel::Tcg => true,
        } || !c.accel(accel).is_empty();
        if include {
            format_accel(&mut o, c.accel(accel), accel.as_str());
        }
    }
    for g in &c.gic {
        let _ = writeln!(
            o,
            "  <gic version='{}' kernel='{}' emulated='{}'/>",
            g.version,
            yn(g.kernel),
            yn(g.emulated)
        );
    }
    if let Some(s) = &c.sev {
        o.push_str("  <sev>\n");
        let _ = writeln!(o, "    <cbitpos>{}</cbitpos>", s.cbitpos);
        let _ = writeln!(
            o,
            "    <reducedPhysBits>{}</reducedPhysBits>",
            s.reduced_phys_bits
        );
        let _ = writeln!(o, "    <pdh>{}</pdh>", escape(&s.pdh));
        let _ = writeln!(o, "    <certChain>{}</certChain>", escape(&s.cert_chain));
        if let Some(id) = &s.cpu0_id {
            let _ = writeln!(o, "    <cpu0Id>{}</cpu0Id>", escape(id));
        }
        o.push_str("  </sev>\n");
    }
    if let Some(s) = &c.sgx {
        o.push_str("  <sgx supported='yes'>\n");
        let _ = writeln!(o, "    <flc>{}</flc>", yn(s.flc));
        let _ = writeln!(o, "    <sgx1>{}</sgx1>", yn(s.sgx1));
        let _ = writeln!(o, "    <sgx2>{}</sgx2>", yn(s.sgx2));
        let _ = writeln!(
            o,
            "    <section_size unit='KiB'>{}</section_size>",
            s.section_size_kib
        );
        if !s.sections.is_empty() {
            o.push_str("    <sections>\n");
            for sec in &s.sections {
                let _ = writeln!(
                    o,
                    "      <section node='{}' size='{}' unit='KiB'/>",
                    sec.node, sec.size_kib
                );
            }
            o.push_str("    </sections>\n");
        }
        o.push_str("  </sgx>\n");
    }
    if let Some(h) = &c.hyperv {
        let features: &[String] = if h.supported { &h.features } else { &[] };
        if features.is_empty() {
            let _ = writeln!(o, "  <hypervCapabilities supported='{}'/>", yn(h.supported));
        } else {
            let _ = writeln!(o, "  <hypervCapabilities supported='{}'>", yn(h.supported));
            for f in features {
                let _ = writeln!(o, "    <cap name='{}'/>", escape(f));
            }
            o.push_str("  </hypervCapabilities>\n");
        }
    }
    if c.kvm_supports_nesting {
        o.push_str("  <kvmSupportsNesting/>\n");
    }
    if c.kvm_supports_secure_guest {
        o.push_str("  <kvmSupportsSecureGuest/>\n");
    }
    for e in &c.extra {
        e.write_to(&mut o, 2);
    }
    o.push_str("</qemuCaps>\n");
    o
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn format_accel(o: &mut String, a: &AccelCaps, ty: &str) {
    if let Some(h) = &a.host_cpu {
        let _ = writeln!(
            o,
            "  <hostCPU type='{ty}' model='{}' migratability='{}'>",
            escape(&h.model),
            yn(h.migratability)
        );
        for p in &h.props {
            let _ = write!(o, "    <property name='{}' ", escape(&p.name));
            match &p.value {
                CpuPropValue::Boolean(b) => {
                    let _ = write!(o, "type='boolean' value='{b}'");
                }
                CpuPropValue::String(s) => {
                    let _ = write!(o, "type='string' value='{}'", escape(s));
                }
                CpuPropValue::Number(n) => {
                    let _ = write!(o, "type='number' value='{n}'");
                }
            }
            if let Some(m) = p.migratable {
                let _ = write!(o, " migratable='{}'", yn(m));
            }
            o.push_str("/>\n");
        }
        o.push_str("  </hostCPU>\n");
    }
    for cpu in &a.cpu_models {
        let _ = write!(o, "  <cpu type='{ty}' name='{}'", escape(&cpu.name));
        if let Some(t) = &cpu.typename {
            let _ = write!(o, " typename='{}'", escape(t));
        }
        if cpu.usable != CpuUsable::Unknown {
            let _ = write!(o, " usable='{}'", cpu.usable.as_str());
        }
        if cpu.deprecated {
            o.push_str(" deprecated='yes'");
        }
        if cpu.blockers.is_empty() {
            o.push_str("/>\n");
        } else {
            o.push_str(">\n");
            for b in &cpu.blockers {
                let _ = writeln!(o, "    <blocker name='{}'/>", escape(b));
            }
            o.push_str("  </cpu>\n");
        }
    }
    for m in &a.machines {
        let _ = write!(o, "  <machine type='{ty}' name='{}'", escape(&m.name));
        if let Some(al) = &m.alias {
            let _ = write!(o, " alias='{}'", escape(al));
        }
        if m.hotplug_cpus {
            o.push_str(" hotplugCpus='yes'");
        }
        let _ = write!(o, " maxCpus='{}'", m.max_cpus);
        if m.default {
            o.push_str(" default='yes'");
        }
        if let Some(d) = &m.default_cpu {
            let _ = write!(o, " defaultCPU='{}'", escape(d));
        }
        if m.numa_mem_supported {
            o.push_str(" numaMemSupported='yes'");
        }
        if let Some(r) = &m.default_ram_id {
            let _ = write!(o, " defaultRAMid='{}'", escape(r));
        }
        if m.deprecated {
            o.push_str(" deprecated='yes'");
        }
        if let Some(a) = &m.acpi {
            let _ = write!(o, " acpi='{}'", escape(a));
        }
        o.push_str("/>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS_DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/caps"
    );

    fn shipped(version: &str) -> Option<String> {
        std::fs::read_to_string(format!("{CAPS_DIR}/caps_{version}.x86_64.xml")).ok()
    }

    #[test]
    fn shipped_cache_files_round_trip_byte_for_byte() {
        for v in [
            "4.2.0", "5.0.0", "5.1.0", "5.2.0", "6.1.0", "6.2.0", "7.0.0", "7.2.0", "8.0.0",
        ] {
            let Some(text) = shipped(v) else {
                eprintln!("skipping: {CAPS_DIR} not available");
                return;
            };
            let caps = QemuCaps::from_cache_xml(&text).unwrap();
            assert_eq!(caps.to_cache_xml(), text, "round trip of caps_{v}");
        }
    }

    #[test]
    fn caps_8_0_0_loads_with_expected_content() {
        let Some(text) = shipped("8.0.0") else { return };
        let caps = QemuCaps::from_cache_xml(&text).unwrap();
        assert_eq!(caps.version(), 7_002_050);
        assert_eq!(caps.arch, "x86_64");
        assert!(caps.has(Flag::Kvm) && caps.has(Flag::BlockdevReopen));
        assert!(!caps.has(Flag::SevGuest));
        let pc = caps.default_machine(Accel::Kvm).unwrap();
        assert_eq!(
            (pc.name.as_str(), pc.alias.as_deref()),
            ("pc-i440fx-8.0", Some("pc"))
        );
        assert_eq!(pc.default_ram_id.as_deref(), Some("pc.ram"));
        assert_eq!(caps.machine(Accel::Tcg, "q35").unwrap().name, "pc-q35-8.0");
        assert_eq!(
            caps.cpu_model(Accel::Kvm, "Skylake-Client")
                .map(|c| c.usable),
            Some(CpuUsable::No)
        );
        assert!(caps
            .hyperv
            .as_ref()
            .unwrap()
            .features
            .contains(&"avic".to_string()));
    }

    #[test]
    fn unknown_flags_are_skipped_and_kept() {
        let xml =
            "<qemuCaps><emulator>/q</emulator><flag name='kvm'/><flag name='from-the-future'/>\
                   <version>9000000</version><arch>x86_64</arch><futureThing a='1'/></qemuCaps>";
        let caps = QemuCaps::from_cache_xml(xml).unwrap();
        assert!(caps.has(Flag::Kvm));
        assert_eq!(caps.unknown_flags, ["from-the-future"]);
        let out = caps.to_cache_xml();
        assert!(out.contains("<flag name='from-the-future'/>"));
        assert!(out.contains("<futureThing a='1'/>"));
    }

    #[test]
    fn missing_required_parts_are_errors() {
        for (xml, what) in [
            (
                "<qemuCaps><version>1</version><arch>x</arch></qemuCaps>",
                "emulator",
            ),
            (
                "<qemuCaps><emulator>/q</emulator><arch>x</arch></qemuCaps>",
                "version",
            ),
            (
                "<qemuCaps><emulator>/q</emulator><version>1</version></qemuCaps>",
                "arch",
            ),
        ] {
            let err = QemuCaps::from_cache_xml(xml).unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
        }
        assert!(matches!(
            QemuCaps::from_cache_xml("<domain/>"),
            Err(Error::CacheRoot { .. })
        ));
        assert!(matches!(
            QemuCaps::from_cache_xml(
                "<qemuCaps><emulator>/q</emulator><version>x1</version><arch>x</arch></qemuCaps>"
            ),
            Err(Error::CacheMalformed {
                what: "version",
                ..
            })
        ));
    }

    #[test]
    fn corrupted_cache_never_panics() {
        let Some(text) = shipped("7.0.0") else { return };
        // Deterministic pseudo-random mutations: truncation, byte flips,
        // deletions, duplicated slices.
        let bytes = text.as_bytes();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..400 {
            let mut b = bytes.to_vec();
            let n = b.len();
            match i % 4 {
                0 => b.truncate((next() as usize) % n),
                1 => {
                    for _ in 0..8 {
                        let p = (next() as usize) % n;
                        b[p] = (next() & 0xff) as u8;
                    }
                }
                2 => {
                    let p = (next() as usize) % n;
                    let l = ((next() as usize) % 200).min(n - p);
                    b.drain(p..p + l);
                }
                _ => {
                    let p = (next() as usize) % n;
                    let l = ((next() as usize) % 200).min(n - p);
                    let slice = b[p..p + l].to_vec();
                    let q = (next() as usize) % n;
                    b.splice(q..q, slice);
                }
            }
            let s = String::from_utf8_lossy(&b);
            let _ = QemuCaps::from_cache_xml(&s);
        }
    }
}
