//! Sluice's file sources: discover files under a directory by glob, and stream them as Arrow
//! record batches, with columns taken from parts of the file name.

mod csv;
mod dir;
mod fields;

pub use dir::DirSource;
