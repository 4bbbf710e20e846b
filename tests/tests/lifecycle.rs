//! Domain lifecycle on real QEMU, in embedded roots, through the `qvisor` CLI.

use std::time::Duration;

use qvisor_tests::guest::{alive, kvm_usable, DomainXml, Embedded};

#[test]
fn the_test_guest_boots_under_tcg_and_ends_shut_off() {
    let e = Embedded::new("boot");
    let serial = e.scratch().join("serial.log");
    e.define(
        &DomainXml::new("boot")
            .boot_test_guest()
            .serial_file(&serial),
    );
    let out = e.ok(&["start", "boot", "--console"]);
    assert!(
        out.contains("TESTGUEST-BOOTED"),
        "console output:\n{out}\n{}",
        e.logs()
    );
    assert!(out.contains("TESTGUEST-POWEROFF"), "console output:\n{out}");
    assert!(
        e.wait_state("boot", "shut off", Duration::from_secs(30)),
        "domain did not end shut off:\n{}",
        e.logs()
    );
    assert_eq!(
        e.ok(&["domstate", "--reason", "boot"]).trim(),
        "shut off (shutdown)"
    );
    assert!(e.qemu_pids().is_empty(), "QEMU left running");
}

#[test]
fn a_kvm_domain_starts_suspends_resumes_and_is_destroyed() {
    if !kvm_usable() {
        eprintln!("SKIP: /dev/kvm is not usable on this host");
        return;
    }
    let e = Embedded::new("kvm");
    e.define(&DomainXml::new("k").kvm());
    e.ok(&["start", "k"]);
    assert_eq!(e.state("k"), "running");
    let kvm = e.ok(&["qemu-monitor-command", "k", r#"{"execute":"query-kvm"}"#]);
    assert!(kvm.contains(r#""enabled":true"#), "query-kvm: {kvm}");
    e.ok(&["suspend", "k"]);
    assert_eq!(e.state("k"), "paused");
    e.ok(&["resume", "k"]);
    assert_eq!(e.state("k"), "running");
    e.ok(&["destroy", "k"]);
    assert_eq!(
        e.ok(&["domstate", "--reason", "k"]).trim(),
        "shut off (destroyed)"
    );
    assert!(e.qemu_pids().is_empty());
}

#[test]
fn running_guests_survive_a_killed_supervisor_and_are_reattached() {
    let e = Embedded::new("reconnect");
    for n in ["r1", "r2"] {
        e.define(&DomainXml::new(n));
        e.ok(&["start", n]);
    }
    let sup = e.supervisor_pid().expect("supervisor running");
    // SAFETY: signalling a process has no memory-safety implications.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(sup) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(e.qemu_pids().len(), 2, "QEMUs must survive the supervisor");
    // Re-open: a new supervisor re-attaches to both.
    let list = e.ok(&["list"]);
    for n in ["r1", "r2"] {
        assert!(
            list.contains(n) && e.state(n) == "running",
            "{list}\n{}",
            e.logs()
        );
    }
    let status = e.ok(&[
        "qemu-monitor-command",
        "r1",
        r#"{"execute":"query-status"}"#,
    ]);
    assert!(status.contains("running"), "{status}");
    e.ok(&["destroy", "r1"]);
    e.ok(&["destroy", "r2"]);
    assert_eq!(e.state("r1"), "shut off");
    assert!(e.qemu_pids().is_empty(), "QEMU left running");
}

#[test]
fn twenty_domains_start_in_parallel_and_leave_nothing_behind() {
    let e = Embedded::new("par20");
    let names: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    for n in &names {
        e.define(&DomainXml::new(n));
    }
    std::thread::scope(|s| {
        for n in &names {
            let e = &e;
            s.spawn(move || e.ok(&["start", n]));
        }
    });
    for n in &names {
        assert_eq!(e.state(n), "running", "{n}");
    }
    std::thread::scope(|s| {
        for n in &names {
            let e = &e;
            s.spawn(move || e.ok(&["destroy", n]));
        }
    });
    assert!(e.qemu_pids().is_empty(), "QEMU left running");
    let run = e.root().join("run/qemu");
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xml") || n.contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "status/temp files left: {leftovers:?}"
    );
    let lib = e.root().join("lib/qemu");
    let dirs: Vec<_> = std::fs::read_dir(&lib)
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("domain-"))
        .collect();
    assert!(dirs.is_empty(), "private dirs left: {dirs:?}");
}

#[test]
fn bad_input_gets_clear_errors_and_leaves_nothing_started() {
    let e = Embedded::new("bad");
    // Missing disk file.
    let missing = e.scratch().join("nope.img");
    e.define(&DomainXml::new("nodisk").devices(&format!(
        "    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>\n",
        missing.display()
    )));
    let err = e.fails(&["start", "nodisk"]);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert_eq!(e.state("nodisk"), "shut off");
    assert!(e.qemu_pids().is_empty());

    // Unknown emulator.
    let xml = DomainXml::new("noemu")
        .to_xml()
        .replace("/usr/bin/qemu-system-x86_64", "/nonexistent/qemu");
    let f = e.scratch().join("noemu.xml");
    std::fs::write(&f, xml).unwrap();
    let err = e.fails(&["define", &f.to_string_lossy()]);
    assert!(err.contains("/nonexistent/qemu"), "{err}");

    // Duplicate name with another UUID, and duplicate UUID with another name.
    e.define(&DomainXml::new("dup"));
    let uuid = e.ok(&["domuuid", "dup"]).trim().to_string();
    let other = DomainXml::new("dup").to_xml().replace(
        "<name>dup</name>",
        "<name>dup</name><uuid>11111111-2222-3333-4444-555555555555</uuid>",
    );
    let f = e.scratch().join("dup2.xml");
    std::fs::write(&f, other).unwrap();
    let err = e.fails(&["define", &f.to_string_lossy()]);
    assert!(err.contains("already exists"), "{err}");
    let same_uuid = DomainXml::new("dup-other").to_xml().replace(
        "<name>dup-other</name>",
        &format!("<name>dup-other</name><uuid>{uuid}</uuid>"),
    );
    std::fs::write(&f, same_uuid).unwrap();
    let err = e.fails(&["define", &f.to_string_lossy()]);
    assert!(err.contains("already defined with uuid"), "{err}");

    // Undefining a running persistent domain makes it transient.
    e.ok(&["start", "dup"]);
    e.ok(&["undefine", "dup"]);
    let info = e.ok(&["dominfo", "dup"]);
    assert!(info.contains("Persistent:     no"), "{info}");
    e.ok(&["destroy", "dup"]);
    let err = e.fails(&["dominfo", "dup"]);
    assert!(err.contains("Domain not found"), "{err}");

    // Relative embed root.
    let out = std::process::Command::new(qvisor_tests::bin("qvisor"))
        .args(["-c", "qemu:///embed?root=relative/dir", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be absolute"));

    // Over-long socket path.
    let long = format!("/tmp/{}", "x".repeat(90));
    let out = std::process::Command::new(qvisor_tests::bin("qvisor"))
        .args(["-c", &format!("qemu:///embed?root={long}"), "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("107") && err.contains("bytes"), "{err}");
    assert!(
        !std::path::Path::new(&long).exists(),
        "nothing created for a refused root"
    );
}

#[test]
fn qemu_conf_settings_reach_qemu() {
    let e = Embedded::new("conf");
    std::fs::create_dir_all(e.root().join("etc")).unwrap();
    std::fs::write(
        e.root().join("etc/qemu.conf"),
        "# test settings\nmax_files = 2048\nmax_processes = 4096\nvnc_listen = \"0.0.0.0\"\nlog_timestamp = 0\n",
    )
    .unwrap();
    e.define(&DomainXml::new("c").devices("    <graphics type='vnc' autoport='yes'/>\n"));
    e.ok(&["start", "c"]);
    let pid = *e.qemu_pids().first().expect("QEMU running");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("Max open files").contains("2048"), "{limits}");
    assert!(line("Max processes").contains("4096"), "{limits}");
    let cmdline =
        String::from_utf8(std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).unwrap();
    let args: Vec<&str> = cmdline.split('\0').collect();
    let vnc = args
        .iter()
        .position(|a| *a == "-vnc")
        .map(|i| args[i + 1])
        .expect("-vnc");
    assert!(vnc.starts_with("0.0.0.0:"), "-vnc {vnc}");
    assert!(
        !args.contains(&"-msg"),
        "log_timestamp = 0 drops -msg timestamp=on"
    );
    e.ok(&["destroy", "c"]);
}

#[test]
fn a_broken_qemu_conf_is_reported_with_its_line() {
    let e = Embedded::new("badconf");
    std::fs::create_dir_all(e.root().join("etc")).unwrap();
    std::fs::write(
        e.root().join("etc/qemu.conf"),
        "vnc_listen = \"0.0.0.0\"\nvnc_tls = \"yes\"\n",
    )
    .unwrap();
    let err = e.fails(&["list"]);
    assert!(err.contains("vnc_tls") && err.contains(":2:"), "{err}");
}

#[test]
fn autostart_domains_start_when_the_driver_starts() {
    let e = Embedded::new("autostart");
    e.define(&DomainXml::new("auto"));
    e.define(&DomainXml::new("manual"));
    let out = e.ok(&["autostart", "auto"]);
    assert!(out.contains("marked as autostarted"), "{out}");
    assert!(e
        .ok(&["dominfo", "auto"])
        .contains("Autostart:      enable"));
    // Stop the supervisor: the next call starts a new driver, which honours
    // autostart.
    let sup = e.supervisor_pid().expect("supervisor running");
    // SAFETY: signalling a process has no memory-safety implications.
    unsafe { libc::kill(sup, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(sup) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(e.state("auto"), "running", "{}", e.logs());
    assert_eq!(e.state("manual"), "shut off");
    e.ok(&["autostart", "--disable", "auto"]);
    assert!(e
        .ok(&["dominfo", "auto"])
        .contains("Autostart:      disable"));
    e.ok(&["destroy", "auto"]);
}

#[test]
fn the_console_of_a_pty_serial_shows_the_guest() {
    let e = Embedded::new("pty");
    e.define(
        &DomainXml::new("pty")
            .boot_test_guest()
            .devices("    <serial type='pty'><target port='0'/></serial>\n"),
    );
    let out = e.ok(&["start", "pty", "--console"]);
    assert!(
        out.contains("TESTGUEST-BOOTED"),
        "console output:\n{out}\n{}",
        e.logs()
    );
    assert!(e.wait_state("pty", "shut off", Duration::from_secs(30)));
}
