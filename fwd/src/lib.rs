//! fwd: a packet forwarder and stateful firewall over AF_XDP.
//!
//! The layout follows the data path (see DESIGN.md section 2): `packet` parses,
//! `rules`/`classify` judge, `route` picks the next hop, `xsk` owns the UMEM and rings, `dataplane` runs the
//! per-core poll loops, `config` and `cli` are the cold edges.

pub mod classify;
pub mod cli;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod dataplane;
pub mod packet;
pub mod route;
pub mod rules;
pub mod xsk;
