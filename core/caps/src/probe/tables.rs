//! libvirt 9.0's probing tables (`qemu_capabilities.c`), as data: which QMP
//! answer sets which flag.

use crate::flags::Flag::{self, *};

/// A table of names that set flags.
pub type StringFlags = &'static [(&'static str, Flag)];

/// `query-commands`: command name → flag (`virQEMUCapsCommands`).
pub const COMMANDS: &[(&str, Flag)] = &[
    ("query-vnc", Vnc),
    ("rtc-reset-reinjection", RtcResetReinjection),
    ("query-hotpluggable-cpus", QueryHotpluggableCpus),
    ("query-cpu-model-expansion", QueryCpuModelExpansion),
    ("query-cpu-definitions", QueryCpuDefinitions),
    ("query-cpu-model-baseline", QueryCpuModelBaseline),
    ("query-cpu-model-comparison", QueryCpuModelComparison),
    ("block-export-add", BlockExportAdd),
    ("blockdev-reopen", BlockdevReopen),
    ("set-action", SetAction),
    ("query-dirty-rate", QueryDirtyRate),
    ("sev-inject-launch-secret", SevInjectLaunchSecret),
    ("calc-dirty-rate", CalcDirtyRate),
    ("query-stats", QueryStats),
    ("query-stats-schemas", QueryStatsSchemas),
];

/// `query-migrate-capabilities`: capability → flag (`virQEMUCapsMigration`).
pub const MIGRATION: &[(&str, Flag)] = &[("rdma-pin-all", MigrateRdma)];

