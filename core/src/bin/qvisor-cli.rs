//! `qvisor-cli`: the whole virsh-like command set (`qvisor` runs it for
//! every command but the domain ones). All logic lives in `qvisor_core::cli`.

fn main() -> std::process::ExitCode {
    qvisor_core::cli::main()
}
