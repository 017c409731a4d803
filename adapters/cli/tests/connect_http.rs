//! `tether connect http://…` against the official Python MCP SDK's own Streamable HTTP server
//! (`tests/peers/mcp_http_server.py`, the SDK installed into `.peers/venv` by
//! `scripts/install-peers`), under both runtimes.
//!
//! The server reports every request it answered on its standard output (method, status, and
//! the session, protocol and `Last-Event-ID` headers), so each test waits for what the server
//! saw rather than sleeping.

#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

/// How long any one wait here may take before the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(60);

/// The protocol revision the tests' `initialize` asks for, which the SDK accepts.
const PROTOCOL: &str = "2025-06-18";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python of `.peers/venv`, which must have been installed.
fn python() -> Command {
    let python = root().join(".peers/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-peers (scripts/test does)",
        python.display()
    );
    Command::new(python)
}

fn tether() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command.env("RUST_LOG", "warn");
    command
}

/// The lines of `reader`, each parsed as JSON, on a channel (read on a thread of their own, so
/// that every wait can be bounded).
fn json_lines(reader: impl Read + Send + 'static) -> Receiver<Value> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    rx
}

/// Receives lines until one satisfies `wanted`; returns every line received, that one last.
fn until(lines: &Receiver<Value>, what: &str, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(GUARD) {
            Ok(line) => {
                let done = wanted(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("no {what} ({e}); received: {seen:#?}"),
        }
    }
}

/// The SDK's server: its process (which ends with its stdin), the requests it reports, and
/// its URL.
struct Server {
    child: Child,
    requests: Receiver<Value>,
    url: String,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        let mut child = python()
            .arg(root().join("tests/peers/mcp_http_server.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let requests = json_lines(child.stdout.take().unwrap());
        let listening = until(&requests, "listening line", |_| true).remove(0);
        assert_eq!(listening["event"], "listening", "{listening}");
        let url = format!("http://127.0.0.1:{}/mcp", listening["port"]);
        Server {
            child,
            requests,
            url,
        }
    }

    /// Requests reported until one satisfies `wanted`, that one last.
    fn until(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
        until(&self.requests, what, wanted)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `tether connect`, fed line by line.
struct Tether {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
}

impl Tether {
    fn start(args: &[&str]) -> Self {
        let mut child = tether()
            .arg("connect")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let events = json_lines(child.stdout.take().unwrap());
        Tether {
            child,
            stdin,
            events,
        }
    }

    /// Writes one line; a tether that has already ended (its session did) is left to the
    /// checks of its output.
    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        let _ = writeln!(stdin, "{message}").and_then(|()| stdin.flush());
    }

    /// Events until the answer to request `id`, that one last.
    fn answer(&self, id: u64) -> Vec<Value> {
        until(&self.events, &format!("answer to {id}"), |e| {
            e["event"] == "message" && e["message"]["id"] == id
        })
    }

    /// Events until both the answer to request `id` and the log message `data` (from another
    /// stream, so in either order) have come.
    fn answer_and_broadcast(&self, id: u64, data: &str) -> Vec<Value> {
        let is_broadcast = |e: &Value| e["message"]["params"]["data"] == data;
        let mut events = self.answer(id);
        if !events.iter().any(is_broadcast) {
            events.extend(until(&self.events, data, is_broadcast));
        }
        events
    }

    /// Ends stdin; returns the events up to `disconnected`, after which tether must exit 0.
    fn finish(mut self) -> Vec<Value> {
        drop(self.stdin.take());
        let events = until(&self.events, "disconnected", |e| {
            e["event"] == "disconnected"
        });
        self.exit();
        events
    }

    /// Waits for tether to exit, which it must do with status 0.
    fn exit(self) {
        let (tx, rx) = channel();
        let mut child = self.child;
        std::thread::spawn(move || tx.send(child.wait()));
        let status = rx
            .recv_timeout(GUARD)
            .expect("tether did not exit")
            .unwrap();
        assert!(status.success(), "{status:?}");
    }
}

fn initialize(id: u64) -> Value {
    initialize_at(id, PROTOCOL)
}

fn initialize_at(id: u64, protocol: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": protocol,
        "capabilities": {},
        "clientInfo": {"name": "tether-test", "version": "0"}
    }})
}

fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}})
}

fn list(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

/// The text of a tools/call answer.
fn text(event: &Value) -> &str {
    event["message"]["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a tool result: {event}"))
}

