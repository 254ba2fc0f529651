//! Fails fast, with a clear message, when BUILD.bazel / MODULE.bazel drift from the Cargo
//! layout (before a Bazel run would fail more slowly and less clearly).

mod common;

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    std::fs::read_to_string(common::project_path(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Dependency names of one `[section]` of Cargo.toml (simple `name = ...` lines).
fn cargo_deps(manifest: &str, section: &str) -> BTreeSet<String> {
    let mut in_section = false;
    let mut deps = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == section;
        } else if in_section {
            if let Some((name, _)) = line.split_once('=') {
                deps.insert(name.trim().to_string());
            }
        }
    }
    deps
}

#[test]
fn every_source_file_is_in_a_bazel_target() {
    let build = read("BUILD.bazel");
    for needle in [
        r#"srcs = glob(["src/**/*.rs"])"#,
        r#"crate_root = "src/lib.rs""#,
        r#"name = "capnp-shm-demo""#,
        r#"srcs = glob(["demo/**/*.rs"])"#,
        r#"crate_root = "demo/main.rs""#,
        r#"for src in glob(["tests/*.rs"])"#,
        r#"glob(["tests/common/**/*.rs"])"#,
        r#"for src in glob(["benches/*.rs"])"#,
        r#"glob(["schema/**/*.capnp"])"#,
        r#"glob(["src/generated/**"])"#,
        r#"srcs = ["build.rs"]"#,
    ] {
        assert!(
            build.contains(needle),
            "BUILD.bazel no longer has `{needle}`"
        );
    }
    // The library glob takes only .rs files: anything else under src/ must be generated
    // code (declared as build-script data) or it is missing from the Bazel build.
    let mut stack = vec![common::project_path("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let shown = path.display().to_string();
                assert!(
                    shown.ends_with(".rs") || shown.contains("src/generated/"),
                    "{shown} is not covered by BUILD.bazel's globs"
                );
            }
        }
    }
}

#[test]
fn every_cargo_target_and_dependency_is_known_to_bazel() {
    let manifest = read("Cargo.toml");
    let build = read("BUILD.bazel");
    let lock = read("Cargo.lock");
    let module = read("MODULE.bazel");
    assert!(
        manifest.contains(r#"path = "demo/main.rs""#)
            && manifest.contains(r#"name = "capnp-shm-demo""#)
    );
    for line in manifest
        .lines()
        .filter(|l| l.trim_start().starts_with("path = \"benches/"))
    {
        assert!(
            line.contains(".rs"),
            "bench path {line} is not a .rs file under benches/ (the Bazel glob)"
        );
    }
    for (section, kind) in [
        ("[dependencies]", "normal = True"),
        ("[build-dependencies]", "build = True"),
        ("[dev-dependencies]", "normal_dev = True"),
    ] {
        assert!(
            build.contains(kind),
            "BUILD.bazel has no all_crate_deps({kind})"
        );
        for dep in cargo_deps(&manifest, section) {
            assert!(
                lock.contains(&format!("name = \"{dep}\"")),
                "{dep} ({section}) is not in Cargo.lock: run cargo build so crate_universe sees it"
            );
        }
    }
    for needle in [
        r#"cargo_lockfile = "//:Cargo.lock""#,
        r#"manifests = ["//:Cargo.toml"]"#,
    ] {
        assert!(
            module.contains(needle),
            "MODULE.bazel no longer has `{needle}`"
        );
    }
}
