//! Domain states, reasons and lifecycle events, with libvirt's names and numbers
//! (`virDomainState`, `virDomain*Reason`, `virDomainEventType` and details), so
//! the RPC layer can send them as they are and `domstate --reason` reads the same.

use std::fmt;

/// `virDomainState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainState {
    /// Running.
    Running(RunningReason),
    /// Paused.
    Paused(PausedReason),
    /// Being shut down.
    Shutdown,
    /// Not running.
    Shutoff(ShutoffReason),
    /// Crashed (only with `<on_crash>preserve</on_crash>`).
    Crashed,
}

/// `virDomainRunningReason` (subset in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunningReason {
    /// Unknown.
    Unknown = 0,
    /// Normal start-up.
    Booted = 1,
    /// Resumed after a pause.
    Unpaused = 5,
    /// Re-attached after a driver restart, state unknown before.
    FromSnapshot = 8,
    /// Woken up from PM suspend.
    Wakeup = 9,
}

impl RunningReason {
    /// Every value.
    pub const ALL: [RunningReason; 5] = [
        RunningReason::Unknown,
        RunningReason::Booted,
        RunningReason::Unpaused,
        RunningReason::FromSnapshot,
        RunningReason::Wakeup,
    ];
}

/// `virDomainPausedReason` (subset in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PausedReason {
    /// Unknown.
    Unknown = 0,
    /// Paused by the user.
    User = 1,
    /// Paused on an I/O error.
    IoError = 3,
    /// Paused by a watchdog.
    Watchdog = 4,
    /// Started paused (`start --paused`).
    StartingUp = 11,
    /// Paused after a guest panic (`on_crash=preserve`).
    Crashed = 13,
}

impl PausedReason {
    /// Every value.
    pub const ALL: [PausedReason; 6] = [
        PausedReason::Unknown,
        PausedReason::User,
        PausedReason::IoError,
        PausedReason::Watchdog,
        PausedReason::StartingUp,
        PausedReason::Crashed,
    ];
}

/// `virDomainShutoffReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShutoffReason {
    /// Unknown.
    Unknown = 0,
    /// The guest shut down.
    Shutdown = 1,
    /// Destroyed.
    Destroyed = 2,
    /// QEMU died.
    Crashed = 3,
    /// Start failed.
    Failed = 6,
}

impl ShutoffReason {
    /// Every value.
    pub const ALL: [ShutoffReason; 5] = [
        ShutoffReason::Unknown,
        ShutoffReason::Shutdown,
        ShutoffReason::Destroyed,
        ShutoffReason::Crashed,
        ShutoffReason::Failed,
    ];
}

impl DomainState {
    /// libvirt's state number (`VIR_DOMAIN_*`).
    pub fn number(self) -> i32 {
        match self {
            DomainState::Running(_) => 1,
            DomainState::Paused(_) => 3,
            DomainState::Shutdown => 4,
            DomainState::Shutoff(_) => 5,
            DomainState::Crashed => 6,
        }
    }

    /// libvirt's reason number for the state.
    pub fn reason_number(self) -> i32 {
        match self {
            DomainState::Running(r) => r as i32,
            DomainState::Paused(r) => r as i32,
            DomainState::Shutoff(r) => r as i32,
            DomainState::Shutdown | DomainState::Crashed => 0,
        }
    }

    /// Whether a QEMU process exists for this state.
    pub fn is_active(self) -> bool {
        !matches!(self, DomainState::Shutoff(_))
    }

    /// The state as `virsh domstate` prints it.
    pub fn name(self) -> &'static str {
        match self {
            DomainState::Running(_) => "running",
            DomainState::Paused(_) => "paused",
            DomainState::Shutdown => "in shutdown",
            DomainState::Shutoff(_) => "shut off",
            DomainState::Crashed => "crashed",
        }
    }

    /// The reason as `virsh domstate --reason` prints it.
    pub fn reason_name(self) -> &'static str {
        match self {
            DomainState::Running(r) => match r {
                RunningReason::Unknown => "unknown",
                RunningReason::Booted => "booted",
                RunningReason::Unpaused => "unpaused",
                RunningReason::FromSnapshot => "from snapshot",
                RunningReason::Wakeup => "event wakeup",
            },
            DomainState::Paused(r) => match r {
                PausedReason::Unknown => "unknown",
                PausedReason::User => "user",
                PausedReason::IoError => "I/O error",
                PausedReason::Watchdog => "watchdog",
                PausedReason::StartingUp => "starting up",
                PausedReason::Crashed => "crashed",
            },
            DomainState::Shutoff(r) => match r {
                ShutoffReason::Unknown => "unknown",
                ShutoffReason::Shutdown => "shutdown",
                ShutoffReason::Destroyed => "destroyed",
                ShutoffReason::Crashed => "crashed",
                ShutoffReason::Failed => "failed",
            },
            DomainState::Shutdown | DomainState::Crashed => "unknown",
        }
    }

    /// The status-XML spelling (libvirt's `virDomainStateTypeToString` and
    /// reason enums), e.g. `running` / `booted`.
    pub fn status_names(self) -> (&'static str, &'static str) {
        let state = match self {
            DomainState::Running(_) => "running",
            DomainState::Paused(_) => "paused",
            DomainState::Shutdown => "shutdown",
            DomainState::Shutoff(_) => "shutoff",
            DomainState::Crashed => "crashed",
        };
        (state, self.reason_name())
    }

    /// Every state with every reason.
    fn all() -> impl Iterator<Item = DomainState> {
        RunningReason::ALL
            .into_iter()
            .map(DomainState::Running)
            .chain(PausedReason::ALL.into_iter().map(DomainState::Paused))
            .chain(ShutoffReason::ALL.into_iter().map(DomainState::Shutoff))
            .chain([DomainState::Shutdown, DomainState::Crashed])
    }

    /// Parses [`DomainState::status_names`] back (an unknown reason gives the
    /// state's `unknown` reason); `None` for anything but an active state.
    pub fn from_status_names(state: &str, reason: &str) -> Option<DomainState> {
        let active = |s: &DomainState| s.is_active() && s.status_names().0 == state;
        Self::all()
            .find(|s| active(s) && s.status_names().1 == reason)
            .or_else(|| Self::all().find(|s| active(s) && s.reason_number() == 0))
    }

    /// The state for libvirt's (state, reason) numbers, as they cross the wire.
    pub fn from_numbers(state: i32, reason: i32) -> Option<DomainState> {
        Self::all()
            .find(|s| s.number() == state && s.reason_number() == reason)
            .or_else(|| Self::all().find(|s| s.number() == state && s.reason_number() == 0))
    }
}

