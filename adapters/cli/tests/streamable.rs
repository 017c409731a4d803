//! `tether bridge` as an MCP Streamable HTTP server (`/mcp`), under both runtimes, against MCP
//! clients nobody here wrote: the official Python SDK's (`tests/peers/mcp_http_client.py`, on
//! `mcp.client.streamable_http`) and the official TypeScript SDK's
//! (`tests/peers/mcp_http_client.mjs`, on `StreamableHTTPClientTransport`), each session's child
//! being `@modelcontextprotocol/server-everything` or the Python SDK's stdio server
//! (`tests/peers/mcp_server.py`). All of them are installed into `.peers/` by
//! `scripts/install-peers` (which `scripts/test` runs); a test whose peer is missing fails.
//!
//! The client scripts print one JSON line per observation; the assertions are here. Every child
//! runs through a wrapper that appends a line to a file (so the number of children spawned is
//! known) and carries a tag in its environment (so a child still alive is found in `/proc`):
//! after each scenario, once its clients have ended their sessions with `DELETE`, every child
//! must be gone and `/healthz` must count no session.

#![cfg(target_os = "linux")]
#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

/// How long any process or wait here may take before the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(120);

/// The long-running tool's progress steps in the `resume` scenarios, and how many of them come
/// before the cut.
const STEPS: u64 = 5;
const CUT_AFTER: u64 = 2;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of `.peers`, which must have been installed.
fn peer(path: &str) -> PathBuf {
    let path = root().join(".peers").join(path);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-peers (scripts/test does)",
        path.display()
    );
    path
}

fn script(name: &str) -> PathBuf {
    root().join("tests/peers").join(name)
}

fn tether() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command.env("RUST_LOG", "warn");
    command
}

/// The program each session's child runs.
#[derive(Clone, Copy, Debug)]
enum Server {
    /// `@modelcontextprotocol/server-everything`, on stdio.
    Everything,
    /// `tests/peers/mcp_server.py`, the Python SDK's server on stdio (one tool, `echo`).
    PythonSdk,
}

impl Server {
    fn argv(self) -> Vec<String> {
        let path = |p: PathBuf| p.display().to_string();
        match self {
            Server::Everything => vec![
                "node".into(),
                path(peer(
                    "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
                )),
                "stdio".into(),
            ],
            Server::PythonSdk => vec![path(peer("venv/bin/python")), path(script("mcp_server.py"))],
        }
    }

