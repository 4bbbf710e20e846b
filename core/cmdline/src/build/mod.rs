//! The builder: from an expanded domain, the capabilities, qemu.conf and a
//! [`BuildEnv`] to a [`CommandLine`].
//!
//! # Emission order
//!
//! Options are produced in libvirt 9.0's order (`qemuBuildCommandLine`), one
//! family after the other:
//!
//! 1. environment (`LC_ALL`, `PATH`, `HOME`, `XDG_*`, ...), `-name`,
//!    `-compat`, `-S`, the master-key secret, pflash blockdevs;
//! 2. `-machine`, `-accel`, TSEG `-global`, `-cpu`, `-bios`/loader, `-m`
//!    and the guest-RAM backend, `-overcommit`, `-smp`, iothreads, NUMA;
//! 3. `-uuid`, SMBIOS, vmgenid, `-display none`, `-no-user-config`,
//!    `-nodefaults`, the monitor, `-rtc`, power management, `-boot`;
//! 4. devices: IOMMU, global controller options, controllers, memory
//!    devices, hubs, CCID, disks (blockdev graph + device), filesystems,
//!    network, smartcards, serials, parallels, channels, consoles, TPMs,
//!    inputs, audio, graphics, video, sound, watchdog, redirdevs, hostdevs,
//!    balloon, RNGs, NVRAM, vmcoreinfo, launch security;
//! 5. `<qemu:arg>` pass-through, `-sandbox`, panic devices, shmem, vsock,
//!    `-msg timestamp=on`.

mod chardev;
mod devices;
mod disk;
mod display;
mod firmware;
mod memory;
mod misc;
mod net;
mod system;

use std::borrow::Cow;
use std::path::PathBuf;

use qvisor_caps::{Flag, QemuCaps};
use qvisor_conf::QemuConf;
use qvisor_domain::Domain;

use crate::env::BuildEnv;
use crate::error::{Error, Result};
use crate::model::{CommandLine, FdPurpose, Opt, PassedFd, Syntax};
use crate::props::{Keyval, Props};

/// State shared by the family builders while one command line is built.
pub(crate) struct Ctx<'a, 'h> {
    pub def: &'a Domain,
    pub caps: &'a QemuCaps,
    pub conf: &'a QemuConf,
    pub env: &'a mut BuildEnv<'h>,
    pub out: Vec<Opt>,
    pub extra_env: Vec<(String, String)>,
    pub fds: Vec<PassedFd>,
    /// Next `-add-fd set=` number.
    pub next_fdset: u32,
    /// Last storage node id handed out (`libvirt-N-...`).
    pub next_node_id: u32,
    /// `-mem-prealloc` has been emitted (backends then skip `prealloc`).
    pub mem_prealloc: bool,
    /// `<short name>` of the domain.
    pub short_name: String,
    /// Private directory of the domain.
    pub private_dir: PathBuf,
}

impl Ctx<'_, '_> {
    pub fn has(&self, flag: Flag) -> bool {
        self.caps.has(flag)
    }

    pub fn push(&mut self, o: Opt) {
        self.out.push(o);
    }

    pub fn flag(&mut self, name: &'static str) {
        self.out.push(Opt::Flag(name));
    }

    pub fn keyval(&mut self, name: &'static str, kv: Keyval) {
        self.out.push(Opt::Keyval(name, kv));
    }

    pub fn word(&mut self, name: &'static str, w: impl Into<String>) {
        self.out.push(Opt::Word(name, w.into()));
    }

    pub fn object(&mut self, p: Props) {
        self.out.push(Opt::Object(p));
    }

    /// Adds a `-device`, applying `<qemu:override>` frontend properties for
    /// its id first (libvirt's `qemuBuildDeviceCommandlineHandleOverrides`).
    pub fn device(&mut self, mut p: Props) {
        if let Some(id) = p.get_str("id").map(str::to_string) {
            for ov in self.def.qemu.overrides.iter().filter(|o| o.alias == id) {
                for prop in &ov.frontend {
                    p.remove(&prop.name);
                    use qvisor_domain::PropertyValue as V;
                    match &prop.value {
                        V::String(s) => p.set(&prop.name, s.as_str()),
                        V::Signed(n) => p.set(&prop.name, *n),
                        V::Unsigned(n) => p.set(&prop.name, *n),
                        V::Bool(b) => p.set(&prop.name, *b),
                        V::Remove => {}
                    }
                }
            }
        }
        self.out.push(Opt::Device(p));
    }

