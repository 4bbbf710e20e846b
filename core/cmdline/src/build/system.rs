//! Machine-wide options: name, machine, accelerator, CPU, SMP, clock,
//! power management, boot, monitor, sandbox, environment and taints.

use qvisor_caps::{Accel, Flag};
use qvisor_domain::{
    ClockOffset, CpuFeaturePolicy, CpuMode, DeprecationBehavior, Domain, OnOff, StrEnum,
    TickPolicy, TimerName, TimerTrack, YesNo,
};

use super::{onoff, Ctx};
use crate::env::BuildEnv;
use crate::error::{Error, Result};
use crate::machine::is_q35;
use crate::model::{FdPurpose, Taint};
use crate::props::{Keyval, Props};

/// Start-time adjustments libvirt makes to a copy of the definition before
/// building (`qemuProcessPrepareDomain`): the guest CPU for host-model.
pub(super) fn prepare(
    def: &mut Domain,
    caps: &qvisor_caps::QemuCaps,
    env: &mut BuildEnv<'_>,
) -> Result<()> {
    super::firmware::fill(def, env)?;
    align_memory(def);
    device_bootorder(def);
    crate::usb::assign_usb_ports(def)?;
    host_model_cpu(def, caps)?;
    update_guest_cpu(def, caps);
    Ok(())
}

/// Features libvirt's x86 CPU map lists as `removed='yes'` in a model
/// (libvirt 9.0 `src/cpu_map/x86_*.xml`): QEMU's model of that name still
/// enables them, libvirt's does not, so a guest using the model gets them
/// disabled explicitly unless it mentions them.
const X86_REMOVED_FEATURES: &[(&str, &[&str])] = &[
    ("Dhyana", &["monitor"]),
    ("EPYC", &["monitor"]),
    ("EPYC-IBPB", &["monitor"]),
    ("Icelake-Client", &["intel-pt"]),
    ("Icelake-Client-noTSX", &["intel-pt"]),
    ("Icelake-Server", &["intel-pt"]),
    ("Icelake-Server-noTSX", &["intel-pt"]),
    ("Opteron_G3", &["monitor"]),
];

/// Features libvirt never passes to QEMU on x86
/// (`virQEMUCapsCPUFilterFeatures`).
const X86_FILTERED_FEATURES: &[&str] = &["cmt", "mbm_total", "mbm_local", "osxsave", "ospke"];

/// The x86 feature updates of `qemuProcessUpdateGuestCPU` for a guest CPU
/// with a model: the model's removed features become explicitly disabled
/// (`virCPUx86DisableRemovedFeatures`), features libvirt filters are
/// dropped, and disabled features QEMU does not know at all (absent from
/// the host-CPU expansion of the accelerator) are dropped, since QEMU has
/// them off anyway.
fn update_guest_cpu(def: &mut Domain, caps: &qvisor_caps::QemuCaps) {
    use qvisor_caps::probe::tables::cpu_feature_from_qemu;
    use qvisor_domain::CpuFeature;
    let accel = accel_of(def);
    let Some(cpu) = def.cpu.as_mut() else {
        return;
    };
    let mode = cpu.mode.unwrap_or(CpuMode::Custom);
    if (mode == CpuMode::Custom && cpu.model.is_none()) || !caps.is_x86() {
        return;
    }
    if mode == CpuMode::Custom {
        let removed = cpu.model.as_deref().and_then(|m| {
            X86_REMOVED_FEATURES
                .iter()
                .find(|(name, _)| *name == m)
                .map(|(_, f)| *f)
        });
        for name in removed.unwrap_or_default() {
            if !cpu.features.iter().any(|f| f.name == *name) {
                cpu.features.push(CpuFeature {
                    policy: CpuFeaturePolicy::Disable,
                    name: (*name).to_string(),
                });
            }
        }
    }
    cpu.features
        .retain(|f| !X86_FILTERED_FEATURES.contains(&f.name.as_str()));
    if let Some(info) = caps.host_cpu(accel) {
        cpu.features.retain(|f| {
            !matches!(
                f.policy,
                CpuFeaturePolicy::Disable | CpuFeaturePolicy::Forbid
            ) || info
                .props
                .iter()
                .any(|p| cpu_feature_from_qemu(&caps.arch, &p.name) == f.name)
        });
    }
}

