//! Where a packet goes next: the FIB (longest-prefix match, v4 and v6) and the
//! neighbour table that turns a next hop into a MAC address.

pub mod neigh;
pub mod netlink;
