//! Project automation for Sluice, run as `cargo xtask <command>`.
//!
//! The library half holds reusable pieces (plugin hashing, the dist check) so that the host's
//! tests can use them too. Building a plugin is `sluice_toolchain`'s.

pub mod plugins;

pub use sluice_toolchain::component::{SOURCE_HASH_SECTION, read_custom_section};
