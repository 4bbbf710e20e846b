//! Decoded calls, their replies, and event messages.

#[path = "generated/calls.rs"]
mod calls;

#[doc(hidden)]
pub use calls::decode_every_type;
pub use calls::Call;

use std::fmt;
use std::marker::PhantomData;

use crate::error::RemoteError;
use crate::frame::{self, FrameError, Header, Program};
use crate::procedures::ProcedureInfo;
use crate::xdr::{self, XdrDecode, XdrEncode, XdrError};

/// One call's arguments, and the only reply type it may be answered with.
///
/// `A` is the procedure's `*_args` struct and `R` its `*_ret` struct (`()` when libvirt
/// defines none). Consume it with [`Req::ok`], [`Req::err`] or [`Req::respond`].
pub struct Req<A, R> {
    /// The decoded arguments.
    pub args: A,
    info: &'static ProcedureInfo,
    reply: PhantomData<fn(R)>,
}

impl<A: fmt::Debug, R> fmt::Debug for Req<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Req")
            .field("procedure", &self.info.name)
            .field("args", &self.args)
            .finish()
    }
}

impl<A: XdrDecode, R: XdrEncode> Req<A, R> {
    pub(crate) fn decode(info: &'static ProcedureInfo, body: &[u8]) -> xdr::Result<Self> {
        Ok(Self {
            args: xdr::from_bytes(body)?,
            info,
            reply: PhantomData,
        })
    }

    /// Builds a call for `info` with `args` (for tests of a handler).
    pub fn new(info: &'static ProcedureInfo, args: A) -> Self {
        Self {
            args,
            info,
            reply: PhantomData,
        }
    }

    /// The procedure called.
    pub fn procedure(&self) -> &'static ProcedureInfo {
        self.info
    }

    /// A successful reply carrying `ret`.
    pub fn ok(self, ret: R) -> Response {
        Response::encode(self.info, &ret)
    }

    /// An error reply.
    pub fn err(self, error: RemoteError) -> Response {
        Response::error(error)
    }

    /// Replies with what `f` makes of the arguments.
    pub fn respond(self, f: impl FnOnce(A) -> Result<R, RemoteError>) -> Response {
        let info = self.info;
        match f(self.args) {
            Ok(ret) => Response::encode(info, &ret),
            Err(e) => Response::error(e),
        }
    }

    /// libvirt's "this function is not supported by the connection driver" reply.
    pub fn unsupported(self) -> Response {
        Response::unsupported(self.info)
    }
}

/// The answer to one call: an encoded reply body or a libvirt error.
#[derive(Debug)]
pub struct Response {
    outcome: Result<xdr::Encoder, RemoteError>,
}

impl Response {
    fn encode(info: &'static ProcedureInfo, ret: &(impl XdrEncode + ?Sized)) -> Self {
        let mut e = frame::body_buffer();
        match ret.encode(&mut e) {
            Ok(()) => Self { outcome: Ok(e) },
            Err(err) => {
                tracing::warn!("cannot encode the reply to {}: {err}", info.name);
                Self::error(RemoteError::rpc(format!(
                    "Unable to encode message payload: {err}"
                )))
            }
        }
    }

    /// An error reply.
    pub fn error(error: RemoteError) -> Self {
        Self {
            outcome: Err(error),
        }
    }

    /// libvirt's reply for an API the driver lacks.
    pub fn unsupported(info: &'static ProcedureInfo) -> Self {
        Self::error(RemoteError::unsupported(info.api, info.error_domain))
    }

    /// The error, if this is an error reply.
    pub fn as_error(&self) -> Option<&RemoteError> {
        self.outcome.as_ref().err()
    }

    /// The whole reply frame for `call`.
    pub fn into_frame(self, call: &Header) -> Result<Vec<u8>, FrameError> {
        match self.outcome {
            Ok(body) => match frame::seal_frame(body.into_bytes(), &Header::reply_to(call)) {
                Ok(f) => Ok(f),
                Err(FrameError::Oversize { len, max }) => error_frame(
                    call,
                    &RemoteError::rpc(format!(
                        "reply of {len} bytes exceeds the {max} byte message limit"
                    )),
                ),
                Err(e) => Err(e),
            },
            Err(error) => error_frame(call, &error),
        }
    }
}

/// The error reply frame for `call`.
pub fn error_frame(call: &Header, error: &RemoteError) -> Result<Vec<u8>, FrameError> {
    frame::encode_frame(&Header::error_reply_to(call), error)
}

/// Whether `body` decodes as `T`, checking that the value re-encodes canonically
/// (decode, encode, decode, encode gives the same bytes twice).
fn reencode<T: XdrDecode + XdrEncode>(
    body: &[u8],
    name: &'static str,
) -> Result<bool, &'static str> {
    let Ok(value) = xdr::from_bytes::<T>(body) else {
        return Ok(false);
    };
    let first = xdr::to_bytes(&value).map_err(|_| name)?;
    let again: T = xdr::from_bytes(&first).map_err(|_| name)?;
    let second = xdr::to_bytes(&again).map_err(|_| name)?;
    if first == second {
        Ok(true)
    } else {
        Err(name)
    }
}