/// A host-model guest CPU becomes the custom model libvirt derives from
/// the host-CPU expansion in the capabilities (x86), with the domain's own
/// feature policies applied on top.
fn host_model_cpu(def: &mut Domain, caps: &qvisor_caps::QemuCaps) -> Result<()> {
    use qvisor_domain::CpuFeature;
    let accel = accel_of(def);
    let Some(cpu) = def.cpu.as_mut() else {
        return Ok(());
    };
    if cpu.mode != Some(CpuMode::HostModel) || !caps.is_x86() {
        return Ok(());
    }
    let hm = qvisor_caps::domcaps::host_model(caps, accel).ok_or_else(|| {
        Error::unsupported("CPU mode 'host-model' for x86_64 kvm domain on x86_64 host is not supported by hypervisor")
    })?;
    let mut features: Vec<CpuFeature> = hm
        .features
        .iter()
        .filter_map(|(policy, name)| {
            let policy = match policy.as_str() {
                "require" => CpuFeaturePolicy::Require,
                "disable" => CpuFeaturePolicy::Disable,
                _ => return None,
            };
            // host-model guests stay migratable: drop features the map
            // marks non-migratable (invtsc, ...)
            let migratable = caps
                .host_cpu(accel)
                .and_then(|h| h.prop(name).or_else(|| h.prop(&cpu_feature_to_qemu(name))))
                .is_none_or(|p| p.migratable != Some(false));
            if policy == CpuFeaturePolicy::Require
                && !migratable
                && cpu.migratable != Some(OnOff::Off)
            {
                return None;
            }
            Some(CpuFeature {
                policy,
                name: name.clone(),
            })
        })
        .collect();
    for f in &cpu.features {
        match features.iter_mut().find(|x| x.name == f.name) {
            Some(x) => x.policy = f.policy,
            None => features.push(f.clone()),
        }
    }
    cpu.mode = Some(CpuMode::Custom);
    cpu.model = Some(hm.model);
    cpu.features = features;
    Ok(())
}

/// `<os><boot dev=>` becomes per-device boot indexes
/// (`qemuProcessPrepareDeviceBootorder`): the first disk of each kind and
/// the first interface get the position of their boot entry.
fn device_bootorder(def: &mut Domain) {
    use qvisor_domain::{address::BootOrder, BootDev, DiskDevice};
    if def.os.boot.is_empty() {
        return;
    }
    let (mut cd, mut fd, mut hd, mut net) = (0u32, 0u32, 0u32, 0u32);
    for (i, b) in def.os.boot.iter().enumerate() {
        let pos = i as u32 + 1;
        match b {
            BootDev::Cdrom => cd = pos,
            BootDev::Fd => fd = pos,
            BootDev::Hd => hd = pos,
            BootDev::Network => net = pos,
        }
    }
    let set = |info: &mut qvisor_domain::DeviceInfo, v: u32| {
        info.boot = (v > 0).then_some(BootOrder {
            order: v,
            loadparm: None,
        });
    };
    for d in &mut def.devices.disks {
        let slot = match d.device {
            DiskDevice::Cdrom => &mut cd,
            DiskDevice::Floppy => &mut fd,
            DiskDevice::Disk | DiskDevice::Lun => &mut hd,
        };
        set(&mut d.info, *slot);
        *slot = 0;
    }
    if net > 0 {
        if let Some(n) = def.devices.interfaces.first_mut() {
            set(&mut n.info, net);
        }
    }
}

/// libvirt's `qemuDomainAlignMemorySizes`: NUMA cells and initial memory
/// to 1 MiB, memory modules to 2 MiB (256 MiB on ppc64), total recomputed.
fn align_memory(def: &mut Domain) {
    let ppc = def
        .os
        .arch
        .as_deref()
        .is_some_and(|a| a.starts_with("ppc64"));
    let align = if ppc { 256 * 1024 } else { 1024 };
    let mut initial = 0;
    if let Some(cpu) = &mut def.cpu {
        for c in &mut cpu.numa {
            c.memory_kib = c.memory_kib.div_ceil(align) * align;
            initial += c.memory_kib;
        }
    }
    if initial == 0 {
        initial = super::memory::initial_memory_kib(def).div_ceil(align) * align;
    }
    if let Some(m) = def.memory.max_kib {
        def.memory.max_kib = Some(m.div_ceil(align) * align);
    }
    let hotplug: u64 = def
        .devices
        .memories
        .iter()
        .map(|m| super::memory::module_size_kib(def, m))
        .sum();
    def.memory.total_kib = initial + hotplug;
}

pub(super) fn accel_of(def: &Domain) -> Accel {
    Accel::from_virt_type(def.kind.map(StrEnum::as_str).unwrap_or("qemu"))
}

pub(super) fn name(ctx: &mut Ctx) {
    let mut kv = Keyval::new().kv("guest", &ctx.def.name);
    if ctx.conf.set_process_name {
        kv.push("process", format!("qemu:{}", ctx.def.name));
    }
    kv.push("debug-threads", "on");
    ctx.keyval("-name", kv);
}

pub(super) fn compat(ctx: &mut Ctx) {
    let behavior = ctx
        .def
        .qemu
        .deprecation
        .or(match ctx.conf.deprecation_behavior {
            qvisor_conf::qemu::DeprecationBehavior::None => None,
            qvisor_conf::qemu::DeprecationBehavior::Omit => Some(DeprecationBehavior::Omit),
            qvisor_conf::qemu::DeprecationBehavior::Reject => Some(DeprecationBehavior::Reject),
            qvisor_conf::qemu::DeprecationBehavior::Crash => Some(DeprecationBehavior::Crash),
        });
    let Some(b) = behavior else { return };
    if b == DeprecationBehavior::None || !ctx.has(Flag::CompatDeprecated) {
        return;
    }
    let input = match b {
        DeprecationBehavior::Reject => Some("reject"),
        DeprecationBehavior::Crash => Some("crash"),
        _ => None,
    };
    let p = Props::new()
        .with("deprecated-output", "hide")
        .opt("deprecated-input", input);
    ctx.word("-compat", p.to_json());
}