    /// Path inside the private directory.
    pub fn private_path(&self, name: &str) -> String {
        self.private_dir.join(name).to_string_lossy().into_owned()
    }

    /// Asks the host for a descriptor and records it.
    pub fn pass_fd(&mut self, purpose: FdPurpose) -> Result<i32> {
        let fd = self.env.host.pass_fd(&purpose).map_err(Error::Host)?;
        self.fds.push(PassedFd { fd, purpose });
        Ok(fd)
    }

    /// Passes a descriptor through an fd set (`-add-fd set=N,fd=F,opaque=O`)
    /// and returns the `/dev/fdset/N` path QEMU opens.
    pub fn pass_fdset(&mut self, purpose: FdPurpose, opaque: &str) -> Result<String> {
        let fd = self.pass_fd(purpose)?;
        let set = self.next_fdset;
        self.next_fdset += 1;
        self.keyval(
            "-add-fd",
            Keyval::new()
                .kv("set", set)
                .kv("fd", fd)
                .kv("opaque", opaque),
        );
        Ok(format!("/dev/fdset/{set}"))
    }

    /// `n` random bytes from the host.
    pub fn random(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.env.host.random_bytes(&mut v);
        v
    }

    /// Encrypts `plain` with the master key and a fresh IV.
    pub fn encrypt_secret(&mut self, plain: &[u8]) -> crate::secret::EncryptedSecret {
        let ivv = self.random(16);
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&ivv);
        crate::secret::encrypt(&self.env.master_key, &iv, plain)
    }

    /// TLS settings of a service, checking directories on the host.
    pub fn tls(&self, service: qvisor_conf::qemu::TlsService) -> qvisor_conf::qemu::TlsConfig {
        let host = &*self.env.host;
        self.conf.tls(service, |p| host.exists(p))
    }

    pub fn machine(&self) -> &str {
        self.def.os.machine.as_deref().unwrap_or("")
    }

    pub fn arch(&self) -> &str {
        self.def.os.arch.as_deref().unwrap_or("x86_64")
    }
}

/// Applies `<qemu:capabilities>` to the flag set (libvirt does this before
/// anything else reads the capabilities).
fn effective_caps<'a>(def: &Domain, caps: &'a QemuCaps) -> Result<Cow<'a, QemuCaps>> {
    let ns = &def.qemu;
    if ns.caps_add.is_empty() && ns.caps_del.is_empty() {
        return Ok(Cow::Borrowed(caps));
    }
    let mut c = caps.clone();
    for name in &ns.caps_add {
        let f = Flag::from_name(name)
            .ok_or_else(|| Error::unsupported(format!("unknown QEMU capability '{name}'")))?;
        c.set(f);
    }
    for name in &ns.caps_del {
        let f = Flag::from_name(name)
            .ok_or_else(|| Error::unsupported(format!("unknown QEMU capability '{name}'")))?;
        c.clear(f);
    }
    Ok(Cow::Owned(c))
}

