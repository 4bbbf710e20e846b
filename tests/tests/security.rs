//! The security stack on real QEMU (issue 8): DAC identity and ownership,
//! the search-bit check, cgroup device filtering and Landlock, each in its
//! own embedded root driven through the `qvisor` CLI.
//!
//! These need root (chown, cgroups, loop devices); without it each test says
//! why and returns.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qvisor_tests::guest::{testguest, Embedded};

/// The unprivileged account QEMU runs as in these tests: a uid/gid with no
/// passwd entry (so nothing on the host grants it anything by name).
const QEMU_UID: u32 = 64123;
const QEMU_GID: u32 = 64124;

/// The owner test files start with.
const OWNER: (u32, u32) = (1234, 4321);

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIP: needs root (chown, cgroups, loop devices)");
    }
    root
}

fn chown(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).expect("stat");
    (m.uid(), m.gid())
}

/// A raw 1 MiB image whose first 16 bytes are `byte`.
fn image(path: &Path, byte: u8) {
    let mut data = vec![byte; 16];
    data.resize(1024 * 1024, 0);
    std::fs::write(path, data).expect("write image");
}

/// A private copy of the test guest's kernel and initrd (DAC hands files to
/// the QEMU user; the shared copy must not change owner under other tests).
fn guest_copy(dir: &Path) -> PathBuf {
    let g = testguest();
    let to = dir.join("guest");
    std::fs::create_dir_all(&to).expect("mkdir guest");
    for f in ["vmlinuz", "initramfs.img"] {
        std::fs::copy(g.join(f), to.join(f)).expect("copy test guest");
        chown(&to.join(f), OWNER);
    }
    to
}

/// A TCG domain; with `kernel_dir` it boots the test guest, else it idles in
/// SeaBIOS. `devices` is extra `<devices>` content.
fn domain_xml(
    name: &str,
    kernel_dir: Option<&Path>,
    serial: Option<&Path>,
    devices: &str,
) -> String {
    let boot = kernel_dir.map_or(String::new(), |g| {
        format!(
            "<kernel>{0}/vmlinuz</kernel><initrd>{0}/initramfs.img</initrd><cmdline>console=ttyS0 quiet panic=-1</cmdline>",
            g.display()
        )
    });
    let serial = serial.map_or(String::new(), |p| {
        format!(
            "<serial type='file'><source path='{}'/><target port='0'/></serial>",
            p.display()
        )
    });
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type>{boot}</os><features><acpi/></features>\
         <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>\
         <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{devices}{serial}\
         <controller type='usb' model='none'/><memballoon model='none'/></devices></domain>"
    )
}

fn file_disk(path: &Path, target: &str, extra: &str) -> String {
    format!(
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='{target}' bus='virtio'/>{extra}</disk>",
        path.display()
    )
}

fn define(e: &Embedded, name: &str, xml: &str) {
    let path = e.scratch().join(format!("{name}.xml"));
    std::fs::write(&path, xml).expect("write xml");
    e.ok(&["define", &path.to_string_lossy()]);
}

fn write_qemu_conf(e: &Embedded, text: &str) {
    let etc = e.root().join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir etc");
    std::fs::write(etc.join("qemu.conf"), text).expect("write qemu.conf");
}

