//! The guest CPU as QEMU built it: after QEMU starts (before `cont`), the
//! live definition's custom-mode x86 CPU is brought in line with the CPUID
//! data of the first vCPU, as libvirt does (`qemuProcessUpdateAndVerifyCPU`).
//!
//! QEMU reports the CPUID words it enabled (`feature-words`) and the bits it
//! was asked for but could not enable (`filtered-features`). Against the
//! CPU the definition asks for (the model's features, plus required minus
//! disabled ones), each feature of libvirt's x86 CPU map that QEMU enabled
//! beyond it becomes `require`, and each one QEMU filtered or left out
//! becomes `disable`; the CPU is then `check='full'`. A CPU that was
//! already `check='full'` is verified instead: any difference fails the
//! start, as in libvirt.
//!
//! The monitor I/O is [`refresh`]; everything else is pure and tested
//! with fixed QMP replies.

use std::collections::BTreeMap;

use qvisor_caps::cpumap::{feature_index, X86Feature, FEATURES, MODELS};
use qvisor_domain::{Cpu, CpuCheck, CpuFeature, CpuFeaturePolicy, CpuMode, Domain};
use qvisor_qmp::QmpClient;
use serde_json::{json, Value};

use super::error::{DriverError, Result};

/// Where QEMU puts the first vCPU when `query-cpus-fast` does not say
/// (libvirt's fallback too).
const DEFAULT_VCPU_PATH: &str = "/machine/unattached/device[0]";

/// A set of CPUID bits: (leaf, subleaf, register 0-3 = EAX-EDX) → mask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CpuidBits(BTreeMap<(u32, u32, u8), u32>);

impl CpuidBits {
    /// Parses QEMU's `X86CPUFeatureWordInfo` list (the value of a vCPU's
    /// `feature-words` or `filtered-features` property).
    fn from_feature_words(words: &Value) -> std::result::Result<Self, String> {
        let list = words
            .as_array()
            .ok_or_else(|| format!("CPUID feature words are not a list: {words}"))?;
        let mut bits = CpuidBits::default();
        for w in list {
            let field = |k: &str| w.get(k).and_then(Value::as_u64);
            let reg = match w.get("cpuid-register").and_then(Value::as_str) {
                Some("EAX") => 0,
                Some("EBX") => 1,
                Some("ECX") => 2,
                Some("EDX") => 3,
                _ => return Err(format!("unknown CPU register in CPUID word {w}")),
            };
            let (Some(leaf), Some(features)) = (field("cpuid-input-eax"), field("features")) else {
                return Err(format!("CPUID word without input or features: {w}"));
            };
            let subleaf = field("cpuid-input-ecx").unwrap_or(0);
            let key = (
                u32::try_from(leaf).map_err(|_| format!("CPUID leaf out of range: {w}"))?,
                u32::try_from(subleaf).map_err(|_| format!("CPUID subleaf out of range: {w}"))?,
                reg,
            );
            // QEMU's words are 32 bits wide; anything above is not CPUID.
            *bits.0.entry(key).or_default() |= features as u32;
        }
        Ok(bits)
    }

    fn add(&mut self, f: &X86Feature) {
        for b in f.cpuid {
            *self.0.entry((b.leaf, b.subleaf, b.reg)).or_default() |= b.mask;
        }
    }

    fn subtract(&mut self, f: &X86Feature) {
        for b in f.cpuid {
            if let Some(m) = self.0.get_mut(&(b.leaf, b.subleaf, b.reg)) {
                *m &= !b.mask;
            }
        }
    }

    /// Whether every bit of `f` is in the set.
    fn has(&self, f: &X86Feature) -> bool {
        f.cpuid.iter().all(|b| {
            self.0
                .get(&(b.leaf, b.subleaf, b.reg))
                .is_some_and(|m| m & b.mask == b.mask)
        })
    }

    fn is_empty(&self) -> bool {
        self.0.values().all(|m| *m == 0)
    }
}

/// Whether QEMU's CPUID words can tell about `f`: MSR-based features
/// (`IA32_ARCH_CAPABILITIES` bits, VMX controls) are not in them, so they
/// are left as the definition has them.
fn described_by_cpuid(f: &X86Feature) -> bool {
    f.msr.is_none() && !f.cpuid.is_empty()
}