/// `qom-list-types`: QOM type → flag (`virQEMUCapsObjectTypes`).
pub const OBJECT_TYPES: &[(&str, Flag)] = &[
    ("hda-duplex", HdaDuplex),
    ("hda-micro", HdaMicro),
    ("ccid-card-emulated", CcidEmulated),
    ("ccid-card-passthru", CcidPassthru),
    ("piix3-usb-uhci", Piix3UsbUhci),
    ("piix4-usb-uhci", Piix4UsbUhci),
    ("usb-ehci", UsbEhci),
    ("ich9-usb-ehci1", Ich9UsbEhci1),
    ("vt82c686b-usb-uhci", Vt82c686bUsbUhci),
    ("pci-ohci", PciOhci),
    ("nec-usb-xhci", NecUsbXhci),
    ("usb-redir", UsbRedir),
    ("usb-hub", UsbHub),
    ("ich9-ahci", Ich9Ahci),
    ("virtio-blk-ccw", VirtioCcw),
    ("sclpconsole", DeviceSclpconsole),
    ("lsi53c895a", ScsiLsi),
    ("virtio-scsi-pci", VirtioScsi),
    ("virtio-scsi-ccw", VirtioScsi),
    ("virtio-scsi-device", VirtioScsi),
    ("megasas", ScsiMegasas),
    ("qxl", DeviceQxl),
    ("scsi-block", ScsiBlock),
    ("VGA", DeviceVga),
    ("cirrus-vga", DeviceCirrusVga),
    ("vmware-svga", DeviceVmwareSvga),
    ("usb-serial", DeviceUsbSerial),
    ("virtio-rng-pci", DeviceVirtioRng),
    ("virtio-rng-ccw", DeviceVirtioRng),
    ("virtio-rng-device", DeviceVirtioRng),
    ("rng-random", ObjectRngRandom),
    ("rng-egd", ObjectRngEgd),
    ("spapr-nvram", DeviceNvram),
    ("pci-bridge", DevicePciBridge),
    ("vfio-pci", DeviceVfioPci),
    ("i82801b11-bridge", DeviceDmiToPciBridge),
    ("usb-storage", DeviceUsbStorage),
    ("virtio-mmio", DeviceVirtioMmio),
    ("ich9-intel-hda", DeviceIch9IntelHda),
    ("pvpanic", DevicePanic),
    ("usb-kbd", DeviceUsbKbd),
    ("usb-audio", ObjectUsbAudio),
    ("iothread", ObjectIothread),
    ("ivshmem", DeviceIvshmem),
    ("pc-dimm", DevicePcDimm),
    ("pci-serial", DevicePciSerial),
    ("gpex-pcihost", ObjectGpex),
    ("ioh3420", DeviceIoh3420),
    ("x3130-upstream", DeviceX3130Upstream),
    ("xio3130-downstream", DeviceXio3130Downstream),
    ("rtl8139", DeviceRtl8139),
    ("e1000", DeviceE1000),
    ("virtio-net-pci", DeviceVirtioNet),
    ("virtio-net-ccw", DeviceVirtioNet),
    ("virtio-net-device", DeviceVirtioNet),
    ("virtio-gpu-pci", DeviceVirtioGpu),
    ("virtio-gpu-device", DeviceVirtioGpu),
    ("virtio-vga", DeviceVirtioVga),
    ("virtio-keyboard-device", VirtioKeyboard),
    ("virtio-keyboard-pci", VirtioKeyboard),
    ("virtio-mouse-device", VirtioMouse),
    ("virtio-mouse-pci", VirtioMouse),
    ("virtio-tablet-device", VirtioTablet),
    ("virtio-tablet-pci", VirtioTablet),
    ("virtio-input-host-device", VirtioInputHost),
    ("virtio-input-host-pci", VirtioInputHost),
    ("mptsas1068", ScsiMptsas1068),
    ("pxb", DevicePxb),
    ("pxb-pcie", DevicePxbPcie),
    ("intel-iommu", DeviceIntelIommu),
    ("ivshmem-plain", DeviceIvshmemPlain),
    ("ivshmem-doorbell", DeviceIvshmemDoorbell),
    ("vhost-scsi", DeviceVhostScsi),
    ("nvdimm", DeviceNvdimm),
    ("pcie-root-port", DevicePcieRootPort),
    ("qemu-xhci", DeviceQemuXhci),
    ("spapr-pci-host-bridge", DeviceSpaprPciHostBridge),
    ("vmcoreinfo", DeviceVmcoreinfo),
    ("spapr-vty", DeviceSpaprVty),
    ("sclplmconsole", DeviceSclplmconsole),
    ("isa-serial", DeviceIsaSerial),
    ("pl011", DevicePl011),
    ("virtio-gpu-ccw", DeviceVirtioGpuCcw),
    ("virtio-keyboard-ccw", DeviceVirtioKeyboardCcw),
    ("virtio-mouse-ccw", DeviceVirtioMouseCcw),
    ("virtio-tablet-ccw", DeviceVirtioTabletCcw),
    ("pcie-pci-bridge", DevicePciePciBridge),
    ("pr-manager-helper", PrManagerHelper),
    ("vfio-ccw", DeviceVfioCcw),
    ("hda-output", HdaOutput),
    ("vmgenid", DeviceVmgenid),
    ("vhost-vsock-device", DeviceVhostVsock),
    ("mch", DeviceMch),
    ("sev-guest", SevGuest),
    ("vfio-ap", DeviceVfioAp),
    ("zpci", DeviceZpci),
    ("memory-backend-memfd", ObjectMemoryMemfd),
    ("virtio-blk-pci-transitional", VirtioPciTransitional),
    ("virtio-blk-pci-non-transitional", VirtioPciTransitional),
    ("virtio-net-pci-transitional", VirtioPciTransitional),
    ("virtio-net-pci-non-transitional", VirtioPciTransitional),
    ("vhost-scsi-pci-transitional", VirtioPciTransitional),
    ("vhost-scsi-pci-non-transitional", VirtioPciTransitional),
    ("virtio-rng-pci-transitional", VirtioPciTransitional),
    ("virtio-rng-pci-non-transitional", VirtioPciTransitional),
    ("virtio-9p-pci-transitional", VirtioPciTransitional),
    ("virtio-9p-pci-non-transitional", VirtioPciTransitional),
    ("virtio-balloon-pci-transitional", VirtioPciTransitional),
    ("virtio-balloon-pci-non-transitional", VirtioPciTransitional),
    ("vhost-vsock-pci-transitional", VirtioPciTransitional),
    ("vhost-vsock-pci-non-transitional", VirtioPciTransitional),
    ("virtio-scsi-pci-transitional", VirtioPciTransitional),
    ("virtio-scsi-pci-non-transitional", VirtioPciTransitional),
    ("virtio-serial-pci-transitional", VirtioPciTransitional),
    ("virtio-serial-pci-non-transitional", VirtioPciTransitional),
    ("max-x86_64-cpu", X86MaxCpu),
    ("bochs-display", DeviceBochsDisplay),
    ("dbus-vmstate", DbusVmstate),
    ("vhost-user-gpu", DeviceVhostUserGpu),
    ("vhost-user-vga", DeviceVhostUserVga),
    ("ramfb", DeviceRamfb),
    ("max-arm-cpu", ArmMaxCpu),
    ("i8042", DeviceI8042),
    ("rng-builtin", ObjectRngBuiltin),
    ("tpm-spapr", DeviceTpmSpapr),
    ("vhost-user-fs-device", DeviceVhostUserFs),
    ("tcg-accel", Tcg),
    ("pvscsi", ScsiPvscsi),
    ("spapr-tpm-proxy", DeviceSpaprTpmProxy),
    ("vmport", MachineVmportOpt),
    ("dc390", ScsiDc390),
    ("am53c974", ScsiAm53c974),
    ("virtio-pmem-pci", DeviceVirtioPmemPci),
    ("vhost-user-blk", DeviceVhostUserBlk),
    ("input-linux", InputLinux),
    ("virtio-gpu-gl-pci", VirtioGpuGlPci),
    ("virtio-vga-gl", VirtioVgaGl),
    ("s390-pv-guest", S390PvGuest),
    ("virtio-mem-pci", DeviceVirtioMemPci),
    ("virtio-iommu-pci", DeviceVirtioIommuPci),
    ("sgx-epc", SgxEpc),
    ("thread-context", ThreadContext),
];

