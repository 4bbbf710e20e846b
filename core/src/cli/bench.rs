//! `qvisor bench`: qvisor measured against plain QEMU (and, when its daemon
//! runs, libvirt 9.0 through the same `virsh`) on the same work, in one run.
//!
//! Every measure runs its qvisor side (A) and its baseline (B) interleaved,
//! A B A B ..., so machine noise hits both halves of a pair; ratios and
//! differences are taken pair by pair. qvisor is measured as a whole
//! `qvisor` process in embedded mode (a fresh root of its own, the default
//! plugin set and security stack), and through `virsh` against that root's
//! supervisor (`qvisord`). CPU and memory figures count qvisor's processes
//! only (the CLI processes and the supervisor), never QEMU.
//!
//! Sections (the numbers of issue 10):
//! 1. start → running, KVM and TCG, vs the floor: the same QEMU command line
//!    started with `-S`, QMP handshake, `cont`, `query-status` = running;
//! 2. test guest boot → shut off (TCG) vs plain QEMU boot → exit;
//! 3. N domains started in parallel until all run (then destroyed) vs N
//!    plain QEMUs in parallel;
//! 4. supervisor RSS idle and with N running; CPU of N start+destroy cycles;
//! 5. `list --all` with 200 and 1,000 defined domains; `dumpxml`;
//! 6. cold capability probe (empty cache) and warm `capabilities`;
//! 7. XML parse, expand and command-line build in process (µs), and
//!    `domxml-to-native` as a whole process.
//!
//! Output: a table on stdout, `results.json` and `start-latency.svg` in the
//! output directory. `--smoke` runs every section once with small sizes.

mod guests;
mod plain;
mod report;
mod stats;
mod sys;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use crossbeam_channel::Receiver;
use serde_json::json;

use crate::client::Connection;
use crate::driver::{DomainEvent, EventKind, Lifecycle};

use guests::{Accel, GuestXml};
use plain::PlainSpec;
use stats::{Measure, Target, Unit};
use sys::{ms, Finished, Machine};

use super::Cli;

/// Whether to compare with a running libvirt daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerMode {
    /// When libvirtd answers on qemu:///system (not in --smoke).
    Auto,
    /// Always; fail when libvirtd does not answer.
    On,
    /// Never.
    Off,
}

/// `bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Run every section once with small sizes (proves the suite works).
    #[arg(long)]
    pub smoke: bool,
    /// A/B pairs for the quick measures.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// A/B pairs for the slow measures (boot, parallel starts, CPU cycles,
    /// cold probes).
    #[arg(long, default_value_t = 5)]
    pub heavy_runs: usize,
    /// Domains started at once (section 3) and start+destroy cycles
    /// (section 4).
    #[arg(long, default_value_t = 20)]
    pub parallel: usize,
    /// Defined-domain counts for `list --all`.
    #[arg(long, value_delimiter = ',', default_value = "200,1000")]
    pub list_sizes: Vec<usize>,
    /// Only these sections (1-7), comma separated.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<u8>,
    /// Where results.json and start-latency.svg are written.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Working directory (embedded roots, plain QEMU files); default a
    /// fresh directory under /var/tmp, removed afterwards.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the working directory.
    #[arg(long)]
    pub keep: bool,
    /// Test guest directory (vmlinuz, initramfs.img; scripts/testguest.sh).
    #[arg(
        long,
        env = "QVISOR_TESTGUEST_DIR",
        default_value = "/var/tmp/qvisor-testguest"
    )]
    pub testguest: PathBuf,
    /// The QEMU binary.
    #[arg(long, default_value = "/usr/bin/qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// Compare with libvirtd through virsh.
    #[arg(long, value_enum, default_value_t = PeerMode::Auto)]
    pub peer: PeerMode,
}

/// The sizes a run uses.
#[derive(Debug, Clone)]
struct Sizes {
    runs: usize,
    heavy: usize,
    parallel: usize,
    list: Vec<usize>,
    in_process: usize,
}

impl Sizes {
    fn from_args(a: &BenchArgs) -> Sizes {
        if a.smoke {
            Sizes {
                runs: 1,
                heavy: 1,
                parallel: a.parallel.min(3),
                list: vec![20],
                in_process: 20,
            }
        } else {
            Sizes {
                runs: a.runs.max(1),
                heavy: a.heavy_runs.max(1),
                parallel: a.parallel.max(1),
                list: a.list_sizes.clone(),
                in_process: 500,
            }
        }
    }
}

/// How long a domain may take to reach a state the bench waits for.
const WAIT: Duration = Duration::from_secs(60);

/// Longest wait for a quiet machine before a timed start.
const SETTLE: Duration = Duration::from_secs(3);

/// Runs the A/B pair number `i`: A then B for even `i`, B then A for odd
/// ones, so an order effect (one side always following the other's work)
/// cancels out over the pairs. Returns (A, B).
fn in_turn<A, B>(
    i: usize,
    a: impl FnOnce() -> anyhow::Result<A>,
    b: impl FnOnce() -> anyhow::Result<B>,
) -> anyhow::Result<(A, B)> {
    if i % 2 == 0 {
        let a = a()?;
        Ok((a, b()?))
    } else {
        let b = b()?;
        Ok((a()?, b))
    }
}

/// Prefix of every domain the bench defines in libvirtd.
const PEER_PREFIX: &str = "qvbench-";

/// How long one call to libvirtd through our client may take before the
/// peer counts as hung (its comparisons are then abandoned).
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// A define + undefine round trip slower than this means libvirtd is not
/// in a state worth comparing against (e.g. re-probing QEMU on every call).
const PEER_SLOW_DEFINE: Duration = Duration::from_secs(2);

/// The libvirt daemon compared against: timed through `virsh -c
/// qemu:///system`, set up and torn down through our RPC client (untimed;
/// every call has a deadline so a hung daemon cannot hang the run).
struct Peer {
    conn: Arc<Connection>,
    broken: Arc<AtomicBool>,
    pid: i32,
    version: String,
    dir: PathBuf,
}