/// The CPUID bits the definition asks for: its model's features, plus the
/// features it forces or requires, minus those it disables or forbids
/// (libvirt's `x86ModelFromCPU`). `None` for a model the map lacks.
fn requested_bits(cpu: &Cpu) -> Option<CpuidBits> {
    let model = MODELS
        .iter()
        .find(|m| Some(m.name) == cpu.model.as_deref())?;
    let mut bits = CpuidBits::default();
    for &i in model.features {
        bits.add(FEATURES.get(i)?);
    }
    for f in &cpu.features {
        let Some(feature) = feature_index(&f.name).and_then(|i| FEATURES.get(i)) else {
            continue;
        };
        match f.policy {
            CpuFeaturePolicy::Force | CpuFeaturePolicy::Require => bits.add(feature),
            CpuFeaturePolicy::Disable | CpuFeaturePolicy::Forbid => bits.subtract(feature),
            CpuFeaturePolicy::Optional => {}
        }
    }
    Some(bits)
}

/// Sets the policy of the definition's feature `index`, appending it when
/// the definition does not name it (libvirt's `virCPUDefUpdateFeature`).
fn set_policy(cpu: &mut Cpu, index: usize, policy: CpuFeaturePolicy) {
    let name = FEATURES[index].name;
    match cpu
        .features
        .iter_mut()
        .find(|f| f.name == name || feature_index(&f.name) == Some(index))
    {
        Some(f) => f.policy = policy,
        None => cpu.features.push(CpuFeature {
            policy,
            name: name.to_string(),
        }),
    }
}

/// Brings a custom-mode CPU with a model in line with what QEMU `enabled`
/// and `filtered` (libvirt's `virCPUx86UpdateLive`). Returns whether it
/// applied (a CPU without a known model is left alone); a `check='full'`
/// CPU QEMU did not build as specified is an error, as in libvirt.
fn update_live(cpu: &mut Cpu, enabled: &CpuidBits, filtered: &CpuidBits) -> Result<bool> {
    if !is_custom_model(cpu) {
        return Ok(false);
    }
    let Some(requested) = requested_bits(cpu) else {
        return Ok(false);
    };
    let verify = cpu.check == Some(CpuCheck::Full);
    let (mut extra, mut missing) = (Vec::new(), Vec::new());
    for (i, f) in FEATURES.iter().enumerate() {
        if !described_by_cpuid(f) {
            continue;
        }
        let expected = requested.has(f);
        if !expected && enabled.has(f) {
            if verify {
                extra.push(f.name);
            } else {
                set_policy(cpu, i, CpuFeaturePolicy::Require);
            }
        }
        if filtered.has(f) || (expected && !enabled.has(f)) {
            if verify {
                missing.push(f.name);
            } else {
                set_policy(cpu, i, CpuFeaturePolicy::Disable);
            }
        }
    }
    let mismatch = match (extra.is_empty(), missing.is_empty()) {
        (true, true) if verify && !filtered.is_empty() => Some(String::new()),
        (true, true) => None,
        (false, true) => Some(format!(": extra features: {}", extra.join(","))),
        (true, false) => Some(format!(": missing features: {}", missing.join(","))),
        (false, false) => Some(format!(
            ": extra features: {}, missing features: {}",
            extra.join(","),
            missing.join(",")
        )),
    };
    if let Some(detail) = mismatch {
        return Err(DriverError::OperationFailed(format!(
            "guest CPU doesn't match specification{detail}"
        )));
    }
    cpu.check = Some(CpuCheck::Full);
    Ok(true)
}

/// Whether `cpu` is a custom-mode CPU naming a model: the only kind whose
/// live definition follows what QEMU is asked for and builds.
pub(super) fn is_custom_model(cpu: &Cpu) -> bool {
    cpu.mode.unwrap_or(CpuMode::Custom) == CpuMode::Custom && cpu.model.is_some()
}

/// Whether `def` gets its live CPU from QEMU: an x86 guest whose CPU is a
/// custom-mode model.
fn applies(def: &Domain) -> bool {
    matches!(def.os.arch.as_deref(), Some("x86_64" | "i686"))
        && def.cpu.as_ref().is_some_and(is_custom_model)
}

