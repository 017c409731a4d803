//! Containment through the library: a `Connection` to a `tether-escape` tree, under each
//! mechanism forced on and under both runtimes, ended by `shutdown()` or by a drop after the
//! runtime is gone. The endpoint decides that what left the group is killed after the child's
//! exit; the process layer carries it out with the connection's container. After each: every
//! process of the tree gone (not even a zombie), no child of ours left, descriptors back to
//! baseline.
//!
//! A mechanism that cannot work here says so by name (a `SKIPPED` line on standard error,
//! past the harness's capture), and fails instead when `TETHER_REQUIRE_CGROUP=1` is set.

#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use support::{
    assert_back_to, become_subreaper, children, fd_count, state, tagged, ESCAPES, GUARD,
};
use tether_io::process::contain::Availability;
use tether_io::{Connection, Containment, Event, Mechanism, Message, Options, Runtime};

static SERIAL: Mutex<()> = Mutex::new(());

/// Descriptor counts and orphans are process-wide: the tests take turns.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The mechanisms to force here: the sweep always (this process is a subreaper), the cgroup
/// where one is writable.
fn mechanisms(test: &str) -> Vec<(Containment, Mechanism)> {
    become_subreaper();
    let mut forced = vec![(Containment::Subreaper, Mechanism::Subreaper)];
    match Availability::detect().resolve(Containment::Cgroup) {
        Ok(_) => forced.push((Containment::Cgroup, Mechanism::Cgroup)),
        Err(err) if std::env::var_os("TETHER_REQUIRE_CGROUP").is_some_and(|v| v == "1") => {
            panic!("cgroup v2 not writable here: {err}")
        }
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test} under cgroup: cgroup v2 not writable here: {err}"
            );
        }
    }
    forced
}

/// Spawns `scenario` through a connection and waits for `reports` escaped pids, which the
/// tree writes as `pid N` lines: malformed frames, whose excerpt carries them. A leader that
/// exits at once has its escapees killed at once, so fewer may get to report: the tag finds
/// them all the same.
async fn escaped<R: Runtime>(
    scenario: &str,
    reports: usize,
    contain: Containment,
    grace: Duration,
    tag: &str,
) -> (Connection<Message, R>, Vec<u32>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether-escape"));
    command.arg(scenario).env("TETHER_TEST_TAG", tag);
    let options = Options::new().grace(grace).contain(contain);
    let mut conn = Connection::<Message, R>::spawn(command, options).expect("spawn");
    let mut pids = Vec::new();
    while pids.len() < reports {
        match conn.recv().await {
            Some(Event::Malformed(m)) => pids.push(
                m.excerpt
                    .strip_prefix("pid ")
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or_else(|| panic!("not a pid line: {m}")),
            ),
            // With no grace, the wait for the output to end may time out instead, and the
            // lines not yet read are lost: the tag and this process's children find the rest.
            Some(Event::Disconnected(_))
                if matches!(scenario, "leader_exits" | "abort_after_setsid") =>
            {
                break
            }
            other => panic!("{scenario}: expected a pid line, got {other:?}"),
        }
    }
    (conn, pids)
}

