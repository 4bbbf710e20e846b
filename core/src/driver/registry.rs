//! The domain objects the driver knows, by name and UUID.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use qvisor_domain::Domain;

use super::error::{DriverError, Result};
use super::runtime::Runtime;
use super::state::{DomainState, ShutoffReason};

/// One domain: its definitions, state and (when running) its QEMU.
pub struct DomainObj {
    /// The definition in effect: the live one while running, else the
    /// persistent one.
    pub def: Domain,
    /// The persistent (inactive) definition; `None` for a transient domain.
    pub persistent: Option<Domain>,
    /// A definition saved by `define` while the domain runs, applied at stop.
    pub next_def: Option<Domain>,
    /// Current state.
    pub state: DomainState,
    /// Runtime id, -1 when inactive.
    pub id: i32,
    /// Autostart flag.
    pub autostart: bool,
    /// The running QEMU, if any.
    pub runtime: Option<Runtime>,
}

impl DomainObj {
    /// A new inactive domain.
    pub fn inactive(def: Domain, persistent: bool) -> Self {
        DomainObj {
            persistent: persistent.then(|| def.clone()),
            def,
            next_def: None,
            state: DomainState::Shutoff(ShutoffReason::Unknown),
            id: -1,
            autostart: false,
            runtime: None,
        }
    }

    /// Whether QEMU runs for it.
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }
}

/// A domain entry: immutable identity plus the locked object. `job`
/// serializes operations that take time (start, stop, monitor commands), as
/// libvirt's domain jobs do; `obj` is held only briefly.
pub struct DomainEntry {
    /// Name (fixed for the entry's life).
    pub name: String,
    /// UUID.
    pub uuid: [u8; 16],
    /// Serializes long operations on this domain.
    pub job: Mutex<()>,
    /// Serializes status-file writes (snapshot and write under one lock, so
    /// an older snapshot never overwrites a newer one).
    pub status_write: Mutex<()>,
    /// The state.
    pub obj: Mutex<DomainObj>,
}

/// All domains of a driver.
#[derive(Default)]
pub struct Registry {
    by_name: BTreeMap<String, Arc<DomainEntry>>,
    /// The same entries by UUID: clients name domains by UUID in every call
    /// after the lookup (virsh `list` asks each domain's state by UUID).
    by_uuid: BTreeMap<[u8; 16], Arc<DomainEntry>>,
}

impl Registry {
    /// Looks up by name.
    pub fn by_name(&self, name: &str) -> Option<Arc<DomainEntry>> {
        self.by_name.get(name).cloned()
    }

    /// Looks up by UUID.
    pub fn by_uuid(&self, uuid: &[u8; 16]) -> Option<Arc<DomainEntry>> {
        self.by_uuid.get(uuid).cloned()
    }

    /// Looks up a running domain by id.
    pub fn by_id(&self, id: i32) -> Option<Arc<DomainEntry>> {
        self.by_name
            .values()
            .find(|e| e.obj.lock().id == id)
            .cloned()
    }

    /// All entries in name order.
    pub fn all(&self) -> Vec<Arc<DomainEntry>> {
        self.by_name.values().cloned().collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Checks that `name`/`uuid` may be added or may update an entry, as
    /// libvirt's `virDomainObjListAdd` does; returns the existing entry with
    /// the same name and UUID, if any.
    pub fn check_identity(&self, name: &str, uuid: &[u8; 16]) -> Result<Option<Arc<DomainEntry>>> {
        if let Some(e) = self.by_uuid(uuid) {
            if e.name != name {
                return Err(DriverError::OperationFailed(format!(
                    "domain '{}' is already defined with uuid {}",
                    e.name,
                    qvisor_domain::Uuid(*uuid)
                )));
            }
            return Ok(Some(e));
        }
        if let Some(e) = self.by_name(name) {
            return Err(DriverError::OperationFailed(format!(
                "domain '{}' already exists with uuid {}",
                name,
                qvisor_domain::Uuid(e.uuid)
            )));
        }
        Ok(None)
    }

    /// Adds a new entry (identity already checked).
    pub fn insert(&mut self, obj: DomainObj, uuid: [u8; 16]) -> Arc<DomainEntry> {
        let entry = Arc::new(DomainEntry {
            name: obj.def.name.clone(),
            uuid,
            job: Mutex::new(()),
            status_write: Mutex::new(()),
            obj: Mutex::new(obj),
        });
        self.by_name.insert(entry.name.clone(), entry.clone());
        self.by_uuid.insert(uuid, entry.clone());
        entry
    }

    /// Removes an entry.
    pub fn remove(&mut self, name: &str) {
        if let Some(e) = self.by_name.remove(name) {
            self.by_uuid.remove(&e.uuid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str) -> DomainObj {
        let def = Domain {
            name: name.to_string(),
            ..Domain::default()
        };
        DomainObj::inactive(def, true)
    }

    #[test]
    fn entries_are_found_by_uuid_until_removed() {
        let mut reg = Registry::default();
        reg.insert(obj("a"), [1; 16]);
        reg.insert(obj("b"), [2; 16]);
        assert_eq!(
            reg.by_uuid(&[2; 16]).map(|e| e.name.clone()).as_deref(),
            Some("b")
        );
        reg.remove("b");
        assert!(reg.by_uuid(&[2; 16]).is_none());
        assert_eq!(
            reg.by_uuid(&[1; 16]).map(|e| e.name.clone()).as_deref(),
            Some("a")
        );
        assert_eq!(reg.len(), 1);
    }
}