/// The QOM path of the first vCPU, from `query-cpus-fast`.
fn first_vcpu_path(reply: &Value) -> Option<String> {
    let list = reply.as_array()?;
    list.iter()
        .find(|c| c.get("cpu-index").and_then(Value::as_u64) == Some(0))
        .or_else(|| list.first())?
        .get("qom-path")?
        .as_str()
        .map(str::to_string)
}

/// Reads the first vCPU's enabled and filtered CPUID words from QEMU.
fn fetch(monitor: &QmpClient) -> std::result::Result<(CpuidBits, CpuidBits), String> {
    let path = monitor
        .execute("query-cpus-fast", None)
        .ok()
        .as_ref()
        .and_then(first_vcpu_path)
        .unwrap_or_else(|| DEFAULT_VCPU_PATH.to_string());
    let get = |property: &str| {
        let reply = monitor
            .execute(
                "qom-get",
                Some(json!({ "path": path, "property": property })),
            )
            .map_err(|e| format!("qom-get {path} {property}: {e}"))?;
        CpuidBits::from_feature_words(&reply).map_err(|e| format!("{path} {property}: {e}"))
    };
    Ok((get("feature-words")?, get("filtered-features")?))
}

/// Updates the live definition's guest CPU from what QEMU enabled (x86,
/// custom mode with a model; anything else is left alone). When QEMU
/// cannot tell, the definition stays as it was; the only error is a
/// `check='full'` CPU QEMU did not build as specified.
pub(super) fn refresh(monitor: &QmpClient, def: &mut Domain) -> Result<()> {
    if !applies(def) {
        return Ok(());
    }
    let (enabled, filtered) = match fetch(monitor) {
        Ok(words) => words,
        Err(e) => {
            tracing::debug!(domain = %def.name, "guest CPU left as defined: {e}");
            return Ok(());
        }
    };
    if let Some(cpu) = def.cpu.as_mut() {
        update_live(cpu, &enabled, &filtered)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvisor_domain::StrEnum;

    /// The words QEMU 7.2 reports for `-cpu qemu64` under TCG, cut to the
    /// leaves that carry bits (the rest are zero words).
    fn qemu64_tcg_words() -> Value {
        json!([
            {"cpuid-register": "EDX", "cpuid-input-eax": 2147483649u64, "features": 563346429},
            {"cpuid-register": "ECX", "cpuid-input-eax": 2147483649u64, "features": 5},
            {"cpuid-register": "EBX", "cpuid-input-ecx": 0, "cpuid-input-eax": 7, "features": 0},
            {"cpuid-register": "ECX", "cpuid-input-eax": 1, "features": 2147491841u64},
            {"cpuid-register": "EDX", "cpuid-input-eax": 1, "features": 126614525}
        ])
    }

    fn zero_words() -> Value {
        json!([{"cpuid-register": "ECX", "cpuid-input-eax": 1, "features": 0}])
    }

    fn custom(model: &str, check: CpuCheck, features: &[(CpuFeaturePolicy, &str)]) -> Cpu {
        Cpu {
            mode: Some(CpuMode::Custom),
            check: Some(check),
            model: Some(model.to_string()),
            features: features
                .iter()
                .map(|(policy, name)| CpuFeature {
                    policy: *policy,
                    name: name.to_string(),
                })
                .collect(),
            ..Cpu::default()
        }
    }

    fn features(cpu: &Cpu) -> Vec<(&str, &str)> {
        cpu.features
            .iter()
            .map(|f| (f.policy.as_str(), f.name.as_str()))
            .collect()
    }

    fn bits(v: Value) -> CpuidBits {
        CpuidBits::from_feature_words(&v).expect("valid feature words")
    }

    #[test]
    fn features_qemu_enabled_beyond_the_model_become_required() {
        let mut cpu = custom("qemu64", CpuCheck::None, &[]);

        let applied = update_live(&mut cpu, &bits(qemu64_tcg_words()), &bits(zero_words()));

        assert!(applied.expect("no mismatch to report"));
        assert_eq!(cpu.check, Some(CpuCheck::Full));
        assert_eq!(
            features(&cpu),
            [("require", "hypervisor"), ("require", "lahf_lm")]
        );
    }

    #[test]
    fn filtered_and_missing_model_features_become_disabled() {
        // svm is filtered; cx16 is a qemu64 feature QEMU left out.
        let mut enabled = bits(qemu64_tcg_words());
        enabled.0.insert((1, 0, 2), 0x8000_0001);
        let filtered = bits(json!([
            {"cpuid-register": "ECX", "cpuid-input-eax": 2147483649u64, "features": 4}
        ]));
        let mut cpu = custom(
            "qemu64",
            CpuCheck::Partial,
            &[(CpuFeaturePolicy::Require, "hypervisor")],
        );

        update_live(&mut cpu, &enabled, &filtered).expect("no mismatch to report");

        assert_eq!(
            features(&cpu),
            [
                ("require", "hypervisor"),
                ("disable", "cx16"),
                ("require", "lahf_lm"),
                ("disable", "svm")
            ]
        );
    }

    #[test]
    fn a_disabled_feature_qemu_honoured_stays_disabled() {
        let mut enabled = bits(qemu64_tcg_words());
        enabled.0.insert((0x8000_0001, 0, 2), 0x1); // svm off, lahf_lm on
        let mut cpu = custom(
            "qemu64",
            CpuCheck::None,
            &[
                (CpuFeaturePolicy::Disable, "svm"),
                (CpuFeaturePolicy::Require, "lahf-lm"),
            ],
        );

        update_live(&mut cpu, &enabled, &bits(zero_words())).expect("no mismatch to report");

        assert_eq!(
            features(&cpu),
            [
                ("disable", "svm"),
                ("require", "lahf-lm"),
                ("require", "hypervisor")
            ]
        );
    }

    #[test]
    fn a_full_check_cpu_qemu_built_differently_fails() {
        let mut cpu = custom("qemu64", CpuCheck::Full, &[]);

        let err = update_live(&mut cpu, &bits(qemu64_tcg_words()), &bits(zero_words()))
            .expect_err("extra features must be reported");

        assert_eq!(
            err.to_string(),
            "operation failed: guest CPU doesn't match specification: extra features: hypervisor,lahf_lm"
        );
        assert!(cpu.features.is_empty());
    }

    #[test]
    fn a_full_check_cpu_qemu_built_as_specified_passes() {
        let mut cpu = custom(
            "qemu64",
            CpuCheck::Full,
            &[
                (CpuFeaturePolicy::Require, "hypervisor"),
                (CpuFeaturePolicy::Require, "lahf_lm"),
            ],
        );
        let before = cpu.clone();

        let applied = update_live(&mut cpu, &bits(qemu64_tcg_words()), &bits(zero_words()));

        assert!(applied.expect("QEMU built what was asked"));
        assert_eq!(cpu, before);
    }

    #[test]
    fn host_passthrough_and_modelless_cpus_are_left_alone() {
        let mut passthrough = Cpu {
            mode: Some(CpuMode::HostPassthrough),
            ..Cpu::default()
        };
        let mut topology_only = Cpu::default();
        let words = bits(qemu64_tcg_words());

        let a = update_live(&mut passthrough, &words, &CpuidBits::default());
        let b = update_live(&mut topology_only, &words, &CpuidBits::default());

        assert!(!a.unwrap() && !b.unwrap());
        assert_eq!(passthrough.check, None);
        assert!(topology_only.features.is_empty());
    }

    #[test]
    fn malformed_feature_words_are_rejected() {
        let bad_register = json!([{"cpuid-register": "EQX", "cpuid-input-eax": 1, "features": 1}]);
        let no_features = json!([{"cpuid-register": "EAX", "cpuid-input-eax": 1}]);

        assert!(CpuidBits::from_feature_words(&bad_register).is_err());
        assert!(CpuidBits::from_feature_words(&no_features).is_err());
        assert!(CpuidBits::from_feature_words(&json!({})).is_err());
    }

    #[test]
    fn first_vcpu_path_prefers_cpu_index_zero() {
        let reply = json!([
            {"cpu-index": 1, "qom-path": "/machine/peripheral/vcpu1"},
            {"cpu-index": 0, "qom-path": "/machine/unattached/device[0]"}
        ]);

        assert_eq!(
            first_vcpu_path(&reply).as_deref(),
            Some("/machine/unattached/device[0]")
        );
        assert_eq!(first_vcpu_path(&json!([])), None);
    }
}
