//! `qvisord`: the daemon. All logic lives in `qvisor_core::daemon`.

fn main() -> std::process::ExitCode {
    qvisor_core::daemon::main()
}