pub(super) fn master_key(ctx: &mut Ctx) {
    let path = ctx.private_path("master-key.aes");
    ctx.object(
        Props::new()
            .with("qom-type", "secret")
            .with("id", crate::secret::MASTER_KEY_ALIAS)
            .with("format", "raw")
            .with("file", path),
    );
}

fn features(def: &Domain) -> qvisor_domain::Features {
    def.features.clone().unwrap_or_default()
}

pub(super) fn machine(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    let f = features(def);
    let mut kv = Keyval::head(ctx.machine()).kv("usb", "off");
    if let Some(kw) = &def.keywrap {
        for c in &kw.children {
            if let (Some(name), Some(state)) = (c.get_attr("name"), c.get_attr("state")) {
                kv.push(&format!("{name}-key-wrap"), state);
            }
        }
    }
    if let Some(v) = f.vmport {
        kv.push("vmport", v);
    }
    if let Some(s) = f.smm {
        kv.push("smm", s);
    }
    if let Some(g) = &f.gic {
        if let Some(v) = g.get_attr("version") {
            kv.push("gic-version", v);
        }
    }
    match f.ioapic {
        Some(qvisor_domain::IoapicDriver::Qemu) => kv.push("kernel_irqchip", "split"),
        Some(qvisor_domain::IoapicDriver::Kvm) => kv.push("kernel_irqchip", "on"),
        None => {}
    }
    if let Some(io) = &def.devices.iommu {
        if io.attr("model") == Some("smmuv3") {
            kv.push("iommu", "smmuv3");
        }
    }
    let dump = def
        .memory
        .dump_core
        .map(OnOff::is_on)
        .unwrap_or(ctx.conf.dump_guest_core);
    kv.push("dump-guest-core", onoff(dump));
    if def.memory_backing.as_ref().is_some_and(|m| m.nosharepages) {
        kv.push("mem-merge", "off");
    }
    let mut epc = 0;
    let mut nvdimm = false;
    for m in &def.devices.memories {
        match m.attr("model") {
            Some("nvdimm") if !nvdimm => {
                kv.push("nvdimm", "on");
                nvdimm = true;
            }
            Some("sgx-epc") => {
                let node = m
                    .child("target")
                    .and_then(|t| t.find("node"))
                    .and_then(|n| n.trimmed_text())
                    .unwrap_or("0")
                    .to_string();
                let alias = m.info.alias.clone().unwrap_or_default();
                kv.push(&format!("sgx-epc.{epc}.memdev"), format!("mem{alias}"));
                kv.push(&format!("sgx-epc.{epc}.node"), node);
                epc += 1;
            }
            _ => {}
        }
    }
    if def.cpu.as_ref().is_none_or(|c| c.numa.is_empty()) {
        if let Some(id) = ram_id(ctx) {
            kv.push("memory-backend", id);
        }
    }
    if let Some(ls) = &def.launch_security {
        match ls.get_attr("type") {
            Some("sev") => {
                if ctx.has(Flag::MachineConfidentalGuestSupport) {
                    kv.push("confidential-guest-support", "lsec0");
                } else {
                    kv.push("memory-encryption", "lsec0");
                }
            }
            Some("s390-pv") => kv.push("confidential-guest-support", "lsec0"),
            _ => {}
        }
    }
    if super::firmware::old_style_uefi(def) {
        kv.push("pflash0", "libvirt-pflash0-format");
        if def.os.nvram.is_some() {
            kv.push("pflash1", "libvirt-pflash1-format");
        }
    }
    if def
        .cpu
        .as_ref()
        .and_then(|c| c.numa_interconnects.as_ref())
        .is_some()
        || def
            .cpu
            .as_ref()
            .is_some_and(|c| c.numa.iter().any(|n| n.residue.find("cache").is_some()))
    {
        kv.push("hmat", "on");
    }
    if def.os.bios_useserial == Some(YesNo::Yes) {
        kv.push("graphics", "off");
    }
    for t in &def.clock.timers {
        if t.name == TimerName::Hpet && ctx.has(Flag::MachineHpet) {
            if let Some(p) = t.present {
                kv.push("hpet", onoff(p.is_yes()));
            }
        }
    }
    ctx.keyval("-machine", kv);
    Ok(())
}

/// The id of the machine's default RAM backend, when QEMU reports one.
pub(super) fn ram_id(ctx: &Ctx) -> Option<String> {
    ctx.caps
        .machine(accel_of(ctx.def), ctx.machine())
        .and_then(|m| m.default_ram_id.clone())
}

pub(super) fn accel(ctx: &mut Ctx) {
    let kv = ctx.env.accel.accel.clone();
    ctx.keyval("-accel", kv);
}