/// `/proc/PID/status` fields.
fn status_field(pid: i32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn wait_off(e: &Embedded, name: &str) {
    assert!(
        e.wait_state(name, "shut off", Duration::from_secs(60)),
        "'{name}' did not stop:\n{}",
        e.logs()
    );
}

#[test]
fn an_unprivileged_qemu_has_no_capabilities_boots_and_owners_come_back() {
    if !is_root() {
        return;
    }
    let e = Embedded::new("sec-dac");
    write_qemu_conf(
        &e,
        &format!("user = \"+{QEMU_UID}\"\ngroup = \"+{QEMU_GID}\"\n"),
    );
    let guest = guest_copy(e.scratch());
    let disk = e.scratch().join("disk.img");
    image(&disk, 0x5a);
    chown(&disk, OWNER);
    // Only its owner may read it: QEMU gets it through the hand-over.
    std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let serial = e.scratch().join("serial.log");
    // A second image that must keep its owner (<seclabel relabel='no'>).
    let keep = e.scratch().join("keep.img");
    image(&keep, 0);
    chown(&keep, OWNER);
    let keep_disk = format!(
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'><seclabel model='dac' relabel='no'/></source><target dev='vdb' bus='virtio'/><readonly/></disk>",
        keep.display()
    );
    define(
        &e,
        "dac",
        &domain_xml(
            "dac",
            Some(&guest),
            Some(&serial),
            &(file_disk(&disk, "vda", "") + &keep_disk),
        ),
    );

    e.ok(&["start", "--paused", "dac"]);
    let pids = e.qemu_pids();
    assert_eq!(pids.len(), 1, "one QEMU expected:\n{}", e.logs());
    let pid = pids[0];
    let ids = |f: &str| -> Vec<u32> {
        status_field(pid, f)
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    assert_eq!(ids("Uid"), vec![QEMU_UID; 4]);
    assert_eq!(ids("Gid"), vec![QEMU_GID; 4]);
    assert_eq!(ids("Groups"), vec![QEMU_GID]);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, set), "0000000000000000", "{set}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(owner(&disk), (QEMU_UID, QEMU_GID));
    assert_eq!(owner(&guest.join("vmlinuz")), (QEMU_UID, QEMU_GID));
    assert_eq!(owner(&keep), OWNER, "relabel='no' was not honoured");
    let live = e.ok(&["dumpxml", "dac"]);
    assert!(
        live.contains(&format!("<label>+{QEMU_UID}:+{QEMU_GID}</label>")),
        "live XML lacks the DAC label:\n{live}"
    );

    e.ok(&["resume", "dac"]);
    wait_off(&e, "dac");
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        console.contains("TESTGUEST-BOOTED"),
        "console:\n{console}\n{}",
        e.logs()
    );
    assert!(
        console.contains("TESTGUEST-VDA-HEAD: 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"),
        "the guest could not read its disk:\n{console}"
    );
    assert_eq!(owner(&disk), OWNER, "disk owner not restored");
    assert_eq!(
        owner(&guest.join("vmlinuz")),
        OWNER,
        "kernel owner not restored"
    );
    assert_eq!(owner(&guest.join("initramfs.img")), OWNER);
}

#[test]
fn a_shareable_disk_goes_back_only_when_the_last_guest_stops() {
    if !is_root() {
        return;
    }
    let e = Embedded::new("sec-share");
    write_qemu_conf(
        &e,
        &format!("user = \"+{QEMU_UID}\"\ngroup = \"+{QEMU_GID}\"\n"),
    );
    let shared = e.scratch().join("shared.img");
    image(&shared, 0x11);
    chown(&shared, OWNER);
    for name in ["one", "two"] {
        define(
            &e,
            name,
            &domain_xml(name, None, None, &file_disk(&shared, "vda", "<shareable/>")),
        );
    }
    e.ok(&["start", "one"]);
    assert_eq!(owner(&shared), (QEMU_UID, QEMU_GID));
    e.ok(&["start", "two"]);
    e.ok(&["destroy", "one"]);
    assert_eq!(
        owner(&shared),
        (QEMU_UID, QEMU_GID),
        "restored while 'two' still runs"
    );
    e.ok(&["destroy", "two"]);
    assert_eq!(
        owner(&shared),
        OWNER,
        "not restored after the last guest stopped"
    );
}

