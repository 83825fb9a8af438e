//! Replaying the committed fuzz inputs: every file of `fuzz/seeds/TARGET/`
//! (the minimised corpus) and `fuzz/regressions/TARGET/` (inputs that once
//! crashed) through a target's check, without any random search.
//!
//! Included by path by the `fuzz_replay` test of the crate that owns each
//! target's code, so `cargo test --workspace` runs every check on every
//! committed input.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The committed inputs of `target`, in name order (the seeds must exist
/// and hold at least one file: a wrong path must not pass as an empty
/// corpus).
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let seeds = fuzz.join("seeds").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&seeds)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", seeds.display()))
        .chain(
            std::fs::read_dir(fuzz.join("regressions").join(target))
                .into_iter()
                .flatten(),
        )
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.iter().any(|path| path.starts_with(&seeds)),
        "no seeds in {}",
        seeds.display()
    );
    files
}

/// Runs `check` on every committed input of `target`; fails naming every
/// input whose check panicked.
pub(crate) fn replay(target: &str, check: fn(&[u8])) {
    let mut failed = Vec::new();
    let files = inputs(target);
    for path in &files {
        let data = std::fs::read(path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs fail (reproduce with `cargo fuzz run {target} FILE` in fuzz/):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}