pub(super) fn tseg(ctx: &mut Ctx) {
    if let Some(b) = ctx.def.features.as_ref().and_then(|f| f.smm_tseg_bytes) {
        ctx.word("-global", format!("mch.extended-tseg-mbytes={}", b >> 20));
    }
}

const HYPERV_ORDER: &[&str] = &[
    "relaxed",
    "vapic",
    "spinlocks",
    "vpindex",
    "runtime",
    "synic",
    "stimer",
    "reset",
    "vendor_id",
    "frequencies",
    "reenlightenment",
    "tlbflush",
    "ipi",
    "evmcs",
    "avic",
];

pub(super) fn cpu(ctx: &mut Ctx) -> Result<()> {
    let def = ctx.def;
    let mut model: Option<String> = None;
    let cpu = def.cpu.as_ref();
    if let Some(c) =
        cpu.filter(|c| c.mode.is_some_and(|m| m != CpuMode::Custom) || c.model.is_some())
    {
        let mut s = match c.mode.unwrap_or(CpuMode::Custom) {
            CpuMode::HostPassthrough | CpuMode::Maximum => {
                let mut s = if c.mode == Some(CpuMode::Maximum) {
                    "max".to_string()
                } else {
                    "host".to_string()
                };
                if let Some(m) = c.migratable {
                    if ctx.has(Flag::CpuMigratable) {
                        s.push_str(&format!(",migratable={m}"));
                    }
                }
                s
            }
            CpuMode::HostModel => "host".to_string(),
            CpuMode::Custom => c.model.clone().unwrap_or_default(),
        };
        if let Some(v) = &c.vendor_id {
            s.push_str(&format!(",vendor={v}"));
        }
        for f in &c.features {
            let name = cpu_feature_to_qemu(&f.name);
            match f.policy {
                CpuFeaturePolicy::Force | CpuFeaturePolicy::Require => {
                    s.push_str(&format!(",{name}=on"))
                }
                CpuFeaturePolicy::Disable | CpuFeaturePolicy::Forbid => {
                    s.push_str(&format!(",{name}=off"))
                }
                CpuFeaturePolicy::Optional => {}
            }
        }
        model = Some(s);
    } else if def.os.arch.as_deref() == Some("i686")
        && def
            .devices
            .emulator
            .as_deref()
            .is_some_and(|e| e.contains("x86_64") || e.contains("kvm"))
    {
        model = Some("qemu32".into());
    }

    let mut flags = String::new();
    for t in &def.clock.timers {
        match t.name {
            TimerName::Kvmclock => {
                if let Some(p) = t.present {
                    flags.push_str(&format!(",kvmclock={}", onoff(p.is_yes())));
                }
            }
            TimerName::HypervClock if t.present == Some(YesNo::Yes) => {
                flags.push_str(",hv-time=on");
            }
            TimerName::Tsc => {
                if let Some(f) = t.frequency.filter(|f| *f > 0) {
                    flags.push_str(&format!(",tsc-frequency={f}"));
                }
            }
            TimerName::ArmvTimer => match t.tickpolicy {
                Some(TickPolicy::Delay) => flags.push_str(",kvm-no-adjvtime=off"),
                Some(TickPolicy::Discard) => flags.push_str(",kvm-no-adjvtime=on"),
                _ => {}
            },
            _ => {}
        }
    }
    let f = features(def);
    if let Some(Some(eoi)) = f.apic {
        flags.push_str(&format!(",kvm-pv-eoi={eoi}"));
    }
    if let Some(p) = f.pvspinlock {
        flags.push_str(&format!(",kvm-pv-unhalt={p}"));
    }
    if let Some(hv) = &f.hyperv {
        if hv.get_attr("mode") == Some("passthrough") {
            flags.push_str(",hv-passthrough=on");
        }
        for name in HYPERV_ORDER {
            let Some(e) = hv.find(name) else { continue };
            if e.get_attr("state") != Some("on") {
                continue;
            }
            match *name {
                "spinlocks" => {
                    let retries: u32 = e
                        .get_attr("retries")
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    flags.push_str(&format!(",hv-spinlocks=0x{retries:x}"));
                }
                "vendor_id" => {
                    flags.push_str(&format!(
                        ",hv-vendor-id={}",
                        e.get_attr("value").unwrap_or("")
                    ));
                }
                other => {
                    flags.push_str(&format!(",hv-{other}=on"));
                    if other == "stimer"
                        && e.find("direct").and_then(|d| d.get_attr("state")) == Some("on")
                    {
                        flags.push_str(",hv-stimer-direct=on");
                    }
                }
            }
        }
    }
    if def
        .devices
        .panics
        .iter()
        .any(|p| p.attr("model") == Some("hyperv"))
    {
        flags.push_str(",hv-crash");
    }
    if let Some(kvm) = &f.kvm {
        let on = |n: &str| kvm.find(n).and_then(|e| e.get_attr("state")) == Some("on");
        let off = |n: &str| kvm.find(n).and_then(|e| e.get_attr("state")) == Some("off");
        if on("hidden") {
            flags.push_str(",kvm=off");
        }
        if on("hint-dedicated") {
            flags.push_str(",kvm-hint-dedicated=on");
        }
        if on("poll-control") {
            flags.push_str(",kvm-poll-control=on");
        }
        if off("pv-ipi") {
            flags.push_str(",kvm-pv-ipi=off");
        }
    }
    if let Some(p) = f.pmu {
        flags.push_str(&format!(",pmu={p}"));
    }
    if let Some(cache) = cpu.and_then(|c| c.cache.as_ref()) {
        let mode = cache.get_attr("mode").unwrap_or("");
        let (mut host_off, mut l3_off) = (false, false);
        match mode {
            "emulate" => {
                flags.push_str(",l3-cache=on");
                host_off = true;
            }
            "passthrough" => {
                flags.push_str(",host-cache-info=on");
                l3_off = true;
            }
            "disable" => {
                host_off = true;
                l3_off = true;
            }
            _ => {}
        }
        let passthrough = cpu
            .is_some_and(|c| matches!(c.mode, Some(CpuMode::HostPassthrough | CpuMode::Maximum)));
        if host_off && passthrough && ctx.has(Flag::CpuCache) {
            flags.push_str(",host-cache-info=off");
        }
        if l3_off && ctx.has(Flag::CpuCache) {
            flags.push_str(",l3-cache=off");
        }
    }
    if let Some(addr) = cpu.and_then(|c| c.maxphysaddr.as_ref()) {
        match addr.get_attr("mode") {
            Some("passthrough") => flags.push_str(",host-phys-bits=on"),
            Some("emulate") => flags.push_str(&format!(
                ",phys-bits={}",
                addr.get_attr("bits").unwrap_or("0")
            )),
            _ => {}
        }
    }
    if !flags.is_empty() && model.is_none() {
        model = Some(match def.os.arch.as_deref() {
            Some("i686") => "qemu32".into(),
            Some("x86_64") | None => "qemu64".into(),
            Some(a) => {
                return Err(Error::unsupported(format!(
                    "CPU flags requested but can't determine default CPU for arch {a}"
                )))
            }
        });
    }
    if let Some(m) = model {
        ctx.word("-cpu", format!("{m}{flags}"));
    }
    Ok(())
}

