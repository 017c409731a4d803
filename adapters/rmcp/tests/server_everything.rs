//! tether-rmcp against the MCP reference server `@modelcontextprotocol/server-everything`
//! (Node), installed into `.peers/` by `scripts/install-peers`: rmcp's own client, on tether's
//! transport, through the whole session and each way it can end.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::{QuitReason, RoleClient, RunningService, ServiceError};
use rmcp::ServiceExt;
use tether_rmcp::ChildTransport;
use tether_tokio::Options;

/// How long any test may take before it fails instead of hanging.
const GUARD: Duration = Duration::from_secs(60);

/// Runs `test`, failing it if it has not finished within [`GUARD`].
async fn guard<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, test)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {GUARD:?}"))
}

/// Makes this test process the reaper of orphaned descendants, so that a grandchild whose
/// parent died comes to us and can be waited for exactly.
fn become_subreaper() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .expect("PR_SET_CHILD_SUBREAPER");
}

/// The state letter of a process from `/proc/PID/stat` (`R`, `S`, `Z`, ...), or `None` if
/// there is no such process. (`kill -0` would count a zombie as alive.)
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything; the state follows it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Waits for a condition that another process brings about, failing after [`GUARD`]. The
/// short pause between checks is the polling interval of an observation we cannot subscribe
/// to, not a synchronisation by sleeping.
fn wait_until(mut condition: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < GUARD, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `pid` is gone altogether: not running, not a zombie.
fn assert_gone(pid: u32) {
    wait_until(
        || state(pid).is_none(),
        &format!("process {pid} to disappear"),
    );
}

/// The server's entry point, which must have been installed.
fn server_js() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-peers (scripts/test does)",
        path.display()
    );
    path
}

/// The server started by `sh -c SCRIPT`, where the script finds the server's entry point in
/// `$0`.
fn through_sh(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).arg(server_js());
    command
}

