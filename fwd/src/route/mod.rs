//! Routing: the FIB (longest-prefix match for IPv4 and IPv6) that maps a
//! destination to the egress port and next hop. Neighbour resolution lives beside it.

pub mod fib;

pub use fib::{Fib, FibBuilder, RouteEntry, RouteError, RouteKind};
