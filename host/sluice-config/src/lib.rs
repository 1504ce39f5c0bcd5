//! Sluice pipeline YAML: parsed into raw types that mirror the file (`deny_unknown_fields`), then
//! resolved into the validated [`sluice_core::spec`] types. Parsing and resolution have no side
//! effects; checks that touch the environment (plugins load, directories exist) live elsewhere.

mod error;
mod raw;
mod resolve;
mod units;

pub use error::{ConfigError, ConfigErrors};
pub use raw::RawPipeline;
pub use resolve::{load_file, load_path, parse_str};
