//! The portcullis policy: who the subscribers are, which addresses are dynamic or
//! static, what each subscriber's port-25 state is and how it may change, and who held
//! an address at a given time.
//!
//! Pure logic: no sockets, no files, no database, no reading of the system clock
//! except through [`SystemClock`]. Everything here is tested without I/O; the `store`
//! crate persists it and the components act on it.

pub mod clock;
pub mod lease;
pub mod net;
pub mod pools;
pub mod port25;
pub mod subscriber;

pub use clock::{parse_duration, Clock, FixedClock, SystemClock, Timestamp};
pub use lease::{who_held, Lease, LeaseSource};
pub use net::{IpNet, NetError};
pub use pools::{PoolKind, Pools, PoolsError};
pub use port25::{Actor, AuditEntry, Port25Action, Port25State, TransitionError};
pub use subscriber::{validate_login, validate_sender, Plan, Subscriber, SubscriberError};
