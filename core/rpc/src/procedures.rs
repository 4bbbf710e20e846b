//! The procedure table: every REMOTE and QEMU procedure of libvirt 9.0.0.
//!
//! Generated from `remote_protocol.x`/`qemu_protocol.x` and libvirt's public API
//! sources by `tools/gen_protocol.py`; see [`ProcedureInfo`] for what each row holds.

#[path = "generated/procedures.rs"]
mod table;

pub use table::{qemu_proc, remote_proc};

use crate::error::ErrorDomain;
use crate::frame::Program;

/// What the protocol definition and libvirt's API say about one procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcedureInfo {
    /// Which program it belongs to.
    pub program: Program,
    /// Its number within the program.
    pub number: i32,
    /// `REMOTE_PROC_...` / `QEMU_PROC_...`.
    pub name: &'static str,
    /// The public API function it serves (`virDomainCreate`), used in libvirt's
    /// "unsupported" and "read only access prevents ..." messages.
    pub api: &'static str,
    /// Whether a read-only connection may call it: each of its unconditional `@acl`
    /// annotations only reads (`*:getattr`, `*:read`, `*:search_*`, or `none`), and its
    /// public API does not refuse read-only connections. ACLs that depend on a flag
    /// (listed in [`ProcedureInfo::acl`] with a third `:FLAG` part, e.g.
    /// `domain:read_secure:VIR_DOMAIN_XML_SECURE`) are left to the handler.
    pub read_only_safe: bool,
    /// `@priority: high`: never blocks on a hypervisor monitor.
    pub high_priority: bool,
    /// The error domain of the API's source file (`VIR_FROM_THIS`).
    pub error_domain: ErrorDomain,
    /// The `@acl` annotations, as written in the `.x` file.
    pub acl: &'static [&'static str],
}

#[allow(clippy::too_many_arguments)]
const fn info(
    program: Program,
    number: i32,
    name: &'static str,
    api: &'static str,
    read_only_safe: bool,
    high_priority: bool,
    error_domain: ErrorDomain,
    acl: &'static [&'static str],
) -> ProcedureInfo {
    ProcedureInfo {
        program,
        number,
        name,
        api,
        read_only_safe,
        high_priority,
        error_domain,
        acl,
    }
}

/// All procedures of `program` (none for the keepalive program), sorted by number.
pub fn procedures(program: Program) -> &'static [ProcedureInfo] {
    match program {
        Program::Remote => table::REMOTE_PROCEDURES,
        Program::Qemu => table::QEMU_PROCEDURES,
        Program::Keepalive => &[],
    }
}

/// The procedure `number` of `program`, if libvirt 9.0 defines it.
pub fn procedure(program: Program, number: i32) -> Option<&'static ProcedureInfo> {
    let table = procedures(program);
    table
        .binary_search_by_key(&number, |p| p.number)
        .ok()
        .and_then(|i| table.get(i))
}

/// The procedure called `name` (`REMOTE_PROC_DOMAIN_CREATE`).
pub fn procedure_by_name(name: &str) -> Option<&'static ProcedureInfo> {
    [Program::Remote, Program::Qemu]
        .into_iter()
        .flat_map(procedures)
        .find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_contiguous_from_one() {
        for program in [Program::Remote, Program::Qemu] {
            for (i, p) in procedures(program).iter().enumerate() {
                assert_eq!(p.number as usize, i + 1, "{}", p.name);
                assert_eq!(p.program, program);
            }
        }
        assert_eq!(procedures(Program::Remote).len(), 443);
        assert_eq!(procedures(Program::Qemu).len(), 7);
    }

    #[test]
    fn table_matches_the_shared_procedure_list() {
        let tsv = include_str!("../tests/data/procedures.tsv");
        let mut rows = 0;
        for line in tsv.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let [program, number, name] = cols[..] else {
                panic!("bad row {line}");
            };
            let program = match program {
                "REMOTE" => Program::Remote,
                "QEMU" => Program::Qemu,
                other => panic!("unknown program {other}"),
            };
            let p = procedure(program, number.parse().unwrap()).unwrap();
            assert_eq!(p.name, name);
            rows += 1;
        }
        assert_eq!(rows, 450);
    }

    #[test]
    fn lookup_by_number_and_name_agree() {
        let p = procedure(Program::Remote, remote_proc::DOMAIN_CREATE).unwrap();
        assert_eq!(p.name, "REMOTE_PROC_DOMAIN_CREATE");
        assert_eq!(p.api, "virDomainCreate");
        assert_eq!(procedure_by_name("REMOTE_PROC_DOMAIN_CREATE"), Some(p));
        assert!(procedure(Program::Remote, 0).is_none());
        assert!(procedure(Program::Remote, 444).is_none());
        assert!(procedure(Program::Keepalive, 1).is_none());
    }

    #[test]
    fn read_only_set_allows_queries_and_refuses_changes() {
        let ro = |n| procedure(Program::Remote, n).unwrap().read_only_safe;
        // What virsh -r needs for list/dominfo/dumpxml/events.
        for n in [
            remote_proc::AUTH_LIST,
            remote_proc::CONNECT_OPEN,
            remote_proc::CONNECT_CLOSE,
            remote_proc::CONNECT_SUPPORTS_FEATURE,
            remote_proc::CONNECT_REGISTER_CLOSE_CALLBACK,
            remote_proc::CONNECT_LIST_ALL_DOMAINS,
            remote_proc::DOMAIN_LOOKUP_BY_NAME,
            remote_proc::DOMAIN_GET_INFO,
            remote_proc::DOMAIN_GET_XML_DESC,
            remote_proc::CONNECT_GET_CAPABILITIES,
            remote_proc::CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
        ] {
            assert!(ro(n), "{n} should be read-only safe");
        }
        for n in [
            remote_proc::DOMAIN_CREATE,
            remote_proc::DOMAIN_DEFINE_XML,
            remote_proc::DOMAIN_DESTROY,
            remote_proc::DOMAIN_UNDEFINE_FLAGS,
            remote_proc::DOMAIN_SET_AUTOSTART,
            remote_proc::CONNECT_DOMAIN_XML_TO_NATIVE,
            remote_proc::CONNECT_GET_DOMAIN_CAPABILITIES,
            // ACL says domain:read, but virDomainSetSchedulerParameters refuses RO.
            remote_proc::DOMAIN_SET_SCHEDULER_PARAMETERS,
        ] {
            assert!(!ro(n), "{n} must be refused on a read-only socket");
        }
        let monitor = procedure(Program::Qemu, qemu_proc::DOMAIN_MONITOR_COMMAND).unwrap();
        assert!(!monitor.read_only_safe);
        assert_eq!(monitor.api, "virDomainQemuMonitorCommand");
    }

    #[test]
    fn flag_conditional_acls_are_kept_for_the_handler() {
        let p = procedure(Program::Remote, remote_proc::DOMAIN_GET_XML_DESC).unwrap();
        assert!(p.acl.contains(&"domain:read_secure:VIR_DOMAIN_XML_SECURE"));
    }
}
