//! qvisor-domain: libvirt's domain XML as a typed model.
//!
//! The pipeline mirrors libvirt's:
//!
//! 1. [`parse`] reads a document into a [`Domain`] (libvirt's
//!    `virDomainDefParse`), rejecting malformed values with libvirt's messages
//!    and applying the parser's own defaults. [`parse`] reads a new
//!    definition (define/create); [`parse_existing`] an existing guest (a saved
//!    configuration or migration, without libvirt's ABI-update rules).
//! 2. [`expand()`] fills in what libvirt's post-parse step adds for the inactive
//!    definition (default machine, implicit controllers and devices, PCI,
//!    drive, virtio-serial and spapr-vio addresses, MAC addresses, UUID),
//!    driven by the QEMU capabilities.
//! 3. [`validate()`] rejects configurations libvirt refuses.
//! 4. [`format()`] writes the definition back in libvirt's layout;
//!    [`FormatOptions`] chooses the inactive form
//!    ([`FormatOptions::inactive_secure`]) or the live form of a running guest
//!    ([`FormatOptions::live`]: `id`, device aliases, pty paths, tap names).
//!
//! What the model does not type yet is kept as a residue [`xml::Element`]
//! and written back, so parse → format → parse is lossless (the corpus
//! tests check it for every conformance input, unexpanded, expanded and
//! live). Device aliases (QEMU ids) are assigned at start by the
//! command-line builder, which stores them in [`DeviceInfo::alias`].
//!
//! ```
//! let xml = "<domain type='kvm'><name>a</name><memory>1024</memory>\
//!            <os><type>hvm</type></os></domain>";
//! let def = qvisor_domain::parse(xml, qvisor_domain::ParseOptions { inactive: true }).unwrap();
//! assert_eq!(def.name, "a");
//! let out = qvisor_domain::format(&def, &qvisor_domain::FormatOptions::inactive_secure());
//! assert!(out.contains("<memory unit='KiB'>1024</memory>"));
//! ```

pub mod address;
pub mod common;
pub mod devices;
pub mod domain;
pub mod error;
pub mod expand;
mod pci;
pub mod qemu_ns;
pub mod validate;
pub mod xml;

pub use address::{Address, DeviceInfo, DriveAddress, PciAddress};
pub use common::{CpuSet, OnOff, StrEnum, Uuid, YesNo};
pub use devices::*;
pub use domain::*;
pub use error::{Error, Result};
pub use expand::{expand, ExpandContext};
pub use qemu_ns::{DeprecationBehavior, DeviceOverride, PropertyValue, QemuNamespace};
pub use validate::validate;

/// Parses a domain XML document for a new definition (define/create:
/// libvirt's `VIR_DOMAIN_DEF_PARSE_ABI_UPDATE`).
pub fn parse(text: &str, opts: ParseOptions) -> Result<Domain> {
    let root = xml::parse_document(text)?;
    Domain::from_element(root, opts)
}

/// Parses the XML of an existing guest (a saved configuration, an incoming
/// migration): like [`parse`] but with libvirt's compatibility rules for
/// definitions that may come from older versions instead of ABI updates.
pub fn parse_existing(text: &str, opts: ParseOptions) -> Result<Domain> {
    let root = xml::parse_document(text)?;
    Domain::from_element_for(root, opts, false)
}

/// Formats a domain definition as XML text in libvirt's layout.
pub fn format(def: &Domain, opts: &FormatOptions) -> String {
    def.to_element(opts).to_xml_string()
}