#[test]
fn a_disk_behind_a_closed_directory_is_refused_with_the_fix() {
    if !is_root() {
        return;
    }
    let e = Embedded::new("sec-search");
    write_qemu_conf(
        &e,
        &format!("user = \"+{QEMU_UID}\"\ngroup = \"+{QEMU_GID}\"\n"),
    );
    let closed = e.scratch().join("closed");
    std::fs::create_dir(&closed).expect("mkdir");
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let disk = closed.join("disk.img");
    image(&disk, 0);
    define(
        &e,
        "shut",
        &domain_xml("shut", None, None, &file_disk(&disk, "vda", "")),
    );
    let err = e.fails(&["start", "shut"]);
    assert!(
        err.contains(&format!("directory '{}'", closed.display())),
        "error does not name the directory: {err}"
    );
    assert!(
        err.contains(&format!("chmod o+x {}", closed.display())),
        "no fix given: {err}"
    );
    assert!(e.qemu_pids().is_empty());
    // Nothing was handed over.
    assert_eq!(owner(&disk), (0, 0));
}

/// A loop device over `file`, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Option<Loop> {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("SKIP: losetup: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(Loop(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn monitor(e: &Embedded, name: &str, cmd: &str) -> String {
    e.ok(&["qemu-monitor-command", name, cmd])
}

#[test]
fn the_cgroup_denies_a_block_device_that_is_not_the_domains() {
    if !is_root() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/devices").is_dir()
        && !Path::new("/sys/fs/cgroup/unified").is_dir()
    {
        eprintln!("SKIP: no devices cgroup and no cgroup v2 hierarchy");
        return;
    }
    let e = Embedded::new("sec-cgroup");
    let (a, b) = (e.scratch().join("a.img"), e.scratch().join("b.img"));
    image(&a, 0xaa);
    image(&b, 0xbb);
    let (Some(la), Some(lb)) = (Loop::attach(&a), Loop::attach(&b)) else {
        return;
    };
    let guest = guest_copy(e.scratch());
    let serial = e.scratch().join("serial.log");
    let disk = format!(
        "<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='{}'/><target dev='vda' bus='virtio'/></disk>",
        la.0
    );
    define(
        &e,
        "cg",
        &domain_xml("cg", Some(&guest), Some(&serial), &disk),
    );
    e.ok(&["start", "--paused", "cg"]);
    let pid = e.qemu_pids()[0];
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert!(
        cgroups.contains(".libvirt-qemu"),
        "QEMU is not in its cgroup:\n{cgroups}"
    );
    let reply = monitor(
        &e,
        "cg",
        &format!(
            r#"{{"execute":"blockdev-add","arguments":{{"driver":"host_device","filename":"{}","node-name":"intruder"}}}}"#,
            lb.0
        ),
    );
    assert!(
        reply.contains("Operation not permitted"),
        "opening another loop device was not denied: {reply}"
    );
    e.ok(&["resume", "cg"]);
    wait_off(&e, "cg");
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        console.contains("TESTGUEST-VDA-HEAD: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        "the guest could not read its own loop device:\n{console}\n{}",
        e.logs()
    );
    // The cgroups are gone with the domain.
    for line in cgroups.lines().filter(|l| l.contains(".libvirt-qemu")) {
        let mut f = line.splitn(3, ':');
        let (_, controllers, scope) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let mount = match controllers {
            "" => "unified",
            c => c.split(',').next().unwrap_or(c),
        };
        assert!(
            !Path::new(&format!("/sys/fs/cgroup/{mount}{scope}")).exists(),
            "cgroup {mount}{scope} left behind"
        );
    }
}

