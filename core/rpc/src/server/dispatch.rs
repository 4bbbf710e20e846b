//! Call dispatch: what happens to one frame, and the per-client handler thread.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;

use super::outbox::{Outbox, Sent, Waker};
use super::{Handler, Peer};
use crate::call::{error_frame, Call, Response};
use crate::error::{ErrorCode, ErrorDomain, RemoteError};
use crate::frame::{
    encode_frame, Frame, Header, MessageStatus, MessageType, Program, KEEPALIVE_PING,
    KEEPALIVE_PONG, PROTOCOL_VERSION,
};
use crate::procedures::procedure;
use crate::remote::ConnectSupportsFeatureRet;

/// `VIR_DRV_FEATURE_PROGRAM_KEEPALIVE`: the transport answers PINGs, so it answers
/// this feature query itself.
const FEATURE_PROGRAM_KEEPALIVE: i32 = 10;

/// A client's handler thread: runs its calls in order and sends the
/// replies, waking the I/O loop only when it has something to do: write
/// what the socket did not take, or read again a client that had
/// `max_inflight` calls queued.
pub(crate) fn worker(
    mut handler: impl Handler,
    peer: &Peer,
    calls: &Receiver<Frame>,
    outbox: &Outbox,
    inflight: &AtomicUsize,
    waker: &Waker,
    max_inflight: usize,
) {
    for frame in calls {
        let mut wake = false;
        // Calls still queued when the client left are not run.
        if !outbox.is_closed() {
            // A bug in one handler must not take the daemon down: the caller gets an
            // internal error and, since the handler's state is now suspect, is dropped.
            let outcome =
                panic::catch_unwind(AssertUnwindSafe(|| dispatch(&frame, peer, &mut handler)));
            match outcome {
                Ok(Some(reply)) => {
                    wake = outbox.send_reply(reply) != Sent::Written;
                }
                Ok(None) => {}
                Err(_) => {
                    let h = &frame.header;
                    tracing::error!(
                        "client {}: the handler panicked on procedure {} of program {:#x}; \
                         disconnecting the client",
                        peer.id,
                        h.procedure,
                        h.program
                    );
                    let e = RemoteError::internal(
                        ErrorDomain::Rpc,
                        "the daemon failed while handling this call",
                    );
                    if let Some(reply) = reply_error(h, e) {
                        outbox.push_reply(reply);
                    }
                    outbox.request_close_after_flush();
                    inflight.fetch_sub(1, Ordering::SeqCst);
                    waker.wake();
                    return;
                }
            }
        }
        // The loop stops reading a client at `max_inflight` queued calls.
        let was = inflight.fetch_sub(1, Ordering::SeqCst);
        if wake || was >= max_inflight {
            waker.wake();
        }
    }
    handler.disconnected();
}

/// The error reply a peer refused by [`super::PeerPolicy`] gets for its first call.
pub(crate) fn access_denied_frame(call: &Header, peer: &Peer) -> Option<Vec<u8>> {
    let e = RemoteError::new(
        ErrorCode::AccessDenied,
        ErrorDomain::Rpc,
        format!(
            "client uid {} may not use a daemon running as uid {}",
            peer.uid,
            super::sys::effective_uid()
        ),
    );
    error_frame(call, &e).ok()
}

/// Handles one received frame for `peer`: answers keepalive and protocol errors
/// itself, passes well-formed calls to `handler`, and returns the frame to send back
/// (if any). Exposed so a driver can test its handler without a socket.
pub fn dispatch(frame: &Frame, peer: &Peer, handler: &mut impl Handler) -> Option<Vec<u8>> {
    let h = &frame.header;
    let program = Program::from_number(h.program);
    if program == Some(Program::Keepalive) {
        return keepalive_reply(h, peer);
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

/// The PONG for a keepalive PING (nothing for anything else of that program).
pub(crate) fn keepalive_reply(h: &Header, peer: &Peer) -> Option<Vec<u8>> {
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