/// A device property that sets a flag; `scsi_default` marks the
/// virtio-blk `scsi` property whose `default-value: false` also sets
/// `virtio-blk-pci.scsi.default.disabled`.
#[derive(Debug, Clone, Copy)]
pub struct DeviceProp {
    /// Property name.
    pub name: &'static str,
    /// Flag set when the property exists.
    pub flag: Flag,
    /// Check the `scsi` default value.
    pub scsi_default: bool,
}

const fn p(name: &'static str, flag: Flag) -> DeviceProp {
    DeviceProp {
        name,
        flag,
        scsi_default: false,
    }
}

const VIRTIO_BALLOON: &[DeviceProp] = &[
    p("deflate-on-oom", VirtioBalloonAutodeflate),
    p("free-page-reporting", VirtioBalloonFreePageReporting),
    p("acpi-index", AcpiIndex),
];
const VIRTIO_BLK: &[DeviceProp] = &[
    DeviceProp {
        name: "scsi",
        flag: VirtioBlkScsi,
        scsi_default: true,
    },
    p("queue-size", VirtioBlkQueueSize),
    p("acpi-index", AcpiIndex),
];
const VIRTIO_NET: &[DeviceProp] = &[p("acpi-index", AcpiIndex), p("rss", VirtioNetRss)];
const PCIE_ROOT_PORT: &[DeviceProp] = &[p("hotplug", PcieRootPortHotplug)];
const USB_HOST: &[DeviceProp] = &[
    p("hostdevice", UsbHostHostdevice),
    p("guest-resets-all", UsbHostGuestsResetsAll),
];
const SPAPR_PCI_HOST_BRIDGE: &[DeviceProp] = &[p("numa_node", SpaprPciHostBridgeNumaNode)];
const VIRTIO_SCSI: &[DeviceProp] = &[p("acpi-index", AcpiIndex)];
const VFIO_PCI: &[DeviceProp] = &[p("display", VfioPciDisplay)];
const SCSI_DISK: &[DeviceProp] = &[
    p("channel", ScsiDiskChannel),
    p("wwn", ScsiDiskWwn),
    p("rotation_rate", RotationRate),
];
const IDE_DRIVE: &[DeviceProp] = &[p("wwn", IdeDriveWwn)];
const PIIX4_PM: &[DeviceProp] = &[
    p("disable_s3", PiixDisableS3),
    p("disable_s4", PiixDisableS4),
    p("acpi-root-pci-hotplug", Piix4AcpiRootPciHotplug),
];
const USB_REDIR: &[DeviceProp] = &[p("filter", UsbRedirFilter)];
const USB_STORAGE: &[DeviceProp] = &[p("removable", UsbStorageRemovable)];
const KVM_PIT: &[DeviceProp] = &[p("lost_tick_policy", KvmPitTickPolicy)];
const VGA: &[DeviceProp] = &[p("vgamem_mb", VgaVgamem)];
const VMWARE_SVGA: &[DeviceProp] = &[p("vgamem_mb", VmwareSvgaVgamem)];
const QXL: &[DeviceProp] = &[p("vgamem_mb", QxlVgamem), p("vram64_size_mb", QxlVram64)];
const VIRTIO_GPU: &[DeviceProp] = &[p("virgl", VirtioGpuVirgl), p("acpi-index", AcpiIndex)];
const ICH9: &[DeviceProp] = &[
    p("disable_s3", Ich9DisableS3),
    p("disable_s4", Ich9DisableS4),
];
const INTEL_IOMMU: &[DeviceProp] = &[
    p("intremap", IntelIommuIntremap),
    p("caching-mode", IntelIommuCachingMode),
    p("eim", IntelIommuEim),
    p("device-iotlb", IntelIommuDeviceIotlb),
    p("aw-bits", IntelIommuAwBits),
];
const MCH: &[DeviceProp] = &[p("extended-tseg-mbytes", MchExtendedTsegMbytes)];
const NVDIMM: &[DeviceProp] = &[p("unarmed", DeviceNvdimmUnarmed)];
const VHOST_USER_FS: &[DeviceProp] = &[p("bootindex", VhostUserFsBootindex)];
const VIRTIO_MEM_PCI: &[DeviceProp] = &[p("prealloc", DeviceVirtioMemPciPrealloc)];
const VIRTIO_IOMMU: &[DeviceProp] = &[p("boot-bypass", VirtioIommuBootBypass)];