#[test]
fn landlock_keeps_a_guest_away_from_another_guests_disk() {
    let abi = {
        // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns a number.
        unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                1u32,
            )
        }
    };
    if abi < 1 {
        eprintln!("SKIP: Landlock is not available in this kernel");
        return;
    }
    let e = Embedded::new("sec-landlock");
    write_qemu_conf(&e, "security_driver = \"landlock\"\n");
    let (a, b) = (e.scratch().join("a.img"), e.scratch().join("b.img"));
    image(&a, 0xaa);
    image(&b, 0xbb);
    let guest = guest_copy(e.scratch());
    let serial = e.scratch().join("serial.log");
    define(
        &e,
        "ga",
        &domain_xml("ga", Some(&guest), Some(&serial), &file_disk(&a, "vda", "")),
    );
    define(
        &e,
        "gb",
        &domain_xml("gb", None, None, &file_disk(&b, "vda", "")),
    );
    e.ok(&["start", "--paused", "ga"]);
    let reply = monitor(
        &e,
        "ga",
        &format!(
            r#"{{"execute":"blockdev-add","arguments":{{"driver":"file","filename":"{}","node-name":"other"}}}}"#,
            b.display()
        ),
    );
    assert!(
        reply.contains("Permission denied"),
        "guest A opened guest B's disk: {reply}"
    );
    let pipeline = e.ok(&["dumpxml", "ga"]);
    assert!(pipeline.contains("<domain"), "{pipeline}");
    e.ok(&["resume", "ga"]);
    wait_off(&e, "ga");
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        console.contains("TESTGUEST-VDA-HEAD: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        "guest A could not read its own disk:\n{console}\n{}",
        e.logs()
    );
}

fn apparmor_parser() -> Option<&'static str> {
    let p = "/usr/sbin/apparmor_parser";
    if Path::new(p).is_file() {
        Some(p)
    } else {
        eprintln!("SKIP: apparmor_parser is not installed (Debian package apparmor)");
        None
    }
}

/// The allow rules of a `.files` as (path, permissions), deny lines apart.
fn allow_rules(files: &str) -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = files
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"'))
        .filter_map(|l| {
            let (path, perms) = l.trim_end_matches(',').rsplit_once(' ')?;
            Some((path.trim_matches('"').to_string(), perms.to_string()))
        })
        .collect();
    rules.sort();
    rules
}

