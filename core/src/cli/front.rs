//! The `qvisor` front end.
//!
//! `qvisor start`, `destroy`, `list`, `dumpxml` and the other domain
//! commands ([`DomainCommand`]) are what scripts and managers run by the
//! thousand, each a process of its own. The `qvisor` program runs those
//! itself and links nothing else: no driver, plugin loader, capability
//! probe or benchmark, so the loader has a third of the code to map and a
//! fifth of the relocated data to write. Every other command, any parse error
//! and `--help`/`--version` are handed to `qvisor-cli`, the full command
//! set installed beside it, with the same arguments (`exec`, so exit
//! status, output and signals are that program's). Measured on
//! `domstate`: 1.5–2.2 ms of CPU and 250 page faults as the full program,
//! 1.2–1.3 ms and 120 faults here; 20 `start` + `destroy` pairs, 104–118
//! against 89–100 ms. The other commands pay one more `exec` (about 1 ms).
//!
//! `QVISOR_LOG` also goes to `qvisor-cli`: the front end logs warnings
//! only, which spares it the log filter's parser.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use clap::Parser;

use super::domain::{self, DomainCommand};
use super::Globals;

/// The full command set's program.
const FULL_CLI: &str = "qvisor-cli";

/// The commands the front end runs itself. No help or version flags:
/// asking for them is a parse error here, and `qvisor-cli` answers.
#[derive(Debug, Parser)]
#[command(
    name = "qvisor",
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true
)]
struct Front {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: DomainCommand,
}

/// Entry point of the `qvisor` binary.
pub fn main() -> ExitCode {
    if std::env::var_os("QVISOR_LOG").is_some() {
        return run_full_cli();
    }
    let Ok(front) = Front::try_parse() else {
        return run_full_cli();
    };
    super::restore_sigpipe();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    super::exit_code(domain::run(&front.globals, &front.command))
}

/// Replaces this process with `qvisor-cli` and the same arguments.
fn run_full_cli() -> ExitCode {
    let full = crate::client::beside_this_program(FULL_CLI);
    let err = std::process::Command::new(&full)
        .arg0("qvisor")
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!("error: cannot run '{}': {err}", full.display());
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Option<Front> {
        Front::try_parse_from(std::iter::once("qvisor").chain(args.iter().copied())).ok()
    }

    #[test]
    fn domain_commands_are_run_here_with_global_options_anywhere() {
        let f = parse(&["-c", "qemu:///session", "start", "vm", "--paused"]).expect("parsed");
        assert_eq!(f.globals.connect.as_deref(), Some("qemu:///session"));
        assert!(matches!(f.command, DomainCommand::Start(ref a) if a.domain == "vm" && a.paused));
        let f = parse(&["list", "--all", "--json"]).expect("parsed");
        assert!(f.globals.json);
    }

    #[test]
    fn everything_else_goes_to_the_full_command_set() {
        for args in [
            &["bench", "--smoke"][..],
            &["pool-list"],
            &["--help"],
            &["start", "--help"],
            &["-h"],
            &["--version"],
            &["start"],
            &[],
            &["no-such-command"],
        ] {
            assert!(parse(args).is_none(), "{args:?} must go to {FULL_CLI}");
        }
    }
}
