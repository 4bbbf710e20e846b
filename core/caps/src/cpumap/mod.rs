//! libvirt's x86 CPU map (`src/cpu_map/x86_*.xml`) as data, and the model
//! decoder that names a CPU from its features (`x86Decode` for a host CPU):
//! the newest model whose features the CPU all has, preferring a model whose
//! family/model signature matches, then the one leaving fewest extra
//! features.

mod x86_data;

pub use x86_data::{ALIASES, FEATURES, MODELS, VENDORS};

/// One CPUID bit set of a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidBit {
    /// EAX input.
    pub leaf: u32,
    /// ECX input.
    pub subleaf: u32,
    /// Output register: 0 = EAX, 1 = EBX, 2 = ECX, 3 = EDX.
    pub reg: u8,
    /// Bits in that register.
    pub mask: u32,
}

/// MSR bits of a feature (e.g. `IA32_ARCH_CAPABILITIES`, 0x10a).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsrBits {
    /// MSR index.
    pub index: u32,
    /// Low 32 bits.
    pub eax: u32,
    /// High 32 bits.
    pub edx: u32,
}

/// A feature of the map.
#[derive(Debug, Clone, Copy)]
pub struct X86Feature {
    /// libvirt's name.
    pub name: &'static str,
    /// CPUID bits (all must be set).
    pub cpuid: &'static [CpuidBit],
    /// MSR bits, for MSR-based features.
    pub msr: Option<MsrBits>,
    /// Whether the feature is migratable.
    pub migratable: bool,
}

/// A model of the map.
#[derive(Debug, Clone, Copy)]
pub struct X86Model {
    /// libvirt's name.
    pub name: &'static str,
    /// Vendor, when the model is vendor-specific.
    pub vendor: Option<&'static str>,
    /// Whether the model may name a host CPU.
    pub decode_host: bool,
    /// Whether the model may name a guest CPU (host-model).
    pub decode_guest: bool,
    /// (family, model) signatures.
    pub signatures: &'static [(u32, u32)],
    /// Indexes into [`FEATURES`].
    pub features: &'static [usize],
}

/// One CPUID leaf as the CPU returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidLeaf {
    /// EAX input.
    pub leaf: u32,
    /// ECX input.
    pub subleaf: u32,
    /// Output registers EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

/// Raw x86 CPU identification data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct X86CpuData {
    /// CPUID leaves.
    pub cpuid: Vec<CpuidLeaf>,
    /// `IA32_ARCH_CAPABILITIES` (MSR 0x10a), when readable.
    pub arch_capabilities: Option<u64>,
}

impl X86CpuData {
    fn reg(&self, leaf: u32, subleaf: u32, reg: u8) -> u32 {
        self.cpuid
            .iter()
            .find(|l| l.leaf == leaf && l.subleaf == subleaf)
            .and_then(|l| l.regs.get(usize::from(reg)).copied())
            .unwrap_or(0)
    }

    /// Indexes of the map's features the data has, in map order.
    pub fn features(&self) -> Vec<usize> {
        FEATURES
            .iter()
            .enumerate()
            .filter(|(_, f)| self.has(f))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether the data has the map's feature `name` (QEMU spellings
    /// accepted); false for a name the map lacks.
    pub fn has_feature(&self, name: &str) -> bool {
        feature_index(name).is_some_and(|i| self.has(&FEATURES[i]))
    }

    fn has(&self, f: &X86Feature) -> bool {
        if let Some(m) = f.msr {
            let v = self
                .arch_capabilities
                .filter(|_| m.index == 0x10a)
                .unwrap_or(0);
            let want = (u64::from(m.edx) << 32) | u64::from(m.eax);
            return want != 0 && v & want == want;
        }
        !f.cpuid.is_empty()
            && f.cpuid
                .iter()
                .all(|b| self.reg(b.leaf, b.subleaf, b.reg) & b.mask == b.mask)
    }

    /// The vendor's libvirt name from CPUID leaf 0.
    pub fn vendor(&self) -> Option<&'static str> {
        let mut s = Vec::with_capacity(12);
        for r in [1u8, 3, 2] {
            s.extend_from_slice(&self.reg(0, 0, r).to_le_bytes());
        }
        VENDORS
            .iter()
            .find(|(_, id)| id.as_bytes() == s.as_slice())
            .map(|(n, _)| *n)
    }