/// The server, with a grandchild in its process group: the shell starts `sleep` in the
/// background, then becomes the server.
fn with_grandchild() -> Command {
    through_sh(r#"sleep 300 & exec node "$0" stdio"#)
}

/// Node takes its time to start and to exit: the grace must not cut a clean exit short.
fn options() -> Options {
    Options::new().grace(Duration::from_secs(10))
}

/// The children of `pid` (its main thread's, which is the one that forked them).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Whether `pid` is running (not gone, not a zombie).
fn running(pid: u32) -> bool {
    !matches!(state(pid), None | Some('Z'))
}

/// Waits (within the guard) until `pid`, a grandchild, has been killed, then reaps it if it
/// came to us. The grandchild sleeps far longer than the guard: only a kill ends it in time.
fn assert_killed(pid: u32) {
    wait_until(|| !running(pid), &format!("grandchild {pid} to be killed"));
    let raw = rustix::process::Pid::from_raw(pid as i32).unwrap();
    if rustix::process::waitpid(Some(raw), rustix::process::WaitOptions::empty()).is_ok() {
        assert_eq!(state(pid), None, "grandchild {pid} was reaped");
    }
}

/// Starts a client on `server`, returning it, the server's pid and the pid of its one child.
async fn client_with_grandchild() -> (RunningService<RoleClient, ()>, u32, u32) {
    let transport = ChildTransport::spawn(with_grandchild(), options()).unwrap();
    let pid = transport.pid().unwrap();
    let client = ().serve(transport).await.unwrap();
    // The shell forked `sleep` before it became the server, which has answered since.
    let grandchildren = children_of(pid);
    assert_eq!(grandchildren.len(), 1, "{grandchildren:?}");
    assert!(running(grandchildren[0]));
    (client, pid, grandchildren[0])
}

/// The echo tool's reply to `message`.
async fn echo(client: &RunningService<RoleClient, ()>, message: &str) -> String {
    let arguments = serde_json::json!({ "message": message });
    let params =
        CallToolRequestParams::new("echo").with_arguments(arguments.as_object().unwrap().clone());
    let result = client.call_tool(params).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    result.content[0].as_text().expect("text").text.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_list_tools_and_call_echo() {
    guard(async {
        let mut command = Command::new("node");
        command.arg(server_js()).arg("stdio");
        let transport = ChildTransport::spawn(command, options()).unwrap();
        let pid = transport.pid().unwrap();
        let client = ().serve(transport).await.unwrap();

        let server = client.peer_info().expect("initialized");
        assert!(server.capabilities.tools.is_some(), "{server:?}");
        let name = &server.server_info.as_ref().expect("serverInfo").name;
        assert!(name.contains("everything"), "{server:?}");

        let tools = client.list_tools(None).await.unwrap();
        let names: Vec<&str> = tools.tools.iter().map(|t| t.name.as_ref()).collect();
        assert!(names.contains(&"echo"), "{names:?}");
        assert_eq!(
            echo(&client, "hello from rmcp").await,
            "Echo: hello from rmcp"
        );

        // `cancel` closes the transport, which runs the ladder: the server's stdin closes, and
        // it exits by itself.
        assert!(matches!(client.cancel().await, Ok(QuitReason::Cancelled)));
        assert_gone(pid);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_the_server_and_its_grandchild() {
    become_subreaper();
    guard(async {
        let (client, pid, grandchild) = client_with_grandchild().await;
        assert_eq!(echo(&client, "before cancel").await, "Echo: before cancel");
        assert!(matches!(client.cancel().await, Ok(QuitReason::Cancelled)));
        // `cancel` returned once the transport was closed: the server has been reaped and its
        // group killed.
        assert_eq!(state(pid), None, "server {pid} was reaped");
        tokio::task::spawn_blocking(move || assert_killed(grandchild))
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_ends_the_server_and_its_grandchild() {
    become_subreaper();
    guard(async {
        let (client, pid, grandchild) = client_with_grandchild().await;
        client.list_tools(None).await.unwrap();
        drop(client);
        tokio::task::spawn_blocking(move || {
            assert_killed(grandchild);
            assert_gone(pid);
        })
        .await
        .unwrap();
    })
    .await;
}

/// The runtime goes before the client: rmcp's service task never gets to close the transport,
/// and the transport's drop alone must take the tree down.
#[test]
fn dropping_the_runtime_ends_the_server_and_its_grandchild() {
    become_subreaper();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (client, pid, grandchild) = runtime.block_on(guard(async {
        let (client, pid, grandchild) = client_with_grandchild().await;
        client.list_tools(None).await.unwrap();
        (client, pid, grandchild)
    }));
    drop(runtime);
    assert_killed(grandchild);
    assert_gone(pid);
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_exit_fails_the_pending_request() {
    guard(async {
        // The shell passes the server the first two lines (initialize, initialized), reads the
        // third (the request below) itself and closes the server's stdin: the server exits,
        // and the request it never saw can only fail.
        let script = r#"{
            read -r line; printf '%s\n' "$line"
            read -r line; printf '%s\n' "$line"
            read -r line
        } | node "$0" stdio"#;
        let transport = ChildTransport::spawn(through_sh(script), options()).unwrap();
        let pid = transport.pid().unwrap();
        let client = ().serve(transport).await.unwrap();

        let started = Instant::now();
        let err = client.list_tools(None).await.unwrap_err();
        assert!(matches!(err, ServiceError::TransportClosed), "{err:?}");
        // Promptly: nothing waited for a grace period or a timeout.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(client.is_transport_closed());
        assert!(matches!(client.waiting().await, Ok(QuitReason::Closed)));
        assert_gone(pid);
    })
    .await;
}

/// A `std::io::Write` into a buffer the test reads, for tracing's output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// On one thread, so that the service's tasks log to this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_malformed_line_is_logged_and_skipped() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    guard(async {
        let script = r#"printf 'this is not JSON\n'; exec node "$0" stdio"#;
        let transport = ChildTransport::spawn(through_sh(script), options()).unwrap();
        let client = ().serve(transport).await.unwrap();
        assert_eq!(echo(&client, "after garbage").await, "Echo: after garbage");
        client.cancel().await.unwrap();
    })
    .await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("skipped a malformed message"))
        .unwrap_or_else(|| panic!("no warning in {log:?}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("this is not JSON"), "{line}");
}
