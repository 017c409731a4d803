//! What the conformance scenarios share: the peer program, process inspection through
//! `/proc`, and a failure guard for every wait.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_lite::future;
use serde_json::{json, Value};
use tether_io::{Connection, Event, Message, Options, Request, Runtime};

/// How long any scenario may take before it fails instead of hanging.
pub(crate) const GUARD: Duration = Duration::from_secs(60);

/// The built-in peer, as its own program.
pub(crate) fn peer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tether-test-peer"))
}

/// Short grace periods, so that ladders finish quickly.
pub(crate) fn options() -> Options {
    Options::new().grace(Duration::from_millis(300))
}

/// Runs `scenario`, failing it if it has not finished within [`GUARD`].
pub(crate) async fn guard<R: Runtime, T>(scenario: impl Future<Output = T>) -> T {
    future::or(scenario, async {
        R::sleep(GUARD).await;
        panic!("scenario did not finish within {GUARD:?}");
    })
    .await
}

/// Makes this test process the reaper of orphaned descendants, so that grandchildren whose
/// parent died come to us (this machine's init does not reap), and [`assert_dead`] can wait
/// for them exactly instead of polling.
pub(crate) fn become_subreaper() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .expect("PR_SET_CHILD_SUBREAPER");
}

/// A request with a numeric id.
pub(crate) fn request(id: i64, method: &str, params: Value) -> Message {
    Request::new(id, method, Some(params)).into()
}

/// Receives until a response arrives, returning it and the notifications seen before it.
pub(crate) async fn response<R: Runtime>(
    conn: &mut Connection<Message, R>,
) -> (Value, Vec<Message>) {
    let mut seen = Vec::new();
    loop {
        match conn.recv().await {
            Some(Event::Message(Message::Response(r))) => {
                let value = r.result.unwrap_or_else(|e| json!({ "error": e.code }));
                return (value, seen);
            }
            Some(Event::Message(other)) => seen.push(other),
            other => panic!("expected a response, got {other:?}"),
        }
    }
}

/// Sends one request and waits for its response.
pub(crate) async fn call<R: Runtime>(
    conn: &mut Connection<Message, R>,
    id: i64,
    method: &str,
    params: Value,
) -> Value {
    conn.send(&request(id, method, params)).await.unwrap();
    response(conn).await.0
}

/// The pids a `spawn` call answered with.
pub(crate) fn pids(result: &Value) -> Vec<u32> {
    result["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect()
}

/// The state letter of a process from `/proc/PID/stat` (`R`, `S`, `Z`, ...), or `None` if
/// there is no such process. (`kill -0` would count a zombie as alive.)
pub(crate) fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything; the state follows it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Waits until `pid` is gone altogether: not running, not a zombie.
pub(crate) fn assert_gone(pid: u32) {
    wait_until(
        || state(pid).is_none(),
        &format!("process {pid} to disappear"),
    );
}

/// Waits until a grandchild has died. If it is our child now (we are its subreaper), it is
/// waited for and reaped; otherwise it must be gone or a zombie of someone else's.
pub(crate) fn assert_dead(pid: u32) {
    let raw = rustix::process::Pid::from_raw(pid as i32).unwrap();
    match rustix::process::waitpid(Some(raw), rustix::process::WaitOptions::empty()) {
        Ok(_) => assert_eq!(state(pid), None, "process {pid} was reaped"),
        Err(_) => wait_until(
            || matches!(state(pid), None | Some('Z')),
            &format!("process {pid} to die"),
        ),
    }
}

/// Waits for a condition that another process brings about, failing after [`GUARD`]. The
/// short pause between checks is the polling interval of an observation we cannot subscribe
/// to, not a synchronisation by sleeping.
pub(crate) fn wait_until(mut condition: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < GUARD, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `pid` is blocked writing to a full pipe.
pub(crate) fn blocked_writing(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("pipe_write"))
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