/// Waits (bounded) until the tree is gone: its processes are killed by a thread of the
/// process layer, and a kill finishing in the kernel has no event to wait on here.
fn assert_gone(scenario: &str, tag: &str, pids: &[u32]) {
    let start = Instant::now();
    while !tagged(tag).is_empty() || pids.iter().any(|&p| state(p).is_some()) {
        assert!(
            start.elapsed() < GUARD,
            "{scenario}: left alive {:?}, pids {:?}",
            tagged(tag),
            pids.iter().map(|&p| (p, state(p))).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills what is left of a tree when dropped: after a failure, so that the test does not
/// leave processes behind (found by the tree's tag, so only processes this test started).
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in tagged(&self.0) {
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

async fn shutdown_contains_every_escape<R: Runtime>(runtime: &str, grace: Duration) {
    let test = format!("{runtime}_shutdown_contains_every_escape with grace {grace:?}");
    // A runtime's reactor opens its descriptors on first use: before the baseline.
    R::sleep(Duration::from_millis(1)).await;
    for (contain, mechanism) in mechanisms(&test) {
        for (scenario, reports) in ESCAPES {
            let fds = fd_count();
            let tag = format!(
                "{scenario}-{mechanism}-{runtime}-{}-{}",
                grace.as_millis(),
                std::process::id()
            );
            let _leftovers = Leftovers(tag.clone());
            let (conn, pids) = escaped::<R>(scenario, reports, contain, grace, &tag).await;
            assert_eq!(conn.containment(), Some(mechanism), "{scenario}");
            let status = conn.shutdown().await.expect("a child");
            assert!(status.code.is_some() || status.signal.is_some(), "{status}");
            assert_gone(scenario, &tag, &pids);
            assert_eq!(
                children(),
                Vec::<u32>::new(),
                "{scenario}: {mechanism}: no child left"
            );
            // The runtime's tasks let go of the pipes as they see the end.
            assert_back_to(fds);
        }
    }
}

#[test]
fn tokio_shutdown_contains_every_escape() {
    let _turn = serial();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(shutdown_contains_every_escape::<tether_tokio::Tokio>(
            "tokio",
            Duration::from_millis(200),
        ));
}

#[test]
fn smol_shutdown_contains_every_escape() {
    let _turn = serial();
    smol::block_on(shutdown_contains_every_escape::<tether_smol::Smol>(
        "smol",
        Duration::from_millis(200),
    ));
}

/// `--grace 0`: the kill of what left the group is asked for with no time to wait. It must
/// still kill every escapee once, and wait for the kernel to deliver, so that each is reaped
/// here (the subreaper sweep used to look at its deadline before its first kill, and killed
/// nothing).
#[test]
fn tokio_zero_grace_contains_every_escape() {
    let _turn = serial();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(shutdown_contains_every_escape::<tether_tokio::Tokio>(
            "tokio",
            Duration::ZERO,
        ));
}

#[test]
fn smol_zero_grace_contains_every_escape() {
    let _turn = serial();
    smol::block_on(shutdown_contains_every_escape::<tether_smol::Smol>(
        "smol",
        Duration::ZERO,
    ));
}

/// A child that dies on its own (`abort`) with a grandchild in a session of its own, under
/// `--grace 0`: the grandchild is killed with no time asked for, and comes to this process (a
/// subreaper) as it dies. The kill must wait for that death and reap it, whatever the
/// mechanism: a cgroup's kill used to return as soon as it had written `cgroup.kill`, and the
/// grandchild's zombie, once it came, was reaped by no one. A race, so each is run ten times.
async fn zero_grace_reaps_what_an_aborting_child_left<R: Runtime>(runtime: &str) {
    let test = format!("{runtime}_zero_grace_reaps_what_an_aborting_child_left");
    R::sleep(Duration::from_millis(1)).await;
    for (contain, mechanism) in mechanisms(&test) {
        for run in 0..10 {
            let fds = fd_count();
            let tag = format!("abort-{mechanism}-{runtime}-{run}-{}", std::process::id());
            let _leftovers = Leftovers(tag.clone());
            let (mut conn, pids) =
                escaped::<R>("abort_after_setsid", 1, contain, Duration::ZERO, &tag).await;
            while let Some(event) = conn.recv().await {
                assert!(matches!(event, Event::Disconnected(_)), "{event:?}");
            }
            let status = conn.wait().await.expect("a child");
            assert_eq!(status.signal, Some(6), "{mechanism}: the leader aborted");
            // A zombie left here would stay: this process is the subreaper, and only the
            // kill reaps.
            assert_gone("abort_after_setsid", &tag, &pids);
            let start = Instant::now();
            while !children().is_empty() {
                assert!(
                    start.elapsed() < GUARD,
                    "{mechanism} run {run}: children left: {:?}",
                    children()
                        .into_iter()
                        .map(|p| (p, state(p)))
                        .collect::<Vec<_>>()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(conn);
            assert_back_to(fds);
        }
    }
}

#[test]
fn tokio_zero_grace_reaps_what_an_aborting_child_left() {
    let _turn = serial();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(zero_grace_reaps_what_an_aborting_child_left::<
            tether_tokio::Tokio,
        >("tokio"));
}

#[test]
fn smol_zero_grace_reaps_what_an_aborting_child_left() {
    let _turn = serial();
    smol::block_on(zero_grace_reaps_what_an_aborting_child_left::<
        tether_smol::Smol,
    >("smol"));
}

/// Dropping the connection after its runtime is gone: the process layer's own threads run
/// the ladder and the kill of what left the group.
#[test]
fn dropping_after_the_runtime_is_gone_contains_every_escape() {
    let _turn = serial();
    for (contain, mechanism) in mechanisms("dropping_after_the_runtime_is_gone") {
        let tag = format!("leader_exits-drop-{mechanism}-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (conn, pids) = runtime.block_on(escaped::<tether_tokio::Tokio>(
            "leader_exits",
            3,
            contain,
            Duration::from_millis(200),
            &tag,
        ));
        drop(runtime);
        drop(conn);
        assert_gone("leader_exits", &tag, &pids);
        // The leader is reaped by the process layer's thread, the escapees by the kill.
        let start = Instant::now();
        while !children().is_empty() {
            assert!(start.elapsed() < GUARD, "children left: {:?}", children());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
