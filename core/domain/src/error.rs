//! Errors of the domain XML parser, validator and expander.
//!
//! Messages follow libvirt's wording (and class prefix such as
//! `XML error:` or `unsupported configuration:`) where libvirt has one, so a
//! user (and the conformance checker) sees the same reason.

/// Everything that can go wrong while reading, checking or expanding a domain.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The text is not well-formed XML.
    #[error("XML error: {0}")]
    XmlSyntax(String),
    /// The document is well-formed but not a domain definition.
    #[error("XML error: unexpected root element <{0}>, expecting <domain>")]
    ParseDomainRoot(String),
    /// A required attribute is absent.
    #[error("XML error: Missing required attribute '{attribute}' in element '{element}'")]
    MissingAttribute {
        /// Element name.
        element: String,
        /// Attribute name.
        attribute: String,
    },
    /// A required child element is absent.
    #[error("XML error: missing {what} in element '{element}'")]
    MissingElement {
        /// Element name.
        element: String,
        /// What is missing.
        what: String,
    },
    /// An attribute has a value outside its allowed set or type.
    #[error(
        "XML error: Invalid value for attribute '{attribute}' in element '{element}': '{value}'."
    )]
    InvalidAttribute {
        /// Element name.
        element: String,
        /// Attribute name.
        attribute: String,
        /// Offending value.
        value: String,
    },
    /// An element's content is malformed (free-form libvirt message).
    #[error("XML error: {0}")]
    InvalidElement(String),
    /// A value (number, size) cannot be parsed; message is libvirt's.
    #[error("internal error: {0}")]
    Internal(String),
    /// Configuration is well-formed but not supported (libvirt's
    /// VIR_ERR_CONFIG_UNSUPPORTED).
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// An operation is invalid for the given configuration.
    #[error("operation failed: {0}")]
    OperationFailed(String),
    /// libvirt's VIR_ERR_NO_TARGET / VIR_ERR_NO_SOURCE style messages.
    #[error("{0}")]
    Plain(String),
    /// The capabilities needed for expansion are missing or inconsistent.
    #[error("capabilities: {0}")]
    Caps(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(element: &str, attribute: &str, value: &str) -> Self {
        Error::InvalidAttribute {
            element: element.to_string(),
            attribute: attribute.to_string(),
            value: value.to_string(),
        }
    }

    pub(crate) fn missing(element: &str, attribute: &str) -> Self {
        Error::MissingAttribute {
            element: element.to_string(),
            attribute: attribute.to_string(),
        }
    }

    #[allow(dead_code)]
    pub(crate) fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(msg.into())
    }

    pub(crate) fn xml(msg: impl Into<String>) -> Self {
        Error::InvalidElement(msg.into())
    }
}