/// libvirt's CPU feature names that QEMU spells differently
/// (`virQEMUCapsCPUFeatureToQEMU`).
fn cpu_feature_to_qemu(name: &str) -> String {
    match name {
        "cmp_legacy" => "cmp-legacy".into(),
        "ds_cpl" => "ds-cpl".into(),
        "fxsr_opt" => "fxsr-opt".into(),
        "lahf_lm" => "lahf-lm".into(),
        "nodeid_msr" => "nodeid-msr".into(),
        "pclmuldq" => "pclmulqdq".into(),
        "perfctr_core" => "perfctr-core".into(),
        "perfctr_nb" => "perfctr-nb".into(),
        "tsc_adjust" => "tsc-adjust".into(),
        other => other.to_string(),
    }
}

pub(super) fn smp(ctx: &mut Ctx) {
    let def = ctx.def;
    let max = def.vcpu.max;
    let online = def.vcpu.current.unwrap_or(max);
    // vCPUs marked hotpluggable in <vcpus> are added as devices later.
    let hotpluggable = def
        .vcpus
        .as_ref()
        .map(|v| {
            v.children
                .iter()
                .filter(|c| {
                    c.get_attr("enabled") == Some("yes")
                        && c.get_attr("hotpluggable") == Some("yes")
                })
                .count() as u32
        })
        .unwrap_or(0);
    let n = online.saturating_sub(hotpluggable);
    let mut kv = Keyval::head(n.to_string());
    if n != max {
        kv.push("maxcpus", max);
    }
    match def.cpu.as_ref().and_then(|c| c.topology) {
        Some(t) => {
            kv.push("sockets", t.sockets);
            if ctx.has(Flag::SmpDies) {
                kv.push("dies", t.dies);
            }
            kv.push("cores", t.cores);
            kv.push("threads", t.threads);
        }
        None => {
            kv.push("sockets", max);
            kv.push("cores", 1);
            kv.push("threads", 1);
        }
    }
    ctx.keyval("-smp", kv);
}

/// IOThread ids: `<iothreadids>` entries, then 1..N filling up to
/// `<iothreads>`.
pub(super) fn iothread_ids(def: &Domain) -> Vec<(u32, Option<i64>, Option<i64>)> {
    let mut ids: Vec<(u32, Option<i64>, Option<i64>)> = Vec::new();
    if let Some(e) = &def.iothreadids {
        for t in e.children.iter().filter(|c| c.is("iothread")) {
            if let Some(id) = t.get_attr("id").and_then(|s| s.parse().ok()) {
                let min = t.get_attr("thread_pool_min").and_then(|s| s.parse().ok());
                let max = t.get_attr("thread_pool_max").and_then(|s| s.parse().ok());
                ids.push((id, min, max));
            }
        }
    }
    let want = def.iothreads.unwrap_or(0) as usize;
    let mut next = 1;
    while ids.len() < want {
        if !ids.iter().any(|(i, _, _)| *i == next) {
            ids.push((next, None, None));
        }
        next += 1;
    }
    ids
}

