//! The three example guests of libvirt's QEMU driver documentation
//! (`docs/drvqemu.rst`): an emulated i686 guest, a KVM guest with a fixed
//! MAC and a VNC keymap, and an HVF guest with a volume disk on
//! virtio-scsi. They must parse, round-trip, and expand (with capabilities
//! for an emulator that has them, without for the others).

use qvisor_domain::{
    format, parse, Domain, ExpandContext, FormatOptions, GraphicsType, ParseOptions,
};

const OPTS: ParseOptions = ParseOptions { inactive: true };

fn example(name: &str) -> Domain {
    let path = format!("{}/tests/data/{name}.xml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    parse(&text, OPTS).unwrap()
}

fn expand_without_caps(def: &mut Domain) {
    let mut random = |b: &mut [u8]| b.fill(1);
    let mut ctx = ExpandContext {
        caps: None,
        default_emulator: "/usr/bin/qemu-system-x86_64".into(),
        nvram_dir: "/var/lib/libvirt/qemu/nvram".into(),
        vnc_allow_host_audio: false,
        nographics_allow_host_audio: false,
        audio_env: None,
        sdl_audio_env: None,
        random: &mut random,
    };
    // without capabilities the virt type cannot be checked
    let err = qvisor_domain::expand(def, &mut ctx).unwrap_err();
    assert!(err.to_string().contains("does not support"), "{err}");
}

fn round_trips(def: &Domain) {
    let out = format(def, &FormatOptions::inactive_secure());
    assert_eq!(&parse(&out, OPTS).unwrap(), def, "{out}");
}

#[test]
fn emulated_i686_guest_keeps_cdrom_disk_network_and_vnc() {
    let def = example("qemu-i686");
    assert_eq!(def.os.arch.as_deref(), Some("i686"));
    assert_eq!(def.devices.disks.len(), 2);
    assert_eq!(
        def.devices.interfaces[0].source_attr("network"),
        Some("default")
    );
    let vnc = &def.devices.graphics[0];
    assert_eq!(vnc.kind, GraphicsType::Vnc);
    assert!(vnc.autoport);
    round_trips(&def);
}

#[test]
fn kvm_guest_keeps_its_mac_and_keymap() {
    let mut def = example("kvm-i686");
    assert_eq!(
        def.devices.interfaces[0]
            .mac
            .map(|m| m.to_string())
            .as_deref(),
        Some("24:42:53:21:52:45")
    );
    assert_eq!(def.devices.graphics[0].keymap.as_deref(), Some("de"));
    round_trips(&def);
    expand_without_caps(&mut def);
}

#[test]
fn hvf_guest_keeps_acpi_virtio_scsi_volume_and_user_net() {
    let mut def = example("hvf-x86_64");
    assert!(def.features.as_ref().is_some_and(|f| f.acpi));
    let disk = &def.devices.disks[0];
    let src = disk.source.as_ref().unwrap();
    assert_eq!(
        (src.pool.as_deref(), src.volume.as_deref()),
        (Some("default"), Some("myos"))
    );
    assert_eq!(def.devices.interfaces[0].model.as_deref(), Some("virtio"));
    round_trips(&def);
    expand_without_caps(&mut def);
}

#[test]
fn emulated_guest_expands_with_the_conformance_capabilities() {
    let caps_path = format!(
        "{}/../../../shared/conformance/caps/caps_8.0.0.x86_64.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let Ok(mut caps) = qvisor_caps::QemuCaps::load_cache_file(&caps_path) else {
        eprintln!("conformance capabilities not found: skipped");
        return;
    };
    caps.strip_machine_aliases();
    let mut def = example("qemu-i686");
    let mut random = |b: &mut [u8]| b.fill(1);
    let mut ctx = ExpandContext {
        caps: Some(&caps),
        default_emulator: "/usr/bin/qemu-system-x86_64".into(),
        nvram_dir: "/var/lib/libvirt/qemu/nvram".into(),
        vnc_allow_host_audio: false,
        nographics_allow_host_audio: false,
        audio_env: None,
        sdl_audio_env: None,
        random: &mut random,
    };
    qvisor_domain::expand(&mut def, &mut ctx).unwrap();
    qvisor_domain::validate(&def).unwrap();
    // the network interface got a MAC and a PCI slot, VNC a video card
    assert!(def.devices.interfaces[0].mac.is_some());
    assert!(def.devices.interfaces[0].info.pci().is_some());
    assert_eq!(def.devices.videos.len(), 1);
    round_trips(&def);
}
