//! Replays the committed fuzz inputs on stable: every file in `fuzz/seeds/TARGET/` and
//! `fuzz/regressions/TARGET/` goes through the same harness function the fuzz target calls, so
//! a plain `cargo test` keeps every named case and every crash ever found fixed. Inputs that
//! show a bug not fixed yet wait in `fuzz/regressions/TARGET/open/`, where they must still fail.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tether_core::harness;

/// A harness function, as a fuzz target calls it.
type Harness = fn(&[u8]);

/// Every fuzz target and the harness function it calls.
const TARGETS: [(&str, Harness); 11] = [
    ("lines", harness::lines),
    ("content_length", harness::content_length),
    ("message", harness::message),
    ("connection_ops", harness::connection_ops),
    ("supervisor_ops", supervisor_ops),
    ("keepalive_ops", keepalive_ops),
    ("endpoint_ops", endpoint_ops),
    ("streamable_ops", streamable_ops),
    ("streamable_client_ops", streamable_client_ops),
    ("gateway_ops", gateway_ops),
    ("restart_ops", restart_ops),
];

#[allow(
    clippy::disallowed_methods,
    reason = "the restart harness needs one real instant as the origin of its virtual time"
)]
fn restart_ops(data: &[u8]) {
    harness::restart_ops(data, Instant::now());
}

#[allow(
    clippy::disallowed_methods,
    reason = "the supervisor harness needs one real instant as the origin of its virtual time"
)]
fn supervisor_ops(data: &[u8]) {
    harness::supervisor_ops(data, Instant::now());
}

#[allow(
    clippy::disallowed_methods,
    reason = "the keepalive harness needs one real instant as the origin of its virtual time"
)]
fn keepalive_ops(data: &[u8]) {
    harness::keepalive_ops(data, Instant::now());
}

#[allow(
    clippy::disallowed_methods,
    reason = "the endpoint harness needs one real instant as the origin of its virtual time"
)]
fn endpoint_ops(data: &[u8]) {
    harness::endpoint_ops(data, Instant::now());
}

#[allow(
    clippy::disallowed_methods,
    reason = "the session harness needs one real instant as the origin of its virtual time"
)]
fn streamable_ops(data: &[u8]) {
    harness::streamable_ops(data, Instant::now());
}

#[allow(
    clippy::disallowed_methods,
    reason = "the client harness needs one real instant as the origin of its virtual time"
)]
fn streamable_client_ops(data: &[u8]) {
    harness::streamable_client_ops(data, Instant::now());
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files in `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a listed target");
    let seeds = files(&fuzz_dir().join("seeds").join(target));
    // A missing or emptied seed directory must fail, not pass having replayed nothing.
    assert!(!seeds.is_empty(), "no seeds in fuzz/seeds/{target}");
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    for file in seeds.iter().chain(&regressions) {
        // Printed before the run, so that a failure names its input.
        eprintln!("replaying {}", file.display());
        run(&fs::read(file).expect("a readable input"));
    }
}

#[test]
fn lines() {
    replay("lines");
}

#[test]
fn content_length() {
    replay("content_length");
}

#[test]
fn message() {
    replay("message");
}

#[test]
fn connection_ops() {
    replay("connection_ops");
}

#[test]
fn restart_ops_seeds() {
    replay("restart_ops");
}

#[test]
fn supervisor_ops_seeds() {
    replay("supervisor_ops");
}

#[test]
fn keepalive_ops_seeds() {
    replay("keepalive_ops");
}

#[test]
fn endpoint_ops_seeds() {
    replay("endpoint_ops");
}

/// Inputs that still break an invariant wait in `fuzz/regressions/TARGET/open/` (which the
/// replay above skips) until the bug they show is fixed. Each must still fail, so that the fix
/// is noticed and the input moved up among the regressions that must pass.
#[test]
fn open_regressions_still_fail() {
    for (target, run) in TARGETS {
        let open = fuzz_dir().join("regressions").join(target).join("open");
        for file in files(&open) {
            eprintln!("replaying {}, expecting it to fail", file.display());
            let data = fs::read(&file).expect("a readable input");
            assert!(
                std::panic::catch_unwind(|| run(&data)).is_err(),
                "{} passes now: move it to fuzz/regressions/{target}/",
                file.display()
            );
        }
    }
}

/// Every fuzz target has its inputs replayed here, and every seed directory belongs to one.
#[test]
fn every_target_is_replayed() {
    let listed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    let stems = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(fuzz_dir().join(dir))
            .unwrap_or_else(|e| panic!("fuzz/{dir}: {e}"))
            .map(|e| {
                let path = e.expect("a readable directory entry").path();
                path.file_stem()
                    .expect("a named entry")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    };
    let mut expected: Vec<String> = listed.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(stems("fuzz_targets"), expected, "fuzz/fuzz_targets");
    assert_eq!(stems("seeds"), expected, "fuzz/seeds");
}

#[allow(
    clippy::disallowed_methods,
    reason = "the gateway harness needs one real instant as the origin of its virtual time"
)]
fn gateway_ops(data: &[u8]) {
    harness::gateway_ops(data, Instant::now());
}

#[test]
fn gateway_ops_seeds() {
    replay("gateway_ops");
}

#[test]
fn streamable_ops_seeds() {
    replay("streamable_ops");
}

#[test]
fn streamable_client_ops_seeds() {
    replay("streamable_client_ops");
}
