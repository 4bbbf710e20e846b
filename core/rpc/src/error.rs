//! libvirt's error reply (`remote_error`), with its codes and domains.

#[path = "generated/virerror.rs"]
mod virerror;

pub use virerror::{ErrorCode, ErrorDomain};

use crate::xdr::{Decoder, Encoder, XdrDecode, XdrEncode};

/// `virErrorLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorLevel {
    /// `VIR_ERR_NONE`
    None = 0,
    /// `VIR_ERR_WARNING`
    Warning = 1,
    /// `VIR_ERR_ERROR`
    Error = 2,
}

/// The body of an error reply: what a libvirt client turns into a `virError`.
///
/// `code`, `domain` and `level` keep the raw wire values so that anything a peer sends
/// survives a round trip; [`RemoteError::code`] and [`RemoteError::domain`] give the
/// typed view. Build one with [`RemoteError::new`], which words the message the way
/// libvirt's `virReportError` does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message.as_deref().unwrap_or("unknown error"))]
pub struct RemoteError {
    /// `virErrorNumber`.
    pub code: i32,
    /// `virErrorDomain`.
    pub domain: i32,
    /// The full, formatted message (what `virsh` prints after `error: `).
    pub message: Option<String>,
    /// `virErrorLevel`.
    pub level: i32,
    /// libvirt fills this with the message format.
    pub str1: Option<String>,
    /// libvirt fills this with the detail substituted into the format.
    pub str2: Option<String>,
    /// Extra information, rarely used.
    pub str3: Option<String>,
    /// Extra number, `-1` when unused.
    pub int1: i32,
    /// Extra number, `-1` when unused.
    pub int2: i32,
}

impl RemoteError {
    /// An error worded like libvirt's `virReportError(code, "%s", detail)`:
    /// `ErrorCode::NoDomain` with detail `no domain with matching name 'vm1'` reads
    /// "Domain not found: no domain with matching name 'vm1'".
    ///
    /// ```
    /// use qvisor_rpc::{ErrorCode, ErrorDomain, RemoteError};
    ///
    /// let e = RemoteError::new(ErrorCode::NoSupport, ErrorDomain::Domain, "virDomainFoo");
    /// assert_eq!(
    ///     e.to_string(),
    ///     "this function is not supported by the connection driver: virDomainFoo"
    /// );
    /// ```
    pub fn new(code: ErrorCode, domain: ErrorDomain, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let (plain, with_detail) = code.formats();
        let (format, message) = match with_detail {
            Some(f) => (f.to_string(), f.replacen("%s", &detail, 1)),
            None => {
                let f = plain.unwrap_or("%s").to_string();
                let m = if detail.is_empty() {
                    f.clone()
                } else {
                    format!("{f}: {detail}")
                };
                (f, m)
            }
        };
        Self {
            code: code as i32,
            domain: domain as i32,
            message: Some(message),
            level: ErrorLevel::Error as i32,
            str1: Some(format),
            str2: Some(detail),
            str3: None,
            int1: -1,
            int2: -1,
        }
    }

    /// An error with libvirt's message for `code` and no detail.
    pub fn without_detail(code: ErrorCode, domain: ErrorDomain) -> Self {
        let (plain, _) = code.formats();
        let message = plain.unwrap_or("unknown error").to_string();
        Self {
            code: code as i32,
            domain: domain as i32,
            message: Some(message.clone()),
            level: ErrorLevel::Error as i32,
            str1: Some(message),
            str2: None,
            str3: None,
            int1: -1,
            int2: -1,
        }
    }

    /// `VIR_ERR_NO_SUPPORT`: "this function is not supported by the connection driver:
    /// virDomainFoo", as libvirt reports for a driver that lacks an API.
    pub fn unsupported(api: &str, domain: ErrorDomain) -> Self {
        Self::new(ErrorCode::NoSupport, domain, api)
    }

    /// `VIR_ERR_OPERATION_DENIED` for a read-only connection:
    /// "operation forbidden: read only access prevents virDomainCreate".
    pub fn read_only(api: &str, domain: ErrorDomain) -> Self {
        Self::new(
            ErrorCode::OperationDenied,
            domain,
            format!("read only access prevents {api}"),
        )
    }