    /// What the echo tool answers to `message`.
    fn echo(self, message: &str) -> String {
        match self {
            Server::Everything => format!("Echo: {message}"),
            Server::PythonSdk => message.to_owned(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Server::Everything => "mcp-servers/everything",
            Server::PythonSdk => "tether-test",
        }
    }
}

/// A temporary path for this test process, removed first if a previous run left it.
fn temp_path(name: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("tether-streamable-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The processes carrying `tag` in their environment that are alive (not zombies).
fn alive(tag: &str) -> Vec<u32> {
    let needle = format!("TETHER_TEST_TAG={tag}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            let zombie = std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
            !zombie
                && std::fs::read(format!("/proc/{p}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// Waits for `child` to exit, killing it and failing if it takes longer than [`GUARD`]; the
/// polling interval is that of an observation we cannot subscribe to.
fn wait_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > GUARD {
            kill(child);
            panic!("{child:?} did not exit within {GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills and reaps `child` unless it has exited already.
fn kill(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One HTTP/1.1 exchange over a fresh connection (`Connection: close`): the status and the
/// body (de-chunked where it came in chunks).
fn http(addr: &str, method: &str, target: &str, headers: &[&str], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?}"));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The observation `event` among a script's lines.
fn find<'a>(lines: &'a [Value], event: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["event"] == event)
        .unwrap_or_else(|| panic!("no {event:?} in {lines:#?}"))
}

fn is_success(status: &Value) -> bool {
    status.as_u64().is_some_and(|s| (200..300).contains(&s))
}

/// `tether bridge --token-file FILE -- PROGRAM` on a free loopback port, every child of which
/// is counted and tagged.
struct Bridge {
    child: Child,
    runtime: &'static str,
    server: Server,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// `http://127.0.0.1:PORT/mcp`, from the `listening` line.
    mcp_url: String,
    token: String,
    token_file: PathBuf,
    /// Each child appends a line here before it becomes the server.
    spawns: PathBuf,
    /// In the environment of every child.
    tag: String,
}

impl Bridge {
    fn start(runtime: &'static str, server: Server, label: &str, extra: &[&str]) -> Self {
        let name = format!("{label}-{runtime}");
        let token = format!("streamable-{name}-{}", std::process::id());
        let token_file = temp_path(&format!("{name}.token"));
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let spawns = temp_path(&format!("{name}.spawns"));
        let tag = format!("streamable-{name}-{}", std::process::id());
        let mut child = tether()
            .args([
                "bridge",
                "--runtime",
                runtime,
                "--grace",
                "300",
                "--token-file",
            ])
            .arg(&token_file)
            .args(extra)
            .arg("--")
            .args(["env", &format!("TETHER_TEST_TAG={tag}"), "sh", "-c"])
            .arg("echo spawned >> \"$0\"; exec \"$@\"")
            .arg(&spawns)
            .args(server.argv())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Until `Bridge` owns it (and its `Drop` kills it), a failure here must kill it too.
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let listening: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let addr = listening["addr"].as_str().unwrap_or_default().to_owned();
        let mcp_url = listening["mcp_url"].as_str().unwrap_or_default().to_owned();
        if listening["event"] != "listening" || mcp_url != format!("http://{addr}/mcp") {
            kill(&mut child);
            let _ = std::fs::remove_file(&token_file);
            panic!("{runtime}: the listening line must give mcp_url http://ADDR/mcp: {line:?}");
        }
        Bridge {
            child,
            runtime,
            server,
            addr,
            mcp_url,
            token,
            token_file,
            spawns,
            tag,
        }
    }

    fn healthz_url(&self) -> String {
        format!("http://{}/healthz", self.addr)
    }

    /// Runs `PROGRAM SCRIPT URL SCENARIO --healthz URL EXTRA` to its end,
    /// which must be a success; its lines, the last of which is `done`.
    fn run_client(
        &self,
        mut program: Command,
        url: &str,
        scenario: &str,
        extra: &[&str],
    ) -> Vec<Value> {
        let output = support::wait_output(
            program
                .args([url, scenario, "--healthz", &self.healthz_url()])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            GUARD,
        );
        let context = format!("{} {:?} {scenario} {extra:?}", self.runtime, self.server);
        assert!(output.status.success(), "{context}: {output:?}");
        let lines = json_lines(&output.stdout);
        assert_eq!(
            lines.last(),
            Some(&json!({"event": "done"})),
            "{context}: {lines:#?}"
        );
        lines
    }

    /// The Python SDK's client, with the token.
    fn python(&self, scenario: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["--token", self.token.as_str()];
        args.extend_from_slice(extra);
        self.python_at(&self.mcp_url, scenario, &args)
    }

    /// The Python SDK's client against `url`, with `extra` alone.
    fn python_at(&self, url: &str, scenario: &str, extra: &[&str]) -> Vec<Value> {
        let mut command = Command::new(peer("venv/bin/python"));
        command.arg(script("mcp_http_client.py"));
        self.run_client(command, url, scenario, extra)
    }

    /// The TypeScript SDK's client, with the token.
    fn node(&self, scenario: &str, extra: &[&str]) -> Vec<Value> {
        peer("node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js");
        let mut command = Command::new("node");
        command
            .arg(script("mcp_http_client.mjs"))
            .env("TETHER_PEERS", root().join(".peers"));
        let mut args = vec!["--token", self.token.as_str()];
        args.extend_from_slice(extra);
        self.run_client(command, &self.mcp_url, scenario, &args)
    }

    /// How many children the bridge has spawned so far.
    fn spawned(&self) -> usize {
        std::fs::read_to_string(&self.spawns).map_or(0, |text| text.lines().count())
    }

    /// `GET /healthz`, which needs no token.
    fn healthz(&self) -> Value {
        let (status, body) = http(&self.addr, "GET", "/healthz", &[], "");
        assert_eq!(status, 200, "{body}");
        let health: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(health["status"], "ok", "{health}");
        health
    }

    /// Waits until no child is alive and `/healthz` counts no session; fails past [`GUARD`].
    fn wait_idle(&self, after: &str) {
        let start = Instant::now();
        loop {
            let children = alive(&self.tag);
            let health = self.healthz();
            if children.is_empty() && health["connections"] == 0 {
                return;
            }
            assert!(
                start.elapsed() < GUARD,
                "{} {:?} after {after}: children still alive {children:?}, {health}",
                self.runtime,
                self.server
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the bridge with SIGINT; it must exit 0 and leave no child behind.
    fn stop(mut self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).unwrap(),
            rustix::process::Signal::INT,
        )
        .unwrap();
        assert!(wait_exit(&mut self.child).success(), "{}", self.runtime);
        assert_eq!(alive(&self.tag), Vec::<u32>::new(), "{}", self.runtime);
    }
}

impl Drop for Bridge {
    /// A failed test leaves no bridge, child or file behind.
    fn drop(&mut self) {
        kill(&mut self.child);
        for pid in alive(&self.tag) {
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let _ = std::fs::remove_file(&self.token_file);
        let _ = std::fs::remove_file(&self.spawns);
    }
}

/// `basic`: one session, a tools/list and an echo, the health count while it is open; its
/// `DELETE` ends it, a request with its id then gets 404, and its child goes.
fn check_basic(bridge: &Bridge, lines: &[Value], message: &str, spawned: usize) {
    let context = format!("{} {:?}", bridge.runtime, bridge.server);
    let initialized = find(lines, "initialized");
    assert_eq!(initialized["server"], bridge.server.name(), "{context}");
    let session = initialized["session"].as_str().unwrap_or_default();
    assert!(
        !session.is_empty(),
        "{context}: no Mcp-Session-Id: {lines:#?}"
    );
    let tools = find(lines, "tools")["names"].as_array().unwrap().clone();
    assert!(tools.contains(&json!("echo")), "{context}: {tools:?}");
    let echo = find(lines, "echo");
    assert_eq!(echo["text"], bridge.server.echo(message), "{context}");
    assert_eq!(echo["is_error"], false, "{context}");
    if let Server::Everything = bridge.server {
        // The child knows its client's address.
        let addr = find(lines, "env")["client_addr"]
            .as_str()
            .unwrap_or_default();
        assert!(addr.starts_with("127.0.0.1:"), "{context}: {lines:#?}");
    }
    let health = find(lines, "healthz");
    assert_eq!(health["body"]["connections"], 1, "{context}: {health}");
    let terminated = find(lines, "terminated");
    assert_eq!(terminated["session"], session, "{context}: {terminated}");
    let statuses = terminated["statuses"].as_array().unwrap();
    assert!(
        statuses.len() == 1 && is_success(&statuses[0]),
        "{context}: the DELETE: {terminated}"
    );
    assert_eq!(
        find(lines, "after_end")["status"],
        404,
        "{context}: an ended session is unknown"
    );
    bridge.wait_idle("basic");
    assert_eq!(
        bridge.spawned(),
        spawned,
        "{context}: one child per session"
    );
}

/// `two`: two sessions at once, each with its own child, and no answer crossed over.
fn check_two(bridge: &Bridge, lines: &[Value], spawned: usize) {
    let context = format!("{} {:?}", bridge.runtime, bridge.server);
    let two = find(lines, "two");
    let sessions: Vec<&str> = two["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap_or_default())
        .collect();
    assert_eq!(sessions.len(), 2, "{context}: {two}");
    assert!(
        !sessions[0].is_empty() && sessions[0] != sessions[1],
        "{context}: {two}"
    );
    assert_eq!(two["answers"], 40, "{context}: {two}");
    assert_eq!(two["crossed"], json!([]), "{context}: {two}");
    for statuses in two["terminated"].as_array().unwrap() {
        let statuses = statuses.as_array().unwrap();
        assert!(
            statuses.len() == 1 && is_success(&statuses[0]),
            "{context}: {two}"
        );
    }
    let health = find(lines, "healthz");
    assert_eq!(health["body"]["connections"], 2, "{context}: {health}");
    bridge.wait_idle("two");
    assert_eq!(
        bridge.spawned(),
        spawned,
        "{context}: one child per session"
    );
}

/// Progress values as whole steps: the Python SDK reads them as floats (`1.0`), the
/// TypeScript SDK as integers.
fn steps(values: &Value) -> Vec<u64> {
    values
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {values}"))
        .iter()
        .map(|p| p.as_f64().unwrap_or_else(|| panic!("not a number: {p}")) as u64)
        .collect()
}

/// `resume`: the long-running tool's response stream, cut after [`CUT_AFTER`] progress
/// notifications, resumed with the last event id: every progress notification exactly once, in
/// order, then the result.
fn check_resume(bridge: &Bridge, lines: &[Value], spawned: usize) {
    let context = format!("{} {:?}", bridge.runtime, bridge.server);
    let cut = find(lines, "cut");
    let token = cut["token"].as_str().unwrap_or_default();
    assert!(
        !token.is_empty(),
        "{context}: no event id before the cut: {cut}"
    );
    let before: Vec<u64> = (1..=CUT_AFTER).collect();
    assert_eq!(steps(&cut["progress"]), before, "{context}: {cut}");
    let resumed = find(lines, "resumed");
    let text = resumed["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Long running operation completed."),
        "{context}: {resumed}"
    );
    assert_eq!(resumed["is_error"], false, "{context}: {resumed}");
    assert_eq!(resumed["token"], token, "{context}: {resumed}");
    assert_eq!(
        resumed["last_event_id_sent"],
        json!([token]),
        "{context}: one GET with Last-Event-ID: {resumed}"
    );
    assert_eq!(resumed["resume_statuses"], json!([200]), "{context}");
    assert_eq!(resumed["posts_cut"], json!([true]), "{context}: {resumed}");
    let mut progress: Vec<u64> = Vec::new();
    for key in ["progress_before", "progress_after"] {
        progress.extend(steps(&resumed[key]));
    }
    let all: Vec<u64> = (1..=STEPS).collect();
    assert_eq!(
        progress, all,
        "{context}: none missed, none twice: {resumed}"
    );
    if let Some(delivered) = resumed.get("progress_delivered") {
        assert_eq!(steps(delivered), all, "{context}: {resumed}");
    }
    // Every event that carried a message had an id, each its own.
    let ids: Vec<&str> = resumed["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap_or_default())
        .collect();
    assert!(ids.iter().all(|i| !i.is_empty()), "{context}: {resumed}");
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{context}: {resumed}");
    assert!(ids.contains(&token), "{context}: {resumed}");
    bridge.wait_idle("resume");
    assert_eq!(bridge.spawned(), spawned, "{context}");
}

/// `unknown-session`: a made-up session id gets 404, through the SDK and raw; the real session
/// goes on.
fn check_unknown_session(bridge: &Bridge, lines: &[Value], spawned: usize) {
    let context = format!("{} {:?}", bridge.runtime, bridge.server);
    assert_eq!(
        find(lines, "sdk_unknown_session_status")["status"],
        404,
        "{context}: {lines:#?}"
    );
    assert!(
        find(lines, "sdk_unknown_session")["error"].is_string(),
        "{context}: the SDK surfaced the refusal: {lines:#?}"
    );
    assert_eq!(
        find(lines, "raw_unknown_session")["status"],
        404,
        "{context}"
    );
    let real = find(lines, "real_session");
    assert!(real["tools"].as_u64().unwrap() >= 1, "{context}: {real}");
    let statuses = find(lines, "terminated")["statuses"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        statuses.len() == 1 && is_success(&statuses[0]),
        "{context}: {statuses:?}"
    );
    bridge.wait_idle("unknown-session");
    assert_eq!(bridge.spawned(), spawned, "{context}");
}

fn resume_args() -> [String; 4] {
    [
        "--steps".into(),
        STEPS.to_string(),
        "--cut-after".into(),
        CUT_AFTER.to_string(),
    ]
}

#[test]
fn python_sdk_client_through_the_bridge_to_server_everything() {
    let resume = resume_args();
    let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, Server::Everything, "py-everything", &[]);
        let lines = bridge.python("basic", &[]);
        check_basic(&bridge, &lines, "hello from python", 1);
        let lines = bridge.python("two", &[]);
        check_two(&bridge, &lines, 3);
        let lines = bridge.python("resume", &resume);
        check_resume(&bridge, &lines, 4);
        let lines = bridge.python("unknown-session", &[]);
        check_unknown_session(&bridge, &lines, 5);
        bridge.stop();
    }
}

#[test]
fn typescript_sdk_client_through_the_bridge_to_server_everything() {
    let resume = resume_args();
    let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, Server::Everything, "ts-everything", &[]);
        let lines = bridge.node("basic", &[]);
        check_basic(&bridge, &lines, "hello from typescript", 1);
        let lines = bridge.node("two", &[]);
        check_two(&bridge, &lines, 3);
        let lines = bridge.node("resume", &resume);
        check_resume(&bridge, &lines, 4);
        let statuses = find(&lines, "terminated")["statuses"].clone();
        assert_eq!(statuses.as_array().map(Vec::len), Some(1), "{runtime}");
        assert!(is_success(&statuses[0]), "{runtime}: {statuses}");
        bridge.stop();
    }
}

/// The Python SDK's stdio server as the child (it has no long-running tool, so no `resume`).
#[test]
fn both_sdk_clients_through_the_bridge_to_the_python_sdk_server() {
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, Server::PythonSdk, "py-server", &[]);
        let lines = bridge.python("basic", &[]);
        check_basic(&bridge, &lines, "hello from python", 1);
        let lines = bridge.node("basic", &[]);
        check_basic(&bridge, &lines, "hello from typescript", 2);
        let lines = bridge.python("two", &[]);
        check_two(&bridge, &lines, 4);
        let lines = bridge.node("two", &[]);
        check_two(&bridge, &lines, 6);
        let lines = bridge.python("unknown-session", &[]);
        check_unknown_session(&bridge, &lines, 7);
        bridge.stop();
    }
}

#[test]
fn mcp_requests_without_the_token_or_from_a_foreign_origin_are_refused_and_spawn_nothing() {
    const ALLOWED: &str = "https://app.example";
    for runtime in RUNTIMES {
        let bridge = Bridge::start(
            runtime,
            Server::Everything,
            "refusals",
            &["--allow-origin", ALLOWED],
        );
        // The SDKs' clients: 401 without the token, 403 from a foreign origin, at the first POST.
        // Each shows the bridge's own words on what is wrong (the 401's JSON-RPC error).
        let says = "missing bearer token: pass the bridge's token as --header 'Authorization: Bearer TOKEN'";
        let lines = bridge.python("unauthorized", &[]);
        let refused = find(&lines, "unauthorized");
        assert_eq!(refused["statuses"], json!([401]), "{runtime}: {lines:#?}");
        let error = find(&lines, "refused")["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains(says), "{runtime}: {error}");
        let lines = bridge.node("unauthorized", &[]);
        assert_eq!(
            find(&lines, "refused")["code"],
            401,
            "{runtime}: {lines:#?}"
        );
        let error = find(&lines, "refused")["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains(says), "{runtime}: {error}");
        assert_eq!(find(&lines, "unauthorized")["statuses"], json!([401]));
        let lines = bridge.python("foreign-origin", &[]);
        let refused = find(&lines, "foreign-origin");
        assert_eq!(refused["statuses"], json!([403]), "{runtime}: {lines:#?}");

        // The same by hand, for each method; and a missing session id on a request that is not
        // `initialize`.
        let initialize = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "tether-tests", "version": "0"}},
        })
        .to_string();
        let bearer = format!("Authorization: Bearer {}", bridge.token);
        let post = [
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
        ];
        let with = |extra: &[&str]| -> Vec<String> {
            post.iter().chain(extra).map(|h| h.to_string()).collect()
        };
        let ask = |method: &str, target: &str, headers: &[String], body: &str| {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            http(&bridge.addr, method, target, &headers, body).0
        };
        let wrong = format!("Authorization: Bearer {}x", bridge.token);
        assert_eq!(
            ask("POST", "/mcp", &with(&[]), &initialize),
            401,
            "{runtime}"
        );
        assert_eq!(
            ask("POST", "/mcp", &with(&[&wrong]), &initialize),
            401,
            "{runtime}"
        );
        assert_eq!(
            ask("POST", "/mcp?token=nope", &with(&[]), &initialize),
            401,
            "{runtime}"
        );
        for origin in [
            "Origin: http://evil.example",
            "Origin: https://app.example:8443",
            "Origin: null",
        ] {
            assert_eq!(
                ask("POST", "/mcp", &with(&[&bearer, origin]), &initialize),
                403,
                "{runtime}: {origin}"
            );
        }
        let session = "Mcp-Session-Id: made-up-session";
        assert_eq!(ask("GET", "/mcp", &with(&[]), ""), 401, "{runtime}");
        assert_eq!(
            ask("DELETE", "/mcp", &with(&[session]), ""),
            401,
            "{runtime}"
        );
        assert_eq!(
            ask("GET", "/mcp", &with(&[&bearer, session]), ""),
            404,
            "{runtime}"
        );
        assert_eq!(
            ask("DELETE", "/mcp", &with(&[&bearer, session]), ""),
            404,
            "{runtime}"
        );
        let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#;
        assert_eq!(
            ask("POST", "/mcp", &with(&[&bearer]), list),
            400,
            "{runtime}: no session id"
        );
        assert_eq!(
            bridge.spawned(),
            0,
            "{runtime}: the refusals spawned nothing"
        );
        assert_eq!(bridge.healthz()["connections"], 0, "{runtime}");

        // The allowed origin, and the token in the query instead of a header, are served.
        let query_url = format!("{}?token={}", bridge.mcp_url, bridge.token);
        let lines = bridge.python_at(&query_url, "basic", &["--origin", ALLOWED]);
        check_basic(&bridge, &lines, "hello from python", 1);
        bridge.stop();
    }
}
