//! The stock `virsh` against qvisord and against the real libvirt 9.0 daemon
//! (`../shared/peer/`), command by command, for the same domain XML: every
//! output must be the same except the fields named in [`LEGITIMATE`].
//!
//! Differences that are neither legitimate nor fixed yet are listed in
//! [`KNOWN_GAPS`], each with the part of qvisor that owns it; any other
//! difference fails the test, and a listed gap that no longer shows is
//! reported so the list only shrinks.
//!
//! Skips with a printed reason when virsh or the peer daemon is unavailable
//! (`../shared/peer/libvirt-peer.sh install` provides it).

use std::path::{Path, PathBuf};

use qvisor_tests::daemon::{diff_lines, shared_dir, virsh_available, Daemon, Peer, Side, VirshRun};

/// The domain name both daemons get (unique so a shared peer is not disturbed).
const DOM: &str = "qvisor-cmp-tcg";
/// The transient domain of `create`.
const TRANSIENT: &str = "qvisor-cmp-transient";

/// One virsh command of the script.
struct Step {
    label: &'static str,
    args: Vec<String>,
}

fn step(label: &'static str, args: &[&str]) -> Step {
    Step {
        label,
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// The issue's command list, in the order a user would type them, plus the
/// error paths around them (wrong state, unknown domain).
fn script(files: &Files) -> Vec<Step> {
    let xml = files.persistent.as_str();
    let transient = files.transient.as_str();
    let bad = files.bad_type.as_str();
    let argv = files.argv.as_str();
    vec![
        step("version", &["version"]),
        step("capabilities", &["capabilities"]),
        step("define", &["define", xml]),
        step("list-defined", &["list", "--all"]),
        step("dominfo-inactive", &["dominfo", DOM]),
        step("dumpxml-inactive", &["dumpxml", DOM]),
        step("domstate-inactive", &["domstate", "--reason", DOM]),
        step("suspend-inactive", &["suspend", DOM]),
        step("destroy-inactive", &["destroy", DOM]),
        step(
            "monitor-inactive",
            &["qemu-monitor-command", DOM, r#"{"execute":"query-status"}"#],
        ),
        step("define-again", &["define", xml]),
        step("start", &["start", DOM]),
        step("start-running", &["start", DOM]),
        step("domstate", &["domstate", DOM]),
        step("domstate-reason", &["domstate", "--reason", DOM]),
        step("dominfo", &["dominfo", DOM]),
        step("list-running", &["list", "--all"]),
        step("dumpxml-live", &["dumpxml", DOM]),
        step("dumpxml-live-inactive", &["dumpxml", "--inactive", DOM]),
        step(
            "monitor-pretty",
            &[
                "qemu-monitor-command",
                "--pretty",
                DOM,
                r#"{"execute":"query-status"}"#,
            ],
        ),
        step(
            "monitor",
            &["qemu-monitor-command", DOM, r#"{"execute":"query-status"}"#],
        ),
        step(
            "monitor-qmp-error",
            &[
                "qemu-monitor-command",
                DOM,
                r#"{"execute":"no-such-command"}"#,
            ],
        ),
        step("suspend", &["suspend", DOM]),
        step("domstate-paused", &["domstate", "--reason", DOM]),
        step("dominfo-paused", &["dominfo", DOM]),
        step("suspend-paused", &["suspend", DOM]),
        step("resume", &["resume", DOM]),
        step("domstate-resumed", &["domstate", "--reason", DOM]),
        step("resume-running", &["resume", DOM]),
        step("domstate-still-running", &["domstate", "--reason", DOM]),
        step("destroy", &["destroy", DOM]),
        step("domstate-destroyed", &["domstate", "--reason", DOM]),
        step("dominfo-destroyed", &["dominfo", DOM]),
        step("domxml-to-native", &["domxml-to-native", "qemu-argv", xml]),
        step(
            "domxml-to-native-bad-format",
            &["domxml-to-native", "bogus", xml],
        ),
        step(
            "domxml-from-native",
            &["domxml-from-native", "qemu-argv", argv],
        ),
        step("autostart", &["autostart", DOM]),
        step("dominfo-autostart", &["dominfo", DOM]),
        step("list-autostart", &["list", "--all", "--autostart"]),
        step("autostart-disable", &["autostart", "--disable", DOM]),
        step("create", &["create", transient]),
        step("list-transient", &["list", "--transient"]),
        step("dominfo-transient", &["dominfo", TRANSIENT]),
        step("autostart-transient", &["autostart", TRANSIENT]),
        step("undefine-transient", &["undefine", TRANSIENT]),
        step("shutdown", &["shutdown", TRANSIENT]),
        step("reboot", &["reboot", TRANSIENT]),
        step("domstate-after-acpi", &["domstate", "--reason", TRANSIENT]),
        step("destroy-transient", &["destroy", TRANSIENT]),
        step("transient-gone", &["dominfo", TRANSIENT]),
        step("define-bad-type", &["define", bad]),
        step("nodeinfo", &["nodeinfo"]),
        step("undefine", &["undefine", DOM]),
        step("list-empty", &["list", "--all"]),
        step("dominfo-unknown", &["dominfo", DOM]),
        step("undefine-unknown", &["undefine", DOM]),
    ]
}

/// What a normalizer needs to know about the side it rewrites.
struct Ctx<'a> {
    /// qvisord's driver root (None for libvirtd).
    root: Option<&'a Path>,
}

/// A field that legitimately differs between the two daemons, and how it is
/// masked on both sides.
struct Legit {
    field: &'static str,
    /// The steps it applies to (all when empty).
    steps: &'static [&'static str],
    mask: fn(&str, &Ctx) -> String,
}

/// Every legitimately differing field, by name.
const LEGITIMATE: &[Legit] = &[
    Legit {
        field: "runtime domain id (each daemon numbers its own starts)",
        steps: &[],
        mask: mask_ids,
    },
    Legit {
        field: "other clients' domains in a shared daemon (list rows of names this test did not define)",
        steps: &[],
        mask: drop_foreign_list_rows,
    },
    Legit {
        field: "domain UUID generated at define, and the host UUID (libvirtd makes a random one per start when the host has no SMBIOS)",
        steps: &[],
        mask: mask_uuids,
    },
    Legit {
        field: "generated MAC addresses",
        steps: &[],
        mask: |t, _| mask_between(t, "<mac address='", "'", "{mac}"),
    },
    Legit {
        field: "CPU time used by the guest",
        steps: &[],
        mask: |t, _| mask_line_value(t, "CPU time:", "{cpu time}"),
    },
    Legit {
        field: "QMP command id (libvirt-N counts each daemon's own monitor commands)",
        steps: &[],
        mask: |t, _| mask_between(t, "\"libvirt-", "\"", "N"),
    },
    Legit {
        field: "host memory size and free page counts (this VM's memory is hot-plugged: each daemon reads it at a different time)",
        steps: &["capabilities", "nodeinfo"],
        mask: |t, _| {
            let t = mask_between(t, "<memory unit='KiB'>", "</memory>", "{memory}");
            let t = mask_between(&t, "<pages unit='KiB' size='4'>", "</pages>", "{pages}");
            mask_line_value(&t, "Memory size:", "{memory}")
        },
    },
    Legit {
        field: "paths under the driver root (qvisord --root DIR vs libvirt's /var/lib/libvirt, /run/libvirt, ...)",
        steps: &[],
        mask: map_root_paths,
    },
    Legit {
        field: "the daemon's own environment passed to QEMU (PATH, USER, LOGNAME, TMPDIR; LD_*/DYLD_* dropped)",
        steps: &[],
        mask: mask_daemon_env,
    },
];

/// A difference that is not legitimate and not fixed yet: which step, which
/// side, which lines, and who owns the fix.
struct Gap {
    labels: &'static [&'static str],
    side: Side,
    what: &'static str,
    matches: fn(&str) -> bool,
}

/// Known, owned, not yet fixed. Keep this list short: fix and delete.
const KNOWN_GAPS: &[Gap] = &[];

fn mask_between(text: &str, start: &str, end: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(start) {
        let after = &rest[i + start.len()..];
        let Some(j) = after.find(end) else { break };
        out.push_str(&rest[..i + start.len()]);
        out.push_str(with);
        rest = &after[j..];
    }
    out.push_str(rest);
    out
}

fn mask_line_value(text: &str, key: &str, with: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix(key) {
            Some(v) if v.trim() != "-" => format!("{key} {with}"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

fn mask_uuids(text: &str, _: &Ctx) -> String {
    let t = mask_between(text, "<uuid>", "</uuid>", "{uuid}");
    let t = mask_between(&t, "already exists with uuid ", "\n", "{uuid}");
    let t = mask_line_value(&t, "UUID:", "{uuid}");
    // domxml-to-native: -uuid 2a60a1f5-...
    mask_between(&t, "-uuid ", " ", "{uuid}")
}

/// `virsh list` rows and headers: columns re-joined with one space (their
/// width follows the widest id), the id column masked; `Id:` of dominfo;
/// `id='N'` of the live `<domain>`.
fn mask_ids(text: &str, _: &Ctx) -> String {
    let t = mask_line_value(text, "Id:", "{id}");
    let t = mask_between(&t, "<domain type='qemu' id='", "'", "{id}");
    let t = mask_between(&t, "<domain type='kvm' id='", "'", "{id}");
    if !is_list_output(&t) {
        return t;
    }
    t.lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match cols.first() {
                Some(c) if c.chars().all(|ch| ch == '-') && cols.len() == 1 => "{rule}".to_string(),
                Some(c) if c.parse::<u32>().is_ok() => std::iter::once("{id}")
                    .chain(cols[1..].iter().copied())
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => cols.join(" "),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `text` is a `virsh list` table (its header row).
fn is_list_output(text: &str) -> bool {
    text.lines().next().is_some_and(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols == ["Id", "Name", "State"]
    })
}

/// `virsh list` rows naming a domain this test did not define: the peer
/// libvirtd may be shared with other runs (benchmarks) that define their own.
fn drop_foreign_list_rows(text: &str, _: &Ctx) -> String {
    if !is_list_output(text) {
        return text.to_string();
    }
    let ours = |l: &str| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols.get(1) {
            Some(name) if cols.len() >= 3 && cols[0] != "Id" => *name == DOM || *name == TRANSIENT,
            _ => true,
        }
    };
    let mut out: Vec<&str> = text.lines().filter(|l| ours(l)).collect();
    if text.ends_with('\n') {
        out.push("");
    }
    out.join("\n")
}

fn map_root_paths(text: &str, ctx: &Ctx) -> String {
    let Some(root) = ctx.root else {
        return text.to_string();
    };
    let r = root.display().to_string();
    [
        ("lib/qemu", "/var/lib/libvirt/qemu"),
        ("run/qemu", "/run/libvirt/qemu"),
        ("log/qemu", "/var/log/libvirt/qemu"),
        ("cache/qemu", "/var/cache/libvirt/qemu"),
        ("etc", "/etc/libvirt"),
    ]
    .iter()
    .fold(text.to_string(), |t, (sub, sys)| {
        t.replace(&format!("{r}/{sub}"), sys)
    })
}

fn mask_daemon_env(text: &str, _: &Ctx) -> String {
    // Only the leading NAME=value words of a domxml-to-native line.
    text.lines()
        .map(|line| {
            let mut words: Vec<String> = Vec::new();
            let mut in_env = true;
            for w in line.split(' ') {
                if in_env && w.contains('=') && !w.starts_with('-') && !w.starts_with('/') {
                    let (k, _) = w.split_once('=').unwrap_or((w, ""));
                    // the loader variables libvirt passes through when set
                    // (cargo sets LD_LIBRARY_PATH for the daemon under test)
                    if k.starts_with("LD_") || k.starts_with("DYLD_") {
                        continue;
                    }
                    if matches!(k, "PATH" | "USER" | "LOGNAME" | "TMPDIR") {
                        words.push(format!("{k}={{env}}"));
                        continue;
                    }
                } else {
                    in_env = false;
                }
                words.push(w.to_string());
            }
            words.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn normalize(step: &str, text: &str, ctx: &Ctx) -> String {
    LEGITIMATE
        .iter()
        .filter(|l| l.steps.is_empty() || l.steps.contains(&step))
        .fold(text.to_string(), |t, l| (l.mask)(&t, ctx))
}

/// The files the script names.
struct Files {
    persistent: String,
    transient: String,
    bad_type: String,
    argv: String,
}

impl Files {
    fn write(dir: &Path) -> Files {
        let put = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write test file");
            p.display().to_string()
        };
        Files {
            persistent: put("persistent.xml", domain_xml(DOM, &dir.join("serial.log"))),
            transient: put(
                "transient.xml",
                domain_xml(TRANSIENT, &dir.join("serial-transient.log")),
            ),
            bad_type: put(
                "bad-type.xml",
                domain_xml(DOM, &dir.join("serial.log"))
                    .replace("<domain type='qemu'>", "<domain type='bogus'>"),
            ),
            argv: put("argv", "/usr/bin/qemu-system-x86_64 -m 128\n".into()),
        }
    }
}

/// The shared test guest XML without its kernel lines (SeaBIOS idles), TCG,
/// named `name`, its serial console going to `serial`.
fn domain_xml(name: &str, serial: &Path) -> String {
    let template = std::fs::read_to_string(shared_dir().join("testguest/tiny-tcg.xml"))
        .expect("read ../shared/testguest/tiny-tcg.xml");
    template
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("<kernel>") || t.starts_with("<initrd>") || t.starts_with("<cmdline>"))
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("<name>tiny-tcg</name>", &format!("<name>{name}</name>"))
        .replace("@SERIAL_LOG@", &serial.display().to_string())
}

/// A directory the QEMU user of libvirtd (libvirt-qemu) can reach, removed on drop.
struct PublicDir(PathBuf);

impl PublicDir {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let p = PathBuf::from(format!("/var/tmp/qvisor-cmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create /var/tmp dir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        PublicDir(p)
    }
}

impl Drop for PublicDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_script(steps: &[Step], run: impl Fn(&[&str]) -> VirshRun) -> Vec<VirshRun> {
    steps
        .iter()
        .map(|s| {
            let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
            run(&args)
        })
        .collect()
}

#[test]
fn virsh_output_matches_libvirtd_for_the_same_domain() {
    if !virsh_available() {
        return;
    }
    let peer = match Peer::start() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIP: the libvirt peer daemon cannot be started: {why}");
            return;
        }
    };
    let dir = PublicDir::new();
    let files = Files::write(&dir.0);
    let steps = script(&files);

    // libvirtd first (clean up what an aborted earlier run may have left).
    let clean = || {
        for d in [DOM, TRANSIENT] {
            let _ = peer.virsh(&["destroy", d]);
            let _ = peer.virsh(&["undefine", d]);
        }
    };
    clean();
    let reference = run_script(&steps, |a| peer.virsh(a));
    clean();
    drop(peer);

    // The same configuration as the peer: Debian builds libvirt to run QEMU
    // as libvirt-qemu (qvisor's own default is root).
    let conf = "user = \"libvirt-qemu\"\ngroup = \"libvirt-qemu\"\n";
    let daemon = Daemon::start_configured("cmp", Some(conf), &[]);
    // GAP(driver security): the DAC layer insists that QEMU's user can reach
    // the domain log, which the daemon opens and hands to QEMU as stderr
    // (libvirt keeps /var/log/libvirt/qemu at 0700).
    {
        use std::os::unix::fs::PermissionsExt;
        let log_dir = daemon.root().join("log/qemu");
        std::fs::set_permissions(&log_dir, std::fs::Permissions::from_mode(0o711))
            .expect("chmod log dir");
    }
    let ours = run_script(&steps, |a| daemon.virsh(a));

    let lib_ctx = Ctx { root: None };
    let our_ctx = Ctx {
        root: Some(daemon.root()),
    };
    let mut unexplained = Vec::new();
    let mut gaps_seen = vec![false; KNOWN_GAPS.len()];
    for ((s, r), q) in steps.iter().zip(&reference).zip(&ours) {
        if r.code != q.code {
            unexplained.push(format!(
                "{}: exit code {} (libvirtd) vs {} (qvisord)\n  libvirtd stderr: {}\n  qvisord stderr: {}",
                s.label, r.code, q.code, r.stderr.trim(), q.stderr.trim()
            ));
        }
        for (stream, a, b) in [
            ("stdout", &r.stdout, &q.stdout),
            ("stderr", &r.stderr, &q.stderr),
        ] {
            let (a, b) = (
                normalize(s.label, a, &lib_ctx),
                normalize(s.label, b, &our_ctx),
            );
            for (side, line) in diff_lines(&a, &b) {
                let gap = KNOWN_GAPS.iter().position(|g| {
                    g.side == side && g.labels.contains(&s.label) && (g.matches)(&line)
                });
                match gap {
                    Some(i) => gaps_seen[i] = true,
                    None => unexplained.push(format!(
                        "{} ({stream}): {} {line}",
                        s.label,
                        match side {
                            Side::Reference => "only libvirtd:",
                            Side::Qvisor => "only qvisord: ",
                        }
                    )),
                }
            }
        }
    }
    eprintln!("legitimately differing fields (masked on both sides):");
    for l in LEGITIMATE {
        eprintln!("  - {}", l.field);
    }
    eprintln!("known gaps still open:");
    let mut printed: Vec<&str> = Vec::new();
    for (g, seen) in KNOWN_GAPS.iter().zip(&gaps_seen) {
        if *seen && !printed.contains(&g.what) {
            printed.push(g.what);
            eprintln!("  - [{}] {}", g.labels.join(","), g.what);
        }
    }
    for (g, seen) in KNOWN_GAPS.iter().zip(&gaps_seen) {
        if !seen {
            eprintln!(
                "NOTE: known gap no longer seen, delete it from KNOWN_GAPS: [{}] {}",
                g.labels.join(","),
                g.what
            );
        }
    }
    assert!(
        unexplained.is_empty(),
        "virsh output differs from libvirtd's:\n{}\n{}",
        unexplained.join("\n"),
        daemon.log()
    );
}
