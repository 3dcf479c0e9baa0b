//! fwd: a packet forwarder and stateful firewall over AF_XDP.
//!
//! The layout follows the data path (see DESIGN.md section 2): `packet` parses,
//! `rules`/`classify` judge, `route` picks the next hop, `xsk` owns the rings and
//! `dataplane` runs the per-core poll loops.

pub mod classify;
pub mod packet;
pub mod rules;