#[test]
fn the_apparmor_profile_lists_exactly_the_domains_files_and_parses() {
    let Some(parser) = apparmor_parser() else {
        return;
    };
    let e = Embedded::new("sec-aa");
    write_qemu_conf(&e, "security_driver = \"apparmor\"\n");
    let s = e.scratch();
    let guest = guest_copy(s);
    let img = |args: &[&str]| {
        let ok = Command::new("qemu-img")
            .args(args)
            .current_dir(s)
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "qemu-img {args:?}");
    };
    img(&["create", "-q", "-f", "raw", "base.raw", "1M"]);
    img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.raw",
        "-F",
        "raw",
        "mid.qcow2",
    ]);
    img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "mid.qcow2",
        "-F",
        "qcow2",
        "top.qcow2",
    ]);
    image(&s.join("other.img"), 0);
    let serial = s.join("serial.log");
    let disk = format!(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>",
        s.join("top.qcow2").display()
    );
    define(
        &e,
        "aa",
        &domain_xml("aa", Some(&guest), Some(&serial), &disk),
    );
    define(
        &e,
        "other",
        &domain_xml(
            "other",
            None,
            None,
            &file_disk(&s.join("other.img"), "vda", ""),
        ),
    );
    e.ok(&["start", "--paused", "other"]);
    e.ok(&["start", "--paused", "aa"]);
    let uuid = e.ok(&["domuuid", "aa"]).trim().to_string();
    let dir = e.root().join("etc/apparmor.d/libvirt");
    let profile = dir.join(format!("libvirt-{uuid}"));
    let files =
        std::fs::read_to_string(dir.join(format!("libvirt-{uuid}.files"))).expect("read .files");
    let id = e.ok(&["domid", "aa"]).trim().to_string();
    let private = e.root().join(format!("lib/qemu/domain-{id}-aa"));
    let p = |path: PathBuf| {
        std::fs::canonicalize(&path)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut expected: Vec<(String, String)> = vec![
        ("/usr/bin/qemu-system-x86_64".into(), "rmix".into()),
        (p(s.join("top.qcow2")), "rwk".into()),
        (p(s.join("mid.qcow2")), "rk".into()),
        (p(s.join("base.raw")), "rk".into()),
        (p(guest.join("vmlinuz")), "r".into()),
        (p(guest.join("initramfs.img")), "r".into()),
        (p(serial.clone()), "rw".into()),
        (format!("{}/", p(private.clone())), "r".into()),
        (format!("{}/**", p(private.clone())), "rwk".into()),
        (p(private.join("master-key.aes")), "r".into()),
        (p(private.join("monitor.sock")), "rw".into()),
        (p(e.root().join("log/qemu/aa.log")), "rw".into()),
    ];
    expected.sort();
    assert_eq!(allow_rules(&files), expected, ".files:\n{files}");
    assert!(
        !files.contains("other.img"),
        "another domain's disk is listed:\n{files}"
    );
    // Read-only layers are explicitly denied writes.
    assert!(
        files.contains(&format!("deny \"{}\" w,", p(s.join("base.raw")))),
        "{files}"
    );
    let text = std::fs::read_to_string(&profile).expect("read profile");
    assert!(text.contains(&format!("profile libvirt-{uuid} ")), "{text}");
    assert!(
        text.contains(&format!("#include <libvirt/libvirt-{uuid}.files>")),
        "{text}"
    );
    let out = Command::new(parser)
        .args([
            "-Q",
            "-K",
            "--features-file",
            "/usr/share/apparmor-features/features",
            "-I",
        ])
        .arg(e.root().join("etc/apparmor.d"))
        .arg(&profile)
        .output()
        .expect("run apparmor_parser");
    assert!(
        out.status.success(),
        "profile does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = e.ok(&["dumpxml", "aa"]);
    assert!(
        live.contains(&format!("<label>libvirt-{uuid}</label>")),
        "{live}"
    );
    // Kept while the domain is defined, gone with it.
    e.ok(&["destroy", "aa"]);
    assert!(profile.exists());
    e.ok(&["undefine", "aa"]);
    assert!(!profile.exists(), "profile left after undefine");
    assert!(!dir.join(format!("libvirt-{uuid}.files")).exists());
}

#[test]
fn a_broken_apparmor_template_fails_the_start_clearly() {
    if apparmor_parser().is_none() {
        return;
    }
    let e = Embedded::new("sec-aa-broken");
    write_qemu_conf(&e, "security_driver = \"apparmor\"\n");
    let dir = e.root().join("etc/apparmor.d/libvirt");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let template = dir.join("TEMPLATE.qemu");
    std::fs::write(
        &template,
        "#include <tunables/global>\n\nprofile LIBVIRT_TEMPLATE flags=(attach_disconnected) {\n  #include <abstractions/base>\n  /usr/bin/qemu-system-* rmixq,\n}\n",
    )
    .expect("write template");
    let disk = e.scratch().join("d.img");
    image(&disk, 0);
    chown(&disk, OWNER);
    define(
        &e,
        "broken",
        &domain_xml("broken", None, None, &file_disk(&disk, "vda", "")),
    );
    let err = e.fails(&["start", "broken"]);
    assert!(
        err.contains(&template.display().to_string()),
        "error does not name the template: {err}"
    );
    assert!(
        err.contains("does not parse") && err.contains("line 5"),
        "no parser reason: {err}"
    );
    assert!(e.qemu_pids().is_empty());
    // The DAC layer that ran before it was rolled back.
    assert_eq!(owner(&disk), OWNER);
    // A template without its marker is refused before the parser runs.
    std::fs::write(&template, "profile something {\n}\n").expect("write template");
    let err = e.fails(&["start", "broken"]);
    assert!(err.contains("no replacement string in template"), "{err}");
}

#[test]
fn naming_selinux_where_it_is_disabled_fails_with_the_reason() {
    if Path::new("/sys/fs/selinux/enforce").exists() {
        eprintln!("SKIP: SELinux is enabled on this host");
        return;
    }
    let e = Embedded::new("sec-selinux");
    write_qemu_conf(&e, "security_driver = \"selinux\"\n");
    define(&e, "se", &domain_xml("se", None, None, ""));
    let err = e.fails(&["start", "se"]);
    assert!(err.contains("SELinux is not enabled"), "{err}");
    assert!(e.qemu_pids().is_empty());
}
