//! `qvisor`: the virsh-like client's front end. It runs the domain
//! commands itself and hands every other command to `qvisor-cli`
//! (see `qvisor_core::cli::front`).

fn main() -> std::process::ExitCode {
    qvisor_core::cli::front::main()
}
