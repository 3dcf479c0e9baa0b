//! Where a packet goes next: the FIB (longest-prefix match, v4 and v6) that maps a
//! destination to the egress port and next hop, and the neighbour table that turns
//! a next hop into a MAC address (kept in step with the kernel's over rtnetlink).

pub mod fib;
pub mod neigh;
pub mod netlink;

pub use fib::{Fib, FibBuilder, RouteEntry, RouteError, RouteKind};