/// A server → client event message (`*_msg` struct) and the procedure that carries it.
pub trait EventMessage: XdrEncode {
    /// The program and procedure number of this message.
    const PROCEDURE: (Program, i32);

    /// The whole frame for this message.
    fn to_frame(&self) -> Result<Vec<u8>, FrameError> {
        let (program, procedure) = Self::PROCEDURE;
        frame::encode_frame(&Header::message(program, procedure), self)
    }
}

impl Call {
    /// Answers this call with libvirt's "unsupported" error.
    pub fn unsupported(self) -> Response {
        Response::unsupported(self.procedure())
    }

    /// Decodes a call's body, for tests and tools; `Ok(None)` when the procedure is
    /// known but not typed by this crate.
    pub fn from_body(info: &'static ProcedureInfo, body: &[u8]) -> Result<Option<Self>, XdrError> {
        Self::decode(info, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::parse_frame;
    use crate::procedures::{procedure, remote_proc};
    use crate::remote::{DomainEventCallbackLifecycleMsg, DomainEventLifecycleMsg, NonnullDomain};
    use crate::remote::{DomainLookupByNameArgs, DomainLookupByNameRet};
    use crate::ErrorCode;

    fn info(n: i32) -> &'static ProcedureInfo {
        procedure(Program::Remote, n).unwrap()
    }

    #[test]
    fn call_decodes_typed_arguments() {
        let args = DomainLookupByNameArgs { name: "vm1".into() };
        let body = xdr::to_bytes(&args).unwrap();
        let call = Call::from_body(info(remote_proc::DOMAIN_LOOKUP_BY_NAME), &body)
            .unwrap()
            .unwrap();
        match call {
            Call::DomainLookupByName(req) => assert_eq!(req.args.name, "vm1"),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn untyped_procedure_decodes_to_none() {
        let p = info(remote_proc::DOMAIN_MIGRATE_PERFORM3);
        assert!(Call::from_body(p, &[]).unwrap().is_none());
    }

    #[test]
    fn call_with_trailing_bytes_is_rejected() {
        let body = [0u8, 0, 0, 0, 0, 0, 0, 0];
        assert!(Call::from_body(info(remote_proc::DOMAIN_LOOKUP_BY_NAME), &body).is_err());
    }

    #[test]
    fn reply_frame_echoes_serial_and_procedure() {
        let call = Header::call(Program::Remote, remote_proc::DOMAIN_LOOKUP_BY_NAME, 42);
        let req: Req<DomainLookupByNameArgs, DomainLookupByNameRet> = Req::new(
            info(remote_proc::DOMAIN_LOOKUP_BY_NAME),
            DomainLookupByNameArgs { name: "vm1".into() },
        );
        let dom = NonnullDomain {
            name: "vm1".into(),
            uuid: [7; 16],
            id: -1,
        };
        let bytes = req
            .ok(DomainLookupByNameRet { dom: dom.clone() })
            .into_frame(&call)
            .unwrap();
        let (frame, _) = parse_frame(&bytes).unwrap().unwrap();
        assert_eq!(frame.header, Header::reply_to(&call));
        let ret: DomainLookupByNameRet = xdr::from_bytes(&frame.body).unwrap();
        assert_eq!(ret.dom, dom);
    }

    #[test]
    fn unsupported_reply_is_an_error_frame_naming_the_api() {
        let call = Header::call(Program::Remote, remote_proc::DOMAIN_CREATE, 3);
        let bytes = Response::unsupported(info(remote_proc::DOMAIN_CREATE))
            .into_frame(&call)
            .unwrap();
        let (frame, _) = parse_frame(&bytes).unwrap().unwrap();
        assert_eq!(frame.header.status, frame::MessageStatus::Error);
        let e: RemoteError = xdr::from_bytes(&frame.body).unwrap();
        assert_eq!(e.code(), Some(ErrorCode::NoSupport));
        assert_eq!(
            e.to_string(),
            "this function is not supported by the connection driver: virDomainCreate"
        );
    }

    #[test]
    fn lifecycle_event_is_a_message_on_procedure_318() {
        let msg = DomainEventCallbackLifecycleMsg {
            callback_id: 5,
            msg: DomainEventLifecycleMsg {
                dom: NonnullDomain::default(),
                event: 2,
                detail: 0,
            },
        };
        let (frame, _) = parse_frame(&msg.to_frame().unwrap()).unwrap().unwrap();
        assert_eq!(frame.header, Header::message(Program::Remote, 318));
    }
}
