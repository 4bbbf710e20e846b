//! The `qvisor` command line: parses arguments with clap, calls the driver API,
//! prints the result. No lifecycle logic lives here.

pub mod bench;
mod domain;
mod plugins;
pub mod storage;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// qvisor: run libvirt domains on QEMU (KVM, TCG, HVF) with pluggable security
/// and storage.
#[derive(Debug, Parser)]
#[command(name = "qvisor", version, about, long_about = None)]
pub struct Cli {
    /// Connection URI: qemu:///system, qemu:///session, qemu:///embed?root=/abs/dir.
    /// Defaults to $LIBVIRT_DEFAULT_URI, then $QVISOR_DEFAULT_URI, then an
    /// embedded root in the user's state directory.
    #[arg(short = 'c', long = "connect", global = true)]
    pub connect: Option<String>,

    /// Print machine-readable JSON where the command supports it.
    #[arg(long, global = true)]
    pub json: bool,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands (virsh's names and options).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the versions of qvisor, its plugin SDK and the QEMU it would use.
    Version,
    /// List the loaded plugins: name, kind, version, SDK ABI, file, state.
    Plugins,
    /// Define (but don't start) a domain from an XML file.
    Define {
        /// Domain XML file.
        file: std::path::PathBuf,
    },
    /// Undefine a domain (a running one becomes transient).
    Undefine(domain::DomArg),
    /// Create and start a transient domain from an XML file.
    Create(domain::CreateArgs),
    /// Start a defined domain.
    Start(domain::StartArgs),
    /// Stop a domain at once.
    Destroy(domain::DomArg),
    /// Ask the guest to power off (ACPI).
    Shutdown(domain::DomArg),
    /// Reboot the guest.
    Reboot(domain::DomArg),
    /// Pause a domain's vCPUs.
    Suspend(domain::DomArg),
    /// Resume a paused domain.
    Resume(domain::DomArg),
    /// List domains.
    List(domain::ListArgs),
    /// Domain information.
    Dominfo(domain::DomArg),
    /// Domain state.
    Domstate(domain::DomStateArgs),
    /// Domain id.
    Domid(domain::DomArg),
    /// Domain UUID.
    Domuuid(domain::DomArg),
    /// Domain name.
    Domname(domain::DomArg),
    /// Domain XML (live while running).
    Dumpxml(domain::DumpXmlArgs),
    /// Start a domain when its driver starts.
    Autostart(domain::AutostartArgs),
    /// Attach to a running domain's serial console.
    Console(domain::DomArg),
    /// Send a QMP (or --hmp) command to a domain's monitor; taints the domain.
    #[command(name = "qemu-monitor-command")]
    QemuMonitorCommand(domain::MonitorArgs),
    /// Attach to a QEMU started elsewhere (not supported, as in libvirt >= 5.5).
    #[command(name = "qemu-attach")]
    QemuAttach {
        /// QEMU's pid.
        pid: u32,
    },
    /// The QEMU command line a domain XML would run.
    #[command(name = "domxml-to-native")]
    DomxmlToNative(domain::ToNativeArgs),
    /// Convert QEMU arguments to domain XML (not supported, as in libvirt >= 5.5).
    #[command(name = "domxml-from-native")]
    DomxmlFromNative(domain::FromNativeArgs),
    /// Host capabilities XML.
    Capabilities,
    /// Domain capabilities XML.
    Domcapabilities(domain::DomCapsArgs),
    /// Storage pools and volumes (pool-*, vol-*).
    #[command(flatten)]
    Storage(storage::StorageCommand),
    /// Measure qvisor against plain QEMU (and libvirtd when it runs): table, JSON, SVG.
    Bench(bench::BenchArgs),
}

/// Entry point of the `qvisor` binary.
pub fn main() -> ExitCode {
    restore_sigpipe();
    init_logging();
    let cli = Cli::parse();
    let c = &cli;
    let result = match &cli.command {
        Command::Version => version(c),
        Command::Plugins => plugins::run(c),
        Command::Define { file } => domain::define(c, file),
        Command::Undefine(d) => domain::undefine(c, d),
        Command::Create(a) => domain::create(c, a),
        Command::Start(a) => domain::start(c, a),
        Command::Destroy(d) => domain::simple(c, "destroy", d),
        Command::Shutdown(d) => domain::simple(c, "shutdown", d),
        Command::Reboot(d) => domain::simple(c, "reboot", d),
        Command::Suspend(d) => domain::simple(c, "suspend", d),
        Command::Resume(d) => domain::simple(c, "resume", d),
        Command::List(a) => domain::list(c, a),
        Command::Dominfo(d) => domain::dominfo(c, d),
        Command::Domstate(a) => domain::domstate(c, a),
        Command::Domid(d) => domain::ident(c, "domid", d),
        Command::Domuuid(d) => domain::ident(c, "domuuid", d),
        Command::Domname(d) => domain::ident(c, "domname", d),
        Command::Dumpxml(a) => domain::dumpxml(c, a),
        Command::Autostart(a) => domain::autostart(c, a),
        Command::Console(d) => domain::console(c, d),
        Command::QemuMonitorCommand(a) => domain::monitor(c, a),
        Command::QemuAttach { pid } => domain::qemu_attach(c, *pid),
        Command::DomxmlToNative(a) => domain::to_native(c, a),
        Command::DomxmlFromNative(a) => domain::from_native(c, a),
        Command::Capabilities => domain::capabilities(c),
        Command::Domcapabilities(a) => domain::domcapabilities(c, a),
        Command::Storage(s) => storage::run(c, s),
        Command::Bench(a) => bench::run(c, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping causes the message already contains
/// (our error types embed their cause in the message, as libvirt's do).
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// `qvisor list | head` must end quietly, like any Unix tool: restore the
/// default SIGPIPE action that the Rust runtime sets to "ignore".
fn restore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL at start-up, before any
    // thread exists, has no memory-safety implications.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs go to stderr; `QVISOR_LOG` sets the filter (default `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QVISOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn version(cli: &Cli) -> anyhow::Result<()> {
    let qvisor = env!("CARGO_PKG_VERSION");
    let sdk = qvisor_sdk::SDK_VERSION;
    let hv = domain::hypervisor_version(cli)
        .ok()
        .map(|(t, v)| format!("{t} {}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000));
    if cli.json {
        let v = serde_json::json!({ "qvisor": qvisor, "sdk": sdk, "hypervisor": hv });
        println!("{v}");
    } else {
        println!("qvisor {qvisor}");
        println!("Plugin SDK ABI: {sdk}");
        if let Some(h) = hv {
            println!("Running hypervisor: {h}");
        }
    }
    Ok(())
}