impl Peer {
    /// The running libvirtd, when it answers.
    fn detect(dir: &Path) -> anyhow::Result<Peer> {
        let pid = libvirtd_pid().ok_or_else(|| anyhow!("no libvirtd process"))?;
        let out = Command::new("timeout")
            .args(["30", "virsh", "-c", "qemu:///system", "version", "--daemon"])
            .output()
            .context("running virsh")?;
        if !out.status.success() {
            bail!(
                "virsh cannot reach libvirtd: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("daemon"))
            .unwrap_or("libvirtd")
            .trim()
            .to_string();
        std::fs::create_dir_all(dir)?;
        // libvirtd's QEMU runs as libvirt-qemu and must create its serial log here.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
        let peer = Peer {
            conn: Arc::new(Connection::open(Some("qemu:///system"))?),
            broken: Arc::new(AtomicBool::new(false)),
            pid,
            version,
            dir: dir.to_path_buf(),
        };
        peer.cleanup();
        let name = format!("{PEER_PREFIX}preflight");
        let xml = GuestXml {
            name: &name,
            accel: Accel::Tcg,
            emulator: Path::new("/usr/bin/qemu-system-x86_64"),
            serial: &dir.join("preflight.log"),
            boot: None,
            typical_disk: None,
        }
        .to_xml();
        let t = Instant::now();
        peer.call("define", move |c| c.define_xml(&xml))?;
        let n = name.clone();
        peer.call("undefine", move |c| c.undefine(&n))?;
        if t.elapsed() > PEER_SLOW_DEFINE {
            bail!(
                "libvirtd took {:.1} s to define and undefine one domain (is it re-probing \
                 QEMU on every call?); not comparing against it",
                t.elapsed().as_secs_f64()
            );
        }
        Ok(peer)
    }

    /// Runs `f` on our connection to libvirtd with a deadline.
    fn call<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&Connection) -> Result<T, crate::client::ClientError> + Send + 'static,
    ) -> anyhow::Result<T> {
        if self.broken.load(Ordering::Relaxed) {
            bail!("libvirtd stopped answering earlier in this run");
        }
        let conn = self.conn.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(f(&conn));
        });
        match rx.recv_timeout(PEER_TIMEOUT) {
            Ok(r) => Ok(r.with_context(|| format!("libvirtd: {what}"))?),
            Err(_) => {
                self.broken.store(true, Ordering::Relaxed);
                bail!("libvirtd did not answer {what} within {PEER_TIMEOUT:?}")
            }
        }
    }

    fn define(&self, xml: String) -> anyhow::Result<()> {
        self.call("define", move |c| c.define_xml(&xml)).map(drop)
    }

    /// Destroys `name` and waits until libvirtd's cleanup is over, so it
    /// does not run into the next timed command.
    fn destroy(&self, name: &str) -> anyhow::Result<()> {
        let n = name.to_string();
        self.call("destroy", move |c| c.destroy(&n)).map(drop)?;
        sys::settle_system(SETTLE);
        Ok(())
    }

    fn names(&self, flags: u32) -> anyhow::Result<Vec<String>> {
        let doms = self.call("list", move |c| c.list_all(flags))?;
        Ok(doms.into_iter().map(|d| d.name).collect())
    }

    /// Destroys and undefines every domain of ours (from this run or an
    /// earlier one that was interrupted).
    fn cleanup(&self) {
        let Ok(names) = self.names(0) else {
            return;
        };
        for n in names.into_iter().filter(|n| n.starts_with(PEER_PREFIX)) {
            let _ = self.destroy(&n);
            let _ = self.call("undefine", move |c| c.undefine(&n));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// libvirtd's pid: the peer script's pidfile, else a `/proc` scan.
fn libvirtd_pid() -> Option<i32> {
    let state = std::env::var("PEER_STATE").unwrap_or_else(|_| "/var/tmp/libvirt-peer".into());
    let from_file = std::fs::read_to_string(Path::new(&state).join("libvirtd.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|p| sys::alive(*p));
    from_file.or_else(|| {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            (exe.file_name()? == "libvirtd").then_some(pid)
        })
    })
}

/// Plain command lines taken from qvisor's own guests.
#[derive(Default)]
struct Specs {
    start: Vec<(Accel, PlainSpec)>,
    boot: Option<PlainSpec>,
    parallel: Option<PlainSpec>,
}

/// One benchmark run.
struct Bench {
    sizes: Sizes,
    qemu: PathBuf,
    qvisor: PathBuf,
    work: PathBuf,
    root: PathBuf,
    uri: String,
    virsh_uri: String,
    virsh: bool,
    conn: Connection,
    events: Receiver<DomainEvent>,
    supervisor: i32,
    kvm: bool,
    par_accel: Accel,
    testguest: Option<PathBuf>,
    peer: Option<Peer>,
    specs: Specs,
    measures: Vec<Measure>,
    skipped: Vec<(String, String)>,
    conditions: Vec<(String, String)>,
    failures: Vec<String>,
}

/// Entry point of `qvisor bench`.
pub fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<()> {
    if cli.globals.connect.is_some() {
        bail!("bench always runs in a fresh embedded root of its own; drop -c/--connect");
    }
    let sizes = Sizes::from_args(args);
    let mut machine = Machine::probe(&args.qemu);
    println!("qvisor bench {}", env!("CARGO_PKG_VERSION"));
    println!("machine: {}", machine.describe());
    let (work, remove_work) = match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => (
            PathBuf::from(format!("/var/tmp/qvisor-bench.{}", std::process::id())),
            !args.keep,
        ),
    };
    std::fs::create_dir_all(&work)
        .with_context(|| format!("cannot create '{}'", work.display()))?;
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let started = Instant::now();
    let outcome = (|| -> anyhow::Result<Bench> {
        let mut bench = Bench::setup(args, sizes, &work, machine.kvm)?;
        bench.run_sections(&args.only);
        Ok(bench)
    })();
    machine.load_after = sys::loadavg();
    let bench = match outcome {
        Ok(b) => b,
        Err(e) => {
            if remove_work {
                let _ = std::fs::remove_dir_all(&work);
            }
            return Err(e);
        }
    };
    println!();
    println!("machine: {}", machine.describe());
    for (k, v) in &bench.conditions {
        println!("{k}: {v}");
    }
    println!();
    print!("{}", report::table(&bench.measures));
    for (id, why) in &bench.skipped {
        println!("skipped {id}: {why}");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create '{}'", args.out.display()))?;
    let json_path = args.out.join("results.json");
    let doc = json!({
        "qvisor": env!("CARGO_PKG_VERSION"),
        "mode": if args.smoke { "smoke" } else { "full" },
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "duration_s": started.elapsed().as_secs_f64(),
        "machine": machine.to_json(),
        "conditions": bench.conditions.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "sizes": {
            "runs": bench.sizes.runs, "heavy_runs": bench.sizes.heavy,
            "parallel": bench.sizes.parallel, "list": bench.sizes.list,
            "in_process_iterations": bench.sizes.in_process,
        },
        "measures": bench.measures.iter().map(Measure::to_json).collect::<Vec<_>>(),
        "skipped": bench.skipped.iter().map(|(id, why)| json!({"id": id, "reason": why})).collect::<Vec<_>>(),
        "failures": bench.failures,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("cannot write '{}'", json_path.display()))?;
    let starts: Vec<&Measure> = bench.measures.iter().filter(|m| m.section == 1).collect();
    let svg_path = args.out.join("start-latency.svg");
    std::fs::write(
        &svg_path,
        report::svg_chart(
            "start → running: distributions (dots: runs; bar: median)",
            &starts,
        ),
    )
    .with_context(|| format!("cannot write '{}'", svg_path.display()))?;
    println!(
        "results: {} and {}",
        json_path.display(),
        svg_path.display()
    );
    let failures = bench.failures.clone();
    drop(bench);
    if remove_work {
        let _ = std::fs::remove_dir_all(&work);
    }
    if !failures.is_empty() {
        bail!(
            "{} section(s) failed: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

impl Bench {
    fn setup(args: &BenchArgs, sizes: Sizes, work: &Path, kvm: bool) -> anyhow::Result<Bench> {
        // What users run: the `qvisor` front end beside this program (the
        // bench itself runs in `qvisor-cli`).
        let front = crate::client::beside_this_program("qvisor");
        let qvisor = if front.is_absolute() {
            front
        } else {
            std::env::current_exe().context("finding the qvisor binary")?
        };
        let root = work.join("root");
        let uri = format!("qemu:///embed?root={}", root.display());
        let target = crate::connection::resolve(Some(&uri))?;
        let virsh_uri = format!(
            "qemu+unix:///system?socket={}",
            target.paths.supervisor_socket().display()
        );
        let virsh = Command::new("virsh")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let peer = match (args.peer, args.smoke) {
            (PeerMode::Off, _) | (PeerMode::Auto, true) => None,
            (mode, _) => match Peer::detect(&work.join("peer")) {
                Ok(p) => Some(p),
                Err(e) if mode == PeerMode::On => return Err(e.context("--peer on")),
                Err(e) => {
                    println!("peer: not compared ({e:#})");
                    None
                }
            },
        };
        let conn = Connection::open(Some(&uri))?;
        let events = conn.events()?;
        let supervisor = sys::supervisor_pid(&root)
            .ok_or_else(|| anyhow!("cannot find the supervisor of '{}'", root.display()))?;
        let testguest = args
            .testguest
            .join("vmlinuz")
            .is_file()
            .then(|| args.testguest.clone());
        let mut bench = Bench {
            par_accel: if kvm { Accel::Kvm } else { Accel::Tcg },
            sizes,
            qemu: args.qemu.clone(),
            qvisor,
            work: work.to_path_buf(),
            root,
            uri,
            virsh_uri,
            virsh,
            conn,
            events,
            supervisor,
            kvm,
            testguest,
            peer,
            specs: Specs::default(),
            measures: Vec::new(),
            skipped: Vec::new(),
            conditions: Vec::new(),
            failures: Vec::new(),
        };
        bench.define_guests()?;
        bench.warm_up_and_capture()?;
        bench.describe_conditions();
        Ok(bench)
    }

    fn serial_log(&self, name: &str) -> PathBuf {
        self.work.join("serial").join(format!("{name}.log"))
    }

    fn guest_xml(&self, name: &str, accel: Accel, boot: bool, disk: Option<&Path>) -> String {
        let serial = self.serial_log(name);
        GuestXml {
            name,
            accel,
            emulator: &self.qemu,
            serial: &serial,
            boot: if boot {
                self.testguest.as_deref()
            } else {
                None
            },
            typical_disk: disk,
        }
        .to_xml()
    }

    fn start_name(accel: Accel) -> &'static str {
        match accel {
            Accel::Kvm => "b-kvm",
            Accel::Tcg => "b-tcg",
        }
    }

    fn par_name(i: usize) -> String {
        format!("par-{i:02}")
    }

    fn start_accels(&self) -> Vec<Accel> {
        if self.kvm {
            vec![Accel::Kvm, Accel::Tcg]
        } else {
            vec![Accel::Tcg]
        }
    }

    fn define_guests(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.work.join("serial"))?;
        // A reused --work-dir keeps the domains of an earlier run.
        for d in self.conn.list_all(0)? {
            let _ = self.conn.destroy(&d.name);
            self.conn.undefine(&d.name)?;
        }
        for accel in self.start_accels() {
            let xml = self.guest_xml(Self::start_name(accel), accel, false, None);
            self.conn.define_xml(&xml)?;
        }
        if self.testguest.is_some() {
            let xml = self.guest_xml("b-boot", Accel::Tcg, true, None);
            self.conn.define_xml(&xml)?;
        }
        for i in 0..self.sizes.parallel {
            let xml = self.guest_xml(&Self::par_name(i), self.par_accel, false, None);
            self.conn.define_xml(&xml)?;
        }
        if let Some(peer) = &self.peer {
            let mut names: Vec<(String, Accel)> = self
                .start_accels()
                .into_iter()
                .map(|a| (format!("{PEER_PREFIX}{}", Self::start_name(a)), a))
                .collect();
            names.extend((0..self.sizes.parallel).map(|i| {
                (
                    format!("{PEER_PREFIX}{}", Self::par_name(i)),
                    self.par_accel,
                )
            }));
            for (name, accel) in names {
                let serial = peer.dir.join(format!("{name}.log"));
                let xml = GuestXml {
                    name: &name,
                    accel,
                    emulator: &self.qemu,
                    serial: &serial,
                    boot: None,
                    typical_disk: None,
                }
                .to_xml();
                peer.define(xml)
                    .with_context(|| format!("defining {name} in libvirtd"))?;
            }
        }
        Ok(())
    }

    /// The `qvisor -c URI ARGS` command.
    fn qvisor(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.qvisor);
        c.arg("-c").arg(&self.uri).args(args);
        c
    }

    /// `virsh -c URI ARGS` against our supervisor, or libvirtd.
    fn virsh_cmd(&self, libvirtd: bool, args: &[&str]) -> Command {
        let mut c = Command::new("virsh");
        let uri = if libvirtd {
            "qemu:///system"
        } else {
            &self.virsh_uri
        };
        c.arg("-c").arg(uri).args(args);
        c
    }

    /// The QEMU pid of a running domain of our root.
    fn qemu_pid(&self, name: &str) -> anyhow::Result<i32> {
        let name_arg = format!("guest={name},debug-threads=on");
        let root = self.root.display().to_string();
        let exe = self
            .qemu
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        sys::find_processes(&exe, &name_arg)
            .into_iter()
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&root))
            })
            .ok_or_else(|| anyhow!("no QEMU found for domain '{name}'"))
    }

    /// Starts each kind of guest once through the CLI (which also probes
    /// the capabilities), and takes the plain command lines from them.
    fn warm_up_and_capture(&mut self) -> anyhow::Result<()> {
        let mirror = self.work.join("mirror");
        for accel in self.start_accels() {
            let name = Self::start_name(accel);
            sys::run(&mut self.qvisor(&["start", name]))?;
            let pid = self.qemu_pid(name)?;
            let spec = PlainSpec::capture(pid, &self.root, &mirror)?;
            if !spec.has_stop_flag() {
                bail!("qvisor's command line for '{name}' has no -S; the floor needs it");
            }
            self.record_qemu_conditions(pid);
            self.conn.destroy(name)?;
            self.specs.start.push((accel, spec));
        }
        let par = Self::par_name(0);
        sys::run(&mut self.qvisor(&["start", &par]))?;
        let pid = self.qemu_pid(&par)?;
        self.specs.parallel = Some(PlainSpec::capture(pid, &self.root, &mirror)?);
        self.conn.destroy(&par)?;
        if self.testguest.is_some() {
            sys::run(&mut self.qvisor(&["start", "--paused", "b-boot"]))?;
            let pid = self.qemu_pid("b-boot")?;
            let spec = PlainSpec::capture(pid, &self.root, &mirror)?;
            self.conn.destroy("b-boot")?;
            self.specs.boot = Some(spec.without(&["-S", "-no-shutdown"]));
        }
        if let Some(peer) = &self.peer {
            // libvirtd probes its own capabilities on the first start.
            for accel in self.start_accels() {
                let name = format!("{PEER_PREFIX}{}", Self::start_name(accel));
                let n = name.clone();
                peer.call("start", move |c| c.start(&n, false))?;
                peer.destroy(&name)?;
            }
        }
        Ok(())
    }

    fn record_qemu_conditions(&mut self, pid: i32) {
        if self.conditions.iter().any(|(k, _)| k == "qemu process") {
            return;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
                .unwrap_or_default()
        };
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let cg = cgroups
            .lines()
            .find_map(|l| l.split(':').nth(2).filter(|p| p.len() > 1))
            .unwrap_or("-")
            .to_string();
        self.conditions.push((
            "qemu process".into(),
            format!(
                "uid {} gid {}, seccomp {}, cgroup {cg}",
                field("Uid:"),
                field("Gid:"),
                field("Seccomp:")
            ),
        ));
    }

    fn describe_conditions(&mut self) {
        let plugins = Command::new(&self.qvisor)
            .args(["-c", &self.uri, "--json", "plugins"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .map(|p| {
                            format!(
                                "{} ({})",
                                p["name"].as_str().unwrap_or("?"),
                                p["state"].as_str().unwrap_or("?")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let mut c = vec![
            (
                "qvisor".into(),
                format!(
                    "{} -c {} (embedded; supervisor pid {})",
                    self.qvisor.display(),
                    self.uri,
                    self.supervisor
                ),
            ),
            ("plugins (default set)".into(), plugins),
            (
                "virsh → qvisord".into(),
                if self.virsh {
                    format!("virsh -c '{}'", self.virsh_uri)
                } else {
                    "virsh not installed".into()
                },
            ),
            (
                "libvirt peer".into(),
                match &self.peer {
                    Some(p) => format!("virsh -c qemu:///system; {} (pid {})", p.version, p.pid),
                    None => "not compared".into(),
                },
            ),
            (
                "test guest".into(),
                self.testguest
                    .as_ref()
                    .map_or("missing (section 2 skipped)".into(), |p| {
                        p.display().to_string()
                    }),
            ),
        ];
        // The QEMU process's conditions (recorded at warm-up) go last.
        c.append(&mut self.conditions);
        self.conditions = c;
    }

    fn run_sections(&mut self, only: &[u8]) {
        type Section = fn(&mut Bench) -> anyhow::Result<()>;
        let sections: [(u8, &str, Section); 7] = [
            (1, "start → running", Bench::section_start),
            (2, "boot → shut off", Bench::section_boot),
            (3, "parallel starts, RSS", Bench::section_parallel),
            (4, "CPU of start+destroy cycles", Bench::section_cpu),
            (5, "list and dumpxml", Bench::section_list),
            (6, "capabilities", Bench::section_caps),
            (
                7,
                "in-process XML and command line",
                Bench::section_in_process,
            ),
        ];
        for (n, name, f) in sections {
            if !only.is_empty() && !only.contains(&n) {
                continue;
            }
            println!("== {n}. {name}");
            let t = Instant::now();
            if let Err(e) = f(self) {
                println!("   FAILED: {e:#}");
                self.failures.push(format!("section {n} ({name}): {e:#}"));
                self.recover();
            }
            println!("   ({:.1} s)", t.elapsed().as_secs_f64());
        }
    }

    /// After a failed section: stop whatever still runs.
    fn recover(&self) {
        if let Ok(doms) = self.conn.list_all(1) {
            for d in doms {
                let _ = self.conn.destroy(&d.name);
            }
        }
        if let Some(peer) = &self.peer {
            if let Ok(names) = peer.names(1) {
                for n in names.iter().filter(|n| n.starts_with(PEER_PREFIX)) {
                    let _ = peer.destroy(n);
                }
            }
        }
    }

    fn push(&mut self, m: Measure) {
        let line = report::table(std::slice::from_ref(&m));
        if let Some(row) = line.lines().nth(2) {
            println!("   {row}");
        }
        self.measures.push(m);
    }

    fn skip(&mut self, id: &str, why: &str) {
        println!("   skipped {id}: {why}");
        self.skipped.push((id.into(), why.into()));
    }

    // ---- 1. start → running -------------------------------------------

    fn section_start(&mut self) -> anyhow::Result<()> {
        if !self.kvm {
            self.skip("start-kvm", "/dev/kvm is not usable");
        }
        let specs = self.specs.start.clone();
        for (accel, spec) in specs {
            let name = Self::start_name(accel);
            let l = accel.label();
            let mut m = Measure::new(
                &format!("start-{}", l.to_lowercase()),
                1,
                &format!("start → running, {l}"),
                Unit::Ms,
                "qvisor start (embedded, whole process)",
                Some("plain QEMU, same argv, -S + QMP + cont (floor)"),
            )
            .with_target(Target::Ratio(1.5));
            let mut v = self.peer.as_ref().map(|_| {
                Measure::new(
                    &format!("start-{}-virsh", l.to_lowercase()),
                    1,
                    &format!("start → running, {l}, virsh"),
                    Unit::Ms,
                    "virsh start → qvisord",
                    Some("virsh start → libvirtd"),
                )
            });
            // qvisor against the floor, then virsh against virsh, each in
            // pairs of its own whose order alternates (A B, then B A), so
            // neither side always follows the other's (or libvirtd's) work.
            let qvisor_start = |b: &Bench| -> anyhow::Result<f64> {
                sys::settle_system(SETTLE);
                let f = sys::run(&mut b.qvisor(&["start", name]))?;
                b.conn.destroy(name)?;
                Ok(ms(f.wall))
            };
            let floor = |b: &Bench, i: usize| -> anyhow::Result<f64> {
                let slot = b.work.join(format!("floor/start-{l}-{i}"));
                sys::settle_system(SETTLE);
                Ok(ms(spec.floor(&slot, || {})?))
            };
            for i in 0..self.sizes.runs {
                let (a, b) = in_turn(i, || qvisor_start(self), || floor(self, i))?;
                m.a.samples.push(a);
                if let Some(bs) = m.b.as_mut() {
                    bs.samples.push(b);
                }
            }
            if let (Some(v), Some(peer)) = (v.as_mut(), self.peer.as_ref()) {
                let ours = |b: &Bench| -> anyhow::Result<f64> {
                    sys::settle_system(SETTLE);
                    let f = sys::run(&mut b.virsh_cmd(false, &["start", name]))?;
                    b.conn.destroy(name)?;
                    Ok(ms(f.wall))
                };
                let pname = format!("{PEER_PREFIX}{name}");
                let theirs = |b: &Bench| -> anyhow::Result<f64> {
                    sys::settle_system(SETTLE);
                    let f = sys::run(&mut b.virsh_cmd(true, &["start", &pname]))?;
                    peer.destroy(&pname)?;
                    Ok(ms(f.wall))
                };
                for i in 0..self.sizes.runs {
                    let (a, b) = in_turn(i, || ours(self), || theirs(self))?;
                    v.a.samples.push(a);
                    if let Some(bs) = v.b.as_mut() {
                        bs.samples.push(b);
                    }
                }
            }
            self.push(m);
            if let Some(v) = v {
                self.push(v);
            }
        }
        Ok(())
    }

    // ---- 2. boot → shut off -------------------------------------------

    /// Waits for the `Started` event of run `id` of `name`, then its
    /// `Stopped` event (late events of earlier runs carry other ids).
    fn wait_run_stopped(&self, name: &str, id: i32) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        let mut started = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self
                .events
                .recv_timeout(left)
                .map_err(|_| anyhow!("domain '{name}' did not shut off within {WAIT:?}"))?;
            if ev.name != name {
                continue;
            }
            match ev.kind {
                EventKind::Lifecycle(Lifecycle::Started) if ev.id == id => started = true,
                EventKind::Lifecycle(Lifecycle::Stopped(_)) if started => return Ok(()),
                _ => {}
            }
        }
    }

    fn section_boot(&mut self) -> anyhow::Result<()> {
        let Some(spec) = self.specs.boot.clone() else {
            self.skip(
                "boot-tcg",
                "no test guest (build it: scripts/testguest.sh /var/tmp/qvisor-testguest)",
            );
            return Ok(());
        };
        let mut m = Measure::new(
            "boot-tcg",
            2,
            "boot → shut off, TCG test guest",
            Unit::Ms,
            "qvisor start → 'shut off' event",
            Some("plain QEMU, same argv minus -S/-no-shutdown: exec → exit"),
        )
        .with_target(Target::Overhead(50.0));
        // The guest's boot time varies by hundreds of ms under load; the
        // tail (last console write → shut off) isolates the stop path.
        let mut tail = Measure::new(
            "boot-tail",
            2,
            "guest power-off → shut off (last console write → end)",
            Unit::Ms,
            "qvisor: → 'shut off' event",
            Some("plain QEMU: → exit"),
        );
        let serial = self.serial_log("b-boot");
        let powered_off =
            |p: &Path| std::fs::read_to_string(p).is_ok_and(|s| s.contains("TESTGUEST-POWEROFF"));
        let qvisor_run = |b: &Bench| -> anyhow::Result<(f64, f64)> {
            // Each start truncates the console file; start from none.
            let _ = std::fs::remove_file(&serial);
            while b.events.try_recv().is_ok() {}
            sys::settle_system(SETTLE);
            let t0 = Instant::now();
            sys::run(&mut b.qvisor(&["start", "b-boot"]))?;
            let id = b.conn.lookup("b-boot")?.id;
            b.wait_run_stopped("b-boot", id)?;
            let total = ms(t0.elapsed());
            let tail = since_modified(&serial);
            if !powered_off(&serial) {
                bail!("the test guest under qvisor did not print TESTGUEST-POWEROFF");
            }
            Ok((total, tail))
        };
        let plain_run = |b: &Bench, i: usize| -> anyhow::Result<(f64, f64)> {
            let slot = b.work.join(format!("floor/boot-{i}"));
            sys::settle_system(SETTLE);
            let d = spec.run_to_exit(&slot)?;
            let console = PlainSpec::written_files(&slot)
                .into_iter()
                .find(|p| powered_off(p))
                .ok_or_else(|| {
                    anyhow!("the test guest under plain QEMU did not print TESTGUEST-POWEROFF")
                })?;
            Ok((ms(d), since_modified(&console)))
        };
        for i in 0..self.sizes.runs {
            let (a, b) = in_turn(i, || qvisor_run(self), || plain_run(self, i))?;
            m.a.samples.push(a.0);
            tail.a.samples.push(a.1);
            if let Some(s) = m.b.as_mut() {
                s.samples.push(b.0);
            }
            if let Some(s) = tail.b.as_mut() {
                s.samples.push(b.1);
            }
        }
        tail.note = Some("file mtime granularity is a few ms".into());
        self.push(m);
        self.push(tail);
        Ok(())
    }

    // ---- 3. parallel starts (and 4. RSS) ------------------------------

    /// Runs every command at once; the wall time until the last one exited.
    fn all_at_once(cmds: Vec<Command>) -> anyhow::Result<(Duration, Vec<Finished>)> {
        let t0 = Instant::now();
        let running = cmds
            .into_iter()
            .map(|mut c| sys::spawn(&mut c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut done = Vec::with_capacity(running.len());
        let mut first_err = None;
        for r in running {
            match r.wait() {
                Ok(f) => done.push(f),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e.into());
        }
        Ok((t0.elapsed(), done))
    }

    fn running_count(conn: &Connection) -> usize {
        conn.list_all(1).map_or(0, |d| d.len())
    }

    fn section_parallel(&mut self) -> anyhow::Result<()> {
        let n = self.sizes.parallel;
        let spec = self
            .specs
            .parallel
            .clone()
            .ok_or_else(|| anyhow!("no command line captured for the parallel guests"))?;
        let names: Vec<String> = (0..n).map(Self::par_name).collect();
        let peer_names: Vec<String> = names.iter().map(|s| format!("{PEER_PREFIX}{s}")).collect();
        let accel = self.par_accel.label();
        let mut m = Measure::new(
            &format!("parallel-{n}"),
            3,
            &format!("{n} starts in parallel until all running, {accel}"),
            Unit::Ms,
            &format!("{n} × qvisor start at once"),
            Some(format!("{n} plain QEMUs at once (floor each)")).as_deref(),
        )
        .with_target(Target::Ratio(1.3));
        let mut destroy = Measure::new(
            &format!("parallel-{n}-destroy"),
            3,
            &format!("{n} destroys in parallel"),
            Unit::Ms,
            &format!("{n} × qvisor destroy at once"),
            None,
        );
        let mut v = self.peer.as_ref().map(|_| {
            Measure::new(
                &format!("parallel-{n}-virsh"),
                3,
                &format!("{n} starts in parallel, {accel}, virsh"),
                Unit::Ms,
                &format!("{n} × virsh start → qvisord"),
                Some(format!("{n} × virsh start → libvirtd")).as_deref(),
            )
        });
        let peer_label = self.peer.as_ref().map(|_| "libvirtd VmRSS");
        let mut rss_idle = Measure::new(
            "rss-idle",
            4,
            "daemon RSS, idle",
            Unit::MiB,
            "qvisord supervisor VmRSS",
            peer_label,
        )
        .with_target(Target::Max(sys::mb_in_mib(12.0)));
        let mut rss_busy = Measure::new(
            &format!("rss-{n}"),
            4,
            &format!("daemon RSS, {n} guests running"),
            Unit::MiB,
            "qvisord supervisor VmRSS",
            peer_label,
        )
        .with_target(Target::Max(sys::mb_in_mib(16.0)));
        for i in 0..self.sizes.heavy {
            // Resident sets are sampled once the burst before is over: the
            // supervisor returns a burst's freed heap a moment after its
            // last client left (`heap::QUIET`); libvirtd gets the same wait.
            let rss = |pid| {
                std::thread::sleep(crate::daemon::heap::QUIET * 2);
                sys::process_rss_mib(pid).unwrap_or(f64::NAN)
            };
            rss_idle.a.samples.push(rss(self.supervisor));
            let starts = names.iter().map(|d| self.qvisor(&["start", d])).collect();
            let (wall, _) = Self::all_at_once(starts)?;
            m.a.samples.push(ms(wall));
            let running = Self::running_count(&self.conn);
            if running < n {
                bail!("only {running} of {n} domains run after the parallel start");
            }
            rss_busy.a.samples.push(rss(self.supervisor));
            let destroys = names.iter().map(|d| self.qvisor(&["destroy", d])).collect();
            let (wall, _) = Self::all_at_once(destroys)?;
            destroy.a.samples.push(ms(wall));

            let wall = Self::floors_at_once(&spec, &self.work.join(format!("floor/par-{i}")), n)?;
            if let Some(b) = m.b.as_mut() {
                b.samples.push(ms(wall));
            }

            if let (Some(v), Some(peer)) = (v.as_mut(), self.peer.as_ref()) {
                let starts = names
                    .iter()
                    .map(|d| self.virsh_cmd(false, &["start", d]))
                    .collect();
                let (wall, _) = Self::all_at_once(starts)?;
                v.a.samples.push(ms(wall));
                for d in &names {
                    self.conn.destroy(d)?;
                }
                if let Some(b) = rss_idle.b.as_mut() {
                    b.samples.push(rss(peer.pid));
                }
                let starts = peer_names
                    .iter()
                    .map(|d| self.virsh_cmd(true, &["start", d]))
                    .collect();
                let (wall, _) = Self::all_at_once(starts)?;
                if let Some(b) = v.b.as_mut() {
                    b.samples.push(ms(wall));
                }
                if let Some(b) = rss_busy.b.as_mut() {
                    b.samples.push(rss(peer.pid));
                }
                for d in &peer_names {
                    peer.destroy(d)?;
                }
            }
        }
        self.push(m);
        if let Some(v) = v {
            self.push(v);
        }
        self.push(destroy);
        self.push(rss_idle);
        self.push(rss_busy);
        Ok(())
    }

    /// `n` floors at once (one thread each); every QEMU stays up until all
    /// run. The wall time until the last reported running.
    fn floors_at_once(spec: &PlainSpec, dir: &Path, n: usize) -> anyhow::Result<Duration> {
        let barrier = Arc::new(Barrier::new(n));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|k| {
                let spec = spec.clone();
                let slot = dir.join(k.to_string());
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut waited = false;
                    let r = spec.floor(&slot, || {
                        waited = true;
                        barrier.wait();
                    });
                    let done = Instant::now();
                    if !waited {
                        // Failed before running: release the others.
                        barrier.wait();
                    }
                    r.map(|_| done)
                })
            })
            .collect();
        let mut last = t0;
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(done)) => last = last.max(done),
                Ok(Err(e)) => {
                    first_err.get_or_insert(anyhow!(e));
                }
                Err(_) => {
                    first_err.get_or_insert(anyhow!("a floor thread panicked"));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(last - t0),
        }
    }

    // ---- 4. CPU of start+destroy cycles --------------------------------

    fn section_cpu(&mut self) -> anyhow::Result<()> {
        let n = self.sizes.parallel;
        let names: Vec<String> = (0..n).map(Self::par_name).collect();
        let mut m = Measure::new(
            &format!("cpu-{n}-cycles"),
            4,
            &format!("CPU time of {n} start+destroy cycles"),
            Unit::Ms,
            "qvisor CLI processes + supervisor",
            self.peer.as_ref().map(|_| "virsh processes + libvirtd"),
        )
        .with_target(Target::Max(250.0));
        let mut split = Vec::new();
        for _ in 0..self.sizes.heavy {
            // Like every timed run: not while the other side's guests are
            // still being torn down.
            sys::settle_system(SETTLE);
            let before = sys::process_cpu(self.supervisor)
                .ok_or_else(|| anyhow!("cannot read the supervisor's CPU time"))?;
            let mut cli = Duration::ZERO;
            for d in &names {
                cli += sys::run(&mut self.qvisor(&["start", d]))?.cpu;
                cli += sys::run(&mut self.qvisor(&["destroy", d]))?.cpu;
            }
            let after = sys::process_cpu(self.supervisor)
                .ok_or_else(|| anyhow!("cannot read the supervisor's CPU time"))?;
            let daemon = after.saturating_sub(before);
            split.push((ms(cli), ms(daemon)));
            m.a.samples.push(ms(cli + daemon));
            if let Some(peer) = &self.peer {
                sys::settle_system(SETTLE);
                let before = sys::process_cpu(peer.pid).unwrap_or_default();
                let mut cli = Duration::ZERO;
                for d in &names {
                    let d = format!("{PEER_PREFIX}{d}");
                    cli += sys::run(&mut self.virsh_cmd(true, &["start", &d]))?.cpu;
                    cli += sys::run(&mut self.virsh_cmd(true, &["destroy", &d]))?.cpu;
                }
                let after = sys::process_cpu(peer.pid).unwrap_or_default();
                if let Some(b) = m.b.as_mut() {
                    b.samples.push(ms(cli + after.saturating_sub(before)));
                }
            }
        }
        let parts: Vec<String> = split
            .iter()
            .map(|(c, d)| format!("{c:.0}+{d:.0}"))
            .collect();
        m.note = Some(format!(
            "CLI+supervisor ms per run: {}; CPU time ticks are 10 ms",
            parts.join(", ")
        ));
        self.push(m);
        Ok(())
    }

    // ---- 5. list --all, dumpxml ---------------------------------------

    /// Defines `PREFIXl-NNNN` domains through `define` until `have` (the
    /// number defined now) reaches `total`.
    fn fill(
        &self,
        have: usize,
        prefix: &str,
        total: usize,
        define: &dyn Fn(String) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let serial = self.work.join("serial/list.log");
        for k in have..total {
            let name = format!("{prefix}l-{k:04}");
            let xml = GuestXml {
                name: &name,
                accel: Accel::Tcg,
                emulator: &self.qemu,
                serial: &serial,
                boot: None,
                typical_disk: None,
            }
            .to_xml();
            define(xml).with_context(|| format!("defining '{name}'"))?;
        }
        Ok(())
    }

    /// Undefines the `l-NNNN` domains again.
    fn unfill(&self) {
        if let Ok(doms) = self.conn.list_all(0) {
            for d in doms.iter().filter(|d| d.name.starts_with("l-")) {
                let _ = self.conn.undefine(&d.name);
            }
        }
        if let Some(peer) = &self.peer {
            let lp = format!("{PEER_PREFIX}l-");
            if let Ok(names) = peer.names(0) {
                for n in names.into_iter().filter(|n| n.starts_with(&lp)) {
                    let _ = peer.call("undefine", move |c| c.undefine(&n));
                }
            }
        }
    }

    /// One whole-process command for qvisor's CLI, and the same virsh
    /// command against qvisord and libvirtd, interleaved.
    fn cli_and_virsh(
        &mut self,
        id: &str,
        section: u8,
        title: &str,
        qvisor_args: &[&str],
        virsh_args: (&[&str], &[&str]),
        target: Option<Target>,
    ) -> anyhow::Result<()> {
        let mut m = Measure::new(
            id,
            section,
            title,
            Unit::Ms,
            &format!("qvisor {}", qvisor_args.join(" ")),
            None,
        );
        m.target = target;
        let mut v = self.peer.as_ref().map(|_| {
            Measure::new(
                &format!("{id}-virsh"),
                section,
                &format!("{title}, virsh"),
                Unit::Ms,
                &format!("virsh {} → qvisord", virsh_args.0.join(" ")),
                Some(format!("virsh {} → libvirtd", virsh_args.1.join(" "))).as_deref(),
            )
        });
        // One untimed run each, so the first timed one finds caches warm.
        sys::run(&mut self.qvisor(qvisor_args))?;
        if v.is_some() {
            sys::run(&mut self.virsh_cmd(false, virsh_args.0))?;
            sys::run(&mut self.virsh_cmd(true, virsh_args.1))?;
        }
        for _ in 0..self.sizes.runs {
            m.a.samples
                .push(ms(sys::run(&mut self.qvisor(qvisor_args))?.wall));
            if let Some(v) = v.as_mut() {
                v.a.samples
                    .push(ms(sys::run(&mut self.virsh_cmd(false, virsh_args.0))?.wall));
                let w = ms(sys::run(&mut self.virsh_cmd(true, virsh_args.1))?.wall);
                if let Some(b) = v.b.as_mut() {
                    b.samples.push(w);
                }
            }
        }
        self.push(m);
        if let Some(v) = v {
            self.push(v);
        }
        Ok(())
    }

    fn section_list(&mut self) -> anyhow::Result<()> {
        let result = self.list_and_dumpxml();
        self.unfill();
        result
    }

    fn list_and_dumpxml(&mut self) -> anyhow::Result<()> {
        let mut sizes = self.sizes.list.clone();
        sizes.sort_unstable();
        for size in sizes {
            let t = Instant::now();
            let have = self.conn.list_all(0)?.len();
            self.fill(have, "", size, &|xml| {
                self.conn.define_xml(&xml)?;
                Ok(())
            })?;
            let mut how = format!("{size} defined in {:.1} s", t.elapsed().as_secs_f64());
            if let Some(peer) = &self.peer {
                let t = Instant::now();
                let have = peer.names(0)?.len();
                self.fill(have, PEER_PREFIX, size, &|xml| peer.define(xml))?;
                how.push_str(&format!(" (libvirtd: {:.1} s)", t.elapsed().as_secs_f64()));
            }
            println!("   {how}");
            let list = ["list", "--all"];
            self.cli_and_virsh(
                &format!("list-{size}"),
                5,
                &format!("list --all, {size} domains"),
                &list,
                (&list, &list),
                None,
            )?;
        }
        let name = Self::start_name(Accel::Tcg);
        let pname = format!("{PEER_PREFIX}{name}");
        self.cli_and_virsh(
            "dumpxml",
            5,
            "dumpxml (inactive domain)",
            &["dumpxml", name],
            (&["dumpxml", name], &["dumpxml", &pname]),
            None,
        )
    }

    // ---- 6. capabilities ------------------------------------------------

    fn probe_options(&self, dir: &Path) -> qvisor_caps::live::ProbeOptions {
        qvisor_caps::live::ProbeOptions {
            kvm_usable: self.kvm,
            work_dir: dir.to_path_buf(),
            ..qvisor_caps::live::ProbeOptions::default()
        }
    }

    /// A cold probe in process: a capability cache over an empty directory.
    fn cold_probe(&self, dir: &Path) -> anyhow::Result<Arc<qvisor_caps::QemuCaps>> {
        std::fs::create_dir_all(dir)?;
        let cache = qvisor_caps::cache::CapsCache::new(qvisor_caps::cache::CacheConfig::new(
            dir,
            self.probe_options(dir),
        ));
        Ok(cache.lookup(&self.qemu)?)
    }

    fn section_caps(&mut self) -> anyhow::Result<()> {
        let mut m = Measure::new(
            "probe-cold",
            6,
            "cold capability probe (empty cache), in process",
            Unit::Ms,
            "qvisor-caps probe of the QEMU binary",
            Some("plain QEMU -machine none: exec, QMP handshake, quit"),
        )
        .with_target(Target::Max(1000.0));
        let mut whole = Measure::new(
            "probe-cold-process",
            6,
            "cold probe as a whole process",
            Unit::Ms,
            "qvisor capabilities on a fresh root (supervisor start + probe)",
            None,
        )
        .with_target(Target::Max(1000.0));
        for i in 0..self.sizes.heavy {
            let dir = self.work.join(format!("probe/{i}"));
            let t0 = Instant::now();
            self.cold_probe(&dir)?;
            m.a.samples.push(ms(t0.elapsed()));
            let d = plain::bare_qmp_start(&self.qemu, &self.work.join(format!("floor/probe-{i}")))?;
            if let Some(b) = m.b.as_mut() {
                b.samples.push(ms(d));
            }
            let root = self.work.join(format!("probe-root-{i}"));
            let uri = format!("qemu:///embed?root={}", root.display());
            let mut cmd = Command::new(&self.qvisor);
            cmd.args(["-c", &uri, "capabilities"]);
            let f = sys::run(&mut cmd);
            if let Some(pid) = sys::supervisor_pid(&root) {
                sys::terminate(pid, Duration::from_secs(10));
            }
            whole.a.samples.push(ms(f?.wall));
        }
        self.push(m);
        self.push(whole);
        self.cli_and_virsh(
            "caps-warm",
            6,
            "warm capabilities, whole process",
            &["capabilities"],
            (&["capabilities"], &["capabilities"]),
            Some(Target::Max(20.0)),
        )
    }

    // ---- 7. in process: parse, expand, build ------------------------------

    fn section_in_process(&mut self) -> anyhow::Result<()> {
        let disk = self.work.join("typical.qcow2");
        if !disk.exists() {
            let out = Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&disk)
                .arg("1G")
                .output()
                .context("running qemu-img")?;
            if !out.status.success() {
                bail!(
                    "qemu-img create failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        let xml = self.guest_xml("typical", Accel::Kvm, false, Some(&disk));
        let xml_path = self.work.join("typical.xml");
        std::fs::write(&xml_path, &xml)?;
        let caps_arc = self.cold_probe(&self.work.join("probe/in-process"))?;
        let caps: &qvisor_caps::QemuCaps = &caps_arc;
        let iters = self.sizes.in_process;
        let conf = qvisor_conf::QemuConf::defaults(&qvisor_conf::Mode::System, true);
        let mut counter = 0u8;
        let mut random = move |buf: &mut [u8]| {
            for b in buf.iter_mut() {
                counter = counter.wrapping_add(1);
                *b = counter;
            }
        };
        let parse_opts = || qvisor_domain::ParseOptions { inactive: true };
        let mut parse = Measure::new(
            "xml-parse",
            7,
            "typical domain: XML parse",
            Unit::Us,
            "qvisor_domain::parse",
            None,
        );
        let mut expand = Measure::new(
            "xml-expand",
            7,
            "typical domain: expand (defaults, addresses)",
            Unit::Us,
            "qvisor_domain::expand",
            None,
        );
        let mut build = Measure::new(
            "cmdline-build",
            7,
            "typical domain: command-line build + render",
            Unit::Us,
            "qvisor_cmdline::build",
            None,
        )
        .with_target(Target::Max(1000.0));
        let aux = self.work.join("aux");
        let mut expanded = None;
        for k in 0..iters + 5 {
            let t0 = Instant::now();
            let mut def = qvisor_domain::parse(&xml, parse_opts())?;
            let t1 = Instant::now();
            let mut ectx = qvisor_domain::ExpandContext {
                caps: Some(caps),
                default_emulator: self.qemu.display().to_string(),
                nvram_dir: self.work.join("nvram").display().to_string(),
                vnc_allow_host_audio: false,
                nographics_allow_host_audio: false,
                audio_env: None,
                sdl_audio_env: None,
                random: &mut random,
            };
            qvisor_domain::expand(&mut def, &mut ectx)?;
            let t2 = Instant::now();
            let mut host = qvisor_cmdline::fake::FakeHost::new(&aux);
            let mut env = qvisor_cmdline::fake::conformance_env(
                &def,
                &conf,
                &aux,
                &mut host,
                &std::collections::BTreeMap::new(),
            );
            let t3 = Instant::now();
            let cl = qvisor_cmdline::build(&def, caps, &conf, &mut env)?;
            let args = cl.args();
            let t4 = Instant::now();
            if args.is_empty() {
                bail!("the typical domain built an empty command line");
            }
            if k >= 5 {
                parse.a.samples.push((t1 - t0).as_secs_f64() * 1e6);
                expand.a.samples.push((t2 - t1).as_secs_f64() * 1e6);
                build.a.samples.push((t4 - t3).as_secs_f64() * 1e6);
            }
            expanded.get_or_insert(args.len());
        }
        build.note = expanded.map(|n| format!("{n} arguments"));
        self.push(parse);
        self.push(expand);
        self.push(build);

        let mut native = Measure::new(
            "to-native-in-process",
            7,
            "typical domain: domxml-to-native through the driver, in process",
            Unit::Us,
            "Driver::domxml_to_native (parse, expand, plugins, build)",
            None,
        );
        let driver = open_driver(&self.work.join("inproc-root"))?;
        let result = (|| -> anyhow::Result<()> {
            for k in 0..iters + 5 {
                let t0 = Instant::now();
                let line = driver.domxml_to_native(&xml)?;
                let d = t0.elapsed();
                if !line.contains("virtio") {
                    bail!("domxml-to-native lost the virtio devices: {line}");
                }
                if k >= 5 {
                    native.a.samples.push(d.as_secs_f64() * 1e6);
                }
            }
            Ok(())
        })();
        driver.shutdown_driver();
        result?;
        self.push(native);

        let xml_arg = xml_path.display().to_string();
        let mut peer_xml = None;
        if let Some(peer) = &self.peer {
            let p = peer.dir.join("typical.xml");
            let pdisk = peer.dir.join("typical.qcow2");
            std::fs::copy(&disk, &pdisk)?;
            std::fs::write(
                &p,
                self.guest_xml("typical", Accel::Kvm, false, Some(&pdisk)),
            )?;
            peer_xml = Some(p.display().to_string());
        }
        let peer_arg = peer_xml.unwrap_or_else(|| xml_arg.clone());
        self.cli_and_virsh(
            "to-native",
            7,
            "domxml-to-native qemu-argv, whole process",
            &["domxml-to-native", "qemu-argv", &xml_arg],
            (
                &["domxml-to-native", "qemu-argv", &xml_arg],
                &["domxml-to-native", "qemu-argv", &peer_arg],
            ),
            Some(Target::Max(15.0)),
        )
    }
}

/// Milliseconds since `path` was last written (NaN when unknown).
fn since_modified(path: &Path) -> f64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map_or(f64::NAN, ms)
}

/// A driver in this process over its own embedded root, with the root's
/// qemu.conf and the default plugin set (what the supervisor would run).
fn open_driver(root: &Path) -> anyhow::Result<crate::driver::Driver> {
    let env = qvisor_conf::Environment::from_process();
    let uri = qvisor_conf::ConnectUri::embed(root)?;
    let mut paths = qvisor_conf::DriverPaths::new(&uri.mode, &env)?;
    let loaded = paths.load_qemu_conf()?;
    paths.apply_conf(&loaded.conf);
    let plugins = crate::plugins::load_specs(&paths.plugins_conf, &crate::plugins::plugin_dir())?;
    Ok(crate::driver::Driver::open(crate::driver::DriverOptions {
        uri,
        paths,
        conf: loaded.conf,
        plugins,
    })?)
}

impl Drop for Bench {
    fn drop(&mut self) {
        // Nothing of ours may keep running: domains, then the supervisor.
        self.recover();
        if let Some(peer) = self.peer.take() {
            drop(peer);
        }
        sys::terminate(self.supervisor, Duration::from_secs(15));
        // Plain QEMUs are children of ours and reaped where they ran.
    }
}
