//! Debian's python3-libvirt (libvirt's C client library underneath) against this
//! transport: open, queries, a lifecycle event callback. Skipped with a printed reason
//! when `/usr/bin/python3` cannot import `libvirt`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{vm1, TestServer};
use qvisor_rpc::remote::{DomainEventCallbackLifecycleMsg, DomainEventLifecycleMsg};

const PYTHON: &str = "/usr/bin/python3";

const SCRIPT: &str = r#"
import sys, libvirt
libvirt.virEventRegisterDefaultImpl()
conn = libvirt.open(sys.argv[1])
print("host", conn.getHostname())
print("type", conn.getType(), conn.getVersion(), conn.getLibVersion())
dom = conn.lookupByName("vm1")
print("dom", dom.name(), dom.ID(), dom.UUIDString(), dom.state(), dom.info())
print("all", [d.name() for d in conn.listAllDomains()])
try:
    conn.lookupByName("nosuch")
except libvirt.libvirtError as e:
    print("error", e.get_error_code(), e.get_error_domain())
got = []
def cb(conn, dom, event, detail, opaque):
    got.append((dom.name(), event, detail))
cid = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, None)
print("registered", cid, flush=True)
while not got:
    libvirt.virEventRunDefaultImpl()
print("event", got[0], flush=True)
conn.domainEventDeregisterAny(cid)
conn.close()
"#;

#[test]
fn python_libvirt_opens_queries_and_receives_an_event() {
    let importable = Command::new(PYTHON)
        .args(["-c", "import libvirt"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        eprintln!("SKIPPED: {PYTHON} cannot import libvirt (apt install python3-libvirt)");
        return;
    }
    let server = TestServer::start();
    let uri = format!("qemu+unix:///system?socket={}", server.rw.display());
    let mut child = Command::new("timeout")
        .args(["60", PYTHON, "-c", SCRIPT, &uri])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let registered = line.starts_with("registered");
        out.push(line);
        if registered {
            break;
        }
    }
    server.wait_for("the lifecycle registration", |s| {
        s.registrations.iter().any(|r| r.1 == 0)
    });
    let callback = server.seen().registrations[0].2;
    let sender = server.seen().senders[0].clone();
    sender
        .send(&DomainEventCallbackLifecycleMsg {
            callback_id: callback,
            msg: DomainEventLifecycleMsg {
                dom: vm1(),
                event: 5,
                detail: 1,
            },
        })
        .unwrap();
    out.extend(lines.map(Result::unwrap));
    let status = child.wait().unwrap();
    let text = out.join("\n");
    eprintln!("{text}");
    assert!(status.success(), "{text}");
    assert!(text.contains("host qvisor-test-host"));
    assert!(text.contains("type QEMU 7002000 9000000"));
    assert!(text.contains(
        "dom vm1 3 11111111-2222-3333-4444-555555555555 [1, 1] [1, 1048576, 524288, 2, 1500000000]"
    ));
    assert!(text.contains("all ['vm1']"));
    assert!(text.contains("error 42 10"), "{text}");
    assert!(text.contains("event ('vm1', 5, 1)"), "{text}");
}
