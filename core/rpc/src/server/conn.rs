//! One client connection: its reader loop, writer thread and call dispatch.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::{EventSender, Handler, Outgoing, Peer, Service};
use crate::call::{error_frame, Call, Response};
use crate::error::{ErrorCode, ErrorDomain, RemoteError};
use crate::frame::{
    encode_frame, read_frame, Frame, FrameError, Header, MessageStatus, MessageType, Program,
    KEEPALIVE_PING, KEEPALIVE_PONG, PROTOCOL_VERSION,
};
use crate::procedures::procedure;
use crate::remote::ConnectSupportsFeatureRet;

/// `VIR_DRV_FEATURE_PROGRAM_KEEPALIVE`: the transport answers PINGs, so it answers
/// this feature query itself.
const FEATURE_PROGRAM_KEEPALIVE: i32 = 10;

/// Stack of a writer thread: it only moves bytes.
const WRITER_STACK: usize = 64 * 1024;

pub(crate) struct ConnConfig {
    pub outgoing_queue: usize,
    pub write_timeout: Duration,
}

/// Serves `stream` until the client leaves or breaks the protocol.
pub(crate) fn serve<S: Service>(service: &S, stream: UnixStream, peer: &Peer, cfg: &ConnConfig) {
    let (writer_stream, event_stream) = match (stream.try_clone(), stream.try_clone()) {
        (Ok(w), Ok(e)) => (w, e),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("client {}: cannot duplicate its socket: {e}", peer.id);
            return;
        }
    };
    if let Err(e) = writer_stream.set_write_timeout(Some(cfg.write_timeout)) {
        tracing::warn!("client {}: cannot set its write timeout: {e}", peer.id);
    }
    let (tx, rx) = sync_channel(cfg.outgoing_queue);
    let id = peer.id;
    let writer = match thread::Builder::new()
        .name(format!("rpc-writer-{id}"))
        .stack_size(WRITER_STACK)
        .spawn(move || write_loop(&writer_stream, &rx, id))
    {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("client {id}: cannot start its writer thread: {e}");
            return;
        }
    };
    let events = EventSender {
        client: id,
        tx: tx.clone(),
        stream: Arc::new(event_stream),
    };
    let mut handler = service.connect(peer, events);
    loop {
        let frame = match read_frame(&mut &stream) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!("client {id}: read failed: {e}");
                break;
            }
            Err(e) => {
                tracing::warn!(
                    "client {id} (pid {} uid {}): {e}; dropping it",
                    peer.pid,
                    peer.uid
                );
                break;
            }
        };
        if let Some(out) = dispatch(&frame, peer, &mut handler) {
            if tx.send(Outgoing::Frame(out)).is_err() {
                break;
            }
        }
    }
    handler.disconnected();
    drop(handler);
    // Flushes what is queued, then stops the writer.
    let _ = tx.send(Outgoing::Close);
    drop(tx);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
}

fn write_loop(stream: &UnixStream, rx: &Receiver<Outgoing>, id: u64) {
    while let Ok(Outgoing::Frame(bytes)) = rx.recv() {
        if let Err(e) = (&mut &*stream).write_all(&bytes) {
            tracing::debug!("client {id}: write failed: {e}; dropping it");
            let _ = stream.shutdown(std::net::Shutdown::Both);
            break;
        }
    }
}