/// Builds the command line of `def` (already expanded) for QEMU `caps`
/// under `conf`, with every host-dependent input taken from `env`.
pub fn build(
    def: &Domain,
    caps: &QemuCaps,
    conf: &QemuConf,
    env: &mut BuildEnv<'_>,
) -> Result<CommandLine> {
    let caps = effective_caps(def, caps)?;
    let mut def = def.clone();
    crate::aliases::assign_aliases(&mut def);
    system::prepare(&mut def, &caps, env)?;
    let short_name = env.short_name(&def.name);
    let private_dir = env.private_dir(&def.name);
    let syntax = Syntax {
        device_json: caps.has(Flag::DeviceJson),
        object_json: caps.has(Flag::ObjectJson),
        netdev_json: caps.has(Flag::NetdevJson),
    };
    let binary = def
        .devices
        .emulator
        .clone()
        .unwrap_or_else(|| caps.emulator.clone());
    let mut ctx = Ctx {
        def: &def,
        caps: &caps,
        conf,
        env,
        out: Vec::with_capacity(64),
        extra_env: Vec::new(),
        fds: Vec::new(),
        next_fdset: 0,
        next_node_id: 0,
        mem_prealloc: false,
        short_name,
        private_dir,
    };

    system::name(&mut ctx);
    system::compat(&mut ctx);
    ctx.flag("-S");
    system::master_key(&mut ctx);
    if disk::has_managed_pr(ctx.def) {
        let path = ctx.private_path("pr-helper0.sock");
        ctx.object(
            Props::new()
                .with("qom-type", "pr-manager-helper")
                .with("id", "pr-helper0")
                .with("path", path),
        );
    }
    firmware::pflash_blockdevs(&mut ctx)?;
    system::machine(&mut ctx)?;
    system::accel(&mut ctx);
    system::tseg(&mut ctx);
    system::cpu(&mut ctx)?;
    firmware::loader(&mut ctx);
    memory::mem(&mut ctx)?;
    system::smp(&mut ctx);
    system::iothreads(&mut ctx);
    memory::numa(&mut ctx)?;
    ctx.word("-uuid", def.uuid.map(|u| u.to_string()).unwrap_or_default());
    system::smbios(&mut ctx)?;
    system::vmgenid(&mut ctx);
    if def.devices.graphics.is_empty() {
        ctx.word("-display", "none");
    }
    ctx.flag("-no-user-config");
    ctx.flag("-nodefaults");
    system::monitor(&mut ctx)?;
    system::clock(&mut ctx)?;
    system::pm(&mut ctx);
    system::boot(&mut ctx);
    devices::iommu(&mut ctx)?;
    devices::global_controller_opts(&mut ctx)?;
    devices::controllers(&mut ctx)?;
    memory::memory_devices(&mut ctx)?;
    devices::hubs(&mut ctx)?;
    devices::ccid_controllers(&mut ctx)?;
    disk::disks(&mut ctx)?;
    misc::filesystems(&mut ctx)?;
    net::interfaces(&mut ctx)?;
    misc::smartcards(&mut ctx)?;
    chardev::serials(&mut ctx)?;
    chardev::parallels(&mut ctx)?;
    chardev::channels(&mut ctx)?;
    chardev::consoles(&mut ctx)?;
    misc::tpms(&mut ctx)?;
    devices::inputs(&mut ctx)?;
    display::audio(&mut ctx)?;
    display::graphics(&mut ctx)?;
    display::videos(&mut ctx)?;
    display::sounds(&mut ctx)?;
    misc::watchdogs(&mut ctx)?;
    misc::redirdevs(&mut ctx)?;
    misc::hostdevs(&mut ctx)?;
    devices::memballoon(&mut ctx)?;
    misc::rngs(&mut ctx)?;
    misc::vmcoreinfo(&mut ctx);
    misc::launch_security(&mut ctx)?;
    for a in &def.qemu.args {
        ctx.push(Opt::Passthrough(a.clone()));
    }
    for e in &def.qemu.env {
        ctx.extra_env
            .push((e.name.clone(), e.value.clone().unwrap_or_default()));
    }
    system::sandbox(&mut ctx);
    misc::panics(&mut ctx)?;
    misc::shmems(&mut ctx)?;
    misc::vsock(&mut ctx)?;
    if ctx.conf.log_timestamp {
        ctx.keyval("-msg", Keyval::new().kv("timestamp", "on"));
    }

    let taints = system::taints(&ctx);
    let env_vars = system::environment(&ctx);
    Ok(CommandLine {
        env: env_vars,
        binary,
        opts: ctx.out,
        syntax,
        fds: ctx.fds,
        taints,
        guest_cpu: def.cpu.clone(),
    })
}