    /// (family, model, stepping) from CPUID leaf 1.
    pub fn signature(&self) -> Option<(u32, u32, u32)> {
        let eax = self.reg(1, 0, 0);
        if eax == 0 {
            return None;
        }
        let base_family = (eax >> 8) & 0xf;
        let ext_family = (eax >> 20) & 0xff;
        let base_model = (eax >> 4) & 0xf;
        let ext_model = (eax >> 16) & 0xf;
        Some((
            base_family + ext_family,
            (ext_model << 4) | base_model,
            eax & 0xf,
        ))
    }
}

/// Index of a feature by libvirt name (QEMU spellings accepted).
pub fn feature_index(name: &str) -> Option<usize> {
    let name = crate::probe::tables::cpu_feature_from_qemu("x86_64", name);
    let name = ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, n)| n);
    FEATURES.iter().position(|f| f.name == name)
}

/// A named CPU: model, vendor and the features beyond the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCpu {
    /// Model name.
    pub model: &'static str,
    /// Vendor's libvirt name.
    pub vendor: Option<&'static str>,
    /// Features the CPU has beyond the model's, in map order.
    pub extra_features: Vec<&'static str>,
}

/// Names a host CPU from its features (indexes into [`FEATURES`]).
/// `allowed` limits the candidates (e.g. to the models a hypervisor can
/// run); `signature` is (family, model).
pub fn decode_host(
    features: &[usize],
    vendor: Option<&str>,
    signature: Option<(u32, u32)>,
    allowed: Option<&dyn Fn(&str) -> bool>,
) -> Option<DecodedCpu> {
    let mut have = vec![false; FEATURES.len()];
    for &f in features {
        if let Some(h) = have.get_mut(f) {
            *h = true;
        }
    }
    let sig_match = |m: &X86Model| signature.is_some_and(|s| m.signatures.contains(&s));
    let mut best: Option<(&X86Model, usize)> = None;
    for m in MODELS.iter().rev() {
        if !m.decode_host || allowed.is_some_and(|a| !a(m.name)) {
            continue;
        }
        if let (Some(v), Some(mv)) = (vendor, m.vendor) {
            if v != mv {
                continue;
            }
        }
        if m.features
            .iter()
            .any(|&f| !have.get(f).copied().unwrap_or(false))
        {
            continue;
        }
        let extra = features.iter().filter(|f| !m.features.contains(f)).count();
        let take = match best {
            None => true,
            Some((cur, cur_extra)) => {
                if sig_match(cur) && !sig_match(m) {
                    false
                } else if !sig_match(cur) && sig_match(m) {
                    true
                } else {
                    extra < cur_extra
                }
            }
        };
        if take {
            best = Some((m, extra));
        }
    }
    let (m, _) = best?;
    let mut extra: Vec<usize> = features
        .iter()
        .copied()
        .filter(|f| !m.features.contains(f))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    Some(DecodedCpu {
        model: m.name,
        vendor: vendor.and_then(|v| VENDORS.iter().find(|(n, _)| *n == v).map(|(n, _)| *n)),
        extra_features: extra
            .iter()
            .filter_map(|&i| FEATURES.get(i).map(|f| f.name))
            .collect(),
    })
}

/// A hypervisor CPU model a guest CPU may be named after, with the
/// features blocking it.
#[derive(Debug, Clone, Copy)]
pub struct HvModel<'a> {
    /// Model name.
    pub name: &'a str,
    /// Blocking features (QEMU spelling).
    pub blockers: &'a [String],
}

/// A guest CPU: model, vendor and features to require or disable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedGuestCpu {
    /// Model name.
    pub model: &'static str,
    /// Vendor's libvirt name.
    pub vendor: Option<&'static str>,
    /// (`require` | `disable`, feature) in libvirt's order.
    pub features: Vec<(&'static str, &'static str)>,
}

