//! `sluice query`: SQL against a lake's DuckDB catalog.

use sluice_core::catalog::Catalog;

use crate::Exit;
use crate::cli::QueryArgs;

pub fn query(args: &QueryArgs) -> Result<u8, Exit> {
    let catalog = sluice_catalog::DuckCatalog::for_lake(&crate::commands::lake_dir(&args.lake));
    let batches = catalog.query(&args.sql).map_err(Exit::config)?;
    crate::output::print_batches(&batches, args.format)?;
    Ok(0)
}