/// Convenience for family builders: libvirt's `virTristateSwitch` text.
pub(crate) fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fake::{conformance_env, FakeHost};

    fn domain(xml: &str) -> Domain {
        qvisor_domain::parse(xml, qvisor_domain::ParseOptions { inactive: true }).unwrap()
    }

    fn caps(flags: &[Flag]) -> QemuCaps {
        let mut c = QemuCaps::new("/usr/bin/qemu-system-x86_64");
        c.arch = "x86_64".into();
        for f in flags {
            c.set(*f);
        }
        c
    }

    fn build_with(def: &Domain, caps: &QemuCaps) -> CommandLine {
        let conf = QemuConf::defaults(&qvisor_conf::Mode::System, true);
        let aux = std::path::Path::new("/nonexistent");
        let mut host = FakeHost::new(aux);
        let mut env = conformance_env(def, &conf, aux, &mut host, &BTreeMap::new());
        build(def, caps, &conf, &mut env).unwrap()
    }

    const MINIMAL: &str = "<domain type='kvm'><name>vm</name>\
        <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid><memory>1048576</memory>\
        <os><type arch='x86_64' machine='pc'>hvm</type></os>\
        <devices><memballoon model='virtio'>\
        <address type='pci' domain='0' bus='0' slot='3' function='0'/></memballoon>\
        <controller type='pci' index='0' model='pci-root'/></devices>";

    #[test]
    fn device_syntax_follows_the_json_capability() {
        let def = domain(&format!("{MINIMAL}</domain>"));
        let json = build_with(&def, &caps(&[Flag::DeviceJson]));
        let legacy = build_with(&def, &caps(&[]));
        let dev = |cl: &CommandLine| {
            let a = cl.args();
            let i = a.iter().position(|t| t == "-device").unwrap();
            a[i + 1].clone()
        };
        assert!(dev(&json).starts_with('{'));
        assert_eq!(
            dev(&legacy),
            "virtio-balloon-pci,id=balloon0,bus=pci.0,addr=0x3"
        );
    }

    #[test]
    fn qemu_override_replaces_and_removes_device_properties() {
        let xml = format!(
            "{MINIMAL}<qemu:override xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\
             <qemu:device alias='balloon0'><qemu:frontend>\
             <qemu:property name='deflate-on-oom' type='bool' value='true'/>\
             <qemu:property name='addr' type='remove'/>\
             </qemu:frontend></qemu:device></qemu:override></domain>"
        );
        let cl = build_with(&domain(&xml), &caps(&[Flag::DeviceJson]));
        let dev = cl.opts.iter().find_map(|o| match o {
            Opt::Device(p) => Some(p.clone()),
            _ => None,
        });
        let dev = dev.unwrap();
        assert_eq!(
            dev.get("deflate-on-oom"),
            Some(&serde_json::Value::Bool(true))
        );
        assert!(dev.get("addr").is_none());
        assert_eq!(cl.taints, vec![crate::model::Taint::CustomDevice]);
    }

    #[test]
    fn qemu_commandline_is_appended_and_taints() {
        let xml = format!(
            "{MINIMAL}<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\
             <qemu:arg value='-unknown'/><qemu:env name='FOO' value='bar'/>\
             </qemu:commandline></domain>"
        );
        let cl = build_with(&domain(&xml), &caps(&[]));
        assert!(cl.args().contains(&"-unknown".to_string()));
        assert!(cl.env.contains(&("FOO".into(), "bar".into())));
        assert!(cl.taints.contains(&crate::model::Taint::CustomArgv));
    }

    #[test]
    fn deprecation_behavior_needs_the_compat_capability() {
        let xml = format!(
            "{MINIMAL}<qemu:deprecation xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0' behavior='reject'/></domain>"
        );
        let def = domain(&xml);
        let without = build_with(&def, &caps(&[]));
        assert!(!without.args().contains(&"-compat".to_string()));
        let with = build_with(&def, &caps(&[Flag::CompatDeprecated]));
        let a = with.args();
        let i = a.iter().position(|t| t == "-compat").unwrap();
        let v: serde_json::Value = serde_json::from_str(&a[i + 1]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"deprecated-output": "hide", "deprecated-input": "reject"})
        );
    }

    #[test]
    fn pathless_virtio_channel_listens_under_the_channel_target_dir() {
        let xml = MINIMAL.replace(
            "<controller type='pci'",
            "<channel type='unix'><source mode='bind'/>\
             <target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
             <channel type='unix'><source mode='bind'/><target type='virtio'/>\
             <address type='virtio-serial' controller='0' bus='0' port='2'/></channel>\
             <controller type='virtio-serial' index='0'>\
             <address type='pci' domain='0' bus='0' slot='4' function='0'/></controller>\
             <controller type='pci'",
        ) + "</domain>";
        let cl = build_with(&domain(&xml), &caps(&[]));
        let sockets: Vec<&str> = cl
            .fds
            .iter()
            .filter_map(|f| match &f.purpose {
                FdPurpose::ListenSocket(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            sockets,
            [
                "/tmp/channel/domain--1-vm/org.qemu.guest_agent.0",
                "/tmp/channel/domain--1-vm/vioser-00-00-02.sock"
            ]
        );
    }

    fn cpu_arg(cl: &CommandLine) -> String {
        let a = cl.args();
        let i = a.iter().position(|t| t == "-cpu").unwrap();
        a[i + 1].clone()
    }

    fn with_cpu(cpu: &str) -> Domain {
        domain(&(MINIMAL.replace("<devices>", &format!("{cpu}<devices>")) + "</domain>"))
    }

    #[test]
    fn custom_cpu_disables_features_the_map_removed_from_its_model() {
        let def = with_cpu("<cpu mode='custom'><model>EPYC</model></cpu>");
        assert_eq!(cpu_arg(&build_with(&def, &caps(&[]))), "EPYC,monitor=off");
        let def = with_cpu(
            "<cpu mode='custom'><model>EPYC</model>\
             <feature policy='require' name='monitor'/></cpu>",
        );
        assert_eq!(cpu_arg(&build_with(&def, &caps(&[]))), "EPYC,monitor=on");
    }

    #[test]
    fn disabled_cpu_features_unknown_to_qemu_are_dropped() {
        use qvisor_caps::{Accel, CpuPropValue, CpuProperty, HostCpuInfo};
        let mut c = caps(&[]);
        let prop = |name: &str| CpuProperty {
            name: name.into(),
            value: CpuPropValue::Boolean(false),
            migratable: None,
        };
        c.accel_mut(Accel::Kvm).host_cpu = Some(HostCpuInfo {
            model: "base".into(),
            migratability: true,
            props: vec![prop("intel-pt"), prop("tsc-adjust")],
        });
        let def = with_cpu(
            "<cpu mode='custom'><model>Icelake-Server</model>\
             <feature policy='disable' name='pconfig'/>\
             <feature policy='disable' name='tsc_adjust'/>\
             <feature policy='require' name='vmx'/>\
             <feature policy='disable' name='osxsave'/></cpu>",
        );
        assert_eq!(
            cpu_arg(&build_with(&def, &c)),
            "Icelake-Server,tsc-adjust=off,vmx=on,intel-pt=off"
        );
    }

    fn with_disks(disks: &str) -> Domain {
        let mut def =
            domain(&(MINIMAL.replace("<devices>", &format!("<devices>{disks}")) + "</domain>"));
        crate::aliases::assign_aliases(&mut def);
        def
    }

    #[test]
    fn empty_drives_take_a_node_number_and_sd_cards_none() {
        let def = with_disks(
            "<disk type='file' device='disk'><source file='/a.img'/>\
             <target dev='vda' bus='virtio'/>\
             <address type='pci' domain='0' bus='0' slot='4' function='0'/></disk>\
             <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/>\
             <address type='drive' controller='0' bus='1' target='0' unit='0'/></disk>\
             <disk type='file' device='disk'><source file='/sd,card.img'/>\
             <target dev='sdb' bus='sd'/></disk>",
        );
        let args = build_with(&def, &caps(&[Flag::DeviceJson])).args();
        let blockdevs: Vec<&String> = args
            .iter()
            .zip(args.iter().skip(1))
            .filter(|(o, _)| *o == "-blockdev")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(blockdevs.len(), 2);
        assert!(blockdevs[0].contains("\"node-name\":\"libvirt-2-storage\""));
        let i = args.iter().position(|t| t == "-drive").unwrap();
        assert_eq!(args[i + 1], "file=/sd,,card.img,format=raw,if=sd,index=1");
    }

    #[test]
    fn monitor_descriptor_is_recorded_for_the_child() {
        let cl = build_with(&domain(&format!("{MINIMAL}</domain>")), &caps(&[]));
        assert_eq!(cl.fds.len(), 1);
        assert_eq!(cl.fds[0].fd, 1729);
        assert!(matches!(cl.fds[0].purpose, FdPurpose::Monitor(_)));
    }
}
