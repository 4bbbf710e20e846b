//! `qvisor`: the virsh-like client. All logic lives in `qvisor_core::cli`.

fn main() -> std::process::ExitCode {
    qvisor_core::cli::main()
}
