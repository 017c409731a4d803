//! What the scenarios share, public for an adapter's own tests: requests and calls to the
//! peer, process inspection through `/proc`, and a failure guard for every wait.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_lite::future;
use serde_json::{json, Value};
use tether_io::{Connection, Event, Message, Options, Request, Runtime};

/// How long any scenario may take before it fails instead of hanging.
pub const GUARD: Duration = Duration::from_secs(60);

/// Short grace periods, so that ladders finish quickly.
pub fn options() -> Options {
    Options::new().grace(Duration::from_millis(300))
}

/// Runs `scenario`, failing it if it has not finished within [`GUARD`].
pub async fn guard<R: Runtime, T>(scenario: impl Future<Output = T>) -> T {
    future::or(scenario, async {
        R::sleep(GUARD).await;
        panic!("scenario did not finish within {GUARD:?}");
    })
    .await
}

/// Makes this test process the reaper of orphaned descendants, so that grandchildren whose
/// parent died come to us (this machine's init does not reap), and [`assert_dead`] can wait
/// for them exactly instead of polling.
pub fn become_subreaper() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .expect("PR_SET_CHILD_SUBREAPER");
}

/// A request with a numeric id.
pub fn request(id: i64, method: &str, params: Value) -> Message {
    Request::new(id, method, Some(params)).into()
}

/// Receives until a response arrives, returning it and the notifications seen before it.
pub async fn response<R: Runtime>(conn: &mut Connection<Message, R>) -> (Value, Vec<Message>) {
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
pub async fn call<R: Runtime>(
    conn: &mut Connection<Message, R>,
    id: i64,
    method: &str,
    params: Value,
) -> Value {
    conn.send(&request(id, method, params)).await.unwrap();
    response(conn).await.0
}

/// The pids a `spawn` call answered with.
pub fn pids(result: &Value) -> Vec<u32> {
    result["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect()
}

/// The state letter of a process from `/proc/PID/stat` (`R`, `S`, `Z`, ...), or `None` if
/// there is no such process. (`kill -0` would count a zombie as alive.)
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything; the state follows it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Waits until `pid` is gone altogether: not running, not a zombie.
pub fn assert_gone(pid: u32) {
    wait_until(
        || state(pid).is_none(),
        &format!("process {pid} to disappear"),
    );
}

/// Waits until a grandchild has died. If it is our child now (we are its subreaper), it is
/// waited for and reaped; otherwise it must be gone or a zombie of someone else's.
pub fn assert_dead(pid: u32) {
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
pub fn wait_until(mut condition: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < GUARD, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `pid` is blocked writing to a full pipe.
pub fn blocked_writing(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("pipe_write"))
}
