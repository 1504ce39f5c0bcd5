//! `sluice schema`: the JSON Schema of the pipeline language, generated from the raw types.

use crate::Exit;

pub fn schema() -> Result<u8, Exit> {
    let text = serde_json::to_string_pretty(&crate::context::kinds().json_schema())?;
    println!("{text}");
    Ok(0)
}
