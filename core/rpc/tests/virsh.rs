//! The stock `virsh` (libvirt-clients 9.0) against this transport with a tiny handler:
//! proves the connection handshake, replies, errors and events work with libvirt's own
//! client library. Skipped, with a printed reason, when virsh is not installed.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::TestServer;
use qvisor_rpc::remote::{DomainEventCallbackLifecycleMsg, DomainEventLifecycleMsg, NonnullDomain};

fn virsh_available() -> bool {
    let found = Command::new("virsh").arg("--version").output().is_ok();
    if !found {
        eprintln!("SKIPPED: virsh is not installed (apt install libvirt-clients)");
    }
    found
}

fn uri(socket: &Path) -> String {
    format!("qemu+unix:///system?socket={}", socket.display())
}

/// Runs virsh with a hard time limit, without the user's config or default URI.
fn virsh(socket: &Path, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .arg("60")
        .arg("virsh")
        .arg("-c")
        .arg(uri(socket))
        .args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    eprintln!(
        "virsh {args:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const HANDSHAKE: [&str; 6] = [
    "REMOTE_PROC_AUTH_LIST",
    "REMOTE_PROC_CONNECT_OPEN",
    "REMOTE_PROC_CONNECT_SUPPORTS_FEATURE",
    "REMOTE_PROC_CONNECT_SUPPORTS_FEATURE",
    "REMOTE_PROC_CONNECT_REGISTER_CLOSE_CALLBACK",
    "REMOTE_PROC_CONNECT_UNREGISTER_CLOSE_CALLBACK",
];

#[test]
fn virsh_version_completes_the_handshake() {
    if !virsh_available() {
        return;
    }
    let server = TestServer::start();
    let out = virsh(&server.rw, &["version", "--daemon"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("Using API: QEMU 9.0.0"), "{text}");
    assert!(text.contains("Running hypervisor: QEMU 7.2.0"), "{text}");
    assert!(text.contains("Running against daemon: 9.0.0"), "{text}");
    server.wait_for("the client to leave", |s| s.disconnected.len() == 1);
    let seen = server.seen();
    // KEEPALIVE's feature query is answered by the transport, the rest by the handler.
    for name in HANDSHAKE {
        assert!(
            seen.calls.contains(&name),
            "{name} missing from {:?}",
            seen.calls
        );
    }
    assert_eq!(seen.calls.last(), Some(&"REMOTE_PROC_CONNECT_CLOSE"));
    assert_eq!(seen.calls.first(), Some(&"REMOTE_PROC_AUTH_LIST"));
    let peer = &seen.peers[0];
    assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
    assert!(peer.pid > 0);
    assert!(!peer.read_only);
}

#[test]
fn virsh_uri_and_hostname() {
    if !virsh_available() {
        return;
    }
    let server = TestServer::start();
    let out = virsh(&server.rw, &["uri"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), uri(&server.rw));
    let out = virsh(&server.rw, &["hostname"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "qvisor-test-host");
    assert!(server
        .seen()
        .calls
        .contains(&"REMOTE_PROC_CONNECT_GET_HOSTNAME"));
}

#[test]
fn handler_errors_and_unsupported_calls_reach_virsh_and_keep_the_connection() {
    if !virsh_available() {
        return;
    }
    let server = TestServer::start();
    // One virsh process, one connection: an error, an unsupported call, then a call
    // that must still work on the same connection.
    let out = virsh(
        &server.rw,
        &["dominfo nosuch; domxml-from-native qemu-argv /dev/null; hostname"],
    );
    let err = stderr(&out);
    assert!(
        err.contains("error: failed to get domain 'nosuch'"),
        "{err}"
    );
    assert!(
        err.contains("this function is not supported by the connection driver: virConnectDomainXMLFromNative"),
        "{err}"
    );
    assert!(stdout(&out).contains("qvisor-test-host"));
    server.wait_for("the client to leave", |s| s.disconnected.len() == 1);
    assert_eq!(server.seen().peers.len(), 1);
}

#[test]
fn read_only_socket_refuses_write_procedures_to_virsh() {
    if !virsh_available() {
        return;
    }
    let server = TestServer::start();
    let out = virsh(&server.ro, &["hostname"]);
    assert!(out.status.success());
    let xml = server.dir.join("tiny.xml");
    std::fs::write(&xml, "<domain type='kvm'><name>t</name></domain>").unwrap();
    let out = virsh(
        &server.ro,
        &["domxml-to-native", "qemu-argv", xml.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("operation forbidden: read only access prevents virConnectDomainXMLToNative"),
        "{}",
        stderr(&out)
    );
    assert!(server.seen().peers.iter().all(|p| p.read_only));
}

#[test]
fn virsh_event_loop_receives_pushed_lifecycle_events() {
    if !virsh_available() {
        return;
    }
    let server = TestServer::start();
    let socket = server.rw.clone();
    let child =
        std::thread::spawn(move || virsh(&socket, &["event", "--all", "--loop", "--timeout", "3"]));
    // virsh registers one callback per domain event id (27 in libvirt 9.0).
    server.wait_for("the lifecycle registration", |s| {
        s.registrations.iter().any(|r| r.1 == 0)
    });
    let (client, callback) = {
        let seen = server.seen();
        let r = seen.registrations.iter().find(|r| r.1 == 0).unwrap();
        (r.0, r.2)
    };
    let sender = server
        .seen()
        .senders
        .iter()
        .find(|s| s.client() == client)
        .unwrap()
        .clone();
    let dom = NonnullDomain {
        name: "vm1".into(),
        uuid: [0x11; 16],
        id: 3,
    };
    for (event, detail) in [(2, 0), (3, 0), (4, 0), (5, 1)] {
        sender
            .send(&DomainEventCallbackLifecycleMsg {
                callback_id: callback,
                msg: DomainEventLifecycleMsg {
                    dom: dom.clone(),
                    event,
                    detail,
                },
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.join().unwrap();
    let text = stdout(&out);
    for line in [
        "event 'lifecycle' for domain 'vm1': Started Booted",
        "event 'lifecycle' for domain 'vm1': Suspended Paused",
        "event 'lifecycle' for domain 'vm1': Resumed Unpaused",
        "event 'lifecycle' for domain 'vm1': Stopped Destroyed",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    let seen = server.seen();
    assert_eq!(
        seen.registrations.iter().filter(|r| r.0 == client).count(),
        27
    );
    assert!(seen
        .calls
        .contains(&"REMOTE_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY"));
}

/// Collapses runs of spaces so column alignment does not matter.
fn squeeze(s: &str) -> String {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn virsh_domain_commands_decode_the_typed_replies() {
    if !virsh_available() {
        return;
    }
    let server = TestServer::start();
    let list = squeeze(&stdout(&virsh(&server.rw, &["list", "--all"])));
    assert!(list.contains("Id Name State"), "{list}");
    assert!(list.contains("3 vm1 running"), "{list}");

    let info = squeeze(&stdout(&virsh(&server.rw, &["dominfo", "vm1"])));
    for line in [
        "Id: 3",
        "Name: vm1",
        "UUID: 11111111-2222-3333-4444-555555555555",
        "OS Type: hvm",
        "State: running",
        "CPU(s): 2",
        "CPU time: 1.5s",
        "Max memory: 1048576 KiB",
        "Used memory: 524288 KiB",
        "Persistent: yes",
        "Autostart: disable",
        "Managed save: no",
        "Security model: apparmor",
        "Security DOI: 0",
        "Security label: libvirt-11111111-2222-3333-4444-555555555555 (enforcing)",
        "Messages: tainted: custom monitor control commands issued",
    ] {
        assert!(info.contains(line), "missing {line:?} in\n{info}");
    }

    let state = virsh(&server.rw, &["domstate", "vm1", "--reason"]);
    assert_eq!(stdout(&state).trim(), "running (booted)");

    let xml = virsh(&server.rw, &["dumpxml", "vm1"]);
    assert!(stdout(&xml).contains("<name>vm1</name>"));

    let node = squeeze(&stdout(&virsh(&server.rw, &["nodeinfo"])));
    for line in [
        "CPU model: x86_64",
        "CPU(s): 4",
        "CPU frequency: 2000 MHz",
        "CPU socket(s): 1",
        "Core(s) per socket: 2",
        "Thread(s) per core: 2",
        "NUMA cell(s): 1",
        "Memory size: 16384000 KiB",
    ] {
        assert!(node.contains(line), "missing {line:?} in\n{node}");
    }

    let qmp = virsh(
        &server.rw,
        &[
            "qemu-monitor-command",
            "vm1",
            r#"{"execute":"query-status"}"#,
        ],
    );
    assert!(qmp.status.success());
    assert_eq!(
        stdout(&qmp).trim(),
        r#"{"return":{"status":"running","singlestep":false,"running":true},"id":"libvirt-7"}"#
    );

    let auto = virsh(&server.rw, &["autostart", "vm1"]);
    assert!(auto.status.success());
    assert!(stdout(&auto).contains("Domain 'vm1' marked as autostarted"));

    let missing = virsh(&server.rw, &["domstate", "nosuch"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("failed to get domain 'nosuch'"));

    let calls = server.seen().calls.clone();
    for name in [
        "REMOTE_PROC_CONNECT_LIST_ALL_DOMAINS",
        "REMOTE_PROC_DOMAIN_GET_INFO",
        "REMOTE_PROC_NODE_GET_SECURITY_MODEL",
        "REMOTE_PROC_DOMAIN_GET_SECURITY_LABEL",
        "REMOTE_PROC_DOMAIN_GET_MESSAGES",
        "REMOTE_PROC_NODE_GET_INFO",
        "QEMU_PROC_DOMAIN_MONITOR_COMMAND",
        "REMOTE_PROC_DOMAIN_SET_AUTOSTART",
    ] {
        assert!(calls.contains(&name), "{name} not called: {calls:?}");
    }
}

#[test]
fn virsh_arguments_for_lifecycle_commands_decode() {
    if !virsh_available() {
        return;
    }
    let server = TestServer::start();
    let xml = server.dir.join("vm.xml");
    std::fs::write(
        &xml,
        "<domain type='kvm'><name>vm1</name><memory>131072</memory></domain>",
    )
    .unwrap();
    let argv = server.dir.join("argv");
    std::fs::write(&argv, "/usr/bin/qemu-system-x86_64 -name vm1 -m 128\n").unwrap();
    let xml = xml.to_str().unwrap();
    let argv = argv.to_str().unwrap();
    // (virsh command, the procedure whose arguments must decode)
    let cases: &[(&[&str], &str)] = &[
        (&["define", xml], "REMOTE_PROC_DOMAIN_DEFINE_XML"),
        (
            &["define", "--validate", xml],
            "REMOTE_PROC_DOMAIN_DEFINE_XML_FLAGS",
        ),
        (&["create", xml], "REMOTE_PROC_DOMAIN_CREATE_XML"),
        (&["start", "vm2"], "REMOTE_PROC_DOMAIN_CREATE"),
        (
            &["start", "--paused", "vm2"],
            "REMOTE_PROC_DOMAIN_CREATE_WITH_FLAGS",
        ),
        (&["shutdown", "vm1"], "REMOTE_PROC_DOMAIN_SHUTDOWN"),
        (
            &["shutdown", "--mode", "acpi", "vm1"],
            "REMOTE_PROC_DOMAIN_SHUTDOWN_FLAGS",
        ),
        (&["reboot", "vm1"], "REMOTE_PROC_DOMAIN_REBOOT"),
        (&["resume", "vm1"], "REMOTE_PROC_DOMAIN_RESUME"),
        (&["destroy", "vm1"], "REMOTE_PROC_DOMAIN_DESTROY"),
        (
            &["destroy", "--graceful", "vm1"],
            "REMOTE_PROC_DOMAIN_DESTROY_FLAGS",
        ),
        (&["undefine", "vm2"], "REMOTE_PROC_DOMAIN_SNAPSHOT_NUM"),
        (
            &["setmem", "vm1", "65536"],
            "REMOTE_PROC_DOMAIN_SET_MEMORY_FLAGS",
        ),
        (
            &["domxml-to-native", "qemu-argv", xml],
            "REMOTE_PROC_CONNECT_DOMAIN_XML_TO_NATIVE",
        ),
        (
            &["domxml-from-native", "qemu-argv", argv],
            "REMOTE_PROC_CONNECT_DOMAIN_XML_FROM_NATIVE",
        ),
        (
            &["domcapabilities", "--virttype", "kvm"],
            "REMOTE_PROC_CONNECT_GET_DOMAIN_CAPABILITIES",
        ),
        (
            &["domstats", "vm1"],
            "REMOTE_PROC_CONNECT_GET_ALL_DOMAIN_STATS",
        ),
        (&["vcpucount", "vm1"], "REMOTE_PROC_DOMAIN_GET_VCPUS_FLAGS"),
    ];
    for (args, procedure) in cases {
        let out = virsh(&server.rw, args);
        let err = stderr(&out);
        assert!(!err.contains("Unable to decode"), "{args:?}: {err}");
        assert!(
            server.seen().calls.contains(procedure),
            "{args:?} did not reach the handler as {procedure}: {err}"
        );
    }
}