/// `device-list-properties` of a device type, queried only when
/// `condition` (if any) is already set (`virQEMUCapsDeviceProps`).
pub const DEVICE_PROPS: &[(&str, &[DeviceProp], Option<Flag>)] = &[
    ("virtio-blk-pci", VIRTIO_BLK, None),
    ("virtio-net-pci", VIRTIO_NET, Some(DeviceVirtioNet)),
    ("virtio-scsi-pci", VIRTIO_SCSI, Some(VirtioScsi)),
    ("virtio-blk-ccw", VIRTIO_BLK, Some(VirtioCcw)),
    ("virtio-net-ccw", VIRTIO_NET, Some(DeviceVirtioNet)),
    ("virtio-scsi-ccw", VIRTIO_SCSI, Some(VirtioScsi)),
    ("vfio-pci", VFIO_PCI, Some(DeviceVfioPci)),
    ("scsi-hd", SCSI_DISK, None),
    ("ide-hd", IDE_DRIVE, None),
    ("PIIX4_PM", PIIX4_PM, None),
    ("usb-redir", USB_REDIR, Some(UsbRedir)),
    ("usb-storage", USB_STORAGE, Some(DeviceUsbStorage)),
    ("kvm-pit", KVM_PIT, None),
    ("VGA", VGA, Some(DeviceVga)),
    ("vmware-svga", VMWARE_SVGA, Some(DeviceVmwareSvga)),
    ("qxl", QXL, Some(DeviceQxl)),
    ("virtio-gpu-pci", VIRTIO_GPU, Some(DeviceVirtioGpu)),
    ("virtio-gpu-device", VIRTIO_GPU, Some(DeviceVirtioGpu)),
    ("ICH9-LPC", ICH9, None),
    ("virtio-balloon-pci", VIRTIO_BALLOON, None),
    ("virtio-balloon-ccw", VIRTIO_BALLOON, None),
    ("virtio-balloon-device", VIRTIO_BALLOON, None),
    ("intel-iommu", INTEL_IOMMU, Some(DeviceIntelIommu)),
    (
        "spapr-pci-host-bridge",
        SPAPR_PCI_HOST_BRIDGE,
        Some(DeviceSpaprPciHostBridge),
    ),
    ("virtio-gpu-ccw", VIRTIO_GPU, Some(DeviceVirtioGpuCcw)),
    ("mch", MCH, Some(DeviceMch)),
    ("nvdimm", NVDIMM, Some(DeviceNvdimm)),
    ("pcie-root-port", PCIE_ROOT_PORT, Some(DevicePcieRootPort)),
    ("usb-host", USB_HOST, None),
    (
        "vhost-user-fs-device",
        VHOST_USER_FS,
        Some(DeviceVhostUserFs),
    ),
    ("virtio-mem-pci", VIRTIO_MEM_PCI, Some(DeviceVirtioMemPci)),
    ("virtio-iommu-pci", VIRTIO_IOMMU, Some(DeviceVirtioIommuPci)),
];

