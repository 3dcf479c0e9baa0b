//! Zero-copy header views over frame bytes, checksums, and the one-pass parse that
//! produces the [`PacketMeta`] every later stage reads.

pub mod meta;

pub use meta::PacketMeta;
