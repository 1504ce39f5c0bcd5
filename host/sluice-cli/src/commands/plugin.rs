//! `sluice plugin list|inspect`.

use std::path::PathBuf;

use sluice_core::plugin::PluginRuntime;
use sluice_core::spec::PluginRef;

use crate::Exit;
use crate::cli::{Global, PluginCommand};

pub fn plugin(cmd: PluginCommand, g: &Global) -> Result<u8, Exit> {
    let rt = crate::context::runtime(g.plugin_dir.clone())?;
    match cmd {
        PluginCommand::List => {
            for name in rt.builtin_names() {
                match rt.load(&PluginRef::Named(name.clone())) {
                    Ok(p) => println!("{:<14} {:<8} {}", name, p.info().version, p.info().summary),
                    Err(e) => println!("{name:<14} (cannot load: {e})"),
                }
            }
        }
        PluginCommand::Inspect { plugin } => {
            let r = if plugin.ends_with(".wasm") || plugin.contains('/') {
                PluginRef::Path(PathBuf::from(&plugin))
            } else {
                PluginRef::Named(plugin)
            };
            let p = rt.load(&r).map_err(Exit::config)?;
            let i = p.info();
            println!(
                "name:     {}\nversion:  {}\ncontract: {}\nsummary:  {}\n",
                i.name, i.version, i.contract, i.summary
            );
            println!("{}", if i.config_doc.is_empty() { "(no config documentation)" } else { &i.config_doc });
        }
    }
    Ok(0)
}
