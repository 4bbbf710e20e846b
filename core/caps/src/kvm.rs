//! Host CPU facts only KVM reveals: feature MSRs (`IA32_ARCH_CAPABILITIES`
//! when `/dev/cpu/0/msr` is not there: the `msr` module is rarely loaded)
//! and the invariant TSC's frequency. Both are best effort, as libvirt's:
//! `None` when `/dev/kvm` is absent or refuses.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::libc;

/// `KVMIO`, the ioctl type of every KVM request.
const KVMIO: u64 = 0xAE;

/// `_IO(KVMIO, nr)`.
const fn kvm_io(nr: u64) -> u64 {
    (KVMIO << 8) | nr
}

/// `_IOWR(KVMIO, nr, size)`.
const fn kvm_iowr(nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | (KVMIO << 8) | nr
}

const KVM_CHECK_EXTENSION: u64 = kvm_io(0x03);
const KVM_CREATE_VM: u64 = kvm_io(0x01);
const KVM_CREATE_VCPU: u64 = kvm_io(0x41);
const KVM_GET_TSC_KHZ: u64 = kvm_io(0xa3);
/// `_IOWR(KVMIO, 0x88, struct kvm_msrs)`; `struct kvm_msrs` is 8 bytes
/// (`nmsrs`, `pad`) followed by its entries.
const KVM_GET_MSRS: u64 = kvm_iowr(0x88, 8);
const KVM_CAP_TSC_CONTROL: libc::c_ulong = 60;

/// `struct kvm_msrs` with room for one `struct kvm_msr_entry`.
#[repr(C)]
struct OneMsr {
    nmsrs: u32,
    pad: u32,
    index: u32,
    reserved: u32,
    data: u64,
}

fn open_kvm() -> Option<File> {
    File::open("/dev/kvm").ok()
}

/// An ioctl that returns a value or a new descriptor; `None` on failure.
fn ioctl_arg(fd: &impl AsRawFd, request: u64, arg: libc::c_ulong) -> Option<libc::c_int> {
    // SAFETY: every request passed here takes an integer argument (or
    // none) and does not read or write user memory.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::Ioctl, arg) };
    (r >= 0).then_some(r)
}

/// A feature MSR of the host as KVM reports it (`KVM_GET_MSRS` on the
/// system descriptor).
pub fn feature_msr(index: u32) -> Option<u64> {
    let kvm = open_kvm()?;
    let mut msr = OneMsr {
        nmsrs: 1,
        pad: 0,
        index,
        reserved: 0,
        data: 0,
    };
    // SAFETY: `msr` is a `struct kvm_msrs` header followed by exactly the
    // one entry `nmsrs` announces; the kernel writes only that entry.
    let r = unsafe {
        libc::ioctl(
            kvm.as_raw_fd(),
            KVM_GET_MSRS as libc::Ioctl,
            &mut msr as *mut OneMsr,
        )
    };
    (r == 1).then_some(msr.data)
}

/// The TSC frequency in Hz KVM gives a new vCPU, and whether KVM can scale
/// a guest's TSC to another frequency (`KVM_CAP_TSC_CONTROL`).
pub fn tsc_info() -> Option<(u64, bool)> {
    let kvm = open_kvm()?;
    let vm = ioctl_arg(&kvm, KVM_CREATE_VM, 0)?;
    // SAFETY: KVM_CREATE_VM returned a new descriptor that nothing else owns.
    let vm = unsafe { OwnedFd::from_raw_fd(vm) };
    let vcpu = ioctl_arg(&vm, KVM_CREATE_VCPU, 0)?;
    // SAFETY: KVM_CREATE_VCPU returned a new descriptor that nothing else owns.
    let vcpu = unsafe { OwnedFd::from_raw_fd(vcpu) };
    let khz = ioctl_arg(&vcpu, KVM_GET_TSC_KHZ, 0)?;
    let scaling = ioctl_arg(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL)?;
    Some((u64::try_from(khz).ok()? * 1000, scaling != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_kernels_numbers() {
        assert_eq!(KVM_CREATE_VM, 0xae01);
        assert_eq!(KVM_GET_TSC_KHZ, 0xaea3);
        assert_eq!(KVM_GET_MSRS, 0xc008_ae88);
        assert_eq!(std::mem::size_of::<OneMsr>(), 24);
    }

    #[test]
    fn reading_this_host_never_fails_loudly() {
        // Whatever /dev/kvm allows here, these answer or say None.
        let _ = feature_msr(0x10a);
        if let Some((hz, _)) = tsc_info() {
            assert!(hz > 1_000_000, "{hz}");
        }
    }
}
