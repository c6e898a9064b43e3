//! Writes the CRD of every Tributary resource, one YAML file each, the files `crds/` holds.
//!
//! ```text
//! crdgen                  print every CRD as one YAML stream
//! crdgen --write crds     (re)write crds/<plural>.<group>.yaml
//! crdgen --check crds     exit 1, naming the files, when crds/ differs from the types
//! ```

use std::path::Path;
use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    let files = tributary_operator::crd::crd_files()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {
            for (_, yaml) in &files {
                print!("---\n{yaml}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ["--write", dir] => {
            std::fs::create_dir_all(dir)?;
            for (name, yaml) in &files {
                std::fs::write(Path::new(dir).join(name), yaml)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ["--check", dir] => {
            let mut stale = Vec::new();
            for (name, yaml) in &files {
                let path = Path::new(dir).join(name);
                if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                    stale.push(path.display().to_string());
                }
            }
            if stale.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "stale CRDs: {} (run `cargo run -p tributary-operator --bin crdgen -- --write crds`)",
                stale.join(", ")
            );
            Ok(ExitCode::FAILURE)
        }
        _ => {
            eprintln!("usage: crdgen [--write DIR | --check DIR]");
            Ok(ExitCode::from(2))
        }
    }
}
