//! `qvisor-conformance caps REPLIES_FILE`: probes `/usr/bin/qemu-system-x86_64`
//! against a recorded QMP transcript and prints the capability-cache XML.
//! (Like libvirt's harness, a transcript of another target is named
//! `/usr/bin/qemu-system-TARGET`.)
//!
//! Divergences from libvirt's query sequence (requests without a recorded
//! answer, recorded entries never requested) are reported on stderr; set
//! `QVISOR_REPLAY_STRICT=1` to make the first one fatal.

use qvisor_caps::probe::probe_replay;

/// The binary libvirt's harness names in the document.
const BINARY: &str = "/usr/bin/qemu-system-x86_64";

/// Runs the `caps` mode; returns what to print on stdout, or the error message.
pub fn run(args: &[String]) -> Result<String, String> {
    let [path] = args else {
        return Err("usage: qvisor-conformance caps REPLIES_FILE".to_string());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read '{path}': {e}"))?;
    let strict = std::env::var_os("QVISOR_REPLAY_STRICT").is_some_and(|v| v != "0");
    let (mut caps, report) = probe_replay(BINARY, &text, strict).map_err(|e| e.to_string())?;
    if caps.arch != "x86_64" {
        caps.emulator = format!(
            "/usr/bin/qemu-system-{}",
            qvisor_caps::arch::qemu_target_for_arch(&caps.arch)
        );
    }
    for d in &report.unused {
        eprintln!("caps replay: transcript entry never requested: {d}");
    }
    if let Some(microcode) = harness_microcode(path) {
        if caps.has_hw_accel() {
            caps.microcode_version = microcode;
        }
    }
    Ok(caps.to_cache_xml())
}

/// libvirt's harness writes a fake microcode version computed from the file
/// name `caps_VERSION.ARCH.replies`: the byte sum of ARCH times 100000 plus
/// the byte sum of VERSION. The checker ignores it; it is reproduced so that
/// the document equals libvirt's.
fn harness_microcode(path: &str) -> Option<u32> {
    let name = std::path::Path::new(path).file_name()?.to_str()?;
    let stem = name.strip_prefix("caps_")?.strip_suffix(".replies")?;
    let (version, arch) = stem.rsplit_once('.')?;
    let sum = |s: &str| s.bytes().map(u32::from).sum::<u32>();
    Some(sum(arch) * 100_000 + sum(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_microcode_follows_libvirts_harness() {
        // caps_8.0.0.x86_64.xml carries 43100244.
        assert_eq!(
            harness_microcode("/x/caps_8.0.0.x86_64.replies"),
            Some(43_100_244)
        );
        assert_eq!(harness_microcode("/x/other.replies"), None);
    }
}
