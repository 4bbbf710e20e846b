//! Times `qvisor_cmdline::build` for a typical domain (q35, two virtio
//! disks with a qcow2 chain, a NIC, VNC, a serial console, USB tablet,
//! balloon, RNG) in the conformance environment.
//!
//! ```text
//! cargo run --release -p qvisor-cmdline --example timing -- CAPS_FILE [ITERATIONS]
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

const DOMAIN: &str = r#"<domain type='kvm'>
  <name>typical</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <memory unit='GiB'>4</memory>
  <vcpu>4</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <cpu mode='custom'><model>Skylake-Client</model></cpu>
  <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/></clock>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>
      <source file='/var/lib/libvirt/images/typical.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/var/lib/libvirt/images/base.qcow2'/><backingStore/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/></interface>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <input type='tablet' bus='usb'/>
    <graphics type='vnc' autoport='yes'/>
    <video><model type='virtio'/></video>
    <memballoon model='virtio'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let caps_path = args.next().expect("usage: timing CAPS_FILE [ITERATIONS]");
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let mut caps = qvisor_caps::QemuCaps::load_cache_file(&caps_path).expect("caps");
    caps.strip_machine_aliases();
    let conf = qvisor_conf::QemuConf::defaults(&qvisor_conf::Mode::System, true);
    let mut def = qvisor_domain::parse(DOMAIN, qvisor_domain::ParseOptions { inactive: true })
        .expect("domain");
    let mut random = |buf: &mut [u8]| buf.iter_mut().for_each(|b| *b = 0);
    let mut ectx = qvisor_domain::ExpandContext {
        caps: Some(&caps),
        default_emulator: caps.emulator.clone(),
        nvram_dir: "/var/lib/libvirt/qemu/nvram".into(),
        vnc_allow_host_audio: false,
        nographics_allow_host_audio: false,
        audio_env: None,
        sdl_audio_env: None,
        random: &mut random,
    };
    qvisor_domain::expand(&mut def, &mut ectx).expect("expand");
    let aux = std::path::Path::new("/nonexistent");
    let mut host = qvisor_cmdline::fake::FakeHost::new(aux);
    let mut env =
        qvisor_cmdline::fake::conformance_env(&def, &conf, aux, &mut host, &BTreeMap::new());
    let cl = qvisor_cmdline::build(&def, &caps, &conf, &mut env).expect("build");
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        let cl = qvisor_cmdline::build(&def, &caps, &conf, &mut env).expect("build");
        bytes += cl.args().len();
    }
    let per = start.elapsed() / n;
    println!(
        "{} options; build + render: {per:?} per domain over {n} runs ({bytes} args)",
        cl.opts.len()
    );
}