    /// `VIR_ERR_RPC` from `VIR_FROM_RPC`, for protocol-level failures.
    pub fn rpc(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Rpc, ErrorDomain::Rpc, detail)
    }

    /// `VIR_ERR_INTERNAL_ERROR` in `domain`: "internal error: ...".
    pub fn internal(domain: ErrorDomain, detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, domain, detail)
    }

    /// The typed code, if libvirt 9.0 defines it.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::from_i32(self.code)
    }

    /// The typed domain, if libvirt 9.0 defines it.
    pub fn domain(&self) -> Option<ErrorDomain> {
        ErrorDomain::from_i32(self.domain)
    }

    fn to_wire(&self) -> crate::remote::Error {
        crate::remote::Error {
            code: self.code,
            domain: self.domain,
            message: self.message.clone(),
            level: self.level,
            dom: None,
            str1: self.str1.clone(),
            str2: self.str2.clone(),
            str3: self.str3.clone(),
            int1: self.int1,
            int2: self.int2,
            net: None,
        }
    }
}

impl XdrEncode for RemoteError {
    fn encode(&self, e: &mut Encoder) -> crate::xdr::Result<()> {
        self.to_wire().encode(e)
    }
}

impl XdrDecode for RemoteError {
    fn decode(d: &mut Decoder<'_>) -> crate::xdr::Result<Self> {
        let w = crate::remote::Error::decode(d)?;
        Ok(Self {
            code: w.code,
            domain: w.domain,
            message: w.message,
            level: w.level,
            str1: w.str1,
            str2: w.str2,
            str3: w.str3,
            int1: w.int1,
            int2: w.int2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{from_bytes, to_bytes};

    #[test]
    fn no_support_reads_like_libvirt() {
        let e = RemoteError::unsupported("virDomainCreate", ErrorDomain::Domain);
        assert_eq!(
            e.message.as_deref(),
            Some("this function is not supported by the connection driver: virDomainCreate")
        );
        assert_eq!(e.code(), Some(ErrorCode::NoSupport));
        assert_eq!(e.code, 3);
        assert_eq!(e.domain(), Some(ErrorDomain::Domain));
        assert_eq!(e.level, 2);
    }

    #[test]
    fn no_domain_and_operation_invalid_use_libvirt_formats() {
        let e = RemoteError::new(
            ErrorCode::NoDomain,
            ErrorDomain::Qemu,
            "no domain with matching name 'vm1'",
        );
        assert_eq!(
            e.to_string(),
            "Domain not found: no domain with matching name 'vm1'"
        );
        let e = RemoteError::new(
            ErrorCode::OperationInvalid,
            ErrorDomain::Qemu,
            "domain is not running",
        );
        assert_eq!(
            e.to_string(),
            "Requested operation is not valid: domain is not running"
        );
    }

    #[test]
    fn read_only_denial_names_the_api() {
        let e = RemoteError::read_only("virDomainCreate", ErrorDomain::Domain);
        assert_eq!(
            e.to_string(),
            "operation forbidden: read only access prevents virDomainCreate"
        );
    }

    #[test]
    fn rpc_error_message_is_the_detail_itself() {
        assert_eq!(
            RemoteError::rpc("unknown procedure: 9999").to_string(),
            "unknown procedure: 9999"
        );
    }

    #[test]
    fn error_codes_match_virterror_numbers() {
        assert_eq!(ErrorCode::InternalError as i32, 1);
        assert_eq!(ErrorCode::NoDomain as i32, 42);
        assert_eq!(ErrorCode::OperationInvalid as i32, 55);
        assert_eq!(ErrorCode::XmlError as i32, 27);
        assert_eq!(ErrorCode::ConfigUnsupported as i32, 67);
        assert_eq!(ErrorCode::AccessDenied as i32, 88);
        assert_eq!(ErrorDomain::Rpc as i32, 7);
        assert_eq!(ErrorDomain::Qemu as i32, 10);
        assert_eq!(ErrorDomain::Domain as i32, 20);
    }

    #[test]
    fn remote_error_round_trips_on_the_wire() {
        let e = RemoteError::internal(ErrorDomain::Qemu, "boom");
        let bytes = to_bytes(&e).unwrap();
        assert_eq!(from_bytes::<RemoteError>(&bytes).unwrap(), e);
    }
}