pub(super) fn iothreads(ctx: &mut Ctx) {
    for (id, min, max) in iothread_ids(ctx.def) {
        ctx.object(
            Props::new()
                .with("qom-type", "iothread")
                .with("id", format!("iothread{id}"))
                .opt("thread-pool-min", min)
                .opt("thread-pool-max", max),
        );
    }
    if let Some(d) = &ctx.def.defaultiothread {
        let min: Option<i64> = d.get_attr("thread_pool_min").and_then(|s| s.parse().ok());
        let max: Option<i64> = d.get_attr("thread_pool_max").and_then(|s| s.parse().ok());
        ctx.object(
            Props::new()
                .with("qom-type", "main-loop")
                .with("id", "main-loop")
                .opt("thread-pool-min", min)
                .opt("thread-pool-max", max),
        );
    }
}

pub(super) fn smbios(ctx: &mut Ctx) -> Result<()> {
    use qvisor_domain::SmbiosMode;
    let def = ctx.def;
    match def.os.smbios {
        Some(SmbiosMode::Sysinfo) => {
            let src = def
                .sysinfo
                .iter()
                .find(|s| s.get_attr("type") == Some("smbios"))
                .ok_or_else(|| {
                    Error::internal(format!("Domain '{}' sysinfo are not available", def.name))
                })?;
            smbios_tables(ctx, src)?;
        }
        Some(SmbiosMode::Host) => {
            return Err(Error::unsupported(
                "Host SMBIOS information is not available",
            ))
        }
        _ => {}
    }
    for s in def
        .sysinfo
        .iter()
        .filter(|s| s.get_attr("type") == Some("fwcfg"))
    {
        for e in s.children.iter().filter(|c| c.is("entry")) {
            let mut kv = Keyval::new().kv("name", e.get_attr("name").unwrap_or(""));
            match e.get_attr("file") {
                Some(f) => kv.push("file", f),
                None => kv.push("string", e.trimmed_text().unwrap_or("")),
            }
            ctx.keyval("-fw_cfg", kv);
        }
    }
    Ok(())
}

fn smbios_entries(e: Option<&qvisor_domain::xml::Element>) -> Vec<(String, String)> {
    e.map(|e| {
        e.children
            .iter()
            .filter(|c| c.is("entry"))
            .filter_map(|c| {
                Some((
                    c.get_attr("name")?.to_string(),
                    c.trimmed_text().unwrap_or("").to_string(),
                ))
            })
            .collect()
    })
    .unwrap_or_default()
}

fn smbios_tables(ctx: &mut Ctx, src: &qvisor_domain::xml::Element) -> Result<()> {
    let kv_of = |kind: u32, entries: &[(String, String)], keys: &[(&str, &str)]| {
        let mut kv = Keyval::new().kv("type", kind);
        let mut any = false;
        for (xml, qemu) in keys {
            if let Some((_, v)) = entries.iter().find(|(n, _)| n == xml) {
                kv.push(qemu, v);
                any = true;
            }
        }
        any.then_some(kv)
    };
    let bios = smbios_entries(src.find("bios"));
    if let Some(kv) = kv_of(
        0,
        &bios,
        &[
            ("vendor", "vendor"),
            ("version", "version"),
            ("date", "date"),
            ("release", "release"),
        ],
    ) {
        ctx.keyval("-smbios", kv);
    }
    let system = smbios_entries(src.find("system"));
    if let Some(kv) = kv_of(
        1,
        &system,
        &[
            ("manufacturer", "manufacturer"),
            ("product", "product"),
            ("version", "version"),
            ("serial", "serial"),
            ("uuid", "uuid"),
            ("sku", "sku"),
            ("family", "family"),
        ],
    ) {
        ctx.keyval("-smbios", kv);
    }
    let boards: Vec<_> = src.children.iter().filter(|c| c.is("baseBoard")).collect();
    if boards.len() > 1 {
        return Err(Error::unsupported(
            "qemu does not support more than one entry to Type 2 in SMBIOS table",
        ));
    }
    for b in boards {
        let e = smbios_entries(Some(b));
        let kv = kv_of(
            2,
            &e,
            &[
                ("manufacturer", "manufacturer"),
                ("product", "product"),
                ("version", "version"),
                ("serial", "serial"),
                ("asset", "asset"),
                ("location", "location"),
            ],
        )
        .unwrap_or_else(|| Keyval::new().kv("type", 2));
        ctx.keyval("-smbios", kv);
    }
    let chassis = smbios_entries(src.find("chassis"));
    if let Some(kv) = kv_of(
        3,
        &chassis,
        &[
            ("manufacturer", "manufacturer"),
            ("version", "version"),
            ("serial", "serial"),
            ("asset", "asset"),
            ("sku", "sku"),
        ],
    ) {
        ctx.keyval("-smbios", kv);
    }
    if let Some(oem) = src.find("oemStrings") {
        let mut kv = Keyval::new().kv("type", 11);
        for s in oem.children.iter().filter(|c| c.is("entry")) {
            kv.push("value", s.trimmed_text().unwrap_or(""));
        }
        ctx.keyval("-smbios", kv);
    }
    Ok(())
}