/// Names a guest CPU (libvirt's host-model) from its features, among the
/// hypervisor's models (`x86Decode` for a guest CPU): features the model
/// lacks are required, features it has but the CPU lacks (or that block the
/// hypervisor's model) are disabled; each disabled feature costs more than
/// a required one.
pub fn decode_guest(
    features: &[usize],
    vendor: Option<&str>,
    signature: Option<(u32, u32)>,
    hv_models: &[HvModel<'_>],
) -> Option<DecodedGuestCpu> {
    const BASE_PENALTY: usize = 2;
    let mut have = vec![false; FEATURES.len()];
    for &f in features {
        if let Some(h) = have.get_mut(f) {
            *h = true;
        }
    }
    let sig_match = |m: &X86Model| signature.is_some_and(|s| m.signatures.contains(&s));
    let score = |enabled: usize, disabled: usize| {
        // The n-th disabled feature costs BASE_PENALTY + n.
        enabled + (0..disabled).map(|n| BASE_PENALTY + n).sum::<usize>()
    };
    struct Cand {
        model: &'static X86Model,
        required: Vec<usize>,
        disabled: Vec<usize>,
    }
    let mut best: Option<Cand> = None;
    for m in MODELS.iter().rev() {
        let Some(hv) = hv_models.iter().find(|h| h.name == m.name) else {
            continue;
        };
        if !m.decode_guest {
            continue;
        }
        if let (Some(v), Some(mv)) = (vendor, m.vendor) {
            if v != mv {
                continue;
            }
        }
        let required: Vec<usize> = features
            .iter()
            .copied()
            .filter(|f| !m.features.contains(f))
            .collect();
        let mut disabled: Vec<usize> = m.features.iter().copied().filter(|&f| !have[f]).collect();
        for b in hv.blockers {
            if let Some(i) = feature_index(b) {
                if !required.contains(&i) && !disabled.contains(&i) {
                    disabled.push(i);
                }
            }
        }
        let take = match &best {
            None => true,
            Some(cur) => {
                if sig_match(cur.model) && !sig_match(m) {
                    false
                } else if !sig_match(cur.model) && sig_match(m) {
                    true
                } else {
                    let (c, cd) = (
                        score(cur.required.len(), cur.disabled.len()),
                        cur.disabled.len(),
                    );
                    let n = score(required.len(), disabled.len());
                    n < c || (n == c && disabled.len() < cd)
                }
            }
        };
        if take {
            best = Some(Cand {
                model: m,
                required,
                disabled,
            });
        }
    }
    let best = best?;
    let mut out = Vec::new();
    for (policy, list) in [("require", &best.required), ("disable", &best.disabled)] {
        let mut l = list.clone();
        l.sort_unstable();
        l.dedup();
        out.extend(
            l.iter()
                .filter_map(|&i| FEATURES.get(i).map(|f| (policy, f.name))),
        );
    }
    Some(DecodedGuestCpu {
        model: best.model.name,
        vendor: vendor.and_then(|v| VENDORS.iter().find(|(n, _)| *n == v).map(|(n, _)| *n)),
        features: out,
    })
}

/// The vendor libvirt reports for a CPU model (`vendor='unknown'` when
/// `None`).
pub fn model_vendor(model: &str) -> Option<&'static str> {
    MODELS
        .iter()
        .find(|m| m.name == model)
        .and_then(|m| m.vendor)
}

/// Whether the map knows a model.
pub fn has_model(model: &str) -> bool {
    MODELS.iter().any(|m| m.name == model)
}

