//! Replays the fuzz targets' committed corpus (and any saved crash under fuzz/artifacts)
//! on stable Rust, plus a deterministic sweep of mutated inputs, so every `cargo test`
//! re-checks what the fuzzers found. The targets live in `fuzz/` (cargo fuzz, nightly).

mod common;

use std::path::Path;

use capnp_shm_transport::fuzzing;

type Target = fn(&[u8]);
/// Each target, and how many mutations of each seed the replay tries: `untrusted_recv`
/// spawns a mutator thread per input, which valgrind (CI's memcheck step runs this test)
/// serialises, so it gets fewer.
const TARGETS: [(&str, Target, u32); 4] = [
    ("segment", fuzzing::segment, 2_000),
    ("ring", fuzzing::ring, 2_000),
    ("typed_slot", fuzzing::typed_slot, 2_000),
    ("untrusted_recv", fuzzing::untrusted_recv, 20),
];

fn inputs(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect()
}

#[test]
fn committed_corpus_and_saved_crashes_replay_cleanly() {
    let root = common::project_path("fuzz");
    for (name, target, _) in TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seeds");
        for input in corpus
            .iter()
            .chain(&inputs(&root.join("artifacts").join(name)))
        {
            target(input);
        }
    }
}

#[test]
fn mutated_seeds_never_panic() {
    let root = common::project_path("fuzz/corpus");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (name, target, mutations) in TARGETS {
        for seed in inputs(&root.join(name)) {
            for _ in 0..mutations {
                let mut input = seed.clone();
                for _ in 0..1 + next() % 8 {
                    match next() % 3 {
                        0 if !input.is_empty() => {
                            let i = (next() as usize) % input.len();
                            input[i] = next() as u8;
                        }
                        1 => input.truncate((next() as usize) % (input.len() + 1)),
                        _ => input.extend((0..next() % 16).map(|_| next() as u8)),
                    }
                }
                target(&input);
            }
        }
    }
}
