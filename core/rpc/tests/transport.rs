//! The transport against raw clients: malformed input, keepalive, events, access
//! control, many clients, shutdown.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::{TestServer, TestService};
use qvisor_rpc::client::{Client, ClientError};
use qvisor_rpc::frame::{
    encode_frame, Header, MessageStatus, MessageType, KEEPALIVE_PING, KEEPALIVE_PONG, MESSAGE_MAX,
};
use qvisor_rpc::remote::{
    ConnectGetHostnameRet, ConnectOpenArgs, DomainEventCallbackRebootMsg, NonnullDomain,
};
use qvisor_rpc::server::{SendError, ServerError};
use qvisor_rpc::{remote_proc, ErrorCode, PeerPolicy, Program, Server, ServerConfig, SocketConfig};

fn open(path: &std::path::Path) -> Client {
    let mut c = Client::connect(path).unwrap();
    c.set_timeout(Some(Duration::from_secs(10))).unwrap();
    let _: () = c
        .call(
            Program::Remote,
            remote_proc::CONNECT_OPEN,
            &ConnectOpenArgs {
                name: Some("qemu:///system".into()),
                flags: 0,
            },
        )
        .unwrap();
    c
}

fn hostname(c: &mut Client) -> String {
    let r: ConnectGetHostnameRet = c
        .call(Program::Remote, remote_proc::CONNECT_GET_HOSTNAME, &())
        .unwrap();
    r.hostname
}

/// The server closed this connection: reading gives end of stream (or a reset).
fn assert_dropped(mut s: UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection still up: {other:?}"),
    }
}

#[test]
fn garbage_bytes_drop_only_that_client() {
    let server = TestServer::start();
    let mut good = open(&server.rw);
    let mut bad = server.connect(&server.rw);
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_dropped(bad);
    assert_eq!(hostname(&mut good), "qvisor-test-host");
}

#[test]
fn length_word_below_header_size_drops_the_client() {
    let server = TestServer::start();
    let mut bad = server.connect(&server.rw);
    bad.write_all(&8u32.to_be_bytes()).unwrap();
    assert_dropped(bad);
    assert_eq!(hostname(&mut open(&server.rw)), "qvisor-test-host");
}

#[test]
fn oversize_length_word_drops_the_client_before_reading_the_body() {
    let server = TestServer::start();
    let mut bad = server.connect(&server.rw);
    bad.write_all(&((MESSAGE_MAX + 5) as u32).to_be_bytes())
        .unwrap();
    assert_dropped(bad);
    let mut bad = server.connect(&server.rw);
    bad.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_dropped(bad);
    assert_eq!(hostname(&mut open(&server.rw)), "qvisor-test-host");
}

#[test]
fn truncated_body_then_hangup_leaves_the_server_serving() {
    let server = TestServer::start();
    let mut bad = server.connect(&server.rw);
    let frame = encode_frame(
        &Header::call(Program::Remote, remote_proc::CONNECT_GET_HOSTNAME, 1),
        &(),
    )
    .unwrap();
    bad.write_all(&1000u32.to_be_bytes()).unwrap();
    bad.write_all(&frame[4..]).unwrap();
    drop(bad);
    server.wait_for("the truncated client to be dropped", |s| {
        s.disconnected.len() == 1
    });
    assert_eq!(hostname(&mut open(&server.rw)), "qvisor-test-host");
}

#[test]
fn unknown_program_and_procedure_get_errors_and_the_connection_stays() {
    let server = TestServer::start();
    let mut c = open(&server.rw);
    let mut raw = encode_frame(&Header::call(Program::Remote, 1, 77), &()).unwrap();
    raw[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    c.send_raw(&raw).unwrap();
    let reply = c.read_raw().unwrap().unwrap();
    assert_eq!(reply.header.serial, 77);
    assert_eq!(reply.header.status, MessageStatus::Error);
    let e: Result<(), ClientError> = c.call(Program::Remote, 4242, &());
    match e {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.code(), Some(ErrorCode::Rpc));
            assert_eq!(e.to_string(), "unknown procedure: 4242");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hostname(&mut c), "qvisor-test-host");
}

