//! The `qvisor` command line: parses arguments with clap, calls the driver API,
//! prints the result. No lifecycle logic lives here.

mod plugins;

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

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the versions of qvisor, its plugin SDK and the QEMU it would use.
    Version,
    /// List the loaded plugins: name, kind, version, SDK ABI, file, state.
    Plugins,
}

/// Entry point of the `qvisor` binary.
pub fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Version => version(&cli),
        Command::Plugins => plugins::run(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `QVISOR_LOG` sets the filter (default `warn`).
fn init_logging() {
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
    if cli.json {
        println!("{}", serde_json::json!({ "qvisor": qvisor, "sdk": sdk }));
    } else {
        println!("qvisor {qvisor}");
        println!("plugin SDK ABI {sdk}");
    }
    Ok(())
}