/// The server's requests, as `METHOD STATUS`.
fn summary(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .map(|r| format!("{} {}", r["method"].as_str().unwrap(), r["status"]))
        .collect()
}

/// `tether connect http://` with the first line of input sent.
fn connected(runtime: &str, server: &Server, extra: &[&str]) -> Tether {
    let mut args = vec!["--runtime", runtime];
    args.extend_from_slice(extra);
    args.push(&server.url);
    Tether::start(&args)
}

/// A tether connected to `server` whose session is initialized at `protocol`: the answer
/// to `initialize` has come, and `notifications/initialized` is on its way.
fn initialized_at(runtime: &str, server: &Server, protocol: &str) -> Tether {
    let mut tether = connected(runtime, server, &[]);
    tether.send(&initialize_at(1, protocol));
    tether.answer(1);
    tether.send(&initialized());
    tether
}

#[test]
fn a_session_over_sse_keeps_its_id_and_ends_with_delete() {
    for runtime in RUNTIMES {
        let server = Server::start(&[]);
        let mut tether = connected(runtime, &server, &[]);
        tether.send(&initialize(1));
        let init = tether.answer(1);
        assert_eq!(init.len(), 1, "{init:#?}");
        assert_eq!(init[0]["message"]["result"]["protocolVersion"], PROTOCOL);
        tether.send(&initialized());
        tether.send(&list(2));
        let tools = tether.answer(2);
        let names: Vec<_> = tools[0]["message"]["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"echo"), "{runtime}: {names:?}");
        // Larger than any one read of the HTTP connection.
        let large = "x".repeat(100_000);
        tether.send(&call(3, "echo", json!({ "message": large })));
        assert_eq!(text(&tether.answer(3)[0]), large);
        // The log message the tool sends during the call comes on the call's own stream,
        // before its answer.
        tether.send(&call(4, "chatty", json!({"message": "busy"})));
        let events = tether.answer(4);
        assert_eq!(events.len(), 2, "{runtime}: {events:#?}");
        assert_eq!(events[0]["message"]["method"], "notifications/message");
        assert_eq!(events[0]["message"]["params"]["data"], "working on busy");
        assert_eq!(text(&events[1]), "busy");
        let end = tether.finish();
        assert_eq!(end, [json!({"event": "disconnected", "reason": null})]);

        // Every request after initialize carried the session id and the negotiated revision;
        // the GET stream was opened; the session ended with DELETE.
        let requests = server.until("DELETE", |r| r["method"] == "DELETE");
        let mut posts = summary(&requests);
        posts.retain(|r| !r.starts_with("GET"));
        assert_eq!(
            posts,
            [
                "POST 200",
                "POST 202",
                "POST 200",
                "POST 200",
                "POST 200",
                "DELETE 200"
            ],
            "{runtime}: {requests:#?}"
        );
        assert!(requests[0]["session"].is_null(), "{requests:#?}");
        let session = requests[1]["session"].as_str().unwrap().to_owned();
        for request in &requests[1..] {
            assert_eq!(request["session"], session.as_str(), "{request}");
            assert_eq!(request["protocol"], PROTOCOL, "{request}");
        }
        assert!(
            requests
                .iter()
                .any(|r| r["method"] == "GET" && r["status"] == 200),
            "{runtime}: no GET stream: {requests:#?}"
        );

        // The session is gone: a request with its id gets 404, which ends the connection
        // with that reason (never a message, nor a malformed one).
        let header = format!("Mcp-Session-Id: {session}");
        let output = run(
            runtime,
            &server,
            &["--linger", "5000", "--header", &header],
            &[list(5)],
        );
        assert_eq!(output.len(), 1, "{output:#?}");
        assert_eq!(output[0]["event"], "disconnected", "{output:#?}");
        let reason = output[0]["reason"].as_str().unwrap();
        assert!(reason.contains("HTTP 404 Not Found from POST"), "{reason}");
        assert_eq!(server.until("404", |_| true)[0]["status"], 404);
    }
}

/// Runs `tether connect` with `lines` on stdin, to the end; its events.
fn run(runtime: &str, server: &Server, extra: &[&str], lines: &[Value]) -> Vec<Value> {
    let mut tether = connected(runtime, server, extra);
    for line in lines {
        tether.send(line);
    }
    tether.finish()
}

#[test]
fn without_the_session_id_a_request_is_refused_and_the_refusal_ends_the_connection() {
    for runtime in RUNTIMES {
        let server = Server::start(&[]);
        // However long the linger: the refusal ends it at once.
        let output = run(runtime, &server, &["--linger", "30000"], &[list(1)]);
        assert_eq!(output.len(), 1, "{output:#?}");
        assert_eq!(output[0]["event"], "disconnected", "{output:#?}");
        let reason = output[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("HTTP 400 Bad Request from POST"),
            "{reason}"
        );
    }
}

#[test]
fn json_responses_come_in_order_from_piped_input_and_are_recorded() {
    let dir = std::env::temp_dir().join(format!("tether-http-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for runtime in RUNTIMES {
        let server = Server::start(&["--json-response"]);
        let transcript = dir.join(format!("{runtime}.jsonl"));
        let output = run(
            runtime,
            &server,
            &["--record", transcript.to_str().unwrap()],
            &[
                initialize(1),
                initialized(),
                list(2),
                call(3, "echo", json!({"message": "one"})),
                call(4, "echo", json!({"message": "two"})),
            ],
        );
        let ids: Vec<_> = output.iter().map(|e| e["message"]["id"].clone()).collect();
        assert_eq!(
            ids,
            [json!(1), json!(2), json!(3), json!(4), Value::Null],
            "{runtime}: {output:#?}"
        );
        assert_eq!(text(&output[2]), "one");
        assert_eq!(text(&output[3]), "two");
        assert_eq!(output[4], json!({"event": "disconnected", "reason": null}));
        server.until("DELETE", |r| r["method"] == "DELETE");

        // The transcript has every message each way, and the end.
        let lines: Vec<Value> = std::fs::read_to_string(&transcript)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let frames = |dir: &str| {
            lines
                .iter()
                .filter(|l| l["dir"] == dir)
                .map(|l| l["frame"]["id"].clone())
                .collect::<Vec<_>>()
        };
        let sent = [json!(1), Value::Null, json!(2), json!(3), json!(4)];
        assert_eq!(frames("out"), sent, "{lines:#?}");
        assert_eq!(frames("in"), [json!(1), json!(2), json!(3), json!(4)]);
        assert!(lines.last().unwrap().get("end").is_some(), "{lines:#?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_signal_ends_the_session_with_delete() {
    for runtime in RUNTIMES {
        let server = Server::start(&[]);
        let tether = initialized_at(runtime, &server, PROTOCOL);
        // The signal must find every line read: once the server has accepted the
        // notification, tether has read it.
        server.until("initialized accepted", |r| {
            r["method"] == "POST" && r["status"] == 202
        });
        let pid = rustix::process::Pid::from_raw(tether.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        // stdin stays open: the signal alone ends the session.
        let events = until(&tether.events, "disconnected", |e| {
            e["event"] == "disconnected"
        });
        assert_eq!(
            events,
            [json!({"event": "disconnected", "reason": null})],
            "{runtime}"
        );
        tether.exit();
        let end = server.until("DELETE", |r| r["method"] == "DELETE");
        assert_eq!(end.last().unwrap()["status"], 200, "{end:#?}");
    }
}

#[test]
fn get_streams_carry_the_servers_messages_and_resume_after_a_drop() {
    for runtime in RUNTIMES {
        let server = Server::start(&[]);
        // The SDK closes streams for resumption (and sends priming events, ids with no data)
        // only from this revision on.
        let mut tether = initialized_at(runtime, &server, "2025-11-25");
        // The SDK drops messages for a GET stream that is not open yet.
        server.until("GET stream", |r| r["method"] == "GET" && r["status"] == 200);
        tether.send(&call(2, "broadcast", json!({"message": "first"})));
        let events = tether.answer_and_broadcast(2, "first");
        assert_eq!(events.len(), 2, "{runtime}: {events:#?}");

        tether.send(&call(3, "drop_stream", json!({})));
        tether.answer(3);
        let reopened = server.until("GET stream reopened", |r| r["method"] == "GET");
        let reopened = reopened.last().unwrap();
        assert_eq!(reopened["status"], 200, "{reopened}");
        assert!(reopened["last_event_id"].is_string(), "{reopened}");
        tether.send(&call(4, "broadcast", json!({"message": "second"})));
        let events = tether.answer_and_broadcast(4, "second");
        assert_eq!(events.len(), 2, "{runtime}: {events:#?}");

        // A call's own stream, closed before its answer, is resumed through GET.
        tether.send(&call(5, "interrupted", json!({"message": "third"})));
        let events = tether.answer(5);
        assert_eq!(events.len(), 2, "{runtime}: {events:#?}");
        assert_eq!(events[0]["message"]["params"]["data"], "resumed third");
        assert_eq!(text(&events[1]), "third");
        let resumed = server.until("call 5 resumed", |r| {
            r["method"] == "GET" && r["last_event_id"].is_string()
        });
        assert_eq!(resumed.last().unwrap()["status"], 200, "{resumed:#?}");
        assert_eq!(
            tether.finish(),
            [json!({"event": "disconnected", "reason": null})]
        );
    }
}

#[test]
fn a_session_the_server_ended_disconnects_with_the_reason() {
    for runtime in RUNTIMES {
        let server = Server::start(&[]);
        let mut tether = initialized_at(runtime, &server, PROTOCOL);
        let requests = server.until("initialized", |r| r["status"] == 202);
        let session = requests.last().unwrap()["session"].as_str().unwrap();
        // The session ends behind tether's back.
        let status = python()
            .arg("-c")
            .arg(
                "import sys, urllib.request as u\n\
                 r = u.Request(sys.argv[1], method='DELETE', headers={'Mcp-Session-Id': sys.argv[2], 'MCP-Protocol-Version': sys.argv[3]})\n\
                 u.urlopen(r).read()",
            )
            .args([&server.url, session, PROTOCOL])
            .status()
            .unwrap();
        assert!(status.success());
        tether.send(&list(2));
        let events = until(&tether.events, "disconnected", |e| {
            e["event"] == "disconnected"
        });
        let reason = events.last().unwrap()["reason"]
            .as_str()
            .unwrap_or_default();
        assert!(
            reason.contains("the server ended the session (HTTP 404"),
            "{runtime}: {events:#?}"
        );
        assert!(
            events.iter().all(|e| e["event"] != "message"),
            "{events:#?}"
        );
        tether.exit();
    }
}

#[test]
fn a_bearer_token_goes_with_every_request_and_its_absence_ends_the_connection() {
    let dir = std::env::temp_dir().join(format!("tether-http-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "sesame\n").unwrap();
    let token_file = token_file.to_str().unwrap();
    for runtime in RUNTIMES {
        let server = Server::start(&["--token", "sesame"]);
        let output = run(runtime, &server, &["--linger", "30000"], &[initialize(1)]);
        assert_eq!(output.len(), 1, "{output:#?}");
        assert_eq!(output[0]["event"], "disconnected", "{output:#?}");
        let reason = output[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("HTTP 401 Unauthorized from POST"),
            "{reason}"
        );
        assert_eq!(server.until("401", |_| true)[0]["status"], 401);

        let output = run(
            runtime,
            &server,
            &["--token-file", token_file, "--header", "X-Extra: 1"],
            &[initialize(1), initialized(), list(2)],
        );
        let ids: Vec<_> = output.iter().map(|e| e["message"]["id"].clone()).collect();
        assert_eq!(ids, [json!(1), json!(2), Value::Null], "{output:#?}");
        let requests = server.until("DELETE", |r| r["method"] == "DELETE");
        assert!(requests.iter().all(|r| r["status"] != 401), "{requests:#?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn https_is_a_usage_error() {
    let output = tether()
        .args(["connect", "https://127.0.0.1:1/mcp"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TLS"), "{stderr}");
}

#[test]
fn an_unreachable_server_fails_at_once() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = tether()
        .args(["connect", &format!("http://127.0.0.1:{port}/mcp")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

/// A hostile server: it answers every POST with one server-sent event that never ends (2 MB
/// of `data` with no blank line), then closes.
const ENDLESS_EVENT: &str = r#"
import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        try:
            self.wfile.write(b"data: ")
            for _ in range(2048):
                self.wfile.write(b"x" * 1024)
        except OSError:
            pass
    def do_DELETE(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

#[test]
fn an_event_that_never_ends_is_cut_at_the_frame_limit() {
    let mut server = python()
        .args(["-c", ENDLESS_EVENT])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", port.trim());
    for runtime in RUNTIMES {
        let mut child = tether()
            .args(["connect", "--runtime", runtime, "--max-frame", "4096"])
            .args(["--linger", "500", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{}", initialize(1)).unwrap();
        drop(stdin);
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < GUARD, "{runtime}: tether did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("a server-sent event over 4096 bytes"),
            "{runtime}: {stderr}"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("xxxx"), "{runtime}: {stdout}");
        assert!(stdout.contains("\"disconnected\""), "{runtime}: {stdout}");
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// The stateless revision, which the SDK's server serves on the same endpoint.
const MODERN: &str = "2026-07-28";

/// A request of the stateless revision: its version and capabilities in `_meta`, which is
/// all that chooses the era.
fn modern(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(MODERN);
    params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Discovery, a listing and a call of a tool whose name is not ASCII, all modern, piped in
/// and answered before tether ends at the end of its input; the server saw each as a POST of
/// its own with the mirrored headers (`Mcp-Name` in its base64 form), no `initialize`, and no
/// session either way.
#[test]
fn modern_requests_go_without_initialize_or_session() {
    for runtime in RUNTIMES {
        let server = Server::start(&[]);
        let weather = json!({"name": "météo", "arguments": {"city": "Zürich"}});
        let lines = [
            modern(1, "server/discover", json!({})),
            modern(2, "tools/list", json!({})),
            modern(3, "tools/call", weather),
        ];
        let output = run(runtime, &server, &[], &lines);
        assert_eq!(output.len(), 4, "{runtime}: {output:#?}");
        let answer = |id: u64| {
            let event = output
                .iter()
                .find(|e| e["message"]["id"] == id)
                .unwrap_or_else(|| panic!("{runtime}: no answer to {id}: {output:#?}"));
            event["message"]["result"].clone()
        };
        assert_eq!(answer(1)["supportedVersions"], json!([MODERN]));
        let tools = answer(2)["tools"].clone();
        assert!(
            tools
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "météo"),
            "{tools}"
        );
        assert_eq!(answer(3)["content"][0]["text"], "sunny in Zürich");
        assert_eq!(
            output.last().unwrap(),
            &json!({"event": "disconnected", "reason": null})
        );

        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.extend(server.until("a request", |_| true));
        }
        let mut methods: Vec<_> = seen
            .iter()
            .map(|r| r["mcp_method"].as_str().unwrap_or("none").to_owned())
            .collect();
        methods.sort();
        assert_eq!(
            methods,
            ["server/discover", "tools/call", "tools/list"],
            "{runtime}: {seen:#?}"
        );
        for request in &seen {
            assert_eq!(request["method"], "POST", "{request}");
            assert_eq!(request["status"], 200, "{request}");
            assert_eq!(request["protocol"], MODERN, "{request}");
            assert!(request["session"].is_null(), "{request}");
            assert!(request["minted"].is_null(), "{request}");
        }
        let call = seen
            .iter()
            .find(|r| r["mcp_method"] == "tools/call")
            .unwrap();
        assert_eq!(call["mcp_name"], "=?base64?bcOpdMOpbw==?=");
        // Nothing more: no GET stream, no DELETE.
        assert!(server.requests.try_recv().is_err());
    }
}

/// A modern call's progress comes on its own stream, in order, before its answer; a method
/// the server does not know is answered with its 404's -32601, as the response to that
/// request, and the session goes on.
#[test]
fn a_modern_stream_and_a_modern_refusal_reach_the_user_as_messages() {
    for runtime in RUNTIMES {
        let server = Server::start(&[]);
        let mut tether = connected(runtime, &server, &[]);
        let mut steps = json!({"name": "steps", "arguments": {"count": 2}});
        steps["_meta"]["progressToken"] = json!("t");
        tether.send(&modern(1, "tools/call", steps));
        let events = tether.answer(1);
        let progress: Vec<_> = events
            .iter()
            .map(|e| e["message"]["params"]["progress"].clone())
            .collect();
        assert_eq!(progress, [json!(1), json!(2), Value::Null], "{events:#?}");
        assert_eq!(text(&events[2]), "2 steps");
        tether.send(&modern(2, "no/such/method", json!({})));
        let refused = tether.answer(2);
        assert_eq!(refused.len(), 1, "{refused:#?}");
        assert_eq!(refused[0]["message"]["error"]["code"], -32601);
        tether.send(&modern(3, "tools/list", json!({})));
        assert!(tether.answer(3)[0]["message"]["result"]["tools"].is_array());
        let end = tether.finish();
        assert_eq!(end, [json!({"event": "disconnected", "reason": null})]);
        let statuses: Vec<_> = server
            .until("three requests", |r| r["mcp_method"] == "tools/list")
            .iter()
            .map(|r| r["status"].clone())
            .collect();
        assert_eq!(statuses, [json!(200), json!(404), json!(200)]);
    }
}