pub(super) fn vmgenid(ctx: &mut Ctx) {
    if let Some(g) = ctx.def.genid {
        let guid = match g.value {
            Some(u) => u.to_string(),
            None => {
                let b = ctx.random(16);
                let mut u = [0u8; 16];
                u.copy_from_slice(&b);
                u[6] = (u[6] & 0x0f) | 0x40;
                u[8] = (u[8] & 0x3f) | 0x80;
                qvisor_domain::Uuid(u).to_string()
            }
        };
        ctx.device(
            Props::new()
                .with("driver", "vmgenid")
                .with("guid", guid)
                .with("id", "vmgenid0"),
        );
    }
}

pub(super) fn monitor(ctx: &mut Ctx) -> Result<()> {
    let path = ctx.private_path("monitor.sock");
    let socket = Keyval::head("socket").kv("id", "charmonitor");
    let socket = if ctx.env.host.passes_chardev_fds() {
        socket.kv("fd", ctx.pass_fd(FdPurpose::Monitor(path))?)
    } else {
        socket.kv("path", path)
    };
    ctx.keyval("-chardev", socket.kv("server", "on").kv("wait", "off"));
    ctx.keyval(
        "-mon",
        Keyval::new()
            .kv("chardev", "charmonitor")
            .kv("id", "monitor")
            .kv("mode", "control"),
    );
    Ok(())
}

