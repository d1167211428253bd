//! Every kept fuzz corpus (`fuzz/corpus/<target>/`) replayed through the function its
//! fuzz target calls ([`fleetpoll::fuzzing`]), so CI checks each input a fuzzer once
//! found interesting, and every crash input kept there, without nightly or cargo-fuzz.

use std::path::{Path, PathBuf};

use fleetpoll::fuzzing::{Session, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The files of a target's corpus, sorted; fails when the directory is missing or empty.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "fuzz target {target} has no corpus at {}: {e}",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus of fuzz target {target} ({}) is empty",
        dir.display()
    );
    files
}

#[test]
fn every_corpus_input_passes_its_fuzz_target() {
    let mut session = Session::new();
    let mut total = 0;
    for target in TARGETS {
        for file in corpus(target) {
            let data = std::fs::read(&file).unwrap();
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                session.run(target, &data)
            }));
            match run {
                Ok(known) => assert!(known, "{target} is listed but not run"),
                Err(_) => panic!("fuzz target {target} fails on {}", file.display()),
            }
            total += 1;
        }
    }
    assert!(total >= TARGETS.len());
}

#[test]
fn every_fuzz_target_is_listed_and_has_a_binary() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    for target in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no binary {target}"
        );
        let body = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        assert!(body.is_file(), "{} is missing", body.display());
    }
    assert!(!Session::new().run("no_such_target", b""));
}
