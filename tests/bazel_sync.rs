//! Fails fast, with a clear message, when BUILD.bazel / MODULE.bazel drift from the Cargo
//! workspace's layout (before a Bazel run would fail more slowly and less clearly).

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

/// The workspace members named in the root Cargo.toml's `members = [...]` line.
fn workspace_members(manifest: &str) -> Vec<String> {
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members = ["))
        .expect("Cargo.toml has a [workspace] members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_source_file_is_in_a_bazel_target() {
    let build = read("BUILD.bazel");
    for needle in [
        r#"srcs = glob(["src/**/*.rs"])"#,
        r#"crate_root = "src/lib.rs""#,
        r#"name = "capnp-shm-demo""#,
        r#"srcs = glob(["demo/src/**/*.rs"])"#,
        r#"crate_root = "demo/src/main.rs""#,
        r#"for src in glob(["demo/tests/*.rs"])"#,
        r#"name = "capnp_shm_comparison""#,
        r#"srcs = glob(["benches/comparison/src/**/*.rs"])"#,
        r#"crate_root = "benches/comparison/src/lib.rs""#,
        r#"for src in glob(["tests/*.rs"])"#,
        r#"name = "capnp_shm_rpc""#,
        r#"srcs = glob(["rpc/src/**/*.rs"])"#,
        r#"crate_root = "rpc/src/lib.rs""#,
        r#"for src in glob(["rpc/tests/*.rs"])"#,
        r#"":capnp_shm_rpc","#,
        r#"glob(["tests/common/**/*.rs"])"#,
        r#""tests/common/demo_capnp.rs""#,
        r#"for src in glob(["benches/*.rs"])"#,
        r#"glob(["schema/**/*.capnp"])"#,
        r#"glob(["src/generated/**"])"#,
        r#"srcs = ["build.rs"]"#,
        r#"name = "capnp_shm_transport_c""#,
        r#"srcs = glob(["capi/src/**/*.rs"])"#,
        r#"crate_root = "capi/src/lib.rs""#,
        r#"hdrs = glob(["capi/include/*.h*"])"#,
        r#"srcs = ["capi/examples/pingpong.rs"]"#,
        r#"srcs = ["capi/examples/cpp/demo.cpp"]"#,
        r#"srcs = ["capi/examples/cpp/pingpong.cpp"]"#,
        r#"srcs = ["capi/tests/cpp/abi_test.cpp"]"#,
        r#"srcs = ["capi/tests/cross_language.sh"]"#,
    ] {
        assert!(
            build.contains(needle),
            "BUILD.bazel no longer has `{needle}`"
        );
    }
    // The source globs take only .rs files: anything else under a source directory must
    // be generated code (declared as build-script data) or it is missing from the Bazel
    // build.
    let mut stack: Vec<_> = [
        "src",
        "demo/src",
        "demo/tests",
        "benches/comparison/src",
        "capi/src",
        "rpc/src",
        "rpc/tests",
    ]
    .into_iter()
    .map(common::project_path)
    .collect();
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
    let members = workspace_members(&manifest);
    assert_eq!(
        members,
        ["demo", "benches/comparison", "capi", "rpc"],
        "the workspace members changed: update BUILD.bazel, MODULE.bazel and this test"
    );
    let demo = read("demo/Cargo.toml");
    assert!(
        demo.contains(r#"path = "src/main.rs""#) && demo.contains(r#"name = "capnp-shm-demo""#),
        "demo/Cargo.toml no longer builds capnp-shm-demo from src/main.rs"
    );
    assert!(
        read("benches/comparison/Cargo.toml").contains(r#"path = "src/lib.rs""#),
        "benches/comparison/Cargo.toml no longer builds its library from src/lib.rs"
    );
    // capi/: one Bazel target per C++ source, test and example (the strings above name
    // each); a new one must be added there too.
    for dir in [
        "capi/examples",
        "capi/examples/cpp",
        "capi/tests/cpp",
        "capi/tests",
    ] {
        for entry in std::fs::read_dir(common::project_path(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() || (dir == "capi/tests" && name.ends_with(".rs")) {
                continue; // capi/tests/*.rs are Cargo's (the header drift check)
            }
            let label = format!(r#""{dir}/{name}""#);
            assert!(
                build.contains(&label),
                "{label} has no Bazel target in BUILD.bazel"
            );
        }
    }
    let rpc = read("rpc/Cargo.toml");
    assert!(
        rpc.contains(r#"path = "src/lib.rs""#) && rpc.contains(r#"build = "../build.rs""#),
        "rpc/Cargo.toml no longer builds its library from src/lib.rs with the shared build.rs"
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
    // crate_universe must see every member's manifest, and each member's targets take
    // their crates from that member's entry (`package_name`).
    let mut manifests = vec![("", manifest)];
    for member in &members {
        let label = format!(r#""//:{member}/Cargo.toml""#);
        assert!(
            module.contains(&label),
            "MODULE.bazel's manifests do not list {label}"
        );
        assert!(
            build.contains(&format!(r#"package_name = "{member}""#)),
            "BUILD.bazel takes no crates for {member} (all_crate_deps(package_name = ...))"
        );
        manifests.push((member.as_str(), read(&format!("{member}/Cargo.toml"))));
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
        for (member, manifest) in &manifests {
            for dep in cargo_deps(manifest, section) {
                if dep.starts_with("capnp-shm-") {
                    continue; // a workspace member, built by its own Bazel target
                }
                assert!(
                    lock.contains(&format!("name = \"{dep}\"")),
                    "{dep} ({member:?} {section}) is not in Cargo.lock: run cargo build so crate_universe sees it"
                );
            }
        }
    }
    for needle in [r#"cargo_lockfile = "//:Cargo.lock""#, r#""//:Cargo.toml","#] {
        assert!(
            module.contains(needle),
            "MODULE.bazel no longer has `{needle}`"
        );
    }
}