/// Formats Unix time as `YYYY-MM-DDTHH:MM:SS` (UTC).
pub(crate) fn format_utc(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

pub(super) fn clock(ctx: &mut Ctx) -> Result<()> {
    let c = &ctx.def.clock;
    let mut kv = match c.offset {
        ClockOffset::Utc => Keyval::new().kv("base", "utc"),
        ClockOffset::Localtime | ClockOffset::Timezone => Keyval::new().kv("base", "localtime"),
        ClockOffset::Variable => {
            let mut adj = c.adjustment.unwrap_or(0);
            if c.basis.as_deref() == Some("localtime") {
                adj += ctx.env.local_offset;
            }
            Keyval::new().kv("base", format_utc(ctx.env.now + adj))
        }
        ClockOffset::Absolute => Keyval::new().kv("base", format_utc(c.start.unwrap_or(0) as i64)),
    };
    if let Some(rtc) = c.timers.iter().find(|t| t.name == TimerName::Rtc) {
        match rtc.track {
            Some(TimerTrack::Guest) => kv.push("clock", "vm"),
            Some(TimerTrack::Wall) => kv.push("clock", "host"),
            Some(TimerTrack::Realtime) => kv.push("clock", "rt"),
            Some(TimerTrack::Boot) => {
                return Err(Error::unsupported("unsupported rtc timer track 'boot'"))
            }
            None => {}
        }
        match rtc.tickpolicy {
            Some(TickPolicy::Catchup) => kv.push("driftfix", "slew"),
            Some(TickPolicy::Merge | TickPolicy::Discard) => {
                return Err(Error::unsupported(format!(
                    "unsupported rtc timer tickpolicy '{}'",
                    rtc.tickpolicy.map(|t| t.as_str()).unwrap_or("")
                )))
            }
            _ => {}
        }
    }
    ctx.keyval("-rtc", kv);
    if c.offset == ClockOffset::Timezone {
        if let Some(tz) = &c.timezone {
            ctx.extra_env.push(("TZ".into(), tz.clone()));
        }
    }
    let timers = c.timers.clone();
    for t in &timers {
        match t.name {
            TimerName::Platform => {
                return Err(Error::unsupported(
                    "unsupported timer type (name) 'platform'",
                ))
            }
            TimerName::Pit => match t.tickpolicy {
                None | Some(TickPolicy::Delay) => {
                    if ctx.has(Flag::KvmPitTickPolicy) {
                        ctx.word("-global", "kvm-pit.lost_tick_policy=delay");
                    }
                }
                Some(TickPolicy::Discard) => {
                    if ctx.has(Flag::KvmPitTickPolicy) {
                        ctx.word("-global", "kvm-pit.lost_tick_policy=discard");
                    }
                }
                Some(TickPolicy::Merge) => {
                    return Err(Error::unsupported("unsupported pit tickpolicy 'merge'"))
                }
                Some(TickPolicy::Catchup) => {}
            },
            TimerName::Hpet if ctx.has(Flag::NoHpet) && t.present == Some(YesNo::No) => {
                ctx.flag("-no-hpet");
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn pm(ctx: &mut Ctx) {
    ctx.flag("-no-shutdown");
    if ctx.has(Flag::NoAcpi) && !ctx.def.features.as_ref().is_some_and(|f| f.acpi) {
        ctx.flag("-no-acpi");
    }
    let q35 = is_q35(ctx.machine());
    if let Some(pm) = ctx.def.pm.clone() {
        if let Some(s3) = pm.suspend_to_mem {
            let obj = if q35 && ctx.has(Flag::Ich9DisableS3) {
                "ICH9-LPC"
            } else {
                "PIIX4_PM"
            };
            ctx.word(
                "-global",
                format!("{obj}.disable_s3={}", u8::from(s3 == YesNo::No)),
            );
        }
        if let Some(s4) = pm.suspend_to_disk {
            let obj = if q35 && ctx.has(Flag::Ich9DisableS4) {
                "ICH9-LPC"
            } else {
                "PIIX4_PM"
            };
            ctx.word(
                "-global",
                format!("{obj}.disable_s4={}", u8::from(s4 == YesNo::No)),
            );
        }
    }
}

pub(super) fn boot(ctx: &mut Ctx) {
    let os = &ctx.def.os;
    let mut kv = Keyval::new();
    if let Some(m) = os.bootmenu {
        kv.push("menu", onoff(m.is_yes()));
    }
    if let Some(t) = os.bios_reboot_timeout {
        kv.push("reboot-timeout", t);
    }
    if let Some(t) = os.bootmenu_timeout {
        kv.push("splash-time", t);
    }
    kv.push("strict", "on");
    ctx.keyval("-boot", kv);
    let os = ctx.def.os.clone();
    if let Some(k) = &os.kernel {
        ctx.word("-kernel", k.clone());
    }
    if let Some(i) = &os.initrd {
        ctx.word("-initrd", i.clone());
    }
    if let Some(c) = &os.cmdline {
        ctx.word("-append", c.clone());
    }
    if let Some(d) = &os.dtb {
        ctx.word("-dtb", d.clone());
    }
    if let Some(t) = os.acpi_tables.first() {
        ctx.keyval("-acpitable", Keyval::new().kv("sig", "SLIC").kv("file", t));
    }
}

pub(super) fn sandbox(ctx: &mut Ctx) {
    if !ctx.has(Flag::SeccompSandbox) {
        return;
    }
    if ctx.conf.seccomp_sandbox == 0 {
        ctx.word("-sandbox", "off");
    } else {
        ctx.word(
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        );
    }
}

/// The environment QEMU runs with: libvirt's common variables, the
/// per-domain HOME/XDG directories, then what the build added (`TZ`,
/// `SDL_AUDIODRIVER`, `<qemu:env>`).
pub(super) fn environment(ctx: &Ctx) -> Vec<(String, String)> {
    let dir = ctx.private_dir.to_string_lossy().into_owned();
    let mut env = vec![("LC_ALL".to_string(), "C".to_string())];
    for k in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PATH",
        "USER",
        "LOGNAME",
        "TMPDIR",
    ] {
        if let Some(v) = ctx.env.process_env.get(k) {
            env.push((k.into(), v.clone()));
        }
    }
    if ctx.env.privileged {
        env.push(("HOME".into(), dir.clone()));
    }
    if ctx.env.privileged {
        env.push(("XDG_DATA_HOME".into(), format!("{dir}/.local/share")));
        env.push(("XDG_CACHE_HOME".into(), format!("{dir}/.cache")));
        env.push(("XDG_CONFIG_HOME".into(), format!("{dir}/.config")));
    } else {
        env.push(("XDG_CACHE_HOME".into(), format!("{dir}/.cache")));
    }
    env.extend(ctx.extra_env.iter().cloned());
    env
}

/// Taint reasons of the domain as built.
pub(super) fn taints(ctx: &Ctx) -> Vec<Taint> {
    let def = ctx.def;
    let ns = &def.qemu;
    let mut t = Vec::new();
    if !ns.args.is_empty() || !ns.env.is_empty() {
        t.push(Taint::CustomArgv);
    }
    if !ns.overrides.is_empty() {
        t.push(Taint::CustomDevice);
    }
    if !ns.caps_add.is_empty() || !ns.caps_del.is_empty() || !ctx.conf.capability_filters.is_empty()
    {
        t.push(Taint::CustomHypervisorFeature);
    }
    if let Some(m) = ctx.caps.machine(accel_of(def), ctx.machine()) {
        if m.deprecated {
            t.push(Taint::DeprecatedConfig(format!(
                "machine type '{}'",
                ctx.machine()
            )));
        }
    }
    if let Some(c) = &def.cpu {
        if c.mode.unwrap_or(CpuMode::Custom) == CpuMode::Custom {
            if let Some(model) = &c.model {
                if ctx
                    .caps
                    .cpu_model(accel_of(def), model)
                    .is_some_and(|m| m.deprecated)
                {
                    t.push(Taint::DeprecatedConfig(format!("CPU model '{model}'")));
                }
            }
        }
    }
    if def.os.dtb.is_some() {
        t.push(Taint::CustomDtb);
    }
    t
}
