//! The runtime status file `run/qemu/NAME.xml`: everything needed to re-attach
//! to a running QEMU after a supervisor restart, in libvirt's `<domstatus>`
//! shape (state, reason, pid, monitor, taint, the live domain XML), plus the
//! labels security plugins applied, so they are restored even after a restart.

use std::path::{Path, PathBuf};

use qvisor_domain::xml::{parse_document, Element};
use qvisor_domain::{Domain, FormatOptions, ParseOptions};
use qvisor_sdk::LabelRecord;

use super::runtime::AppliedLabel;
use super::state::DomainState;

/// What the status file records.
#[derive(Debug, Clone)]
pub struct Status {
    /// State and reason.
    pub state: DomainState,
    /// QEMU's pid.
    pub pid: i32,
    /// Runtime id.
    pub id: i32,
    /// The monitor socket.
    pub monitor_path: PathBuf,
    /// The private directory.
    pub private_dir: PathBuf,
    /// Taint flags.
    pub taint: Vec<String>,
    /// Applied security labels.
    pub labels: Vec<AppliedLabel>,
    /// Whether the domain is persistent.
    pub persistent: bool,
    /// Whether the guest already reported SHUTDOWN.
    pub shutdown_seen: bool,
    /// The live definition.
    pub def: Domain,
}

/// Errors reading a status file.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Unreadable.
    #[error("cannot read status file '{path}': {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a valid status document.
    #[error("invalid status file '{path}': {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Status {
    /// The `<domstatus>` document.
    pub fn to_xml(&self) -> String {
        let (state, reason) = self.state.status_names();
        let mut root = Element::new("domstatus")
            .attr("state", state)
            .attr("reason", reason)
            .attr("pid", self.pid)
            .attr("id", self.id)
            .attr("persistent", if self.persistent { "yes" } else { "no" })
            .attr(
                "shutdownSeen",
                if self.shutdown_seen { "yes" } else { "no" },
            );
        for t in &self.taint {
            root = root.child(Element::new("taint").attr("flag", t));
        }
        root = root.child(
            Element::new("monitor")
                .attr("path", self.monitor_path.display())
                .attr("type", "unix"),
        );
        root = root.child(Element::new("privateDir").attr("path", self.private_dir.display()));
        for l in &self.labels {
            root = root.child(
                Element::new("seclabel")
                    .attr("plugin", &l.plugin)
                    .attr("path", l.record.path.as_str())
                    .attr("data", l.record.data.as_str()),
            );
        }
        let opts = FormatOptions {
            inactive: false,
            secure: true,
            migratable: false,
        };
        root = root.child(self.def.to_element(&opts));
        root.to_xml_string()
    }

    /// Reads a status file.
    pub fn read(path: &Path) -> Result<Status, StatusError> {
        let text = std::fs::read_to_string(path).map_err(|source| StatusError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| StatusError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a `<domstatus>` document.
    pub fn parse(text: &str) -> Result<Status, String> {
        let mut root = parse_document(text).map_err(|e| e.to_string())?;
        if !root.is("domstatus") {
            return Err(format!(
                "root element is <{}>, expected <domstatus>",
                root.name
            ));
        }
        let attr = |root: &Element, name: &str| -> Result<String, String> {
            root.get_attr(name)
                .map(str::to_string)
                .ok_or_else(|| format!("missing attribute '{name}'"))
        };
        let state_name = attr(&root, "state")?;
        let reason = root.get_attr("reason").unwrap_or("unknown").to_string();
        let state = DomainState::from_status_names(&state_name, &reason)
            .ok_or_else(|| format!("state '{state_name}' is not an active state"))?;
        let pid: i32 = attr(&root, "pid")?
            .parse()
            .map_err(|_| "invalid pid".to_string())?;
        let id: i32 = attr(&root, "id")?
            .parse()
            .map_err(|_| "invalid id".to_string())?;
        let persistent = root.get_attr("persistent") == Some("yes");
        let shutdown_seen = root.get_attr("shutdownSeen") == Some("yes");
        let taint = root
            .take_children("taint")
            .iter()
            .filter_map(|t| t.get_attr("flag").map(str::to_string))
            .collect();
        let monitor_path = root
            .find("monitor")
            .and_then(|m| m.get_attr("path"))
            .map(PathBuf::from)
            .ok_or("missing <monitor path=...>")?;
        let private_dir = root
            .find("privateDir")
            .and_then(|m| m.get_attr("path"))
            .map(PathBuf::from)
            .ok_or("missing <privateDir path=...>")?;
        let labels = root
            .take_children("seclabel")
            .iter()
            .map(|l| AppliedLabel {
                plugin: l.get_attr("plugin").unwrap_or_default().to_string(),
                record: LabelRecord {
                    path: l.get_attr("path").unwrap_or_default().into(),
                    data: l.get_attr("data").unwrap_or_default().into(),
                },
            })
            .collect();
        let dom = root.take_child("domain").ok_or("missing <domain>")?;
        let def = Domain::from_element_for(dom, ParseOptions { inactive: false }, false)
            .map_err(|e| e.to_string())?;
        Ok(Status {
            state,
            pid,
            id,
            monitor_path,
            private_dir,
            taint,
            labels,
            persistent,
            shutdown_seen,
            def,
        })
    }
}