impl fmt::Display for DomainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A lifecycle event (`virDomainEventType` + detail), libvirt numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// Defined (`DEFINED`): detail 0 added, 1 updated.
    Defined { updated: bool },
    /// Undefined (`UNDEFINED`/removed).
    Undefined,
    /// Started (`STARTED`/booted).
    Started,
    /// Suspended (`SUSPENDED`): detail 0 paused, 6 API error...
    Suspended(SuspendedDetail),
    /// Resumed (`RESUMED`/unpaused).
    Resumed,
    /// Stopped (`STOPPED`).
    Stopped(StoppedDetail),
    /// Shutdown begun/finished (`SHUTDOWN`): detail 0 finished, 1 guest, 2 host.
    Shutdown(ShutdownDetail),
    /// Crashed (`CRASHED`/panicked).
    Crashed,
}

/// `virDomainEventSuspendedDetailType` (subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuspendedDetail {
    /// Normal pause.
    Paused = 0,
    /// I/O error.
    IoError = 2,
    /// Watchdog.
    Watchdog = 3,
}

/// `virDomainEventStoppedDetailType` (subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoppedDetail {
    /// Normal shutdown.
    Shutdown = 0,
    /// Destroyed.
    Destroyed = 1,
    /// Guest crashed.
    Crashed = 2,
    /// Host emulator/mgmt failed.
    Failed = 5,
}

/// `virDomainEventShutdownDetailType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShutdownDetail {
    /// Shutdown finished (cause unknown).
    Finished = 0,
    /// The guest asked for it.
    Guest = 1,
    /// The host asked for it (e.g. a signal to QEMU).
    Host = 2,
}

impl Lifecycle {
    /// `(event, detail)` numbers as in `virDomainEventType`.
    pub fn numbers(self) -> (i32, i32) {
        match self {
            Lifecycle::Defined { updated } => (0, i32::from(updated)),
            Lifecycle::Undefined => (1, 0),
            Lifecycle::Started => (2, 0),
            Lifecycle::Suspended(d) => (3, d as i32),
            Lifecycle::Resumed => (4, 0),
            Lifecycle::Stopped(d) => (5, d as i32),
            Lifecycle::Shutdown(d) => (6, d as i32),
            Lifecycle::Crashed => (8, 0),
        }
    }
}

/// A domain event: which domain, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEvent {
    /// Domain name.
    pub name: String,
    /// Domain UUID (16 bytes).
    pub uuid: [u8; 16],
    /// Domain id, -1 when inactive.
    pub id: i32,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of domain events the driver emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`.
    Lifecycle(Lifecycle),
    /// `VIR_DOMAIN_EVENT_ID_REBOOT`.
    Reboot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_numbers_are_libvirts() {
        assert_eq!(DomainState::Running(RunningReason::Booted).number(), 1);
        assert_eq!(
            DomainState::Running(RunningReason::Booted).reason_number(),
            1
        );
        assert_eq!(DomainState::Paused(PausedReason::User).number(), 3);
        assert_eq!(
            DomainState::Shutoff(ShutoffReason::Destroyed).reason_number(),
            2
        );
        assert_eq!(
            Lifecycle::Stopped(StoppedDetail::Destroyed).numbers(),
            (5, 1)
        );
        assert_eq!(Lifecycle::Shutdown(ShutdownDetail::Host).numbers(), (6, 2));
    }

    #[test]
    fn status_names_round_trip() {
        for s in [
            DomainState::Running(RunningReason::Booted),
            DomainState::Running(RunningReason::Unpaused),
            DomainState::Paused(PausedReason::User),
            DomainState::Paused(PausedReason::StartingUp),
        ] {
            let (a, b) = s.status_names();
            assert_eq!(DomainState::from_status_names(a, b), Some(s));
        }
    }
}
