//! qvisord driven by the stock clients: `virsh event --loop`, a python3-libvirt
//! script, 50 concurrent virsh clients, the read-only socket and peer
//! credentials, SIGTERM with running guests, the pidfile and the idle timeout.
//!
//! Each test starts its own daemon on temp sockets with its tree under a temp
//! root; guests are TCG domains that idle in SeaBIOS. Tests skip with a
//! printed reason when virsh (or python3-libvirt) is not installed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use qvisor_rpc::server::MAX_IDLE_HANDLER_THREADS;
use qvisor_tests::daemon::{run_timeout, virsh, virsh_available, Daemon};
use qvisor_tests::guest::{alive, DomainXml};

#[test]
fn virsh_event_loop_sees_a_domain_driven_from_another_virsh() {
    if !virsh_available() {
        return;
    }
    let d = Daemon::start("events");
    d.define(&DomainXml::new("ev"));
    let mut watcher = Command::new("virsh")
        .args(["-c", &d.uri(), "event", "--loop", "--all"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn virsh event");
    let (tx, rx) = mpsc::channel();
    let stdout = watcher.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The watcher has registered once the daemon pushes an event to it:
    // define other domains until one's Defined event shows.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = false;
    let mut poke = 0;
    while !ready && Instant::now() < deadline {
        poke += 1;
        d.define(&DomainXml::new(&format!("poke{poke}")));
        ready = rx
            .recv_timeout(Duration::from_millis(300))
            .is_ok_and(|l| l.contains("Defined Added"));
    }
    assert!(ready, "virsh event never saw the domain being defined");
    while rx.try_recv().is_ok() {}

    for cmd in ["start", "suspend", "resume", "destroy"] {
        d.ok(&[cmd, "ev"]);
    }
    let want = [
        "Started Booted",
        "Suspended Paused",
        "Resumed Unpaused",
        "Stopped Destroyed",
    ];
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && !want
            .iter()
            .all(|w| seen.iter().any(|s: &String| s.contains(w)))
    {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let lifecycle: Vec<&str> = seen
        .iter()
        .filter_map(|l| l.strip_prefix("event 'lifecycle' for domain 'ev': "))
        .collect();
    // libvirt's order for start, suspend, resume, destroy (the Resumed
    // before Started is the start's own `cont`).
    assert_eq!(
        lifecycle,
        [
            "Resumed Unpaused",
            "Started Booted",
            "Suspended Paused",
            "Resumed Unpaused",
            "Shutdown Finished after host request",
            "Stopped Destroyed",
        ],
        "events seen: {seen:#?}\n{}",
        d.log()
    );
}

/// `/usr/bin/python3` when it can import the libvirt bindings (the first
/// `python3` on PATH on these machines cannot).
fn python_with_libvirt() -> Option<&'static str> {
    let py = "/usr/bin/python3";
    let ok = Command::new(py)
        .args(["-c", "import libvirt"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: {py} cannot import libvirt (Debian: apt-get install python3-libvirt)");
    }
    ok.then_some(py)
}

const PYTHON_SCRIPT: &str = r#"
import sys, threading, time
import libvirt

uri, xml_path = sys.argv[1], sys.argv[2]
libvirt.virEventRegisterDefaultImpl()

def loop():
    while True:
        libvirt.virEventRunDefaultImpl()

threading.Thread(target=loop, daemon=True).start()

conn = libvirt.open(uri)
events = []
cond = threading.Condition()

def on_lifecycle(conn, dom, event, detail, opaque):
    with cond:
        events.append((dom.name(), event, detail))
        cond.notify_all()

cb = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None)

dom = conn.defineXML(open(xml_path).read())
assert dom.name() == "py", dom.name()
assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN], dom.state()
assert not dom.isActive()
dom.create()
assert dom.state() == [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED], dom.state()
assert dom.ID() > 0
assert "<domain" in dom.XMLDesc(0)
dom.destroy()
assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED], dom.state()
dom.undefine()
assert "py" not in [d.name() for d in conn.listAllDomains()]

want = [
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_DEFINED_ADDED),
    (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED),
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED),
]
deadline = time.time() + 20
with cond:
    while not all(("py",) + w in events for w in want) and time.time() < deadline:
        cond.wait(0.2)
missing = [w for w in want if ("py",) + w not in events]
assert not missing, "missing events %r, got %r" % (missing, events)
conn.domainEventDeregisterAny(cb)
conn.close()
print("OK", len(events), "events")
"#;