/// QAPI schema queries → flag (`virQEMUCapsQMPSchemaQueries`); see
/// [`super::schema`] for the query syntax.
pub const SCHEMA_QUERIES: &[(&str, Flag)] = &[
    ("blockdev-add/arg-type/+vxhs", Vxhs),
    (
        "blockdev-add/arg-type/+file/drop-cache",
        MigrationFileDropCache,
    ),
    ("blockdev-add/arg-type/+nvme", DriveNvme),
    ("blockdev-add/arg-type/+file/aio/^io_uring", AioIoUring),
    ("blockdev-add/arg-type/+rbd/encrypt", RbdEncryption),
    (
        "blockdev-add/arg-type/+nbd/tls-hostname",
        BlockdevNbdTlsHostname,
    ),
    (
        "blockdev-snapshot/$allow-write-only-overlay",
        BlockdevSnapshotAllowWriteOnly,
    ),
    (
        "chardev-add/arg-type/backend/+socket/data/reconnect",
        ChardevReconnect,
    ),
    ("device_add/$json-cli-hotplug", DeviceJson),
    (
        "migrate-set-parameters/arg-type/block-bitmap-mapping/bitmaps/transform",
        MigrationParamBlockBitmapMapping,
    ),
    ("nbd-server-start/arg-type/tls-creds", NbdTls),
    ("nbd-server-add/arg-type/bitmap", NbdBitmap),
    ("netdev_add/arg-type/+stream", NetdevStream),
    ("netdev_add/arg-type/+vhost-vdpa", NetdevVhostVdpa),
    ("netdev_add/arg-type/type/^dgram", NetdevJson),
    ("object-add/arg-type/qom-type/^secret", ObjectJson),
    (
        "query-display-options/ret-type/+egl-headless/rendernode",
        EglHeadlessRendernode,
    ),
    ("query-display-options/ret-type/+sdl", Sdl),
    ("query-display-options/ret-type/+egl-headless", EglHeadless),
    ("query-iothreads/ret-type/poll-max-ns", IothreadPolling),
    ("query-hotpluggable-cpus/ret-type/props/die-id", SmpDies),
    (
        "query-named-block-nodes/arg-type/flat",
        QmpQueryNamedBlockNodesFlat,
    ),
    ("screendump/arg-type/device", ScreendumpDevice),
    ("set-numa-node/arg-type/+hmat-lb", NumaHmat),
    (
        "object-add/arg-type/+sev-guest/kernel-hashes",
        SevGuestKernelHashes,
    ),
    ("calc-dirty-rate/arg-type/mode", DirtyrateMode),
    (
        "chardev-add/arg-type/backend/+qemu-vdagent",
        ChardevQemuVdagent,
    ),
    ("query-display-options/ret-type/+dbus", DisplayDbus),
    (
        "object-add/arg-type/+iothread/thread-pool-max",
        IothreadThreadPoolMax,
    ),
    (
        "query-migrate/ret-type/blocked-reasons",
        MigrationBlockedReasons,
    ),
    ("screendump/arg-type/format/^png", ScreenshotFormatPng),
];

/// `qom-list-properties` of an object type, queried only when `condition`
/// (if any) is set (`virQEMUCapsObjectProps`).
pub const OBJECT_PROPS: &[(&str, StringFlags, Option<Flag>)] = &[
    (
        "memory-backend-file",
        &[
            ("pmem", ObjectMemoryFilePmem),
            (
                "x-use-canonical-path-for-ramblock-id",
                XUseCanonicalPathForRamblockId,
            ),
            ("reserve", MemoryBackendReserve),
            ("prealloc-threads", MemoryBackendPreallocThreads),
        ],
        None,
    ),
    (
        "memory-backend-memfd",
        &[("hugetlb", ObjectMemoryMemfdHugetlb)],
        Some(ObjectMemoryMemfd),
    ),
    ("max-x86_64-cpu", MAX_CPU_PROPS, Some(X86MaxCpu)),
    ("max-arm-cpu", MAX_CPU_PROPS, Some(ArmMaxCpu)),
];

