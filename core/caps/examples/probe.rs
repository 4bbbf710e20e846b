//! Probes QEMU binaries live and prints their capability-cache documents,
//! with timing; or compares a probe's flags with another cache document.
//!
//! ```text
//! cargo run --release -p qvisor-caps --example probe -- [--kvm] [--compare CACHE.xml] BINARY...
//! ```
//! `--kvm` says KVM is usable (in qvisor the accel-kvm plugin decides).

use std::path::PathBuf;
use std::time::Instant;

use qvisor_caps::host::HostFacts;
use qvisor_caps::live::{probe_binaries, ProbeOptions};
use qvisor_caps::QemuCaps;

fn main() -> anyhow::Result<()> {
    let mut kvm = false;
    let mut compare = None;
    let mut host_caps = false;
    let mut domcaps = false;
    let mut binaries = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kvm" => kvm = true,
            "--compare" => compare = args.next(),
            "--host-caps" => host_caps = true,
            "--domcaps" => domcaps = true,
            _ => binaries.push(PathBuf::from(a)),
        }
    }
    let opts = ProbeOptions {
        kvm_usable: kvm,
        host: HostFacts::read(),
        ..Default::default()
    };
    let start = Instant::now();
    let results = probe_binaries(&binaries, &opts);
    let elapsed = start.elapsed();
    if host_caps {
        use qvisor_caps::hostcaps::{
            host_capabilities_xml, read_host_facts, GuestEmulator, SecModel,
        };
        let all: Vec<QemuCaps> = results.into_iter().collect::<Result<_, _>>()?;
        let guests: Vec<GuestEmulator> = all
            .iter()
            .map(|c| GuestEmulator {
                arch: c.arch.clone(),
                caps: c,
            })
            .collect();
        let none = SecModel {
            model: "none".into(),
            doi: "0".into(),
            base_labels: vec![],
        };
        print!(
            "{}",
            host_capabilities_xml(&read_host_facts(vec![none]), &guests)
        );
        return Ok(());
    }
    for (b, r) in binaries.iter().zip(results) {
        let caps = r?;
        if domcaps {
            use qvisor_caps::domcaps::{domain_capabilities_xml, host_model, DomCapsHostFacts};
            let host = DomCapsHostFacts {
                host_arch: "x86_64".into(),
                firmware_auto: vec!["efi".into()],
                loaders: vec!["/usr/share/OVMF/OVMF_CODE_4M.fd".into()],
                swtpm: Some((true, true)),
                ..Default::default()
            };
            let accel = caps.preferred_accel().unwrap_or(qvisor_caps::Accel::Tcg);
            let hm = host_model(&caps, accel);
            print!(
                "{}",
                domain_capabilities_xml(&caps, None, None, None, &host, hm.as_ref())?
            );
            continue;
        }
        match &compare {
            Some(path) => {
                let other = QemuCaps::load_cache_file(path)?;
                let missing: Vec<_> = other.flags.iter().filter(|f| !caps.has(*f)).collect();
                let extra: Vec<_> = caps.flags.iter().filter(|f| !other.has(*f)).collect();
                println!(
                    "{}: {} flags; vs {path}: {} only there, {} only here",
                    b.display(),
                    caps.flags.len(),
                    missing.len(),
                    extra.len()
                );
                for f in missing {
                    println!("  - {f}");
                }
                for f in extra {
                    println!("  + {f}");
                }
            }
            None => print!("{}", caps.to_cache_xml()),
        }
    }
    eprintln!(
        "probed {} binaries in {:.0} ms",
        binaries.len(),
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}
