//! Project automation for Sluice, run as `cargo xtask <command>`.
//!
//! The library half holds reusable pieces (component custom sections, plugin
//! hashing) so that the host's tests can use them too.

pub mod component;
pub mod plugins;

pub use component::{SOURCE_HASH_SECTION, read_custom_section};
