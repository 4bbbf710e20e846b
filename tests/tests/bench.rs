//! `qvisor bench --smoke`: every section of the benchmark suite runs once
//! with small sizes and writes its JSON and SVG. This proves the suite
//! still works; it does not hold the figures to their targets (benchmarks
//! are not part of the pass/fail run).

use std::path::Path;
use std::process::Command;

use qvisor_tests::guest::testguest;
use qvisor_tests::{bin, TempDir};

/// QEMU processes whose command line mentions `dir`.
fn qemus_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    (cmd.contains("qemu-system") && cmd.contains(&needle)).then_some(cmd)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_smoke_run_measures_every_section_and_writes_json_and_svg() {
    if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
        eprintln!("SKIP: /usr/bin/qemu-system-x86_64 is not installed");
        return;
    }
    let tmp = TempDir::new("bench");
    let out_dir = tmp.path().join("out");
    let work = tmp.path().join("work");
    let out = Command::new(bin("qvisor"))
        .args(["bench", "--smoke", "--peer", "off", "--out"])
        .arg(&out_dir)
        .arg("--work-dir")
        .arg(&work)
        .arg("--testguest")
        .arg(testguest())
        .output()
        .expect("run qvisor bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "qvisor bench --smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("machine: "), "no machine line:\n{stdout}");

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("results.json")).expect("results.json"),
    )
    .expect("results.json is JSON");
    assert_eq!(json["mode"], "smoke");
    assert!(json["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    let measures = json["measures"].as_array().expect("measures");
    for section in 1..=7u64 {
        assert!(
            measures.iter().any(|m| m["section"] == section),
            "no measure of section {section}:\n{stdout}"
        );
    }
    for m in measures {
        let samples = m["a"]["samples"].as_array().map_or(0, Vec::len);
        assert!(samples >= 1, "measure {} has no sample", m["id"]);
        if !m["b"].is_null() {
            assert!(
                !m["pairwise"]["ratios"].as_array().is_none_or(Vec::is_empty),
                "measure {} has a baseline but no pair",
                m["id"]
            );
        }
    }
    for id in [
        "start-tcg",
        "boot-tcg",
        "rss-idle",
        "probe-cold",
        "cmdline-build",
    ] {
        assert!(
            measures.iter().any(|m| m["id"] == id),
            "measure {id} missing:\n{stdout}"
        );
    }
    let svg = std::fs::read_to_string(out_dir.join("start-latency.svg")).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("<circle"), "{svg}");

    let left = qemus_under(tmp.path());
    assert!(left.is_empty(), "QEMU left running: {left:?}");
}
