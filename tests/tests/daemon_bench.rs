//! Measurements, not timed tests (ignored by default): qvisord next to the
//! real libvirtd in the same run, with the same virsh binary.
//!
//! ```text
//! cargo test --release -p qvisor-tests --test daemon_bench -- --ignored --nocapture
//! ```
//!
//! - `virsh list --all` with 200 defined domains: the daemon's CPU time per
//!   call (utime+stime of the daemon process over many calls; virsh asks
//!   for every domain's state, so one `list` is ~210 calls) and wall time;
//! - the daemon's RSS idle (after one client came and went) and with 20
//!   running guests, for a daemon restarted over an existing tree (its
//!   capabilities cache filled, as on a real host), once with every plugin
//!   of the build directory and once with a `plugins.ron` naming only the
//!   plugins a Linux host without SELinux/AppArmor uses.
//!
//! libvirtd is measured when `../shared/peer/libvirt-peer.sh` can start it;
//! the domains it gets are removed again. Defining goes through `virsh
//! define`, which can take long on hosts where libvirtd re-probes QEMU on
//! every lookup. `QVISOR_BENCH_CALLS` sets the number of `list` calls
//! (default 100).

use std::time::{Duration, Instant};

use qvisor_tests::daemon::{cpu_ticks, rss_kib, run_timeout, virsh, virsh_available, Daemon, Peer};
use qvisor_tests::guest::DomainXml;

const DEFINED: usize = 200;
const RUNNING: usize = 20;

/// Clock ticks per second of `/proc/PID/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Runs many virsh commands over a few connections (no per-call timeout:
/// a libvirtd that re-probes QEMU takes seconds per define).
fn batch(uri: &str, commands: &[String]) {
    for chunk in commands.chunks(20) {
        let mut cmd = std::process::Command::new("virsh");
        cmd.args(["-c", uri, &chunk.join("; ")]);
        let out = run_timeout(cmd, Duration::from_secs(3600)).expect("run virsh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("qvbench-{i:03}")).collect()
}

fn define_all(uri: &str, xml_dir: &std::path::Path, names: &[String]) {
    let defines: Vec<String> = names
        .iter()
        .map(|n| format!("define {}", xml_dir.join(format!("{n}.xml")).display()))
        .collect();
    batch(uri, &defines);
}

fn remove_all(uri: &str, names: &[String], running: usize) {
    let mut cmds: Vec<String> = names[..running]
        .iter()
        .map(|n| format!("destroy {n}"))
        .collect();
    cmds.extend(names.iter().map(|n| format!("undefine {n}")));
    batch(uri, &cmds);
}

/// Daemon CPU and wall time per `virsh list --all`.
fn list_cost(pid: i32, uri: &str) -> (f64, f64) {
    let calls: usize = std::env::var("QVISOR_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let t0 = cpu_ticks(pid).unwrap_or(0);
    let start = Instant::now();
    for _ in 0..calls {
        let r = virsh(uri, false, &["list", "--all"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let wall = start.elapsed();
    let t1 = cpu_ticks(pid).unwrap_or(0);
    (
        (t1 - t0) as f64 * 1000.0 / ticks_per_second() / calls as f64,
        wall.as_secs_f64() * 1000.0 / calls as f64,
    )
}

/// RSS idle and with `RUNNING` guests started, in MB.
fn rss_running(pid: i32, uri: &str, xml_dir: &std::path::Path) -> (f64, f64) {
    assert_eq!(virsh(uri, false, &["list", "--all"]).code, 0);
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pid).unwrap_or(0);
    let names = names(RUNNING);
    define_all(uri, xml_dir, &names);
    let starts: Vec<String> = names.iter().map(|n| format!("start {n}")).collect();
    batch(uri, &starts);
    std::thread::sleep(Duration::from_secs(1));
    let running = rss_kib(pid).unwrap_or(0);
    remove_all(uri, &names, RUNNING);
    (idle as f64 / 1024.0, running as f64 / 1024.0)
}

/// A qvisord over a tree whose capabilities cache is already filled:
/// started once, used, stopped, started again.
fn warm_daemon(tag: &str, files: &[(&str, &str)], xml_dir: &std::path::Path) -> Daemon {
    let mut d = Daemon::start_with_files(tag, files, &[]);
    define_all(&d.uri(), xml_dir, &names(1));
    remove_all(&d.uri(), &names(1), 0);
    d.terminate();
    d.spawn();
    d
}

/// The plugins a Linux host without SELinux or AppArmor uses.
const LINUX_PLUGINS: &str = r#"PluginSet(plugins: [
    (file: "libqvisor_accel_kvm.so"),
    (file: "libqvisor_accel_tcg.so"),
    (file: "libqvisor_security_dac.so"),
    (file: "libqvisor_storage.so"),
])"#;

#[test]
#[ignore = "a measurement; run with --ignored --nocapture (release build)"]
fn list_cpu_and_rss_against_libvirtd() {
    if !virsh_available() {
        return;
    }
    let all = names(DEFINED);
    // XML readable by libvirtd's QEMU user too.
    let xml_dir = std::path::PathBuf::from(format!("/var/tmp/qvisor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&xml_dir).expect("create xml dir");
    for n in &all {
        std::fs::write(xml_dir.join(format!("{n}.xml")), DomainXml::new(n).to_xml())
            .expect("write xml");
    }
    let mut report = Vec::new();

    let d = warm_daemon("bench-rss", &[], &xml_dir);
    let pid = d.pid().expect("qvisord pid");
    let (idle, running) = rss_running(pid, &d.uri(), &xml_dir);
    report.push(format!(
        "qvisord  (all build plugins)      RSS idle {idle:5.1} MB, {RUNNING} running {running:5.1} MB"
    ));
    define_all(&d.uri(), &xml_dir, &all);
    let (cpu, wall) = list_cost(pid, &d.uri());
    report.push(format!(
        "qvisord  list --all, {DEFINED} defined: daemon CPU {cpu:6.2} ms/call, wall {wall:6.1} ms/call"
    ));
    drop(d);

    let d = warm_daemon(
        "bench-rss-linux",
        &[("etc/plugins.ron", LINUX_PLUGINS)],
        &xml_dir,
    );
    let (idle, running) = rss_running(d.pid().expect("pid"), &d.uri(), &xml_dir);
    report.push(format!(
        "qvisord  (kvm, tcg, dac, storage) RSS idle {idle:5.1} MB, {RUNNING} running {running:5.1} MB"
    ));
    drop(d);

    match Peer::start() {
        Ok(peer) => match peer.pid() {
            Some(lpid) => {
                let (idle, running) = rss_running(lpid, Peer::URI, &xml_dir);
                report.push(format!(
                    "libvirtd                          RSS idle {idle:5.1} MB, {RUNNING} running {running:5.1} MB"
                ));
                define_all(Peer::URI, &xml_dir, &all);
                let (lcpu, lwall) = list_cost(lpid, Peer::URI);
                remove_all(Peer::URI, &all, 0);
                report.push(format!(
                    "libvirtd list --all, {DEFINED} defined: daemon CPU {lcpu:6.2} ms/call, wall {lwall:6.1} ms/call"
                ));
                report.push(format!(
                    "qvisord/libvirtd daemon CPU per list: {:.3}",
                    cpu / lcpu.max(1e-9)
                ));
            }
            None => report.push("libvirtd: no pid from the peer script; not measured".into()),
        },
        Err(why) => report.push(format!("libvirtd not measured: {why}")),
    }
    let _ = std::fs::remove_dir_all(&xml_dir);
    for line in report {
        eprintln!("{line}");
    }
}