const MAX_CPU_PROPS: &[(&str, Flag)] = &[
    ("unavailable-features", CpuUnavailableFeatures),
    ("kvm-no-adjvtime", CpuKvmNoAdjvtime),
    ("migratable", CpuMigratable),
];

/// `qom-list-properties` of `<machine>-machine` (`virQEMUCapsMachineProps`);
/// queried for `none` always, for others when the machine exists.
pub const MACHINE_PROPS: &[(&str, StringFlags)] = &[
    (
        "pseries",
        &[
            ("cap-hpt-max-page-size", MachinePseriesCapHptMaxPageSize),
            ("cap-htm", MachinePseriesCapHtm),
            ("cap-nested-hv", MachinePseriesCapNestedHv),
            ("cap-ccf-assist", MachinePseriesCapCcfAssist),
            ("cap-cfpc", MachinePseriesCapCfpc),
            ("cap-sbbc", MachinePseriesCapSbbc),
            ("cap-ibs", MachinePseriesCapIbs),
        ],
    ),
    ("virt", &[("iommu", MachineVirtIommu)]),
    (
        "none",
        &[("confidential-guest-support", MachineConfidentalGuestSupport)],
    ),
];

/// `query-command-line-options`: option (and parameter, if any) → flag
/// (`virQEMUCapsCommandLine`).
pub const COMMAND_LINE: &[(&str, Option<&str>, Flag)] = &[
    ("fsdev", Some("multidevs"), FsdevMultidevs),
    ("machine", Some("hpet"), MachineHpet),
    ("sandbox", None, SeccompSandbox),
    ("spice", None, Spice),
    ("spice", Some("gl"), SpiceGl),
    ("spice", Some("rendernode"), SpiceRendernode),
    ("vnc", Some("power-control"), VncPowerControl),
];

/// `query-tpm-models`: model → flag.
pub const TPM_MODELS: &[(&str, Flag)] = &[
    ("tpm-tis", DeviceTpmTis),
    ("tpm-crb", DeviceTpmCrb),
    ("tpm-spapr", DeviceTpmSpapr),
];

/// `query-tpm-types`: backend type → flag.
pub const TPM_TYPES: &[(&str, Flag)] = &[
    ("passthrough", DeviceTpmPassthrough),
    ("emulator", DeviceTpmEmulator),
];

/// x86 CPU feature names whose libvirt spelling differs from QEMU's
/// (`virQEMUCapsCPUFeaturesX86`): (libvirt, QEMU).
pub const CPU_FEATURES_X86: &[(&str, &str)] = &[
    ("cmp_legacy", "cmp-legacy"),
    ("ds_cpl", "ds-cpl"),
    ("fxsr_opt", "fxsr-opt"),
    ("kvm_pv_eoi", "kvm-pv-eoi"),
    ("kvm_pv_unhalt", "kvm-pv-unhalt"),
    ("lahf_lm", "lahf-lm"),
    ("nodeid_msr", "nodeid-msr"),
    ("pclmuldq", "pclmulqdq"),
    ("perfctr_core", "perfctr-core"),
    ("perfctr_nb", "perfctr-nb"),
    ("tsc_adjust", "tsc-adjust"),
];

/// libvirt's spelling of a QEMU CPU feature name (x86 only differs).
pub fn cpu_feature_from_qemu<'a>(arch: &str, name: &'a str) -> &'a str {
    if crate::arch::is_x86(arch) {
        if let Some((l, _)) = CPU_FEATURES_X86.iter().find(|(_, q)| *q == name) {
            return l;
        }
    }
    name
}

/// QEMU's spelling of a libvirt CPU feature name (x86 only differs).
pub fn cpu_feature_to_qemu<'a>(arch: &str, name: &'a str) -> &'a str {
    if crate::arch::is_x86(arch) {
        if let Some((_, q)) = CPU_FEATURES_X86.iter().find(|(l, _)| *l == name) {
            return q;
        }
    }
    name
}

/// libvirt's ppc64 CPU model names (`src/cpu_map/ppc64_*.xml`).
pub const PPC64_MODELS: &[&str] = &[
    "POWER10",
    "POWER6",
    "POWER7",
    "POWER8",
    "POWER9",
    "POWERPC_e5500",
    "POWERPC_e6500",
];
