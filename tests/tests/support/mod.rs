//! What the test files share: the peer program, the conformance suite's helpers (requests,
//! process inspection through `/proc`, a failure guard for every wait), and this process's
//! own resources.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) use tether_conformance::helpers::*;
use tether_conformance::Peer;

/// The built-in peer, as its own program.
pub(crate) fn test_peer() -> Peer {
    Peer::new(env!("CARGO_BIN_EXE_tether-test-peer"))
}

/// A command that starts the built-in peer.
pub(crate) fn peer() -> Command {
    test_peer().command()
}

/// Runs the same scenario under tokio and under smol: `conformance!(name)` makes
/// `tokio::name` and `smol::name` tests from `scenarios::name::<R>()`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod tokio_runtime {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::guard::<tether_tokio::Tokio, _>(
                        $crate::scenarios::$name::<tether_tokio::Tokio>(),
                    )
                    .await;
                }
            )*
        }
        mod smol_runtime {
            $(
                #[test]
                fn $name() {
                    smol::block_on($crate::support::guard::<tether_smol::Smol, _>(
                        $crate::scenarios::$name::<tether_smol::Smol>(),
                    ));
                }
            )*
        }
    };
}

/// This process's peak resident set size (`VmHWM`), in KiB.
pub(crate) fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// How many file descriptors this process has open.
pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The pids of this process's children (every thread's), zombies included.
pub(crate) fn children() -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// Waits until this process has no more than `fds` file descriptors open and no child at all,
/// failing (after [`GUARD`]) with what is left.
pub(crate) fn assert_back_to(fds: usize) {
    let start = Instant::now();
    while fd_count() > fds || !children().is_empty() {
        assert!(
            start.elapsed() < GUARD,
            "not back to baseline: {} fds open (baseline {fds}), children {:?}",
            fd_count(),
            children()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Each scenario of `tether-escape`, and how many `pid N` lines its tree writes once its
/// descendants have escaped the process group.
pub(crate) const ESCAPES: [(&str, usize); 5] = [
    ("setsid_grandchild", 1),
    ("double_forked_daemon", 1),
    ("setpgid_descendant", 1),
    ("leader_exits", 3),
    // The forking grandchild and five of its children: the kill lands while it still forks.
    ("forker", 6),
];

/// The processes alive (not zombies) whose environment carries `TETHER_TEST_TAG=tag`: what
/// is left of a tree a test started, wherever its members went.
pub(crate) fn tagged(tag: &str) -> Vec<u32> {
    let needle = format!("TETHER_TEST_TAG={tag}");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .filter(|&p| state(p) != Some('Z'))
        .collect()
}
