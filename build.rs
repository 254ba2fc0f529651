//! Compiles `schema/*.capnp` into Rust with `capnpc` when the `capnp` compiler is on PATH;
//! otherwise copies the checked-in generated code from `src/generated/` into `OUT_DIR`,
//! so a machine without Cap'n Proto tools still builds. `scripts/check-generated.sh`
//! keeps the checked-in copy in step with the schema.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Schemas under `schema/` and the name of the Rust file each one becomes.
const SCHEMAS: &[(&str, &str)] = &[("schema/demo.capnp", "demo_capnp.rs")];

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (schema, generated) in SCHEMAS {
        println!("cargo:rerun-if-changed={schema}");
        println!("cargo:rerun-if-changed=src/generated/{generated}");
    }
    // Lets `scripts/check-generated.sh` force a fresh regeneration.
    println!("cargo:rerun-if-env-changed=CAPNP_SHM_REGENERATE");

    if capnp_available() {
        let mut command = capnpc::CompilerCommand::new();
        command.src_prefix("schema").output_path(&out_dir);
        for (schema, _) in SCHEMAS {
            command.file(schema);
        }
        if let Err(e) = command.run() {
            panic!("capnp is on PATH but compiling the schemas failed: {e}");
        }
    } else {
        println!(
            "cargo:warning=`capnp` not found on PATH: using the checked-in generated code \
             from src/generated/ (install capnproto to regenerate from schema/)"
        );
        for (_, generated) in SCHEMAS {
            let from = Path::new("src/generated").join(generated);
            let to = out_dir.join(generated);
            if let Err(e) = std::fs::copy(&from, &to) {
                panic!("copying {} to {}: {e}", from.display(), to.display());
            }
        }
    }
}

/// Whether a working `capnp` compiler is on PATH.
fn capnp_available() -> bool {
    Command::new("capnp")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}