#[test]
fn undecodable_arguments_get_an_error_and_the_connection_stays() {
    let server = TestServer::start();
    let mut c = open(&server.rw);
    // DOMAIN_LOOKUP_BY_NAME with a string length running past the body.
    let e: Result<(), ClientError> = c.call(
        Program::Remote,
        remote_proc::DOMAIN_LOOKUP_BY_NAME,
        &0xffff_ff00u32,
    );
    match e {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.to_string(), "Unable to decode message payload")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hostname(&mut c), "qvisor-test-host");
}

#[test]
fn keepalive_ping_is_answered_with_pong() {
    let server = TestServer::start();
    let mut c = open(&server.rw);
    c.send_raw(&encode_frame(&Header::message(Program::Keepalive, KEEPALIVE_PING), &()).unwrap())
        .unwrap();
    let pong = c.next_message().unwrap();
    assert_eq!(
        pong.header,
        Header::message(Program::Keepalive, KEEPALIVE_PONG)
    );
    assert!(pong.body.is_empty());
}

#[test]
fn events_reach_the_client_and_fail_cleanly_after_it_left() {
    let server = TestServer::start();
    let mut c = open(&server.rw);
    let sender = server.seen().senders[0].clone();
    let msg = DomainEventCallbackRebootMsg {
        callback_id: 4,
        msg: qvisor_rpc::remote::DomainEventRebootMsg {
            dom: NonnullDomain {
                name: "vm1".into(),
                uuid: [1; 16],
                id: 1,
            },
        },
    };
    sender.send(&msg).unwrap();
    let got = c.next_message().unwrap();
    assert_eq!(got.header.kind, MessageType::Message);
    assert_eq!(
        got.header.procedure,
        remote_proc::DOMAIN_EVENT_CALLBACK_REBOOT
    );
    let decoded: DomainEventCallbackRebootMsg = qvisor_rpc::xdr::from_bytes(&got.body).unwrap();
    assert_eq!(decoded, msg);
    drop(c);
    server.wait_for("the client to leave", |s| s.disconnected.len() == 1);
    // The writer thread is gone once the reader finished.
    std::thread::sleep(Duration::from_millis(50));
    assert!(matches!(sender.send(&msg), Err(SendError::Closed(_))));
}

#[test]
fn read_only_socket_allows_reads_and_refuses_writes() {
    let server = TestServer::start();
    let mut c = open(&server.ro);
    assert_eq!(hostname(&mut c), "qvisor-test-host");
    let e: Result<(), ClientError> = c.call(
        Program::Remote,
        remote_proc::DOMAIN_DEFINE_XML,
        &qvisor_rpc::remote::DomainDefineXmlArgs {
            xml: "<domain/>".into(),
        },
    );
    match e {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.code(), Some(ErrorCode::OperationDenied));
            assert_eq!(
                e.to_string(),
                "operation forbidden: read only access prevents virDomainDefineXML"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(server.seen().peers[0].read_only);
    assert!(!server
        .seen()
        .calls
        .contains(&"REMOTE_PROC_DOMAIN_DEFINE_XML"));
}

#[test]
fn sockets_get_the_configured_modes() {
    let server = TestServer::start();
    let mode = |p| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.rw), 0o700);
    assert_eq!(mode(&server.ro), 0o777);
}

#[test]
fn same_user_policy_admits_our_own_uid() {
    let server = TestServer::start_with(PeerPolicy::SameUser);
    assert_eq!(hostname(&mut open(&server.rw)), "qvisor-test-host");
}

