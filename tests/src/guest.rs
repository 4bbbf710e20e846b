//! A small builder for test domains and a helper that drives `qvisor` in an
//! embedded root, cleaning up (destroying domains, stopping the supervisor)
//! when dropped, so no QEMU outlives a test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{bin, workspace_root, TempDir};

/// The test guest (kernel + initramfs), built once per test process with the
/// project's own `scripts/testguest.sh`. `QVISOR_TESTGUEST_DIR` overrides
/// where it lives.
pub fn testguest() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("QVISOR_TESTGUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/qvisor-testguest"));
        let out = Command::new(workspace_root().join("scripts/testguest.sh"))
            .arg(&dir)
            .output()
            .expect("run scripts/testguest.sh");
        assert!(
            out.status.success(),
            "building the test guest failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// Whether `/dev/kvm` can be opened read-write.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// A domain XML for tests.
#[derive(Debug, Clone)]
pub struct DomainXml {
    name: String,
    virt_type: &'static str,
    memory_mib: u32,
    boot_guest: bool,
    serial_log: Option<PathBuf>,
    extra_devices: String,
}

impl DomainXml {
    /// A TCG domain named `name` with 128 MiB and one vCPU, no kernel
    /// (SeaBIOS finds nothing to boot and idles).
    pub fn new(name: &str) -> Self {
        DomainXml {
            name: name.to_string(),
            virt_type: "qemu",
            memory_mib: 128,
            boot_guest: false,
            serial_log: None,
            extra_devices: String::new(),
        }
    }

    /// Run under KVM.
    pub fn kvm(mut self) -> Self {
        self.virt_type = "kvm";
        self
    }

    /// Boot the test guest (direct kernel boot).
    pub fn boot_test_guest(mut self) -> Self {
        self.boot_guest = true;
        self
    }

    /// Serial console to a file.
    pub fn serial_file(mut self, path: &Path) -> Self {
        self.serial_log = Some(path.to_path_buf());
        self
    }

    /// Extra `<devices>` content.
    pub fn devices(mut self, xml: &str) -> Self {
        self.extra_devices.push_str(xml);
        self
    }

    /// The XML text.
    pub fn to_xml(&self) -> String {
        let os_boot = if self.boot_guest {
            let g = testguest();
            format!(
                "    <kernel>{}/vmlinuz</kernel>\n    <initrd>{}/initramfs.img</initrd>\n    <cmdline>console=ttyS0 quiet panic=-1</cmdline>\n",
                g.display(),
                g.display()
            )
        } else {
            String::new()
        };
        let serial = self.serial_log.as_ref().map_or(String::new(), |p| {
            format!(
                "    <serial type='file'>\n      <source path='{}'/>\n      <target port='0'/>\n    </serial>\n",
                p.display()
            )
        });
        format!(
            "<domain type='{vt}'>\n  <name>{name}</name>\n  <memory unit='MiB'>{mem}</memory>\n  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n{os_boot}  </os>\n  <features><acpi/></features>\n  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n  <on_crash>destroy</on_crash>\n  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n{serial}{extra}    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n  </devices>\n</domain>\n",
            vt = self.virt_type,
            name = self.name,
            mem = self.memory_mib,
            extra = self.extra_devices,
        )
    }
}

/// An embedded root driven through the `qvisor` binary.
pub struct Embedded {
    dir: TempDir,
    root: PathBuf,
}

impl Embedded {
    /// A fresh embedded root under a temp dir.
    pub fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let root = dir.path().join("root");
        Embedded { dir, root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A scratch directory beside the root.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The connection URI.
    pub fn uri(&self) -> String {
        format!("qemu:///embed?root={}", self.root.display())
    }

    /// Runs `qvisor -c URI ARGS`.
    pub fn qvisor(&self, args: &[&str]) -> Output {
        Command::new(bin("qvisor"))
            .arg("-c")
            .arg(self.uri())
            .args(args)
            .output()
            .expect("run qvisor")
    }

    /// Runs `qvisor` and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.qvisor(args);
        assert!(
            out.status.success(),
            "qvisor {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `qvisor` and insists on failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.qvisor(args);
        assert!(
            !out.status.success(),
            "qvisor {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes `xml` to a file and defines it.
    pub fn define(&self, xml: &DomainXml) -> String {
        let path = self.dir.path().join(format!("{}.xml", xml.name));
        std::fs::write(&path, xml.to_xml()).expect("write domain xml");
        self.ok(&["define", &path.to_string_lossy()])
    }

    /// `domstate NAME`.
    pub fn state(&self, name: &str) -> String {
        self.ok(&["domstate", name]).trim().to_string()
    }

    /// Waits until `domstate NAME` equals `want`.
    pub fn wait_state(&self, name: &str, want: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.state(name) == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The supervisor's pid, from its lock holder (`/proc` scan).
    pub fn supervisor_pid(&self) -> Option<i32> {
        let needle = format!("--root\0{}\0", self.root.display());
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd);
            (cmd.contains("qvisord") && cmd.contains(&needle)).then_some(pid)
        })
    }

    /// The QEMU pids of this root.
    pub fn qemu_pids(&self) -> Vec<i32> {
        let needle = self.root.display().to_string();
        std::fs::read_dir("/proc")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                        let cmd = String::from_utf8_lossy(&cmd);
                        (cmd.starts_with("/usr/bin/qemu-system") && cmd.contains(&needle))
                            .then_some(pid)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The supervisor and domain logs, for failure messages.
    pub fn logs(&self) -> String {
        let dir = self.root.join("log/qemu");
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("--- {} (tail)\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // Destroy whatever still runs, then stop the supervisor and kill any
        // QEMU left over (e.g. after a test killed the supervisor).
        let out = self.qvisor(&["list", "--name"]);
        for name in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
        {
            let _ = self.qvisor(&["destroy", name]);
        }
        if let Some(pid) = self.supervisor_pid() {
            // SAFETY: sending a signal has no memory-safety implications.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && alive(pid) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for pid in self.qemu_pids() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}
