//! The checked-in C header is what cbindgen generates from the source: regenerates it and
//! fails on any difference (`CST_BLESS=1` rewrites the file instead).

use std::path::Path;

#[test]
fn checked_in_header_matches_the_source() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = dir.join("include/capnp_shm_transport.h");
    if std::env::var_os("CST_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing the header");
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/capnp_shm_transport.h differs from what the source generates; run \
         `CST_BLESS=1 cargo test -p capnp-shm-transport-c --test header` and commit it.\n\
         generated:\n{}",
        String::from_utf8_lossy(&generated)
    );
}