#[test]
fn same_user_policy_refuses_another_uid() {
    if !nix::unistd::geteuid().is_root()
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("SKIPPED: needs root and setpriv to connect as another uid");
        return;
    }
    let server = TestServer::start_with(PeerPolicy::SameUser);
    // The 0777 read-only socket, so only the uid policy stands in the way.
    std::fs::set_permissions(&server.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("timeout")
        .args([
            "30",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg("virsh")
        .arg("-c")
        .arg(format!(
            "qemu+unix:///system?socket={}",
            server.ro.display()
        ))
        .arg("hostname")
        .env("HOME", "/tmp")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    if err.contains("No such file") || out.status.code() == Some(127) {
        eprintln!("SKIPPED: virsh not installed");
        return;
    }
    assert!(!out.status.success());
    assert!(err.contains("access denied: client uid 65534"), "{err}");
    assert!(server.seen().calls.is_empty());
}

#[test]
fn fifty_concurrent_clients_are_all_served() {
    let server = TestServer::start();
    let path = server.rw.clone();
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = open(&path);
                for _ in 0..20 {
                    assert_eq!(hostname(&mut c), "qvisor-test-host");
                }
                let _: () = c
                    .call(Program::Remote, remote_proc::CONNECT_CLOSE, &())
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    server.wait_for("all clients to leave", |s| s.disconnected.len() == 50);
    let start = std::time::Instant::now();
    while server.handle.client_count() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "clients still counted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(server.handle.idle_for().is_some());
}

#[test]
fn shutdown_disconnects_clients_and_removes_sockets() {
    let server = TestServer::start();
    let c = open(&server.rw);
    assert_eq!(server.handle.client_count(), 1);
    assert!(server.handle.idle_for().is_none());
    let rw = server.rw.clone();
    let seen = server.service.seen.clone();
    drop(server);
    assert!(!rw.exists());
    assert_eq!(seen.lock().unwrap().disconnected.len(), 1);
    drop(c);
}

#[test]
fn shutdown_leaves_a_file_a_successor_put_at_the_socket_path() {
    let mut server = TestServer::start();
    let rw = server.rw.clone();
    // Someone removed our socket file and another daemon bound that path.
    std::fs::remove_file(&rw).unwrap();
    let successor = std::os::unix::net::UnixListener::bind(&rw).unwrap();
    server.stop();
    assert!(rw.exists(), "the successor's socket was removed");
    assert!(!server.ro.exists(), "our own read-only socket stayed");
    drop(successor);
}

#[test]
fn a_live_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    let server = TestServer::start();
    let cfg = ServerConfig {
        sockets: vec![SocketConfig::read_write(&server.rw)],
        ..ServerConfig::default()
    };
    assert!(matches!(
        Server::bind(cfg, TestService::default()),
        Err(ServerError::SocketInUse { .. })
    ));
    let stale = server.dir.join("stale-sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let cfg = ServerConfig {
        sockets: vec![SocketConfig::read_write(&stale)],
        ..ServerConfig::default()
    };
    assert!(Server::bind(cfg, TestService::default()).is_ok());
}

#[test]
fn keepalive_is_answered_while_a_slow_call_runs() {
    let server = TestServer::start();
    let mut c = open(&server.rw);
    let suspend = encode_frame(
        &Header::call(Program::Remote, remote_proc::DOMAIN_SUSPEND, 50),
        &qvisor_rpc::remote::DomainSuspendArgs { dom: common::vm1() },
    )
    .unwrap();
    c.send_raw(&suspend).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let start = std::time::Instant::now();
    c.send_raw(&encode_frame(&Header::message(Program::Keepalive, KEEPALIVE_PING), &()).unwrap())
        .unwrap();
    let first = c.read_raw().unwrap().unwrap();
    assert_eq!(
        first.header,
        Header::message(Program::Keepalive, KEEPALIVE_PONG)
    );
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    let reply = c.read_raw().unwrap().unwrap();
    assert_eq!(reply.header.serial, 50);
    assert_eq!(reply.header.status, MessageStatus::Ok);
}

#[test]
fn other_clients_are_served_while_one_runs_a_slow_call() {
    let server = TestServer::start();
    let mut slow = open(&server.rw);
    let suspend = encode_frame(
        &Header::call(Program::Remote, remote_proc::DOMAIN_SUSPEND, 1),
        &qvisor_rpc::remote::DomainSuspendArgs { dom: common::vm1() },
    )
    .unwrap();
    slow.send_raw(&suspend).unwrap();
    let start = std::time::Instant::now();
    assert_eq!(hostname(&mut open(&server.rw)), "qvisor-test-host");
    assert!(start.elapsed() < Duration::from_millis(1000));
}

#[test]
fn pipelined_calls_are_answered_in_order() {
    let server = TestServer::start();
    let mut c = open(&server.rw);
    let mut burst = Vec::new();
    for serial in 100..120 {
        burst.extend(
            encode_frame(
                &Header::call(Program::Remote, remote_proc::CONNECT_GET_HOSTNAME, serial),
                &(),
            )
            .unwrap(),
        );
    }
    c.send_raw(&burst).unwrap();
    for serial in 100..120 {
        let f = c.read_raw().unwrap().unwrap();
        assert_eq!(f.header.serial, serial);
        let r: ConnectGetHostnameRet = qvisor_rpc::xdr::from_bytes(&f.body).unwrap();
        assert_eq!(r.hostname, "qvisor-test-host");
    }
}

#[test]
fn large_frames_travel_in_both_directions() {
    let server = TestServer::start();
    let mut c = open(&server.rw);
    // 4 MB reply, read slowly so the server has to write it in pieces.
    c.send_raw(
        &encode_frame(
            &Header::call(Program::Remote, remote_proc::CONNECT_GET_CAPABILITIES, 5),
            &(),
        )
        .unwrap(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let f = c.read_raw().unwrap().unwrap();
    let caps: qvisor_rpc::remote::ConnectGetCapabilitiesRet =
        qvisor_rpc::xdr::from_bytes(&f.body).unwrap();
    assert_eq!(caps.capabilities.len(), common::BIG_REPLY);
    // A 4 MB call arriving in many small writes; the handler answers it.
    let xml = "y".repeat(4_000_000);
    let frame = encode_frame(
        &Header::call(Program::Remote, remote_proc::DOMAIN_DEFINE_XML, 6),
        &qvisor_rpc::remote::DomainDefineXmlArgs { xml },
    )
    .unwrap();
    for piece in frame.chunks(100_003) {
        c.send_raw(piece).unwrap();
    }
    let reply = c.read_raw().unwrap().unwrap();
    assert_eq!(reply.header.serial, 6);
    let e: qvisor_rpc::RemoteError = qvisor_rpc::xdr::from_bytes(&reply.body).unwrap();
    assert_eq!(e.code(), Some(ErrorCode::NoSupport));
    assert_eq!(hostname(&mut c), "qvisor-test-host");
}

#[test]
fn a_client_that_stops_reading_events_is_dropped() {
    let server = TestServer::start();
    let c = open(&server.rw);
    let sender = server.seen().senders[0].clone();
    let msg = DomainEventCallbackRebootMsg {
        callback_id: 1,
        msg: qvisor_rpc::remote::DomainEventRebootMsg {
            dom: NonnullDomain {
                name: "x".repeat(1000),
                uuid: [0; 16],
                id: 1,
            },
        },
    };
    let mut overflowed = false;
    for _ in 0..100_000 {
        match sender.send(&msg) {
            Ok(()) => {}
            Err(SendError::Overflow(_)) | Err(SendError::Closed(_)) => {
                overflowed = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(overflowed);
    server.wait_for("the stuck client to be dropped", |s| {
        s.disconnected.len() == 1
    });
    assert!(sender.is_closed());
    drop(c);
}

#[test]
fn a_panicking_handler_fails_the_call_and_drops_only_that_client() {
    let server = TestServer::start();
    let mut other = open(&server.rw);
    let mut c = open(&server.rw);
    let e: Result<(), ClientError> = c.call(
        Program::Remote,
        remote_proc::DOMAIN_RESET,
        &qvisor_rpc::remote::DomainResetArgs {
            dom: common::vm1(),
            flags: 0,
        },
    );
    match e {
        Err(ClientError::Remote(e)) => assert_eq!(e.code(), Some(ErrorCode::InternalError)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.read_raw(), Ok(None) | Err(_)));
    assert_eq!(hostname(&mut other), "qvisor-test-host");
    assert_eq!(hostname(&mut open(&server.rw)), "qvisor-test-host");
}
