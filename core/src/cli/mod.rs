//! The `qvisor` command line: parses arguments with clap, calls the driver API,
//! prints the result. No lifecycle logic lives here.

pub mod bench;
mod domain;
pub mod front;
mod plugins;
pub mod storage;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// qvisor: run libvirt domains on QEMU (KVM, TCG, HVF) with pluggable security
/// and storage.
#[derive(Debug, Parser)]
#[command(name = "qvisor", version, about, long_about = None)]
pub struct Cli {
    /// `-c` and `--json`.
    #[command(flatten)]
    pub globals: Globals,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Globals {
    /// Connection URI: qemu:///system, qemu:///session, qemu:///embed?root=/abs/dir.
    /// Defaults to $LIBVIRT_DEFAULT_URI, then $QVISOR_DEFAULT_URI, then an
    /// embedded root in the user's state directory.
    #[arg(short = 'c', long = "connect", global = true)]
    pub connect: Option<String>,

    /// Print machine-readable JSON where the command supports it.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands (virsh's names and options).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the versions of qvisor, its plugin SDK and the QEMU it would use.
    Version,
    /// List the loaded plugins: name, kind, version, SDK ABI, file, state.
    Plugins,
    /// Defining, starting, stopping and querying domains.
    #[command(flatten)]
    Domain(domain::DomainCommand),
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
    let g = &cli.globals;
    let result = match &cli.command {
        Command::Version => version(g),
        Command::Plugins => plugins::run(g),
        Command::Domain(d) => domain::run(g, d),
        Command::Autostart(a) => domain::autostart(g, a),
        Command::Console(d) => domain::console(g, d),
        Command::QemuMonitorCommand(a) => domain::monitor(g, a),
        Command::QemuAttach { pid } => domain::qemu_attach(g, *pid),
        Command::DomxmlToNative(a) => domain::to_native(g, a),
        Command::DomxmlFromNative(a) => domain::from_native(g, a),
        Command::Capabilities => domain::capabilities(g),
        Command::Domcapabilities(a) => domain::domcapabilities(g, a),
        Command::Storage(s) => storage::run(g, s),
        Command::Bench(a) => bench::run(c, a),
    };
    exit_code(result)
}

/// Prints a command's error the way every qvisor command does.
fn exit_code(result: anyhow::Result<()>) -> ExitCode {
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

fn version(cli: &Globals) -> anyhow::Result<()> {
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
