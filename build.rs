//! Compiles `schema/*.capnp` into Rust with `capnpc` when the `capnp` compiler is on PATH;
//! otherwise copies the checked-in generated code from `src/generated/` into `OUT_DIR`,
//! so a machine without Cap'n Proto tools still builds. `scripts/check-generated.sh`
//! keeps the checked-in copy in step with the schema.
//!
//! The demo (`demo/`), the comparison bench (`benches/comparison/`) and the RPC crate
//! (`rpc/`, which uses `service.capnp`) use this same
//! script (`build = "../build.rs"` in their manifests): paths are resolved from the
//! nearest directory at or above the package's that holds `schema/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Schemas under `schema/` and the name of the Rust file each one becomes.
const SCHEMAS: &[(&str, &str)] = &[
    ("schema/demo.capnp", "demo_capnp.rs"),
    ("schema/service.capnp", "service_capnp.rs"),
];

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = project_root();
    for (schema, generated) in SCHEMAS {
        println!("cargo:rerun-if-changed={}", root.join(schema).display());
        let checked_in = root.join("src/generated").join(generated);
        println!("cargo:rerun-if-changed={}", checked_in.display());
    }
    // Lets `scripts/check-generated.sh` force a fresh regeneration.
    println!("cargo:rerun-if-env-changed=CAPNP_SHM_REGENERATE");

    if capnp_available() {
        let mut command = capnpc::CompilerCommand::new();
        command
            .src_prefix(root.join("schema"))
            .output_path(&out_dir);
        for (schema, _) in SCHEMAS {
            command.file(root.join(schema));
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
            let from = root.join("src/generated").join(generated);
            let to = out_dir.join(generated);
            if let Err(e) = std::fs::copy(&from, &to) {
                panic!("copying {} to {}: {e}", from.display(), to.display());
            }
        }
    }
}

/// The project root: the package's directory (`CARGO_MANIFEST_DIR`), or the nearest one
/// above it that holds `schema/` (for the demo and bench packages).
fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    manifest_dir
        .ancestors()
        .find(|dir| dir.join(SCHEMAS[0].0).is_file())
        .map_or(manifest_dir.clone(), Path::to_path_buf)
}

/// Whether a working `capnp` compiler is on PATH.
fn capnp_available() -> bool {
    Command::new("capnp")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}