#[test]
fn a_python_libvirt_script_defines_starts_destroys_and_gets_events() {
    if !virsh_available() {
        return;
    }
    let Some(py) = python_with_libvirt() else {
        return;
    };
    let d = Daemon::start("python");
    let script = d.scratch().join("drive.py");
    let xml = d.scratch().join("py.xml");
    std::fs::write(&script, PYTHON_SCRIPT).expect("write script");
    std::fs::write(&xml, DomainXml::new("py").to_xml()).expect("write xml");
    let mut cmd = Command::new(py);
    cmd.arg(&script).arg(d.uri()).arg(&xml);
    let out = run_timeout(cmd, Duration::from_secs(120)).expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("OK"),
        "python3-libvirt script failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
}

/// The number of threads of a process.
fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |rd| rd.count())
}

fn thread_names(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn fifty_concurrent_virsh_clients_list_and_dump_while_domains_start_and_stop() {
    if !virsh_available() {
        return;
    }
    const CLIENTS: usize = 50;
    const ROUNDS: usize = 3;
    let d = Arc::new(Daemon::start("concurrent"));
    let names = ["c0", "c1", "c2", "c3"];
    for n in names {
        d.define(&DomainXml::new(n));
    }
    let pid = d.pid().expect("daemon pid");
    let threads_before = threads(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let cycler = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut cycles = 0;
            while !stop.load(Ordering::Relaxed) {
                for n in names {
                    d.ok(&["start", n]);
                }
                for n in names {
                    d.ok(&["destroy", n]);
                }
                cycles += 1;
            }
            cycles
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let uri = d.uri();
            let name = names[i % names.len()];
            std::thread::spawn(move || {
                // One connection per client, several calls on it.
                let script = (0..ROUNDS)
                    .map(|_| format!("list --all; dumpxml {name}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let started = Instant::now();
                let r = virsh(&uri, false, &[&script]);
                (i, r, started.elapsed())
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for c in clients {
        let (i, r, took) = c.join().expect("client thread");
        slowest = slowest.max(took);
        let lists = r.stdout.matches(" Id   Name").count();
        let dumps = r.stdout.matches("</domain>").count();
        if r.code != 0 || lists != ROUNDS || dumps != ROUNDS {
            failures.push(format!(
                "client {i}: exit {} lists {lists} dumps {dumps}: {}",
                r.code,
                r.stderr.trim()
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let cycles = cycler.join().expect("cycler thread");
    eprintln!(
        "{CLIENTS} clients x {ROUNDS} rounds while {cycles} start/stop cycles of {} domains ran; slowest client {slowest:?}",
        names.len()
    );
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), d.log());
    assert!(cycles >= 1, "no start/stop cycle completed");
    // Every client's thread is gone again, or parked for the next client:
    // the daemon keeps at most MAX_IDLE_HANDLER_THREADS, plus the thread
    // that trims the heap after a burst.
    let allowed = threads_before + MAX_IDLE_HANDLER_THREADS + 1;
    let serving = || {
        thread_names(pid)
            .iter()
            .filter(|n| n.starts_with("rpc-client"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while (threads(pid) > allowed || serving() > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        threads(pid) <= allowed && serving() == 0,
        "daemon threads: {threads_before} before, {} after (at most {allowed} expected): {:?}",
        threads(pid),
        thread_names(pid)
    );
}

#[test]
fn the_read_only_socket_answers_queries_and_refuses_changes() {
    if !virsh_available() {
        return;
    }
    let d = Daemon::start("ro");
    d.define(&DomainXml::new("ro1"));
    let ro = d.ro_uri();
    // Queries work on the read-only socket.
    let list = virsh(&ro, false, &["list", "--all"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains("ro1"), "{}", list.stdout);
    let xml = virsh(&ro, false, &["dumpxml", "ro1"]);
    assert_eq!(xml.code, 0, "{}", xml.stderr);
    // Changes are refused with libvirt's error, and the domain is untouched.
    for args in [
        &["start", "ro1"][..],
        &["undefine", "ro1"],
        &["destroy", "ro1"],
        &[
            "qemu-monitor-command",
            "ro1",
            r#"{"execute":"query-status"}"#,
        ],
    ] {
        let r = virsh(&ro, false, args);
        assert_ne!(r.code, 0, "{args:?} succeeded on the read-only socket");
        assert!(
            r.stderr
                .contains("operation forbidden: read only access prevents"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(d.state("ro1"), "shut off");
    // virsh -r on the read-write socket opens the connection read-only too.
    let r = virsh(&d.uri(), true, &["start", "ro1"]);
    assert_ne!(r.code, 0, "virsh -r start succeeded");
    assert!(
        r.stderr.contains("read only access prevents"),
        "{}",
        r.stderr
    );
    let r = virsh(&d.uri(), true, &["list", "--all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A uid that is not ours, to connect as.
const NOBODY: u32 = 65534;

fn virsh_as_nobody(uri: &str, args: &[&str]) -> qvisor_tests::daemon::VirshRun {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "virsh",
        "-c",
        uri,
    ])
    .args(args)
    .env("HOME", "/tmp");
    let o = run_timeout(cmd, Duration::from_secs(30)).expect("run setpriv virsh");
    qvisor_tests::daemon::VirshRun {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn a_per_user_daemon_refuses_clients_of_another_uid() {
    if !virsh_available() {
        return;
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: connecting as another uid needs root (setpriv)");
        return;
    }
    // A daemon serving a root (like qemu:///session) accepts only its own
    // uid, even when the socket's mode lets anyone connect.
    let d = Daemon::start_with("peercred", &["--socket-mode", "0777"]);
    assert_eq!(d.virsh(&["list", "--all"]).code, 0);
    let r = virsh_as_nobody(&d.uri(), &["list", "--all"]);
    assert_ne!(r.code, 0, "uid {NOBODY} was served: {}", r.stdout);
    // The read-only socket (0777) is no way around it.
    let r = virsh_as_nobody(&d.ro_uri(), &["list", "--all"]);
    assert_ne!(r.code, 0, "uid {NOBODY} was served read-only: {}", r.stdout);
    // The daemon is unaffected.
    assert_eq!(d.virsh(&["list", "--all"]).code, 0, "{}", d.log());
}

#[test]
fn sigterm_leaves_guests_running_and_the_next_daemon_reattaches() {
    if !virsh_available() {
        return;
    }
    let mut d = Daemon::start("sigterm");
    let pidfile = d.pidfile().to_path_buf();
    let written: i32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile written")
        .trim()
        .parse()
        .expect("pid in pidfile");
    assert_eq!(Some(written), d.pid());
    for n in ["s1", "s2"] {
        d.define(&DomainXml::new(n));
        d.ok(&["start", n]);
    }
    d.ok(&["suspend", "s2"]);
    let qemus = d.qemu_pids();
    assert_eq!(qemus.len(), 2, "{}", d.log());

    let status = d.terminate();
    assert!(
        status.success(),
        "qvisord exit on SIGTERM: {status}\n{}",
        d.log()
    );
    assert!(!pidfile.exists(), "pidfile left behind");
    assert!(!d.socket().exists(), "socket left behind");
    for p in &qemus {
        assert!(alive(*p), "QEMU {p} died with the daemon");
    }

    d.spawn();
    let list = d.ok(&["list", "--all"]);
    assert!(list.contains("s1") && list.contains("s2"), "{list}");
    assert_eq!(d.state("s1"), "running");
    assert_eq!(d.state("s2"), "paused");
    // Re-attached for real: the monitor answers and a destroy stops QEMU.
    let status = d.ok(&[
        "qemu-monitor-command",
        "s1",
        r#"{"execute":"query-status"}"#,
    ]);
    assert!(status.contains(r#""running":true"#), "{status}");
    d.ok(&["resume", "s2"]);
    assert_eq!(d.state("s2"), "running");
    for n in ["s1", "s2"] {
        d.ok(&["destroy", n]);
    }
    assert!(d.qemu_pids().is_empty(), "QEMU left after destroy");
    assert_eq!(qemus.iter().filter(|p| alive(**p)).count(), 0);
}

#[test]
fn an_idle_daemon_exits_after_its_timeout_but_not_while_a_guest_runs() {
    if !virsh_available() {
        return;
    }
    let mut d = Daemon::start_with("timeout", &["--timeout", "2"]);
    d.define(&DomainXml::new("t1"));
    d.ok(&["start", "t1"]);
    // A running guest keeps it alive past the timeout.
    std::thread::sleep(Duration::from_secs(4));
    assert!(d.running(), "exited with a running guest:\n{}", d.log());
    d.ok(&["destroy", "t1"]);
    // An open connection keeps it alive too.
    let mut held = Command::new("virsh")
        .args(["-c", &d.uri()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn interactive virsh");
    std::thread::sleep(Duration::from_secs(4));
    let still = d.running();
    drop(held.stdin.take());
    let _ = held.wait();
    assert!(still, "exited with a client connected:\n{}", d.log());
    // Idle: gone within the timeout plus slack, pidfile removed.
    let status = d.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "no clean idle exit: {status:?}\n{}",
        d.log()
    );
    assert!(!d.pidfile().exists(), "pidfile left behind");
    assert!(!Path::new(d.socket()).exists(), "socket left behind");
}