/// Reads CPUID on this host (x86_64 only; empty elsewhere) for every leaf
/// the map uses, and `IA32_ARCH_CAPABILITIES` (from `/dev/cpu/0/msr` or
/// KVM) when the CPU has it.
pub fn read_host_x86() -> X86CpuData {
    #[cfg(target_arch = "x86_64")]
    {
        let mut leaves: Vec<(u32, u32)> = vec![(0, 0), (1, 0), (0x8000_0000, 0)];
        for f in FEATURES {
            for b in f.cpuid {
                if !leaves.contains(&(b.leaf, b.subleaf)) {
                    leaves.push((b.leaf, b.subleaf));
                }
            }
        }
        let cpuid = |leaf: u32, sub: u32| {
            // SAFETY: CPUID is available on every x86_64 CPU and only
            // reads identification registers.
            #[allow(unused_unsafe)]
            let r = unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) };
            [r.eax, r.ebx, r.ecx, r.edx]
        };
        let max_basic = cpuid(0, 0)[0];
        let max_ext = cpuid(0x8000_0000, 0)[0];
        let data = leaves
            .into_iter()
            .filter(|&(l, _)| {
                if l >= 0x8000_0000 {
                    l <= max_ext
                } else {
                    l <= max_basic
                }
            })
            .map(|(leaf, subleaf)| CpuidLeaf {
                leaf,
                subleaf,
                regs: cpuid(leaf, subleaf),
            })
            .collect();
        let mut x86 = X86CpuData {
            cpuid: data,
            arch_capabilities: None,
        };
        // IA32_ARCH_CAPABILITIES, when CPUID says the CPU has it: from the
        // msr driver, else from KVM's feature MSRs (as libvirt).
        if x86.has_feature("arch-capabilities") {
            x86.arch_capabilities = std::fs::File::open("/dev/cpu/0/msr")
                .ok()
                .and_then(|f| {
                    use std::os::unix::fs::FileExt;
                    let mut b = [0u8; 8];
                    f.read_exact_at(&mut b, 0x10a)
                        .ok()
                        .map(|_| u64::from_le_bytes(b))
                })
                .or_else(|| crate::kvm::feature_msr(0x10a));
        }
        x86
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        X86CpuData::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(names: &[&str]) -> Vec<usize> {
        names.iter().map(|n| feature_index(n).unwrap()).collect()
    }

    #[test]
    fn map_is_consistent() {
        assert!(FEATURES.len() > 150);
        assert!(MODELS.iter().any(|m| m.name == "Skylake-Client"));
        for m in MODELS {
            assert!(m.features.iter().all(|&f| f < FEATURES.len()), "{}", m.name);
        }
        assert_eq!(model_vendor("Broadwell"), Some("Intel"));
        assert_eq!(model_vendor("qemu64"), None);
        assert_eq!(feature_index("pclmulqdq"), feature_index("pclmuldq"));
    }

    #[test]
    fn decode_picks_the_model_with_fewest_extras() {
        let qemu64 = MODELS.iter().find(|m| m.name == "qemu64").unwrap();
        let mut feats: Vec<usize> = qemu64.features.to_vec();
        feats.extend(idx(&["hypervisor"]));
        let d = decode_host(&feats, Some("Intel"), None, None).unwrap();
        assert_eq!(d.model, "qemu64");
        assert_eq!(d.extra_features, ["hypervisor"]);
        // Restricting candidates changes the answer.
        let d = decode_host(&feats, Some("Intel"), None, Some(&|m: &str| m != "qemu64")).unwrap();
        assert_ne!(d.model, "qemu64");
    }

    #[test]
    fn cpuid_data_yields_vendor_signature_and_features() {
        let data = X86CpuData {
            cpuid: vec![
                CpuidLeaf {
                    leaf: 0,
                    subleaf: 0,
                    regs: [0x24, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
                },
                CpuidLeaf {
                    leaf: 1,
                    subleaf: 0,
                    regs: [0x000a_0671, 0x0002_0800, 0x8120_2000, 0x0f8b_fbff],
                },
            ],
            arch_capabilities: None,
        };
        assert_eq!(data.vendor(), Some("Intel"));
        assert_eq!(data.signature(), Some((6, 167, 1)));
        let names: Vec<_> = data.features().iter().map(|&i| FEATURES[i].name).collect();
        assert!(names.contains(&"fpu") && names.contains(&"hypervisor"));
    }
}