/// Answers a peer the [`super::PeerPolicy`] refuses: an access-denied error to its
/// first call, then the connection is closed.
pub(crate) fn refuse(stream: UnixStream, peer: &Peer) {
    tracing::warn!(
        "client {} (pid {} uid {}) refused: only uid {} may connect",
        peer.id,
        peer.pid,
        peer.uid,
        super::sys::effective_uid()
    );
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    if let Ok(Some(frame)) = read_frame(&mut &stream) {
        if frame.header.kind == MessageType::Call {
            let e = RemoteError::new(
                ErrorCode::AccessDenied,
                ErrorDomain::Rpc,
                format!(
                    "client uid {} may not use a daemon running as uid {}",
                    peer.uid,
                    super::sys::effective_uid()
                ),
            );
            if let Ok(bytes) = error_frame(&frame.header, &e) {
                let _ = (&mut &stream).write_all(&bytes);
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Handles one received frame for `peer`: answers keepalive and protocol errors
/// itself, passes well-formed calls to `handler`, and returns the frame to send back
/// (if any). Exposed so a driver can test its handler without a socket.
pub fn dispatch(frame: &Frame, peer: &Peer, handler: &mut impl Handler) -> Option<Vec<u8>> {
    let h = &frame.header;
    let program = Program::from_number(h.program);
    if program == Some(Program::Keepalive) {
        return keepalive(h, peer);
    }
    match h.kind {
        MessageType::Call => {}
        MessageType::CallWithFds => {
            return reply_error(
                h,
                RemoteError::rpc("file descriptor passing is not supported"),
            );
        }
        other => {
            tracing::debug!(
                "client {}: ignoring unexpected {other:?} message for procedure {}",
                peer.id,
                h.procedure
            );
            return None;
        }
    }
    let Some(program) = program.filter(|_| h.version == PROTOCOL_VERSION) else {
        return reply_error(
            h,
            RemoteError::rpc(format!(
                "Cannot find program {} version {}",
                h.program, h.version
            )),
        );
    };
    if h.status != MessageStatus::Ok {
        return reply_error(
            h,
            RemoteError::rpc(format!("Unexpected message status {}", h.status as i32)),
        );
    }
    let Some(info) = procedure(program, h.procedure) else {
        return reply_error(
            h,
            RemoteError::rpc(format!("unknown procedure: {}", h.procedure)),
        );
    };
    tracing::debug!(
        "client {} (pid {} uid {}): {} serial {}",
        peer.id,
        peer.pid,
        peer.uid,
        info.name,
        h.serial
    );
    if peer.read_only && !info.read_only_safe {
        return reply_error(h, RemoteError::read_only(info.api, info.error_domain));
    }
    let call = match Call::decode(info, &frame.body) {
        Ok(Some(call)) => call,
        Ok(None) => return reply(h, Response::unsupported(info)),
        Err(e) => {
            tracing::debug!("client {}: {}: {e}", peer.id, info.name);
            return reply_error(h, RemoteError::rpc("Unable to decode message payload"));
        }
    };
    let response = match call {
        Call::ConnectSupportsFeature(req) if req.args.feature == FEATURE_PROGRAM_KEEPALIVE => {
            req.ok(ConnectSupportsFeatureRet { supported: 1 })
        }
        call => handler.call(call),
    };
    if let Some(e) = response.as_error() {
        tracing::debug!("client {}: {} failed: {e}", peer.id, info.name);
    }
    reply(h, response)
}

fn keepalive(h: &Header, peer: &Peer) -> Option<Vec<u8>> {
    if h.kind == MessageType::Message && h.procedure == KEEPALIVE_PING {
        tracing::trace!("client {}: keepalive ping", peer.id);
        return encode_frame(&Header::message(Program::Keepalive, KEEPALIVE_PONG), &()).ok();
    }
    None
}

fn reply(h: &Header, response: Response) -> Option<Vec<u8>> {
    match response.into_frame(h) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!("cannot encode the reply to procedure {}: {e}", h.procedure);
            None
        }
    }
}

fn reply_error(h: &Header, error: RemoteError) -> Option<Vec<u8>> {
    reply(h, Response::error(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{parse_frame, REMOTE_PROGRAM};
    use crate::remote::{ConnectGetTypeRet, ConnectSupportsFeatureArgs, DomainLookupByNameArgs};
    use crate::remote_proc;
    use crate::xdr::{from_bytes, to_bytes};
    use std::path::PathBuf;

    struct Recorder {
        calls: Vec<&'static str>,
    }

    impl Handler for Recorder {
        fn call(&mut self, call: Call) -> Response {
            self.calls.push(call.procedure().name);
            match call {
                Call::ConnectGetType(req) => req.ok(ConnectGetTypeRet {
                    r#type: "QEMU".into(),
                }),
                other => other.unsupported(),
            }
        }
    }

    fn peer(read_only: bool) -> Peer {
        Peer {
            id: 1,
            pid: 1234,
            uid: 0,
            gid: 0,
            read_only,
            socket: PathBuf::from("/test"),
        }
    }

    fn call_frame(program: u32, procedure: i32, body: Vec<u8>) -> Frame {
        Frame {
            header: Header {
                program,
                version: 1,
                procedure,
                kind: MessageType::Call,
                serial: 9,
                status: MessageStatus::Ok,
            },
            body,
        }
    }

    fn run(frame: &Frame, read_only: bool) -> (Option<Frame>, Vec<&'static str>) {
        let mut h = Recorder { calls: vec![] };
        let out =
            dispatch(frame, &peer(read_only), &mut h).map(|b| parse_frame(&b).unwrap().unwrap().0);
        (out, h.calls)
    }

    fn error_of(frame: &Frame) -> RemoteError {
        assert_eq!(frame.header.status, MessageStatus::Error);
        assert_eq!(frame.header.kind, MessageType::Reply);
        from_bytes(&frame.body).unwrap()
    }

    #[test]
    fn typed_call_reaches_the_handler_once() {
        let (out, calls) = run(
            &call_frame(REMOTE_PROGRAM, remote_proc::CONNECT_GET_TYPE, vec![]),
            false,
        );
        let out = out.unwrap();
        assert_eq!(calls, ["REMOTE_PROC_CONNECT_GET_TYPE"]);
        assert_eq!(out.header.serial, 9);
        assert_eq!(out.header.status, MessageStatus::Ok);
        let ret: ConnectGetTypeRet = from_bytes(&out.body).unwrap();
        assert_eq!(ret.r#type, "QEMU");
    }

    #[test]
    fn unknown_procedure_gets_an_rpc_error_without_a_handler_call() {
        let (out, calls) = run(&call_frame(REMOTE_PROGRAM, 9999, vec![]), false);
        let e = error_of(&out.unwrap());
        assert_eq!(e.to_string(), "unknown procedure: 9999");
        assert_eq!(e.code(), Some(ErrorCode::Rpc));
        assert!(calls.is_empty());
    }

    #[test]
    fn unknown_program_gets_an_rpc_error() {
        let (out, _) = run(&call_frame(0x1234_5678, 1, vec![]), false);
        let out = out.unwrap();
        assert_eq!(out.header.program, 0x1234_5678);
        assert_eq!(
            error_of(&out).to_string(),
            "Cannot find program 305419896 version 1"
        );
    }

    #[test]
    fn untyped_procedure_gets_unsupported_without_a_handler_call() {
        let (out, calls) = run(
            &call_frame(REMOTE_PROGRAM, remote_proc::DOMAIN_MIGRATE_PERFORM3, vec![]),
            false,
        );
        assert_eq!(
            error_of(&out.unwrap()).to_string(),
            "this function is not supported by the connection driver: virDomainMigratePerform3"
        );
        assert!(calls.is_empty());
    }

    #[test]
    fn undecodable_arguments_get_an_rpc_error() {
        let (out, calls) = run(
            &call_frame(
                REMOTE_PROGRAM,
                remote_proc::DOMAIN_LOOKUP_BY_NAME,
                vec![0, 0],
            ),
            false,
        );
        assert_eq!(
            error_of(&out.unwrap()).to_string(),
            "Unable to decode message payload"
        );
        assert!(calls.is_empty());
    }

    #[test]
    fn read_only_peer_cannot_call_write_procedures() {
        let body = to_bytes(&DomainLookupByNameArgs { name: "x".into() }).unwrap();
        let (out, calls) = run(
            &call_frame(REMOTE_PROGRAM, remote_proc::DOMAIN_CREATE, body),
            true,
        );
        let e = error_of(&out.unwrap());
        assert_eq!(e.code(), Some(ErrorCode::OperationDenied));
        assert_eq!(
            e.to_string(),
            "operation forbidden: read only access prevents virDomainCreate"
        );
        assert!(calls.is_empty());
    }

    #[test]
    fn read_only_peer_can_call_read_procedures() {
        let (out, calls) = run(
            &call_frame(REMOTE_PROGRAM, remote_proc::CONNECT_GET_TYPE, vec![]),
            true,
        );
        assert_eq!(out.unwrap().header.status, MessageStatus::Ok);
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn keepalive_ping_gets_pong_and_pong_gets_nothing() {
        let ping = Frame {
            header: Header::message(Program::Keepalive, KEEPALIVE_PING),
            body: vec![],
        };
        let (out, calls) = run(&ping, false);
        assert_eq!(
            out.unwrap().header,
            Header::message(Program::Keepalive, KEEPALIVE_PONG)
        );
        assert!(calls.is_empty());
        let pong = Frame {
            header: Header::message(Program::Keepalive, KEEPALIVE_PONG),
            body: vec![],
        };
        assert!(run(&pong, false).0.is_none());
    }

    #[test]
    fn keepalive_feature_is_answered_by_the_transport() {
        let body = to_bytes(&ConnectSupportsFeatureArgs { feature: 10 }).unwrap();
        let (out, calls) = run(
            &call_frame(REMOTE_PROGRAM, remote_proc::CONNECT_SUPPORTS_FEATURE, body),
            false,
        );
        let ret: ConnectSupportsFeatureRet = from_bytes(&out.unwrap().body).unwrap();
        assert_eq!(ret.supported, 1);
        assert!(calls.is_empty());
        let body = to_bytes(&ConnectSupportsFeatureArgs { feature: 14 }).unwrap();
        let (_, calls) = run(
            &call_frame(REMOTE_PROGRAM, remote_proc::CONNECT_SUPPORTS_FEATURE, body),
            false,
        );
        assert_eq!(calls, ["REMOTE_PROC_CONNECT_SUPPORTS_FEATURE"]);
    }

    #[test]
    fn non_call_messages_are_ignored() {
        let mut f = call_frame(REMOTE_PROGRAM, remote_proc::CONNECT_GET_TYPE, vec![]);
        f.header.kind = MessageType::Stream;
        assert_eq!(run(&f, false), (None, vec![]));
    }
}
