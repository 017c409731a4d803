//! `tether bridge` and MCP's stateless revision (2026-07-28), under both runtimes: the Python
//! SDK 2.3.0's modern client through the bridge to its stdio server (nothing is sent
//! `initialize`), a legacy-only program of our own behind raw modern HTTP requests (the
//! bridge's translation), and hostile modern input, each with its status. The pool programs
//! run behind `tests/peers/method_log.py` (or log themselves), so what they were sent is known.

#![cfg(target_os = "linux")]
#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const RUNTIMES: [&str; 2] = ["tokio", "smol"];
const V: &str = "2026-07-28";

/// How long any process or wait here may take before the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of `.peers`, which must have been installed.
fn peer(path: &str) -> String {
    let path = root().join(".peers").join(path);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-peers",
        path.display()
    );
    path.display().to_string()
}

fn script(name: &str) -> String {
    root().join("tests/peers").join(name).display().to_string()
}

/// A temporary path for this test, removed first if a previous run left it.
fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tether-modern-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// A running bridge, killed if a test fails before it ends.
struct Bridge {
    child: Child,
    addr: String,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bridge {
    /// `tether bridge --auth none` with `extra` flags, in front of `program`.
    fn start(runtime: &str, extra: &[&str], program: &[String]) -> Bridge {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .env("RUST_LOG", "warn")
            .args([
                "bridge",
                "--runtime",
                runtime,
                "--auth",
                "none",
                "--grace",
                "300",
            ])
            .args(extra)
            .arg("--")
            .args(program)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let listening = support::listening(&mut child);
        let addr = listening["addr"].as_str().unwrap().to_owned();
        Bridge { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// A modern POST of `body` with the headers it mirrors, plus `extra` (which replace
    /// them by name).
    fn modern(&self, body: &Value, accept: &str, extra: &[(&str, &str)]) -> Reply {
        let mut headers: Vec<(String, String)> = vec![
            ("mcp-protocol-version".into(), V.into()),
            ("mcp-method".into(), body["method"].as_str().unwrap().into()),
        ];
        if let Some(name) = body["params"]
            .get("name")
            .or_else(|| body["params"].get("uri"))
            .and_then(Value::as_str)
        {
            headers.push(("mcp-name".into(), name.into()));
        }
        for (name, value) in extra {
            headers.retain(|(n, _)| n != name);
            if !value.is_empty() {
                headers.push(((*name).into(), (*value).into()));
            }
        }
        headers.push(("accept".into(), accept.into()));
        headers.push(("content-type".into(), "application/json".into()));
        http(&self.addr, "POST", &headers, &body.to_string())
    }

    fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let output = support::wait_output(child, GUARD);
        assert!(output.status.success(), "{output:?}");
    }
}

/// A modern request body.
fn modern(id: Value, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, or the last event of an event stream.
    fn json(&self) -> Value {
        if self.header("content-type") == Some("text/event-stream") {
            return self.events().pop().expect("an event");
        }
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn events(&self) -> Vec<Value> {
        self.body
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }
}

/// One HTTP/1.1 request on a connection of its own, read to its end (chunks joined).
fn http(addr: &str, method: &str, headers: &[(String, String)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    let mut request = format!(
        "{method} /mcp HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        body.push_str(&tail[..size]);
        rest = &tail[size + 2..];
    }
    body
}

/// The Python SDK's stdio server behind the method log.
fn python_server(log: &Path) -> Vec<String> {
    vec![
        peer("venv/bin/python"),
        script("method_log.py"),
        log.display().to_string(),
        "--".into(),
        peer("venv/bin/python"),
        script("mcp_server.py"),
    ]
}

/// Our legacy-only server, which logs every message it reads into `log` itself.
fn legacy_server(log: &Path) -> Vec<String> {
    vec![
        "env".to_owned(),
        format!("TETHER_METHOD_LOG={}", log.display()),
        "python3".to_owned(),
        script("mcp_legacy_server.py"),
    ]
}

fn logged(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A modern POST of `body` that accepts only an event stream, left open to be read.
fn open_stream(addr: &str, body: &Value) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    let text = body.to_string();
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         accept: text/event-stream\r\nmcp-protocol-version: {V}\r\nmcp-method: {}\r\n\
         content-length: {}\r\n\r\n{text}",
        body["method"].as_str().unwrap(),
        text.len()
    )
    .unwrap();
    stream
}

/// What `stream` says until `needle` has come (reads block until bytes arrive, bounded by
/// the read timeout).
fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the stream ended before {needle}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The first message in the program's own log that `matches`: the program logs each message
/// as it reads it, before acting on it, so whatever it has been seen to act on is there.
fn first_logged(log: &Path, matches: impl Fn(&Value) -> bool) -> Value {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| matches(m))
        .expect("logged")
}

/// The Python SDK client's observations against `url` in `mode`.
fn modern_client(url: &str, mode: &str) -> Vec<Value> {
    let child = Command::new(peer("venv/bin/python"))
        .args([&script("mcp_modern_client.py"), url, mode])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = support::wait_output(child, GUARD);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn check_client(lines: &[Value]) {
    let find = |event: &str| {
        lines
            .iter()
            .find(|l| l["event"] == event)
            .unwrap_or_else(|| panic!("no {event} in {lines:?}"))
    };
    assert_eq!(find("connected")["protocol_version"], V);
    assert!(find("tools")["names"]
        .as_array()
        .unwrap()
        .contains(&json!("echo")));
    let expected: Vec<Value> = (0..10).map(|n| json!(format!("hello {n}"))).collect();
    assert_eq!(find("echoes")["texts"], json!(expected));
    find("done");
}

#[test]
fn the_python_sdks_modern_client_through_the_bridge_to_its_stdio_server() {
    for runtime in RUNTIMES {
        let log = temp_path(&format!("sdk-{runtime}"));
        let bridge = Bridge::start(runtime, &["--pool", "2"], &python_server(&log));
        for mode in [V, "auto"] {
            check_client(&modern_client(&bridge.url(), mode));
        }
        let methods = logged(&log);
        assert!(
            !methods.iter().any(|m| m == "initialize"),
            "{runtime}: a pool program was sent initialize: {methods:?}"
        );
        assert!(methods.iter().any(|m| m == "tools/call"), "{methods:?}");
        bridge.stop();
        let _ = std::fs::remove_file(&log);
    }
}

#[test]
fn a_legacy_only_program_is_translated_for_modern_requests() {
    for runtime in RUNTIMES {
        let log = temp_path(&format!("legacy-{runtime}"));
        let program = legacy_server(&log);
        let bridge = Bridge::start(runtime, &[], &program);
        let discover = bridge.modern(
            &modern(json!(1), "server/discover", json!({})),
            "application/json",
            &[],
        );
        assert_eq!(discover.status, 200, "{discover:?}");
        let result = &discover.json()["result"];
        assert_eq!(result["supportedVersions"], json!([V]));
        assert_eq!(
            result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "legacy-only"
        );
        assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
        let echo = bridge.modern(
            &modern(
                json!("e"),
                "tools/call",
                json!({"name": "echo", "arguments": {"message": "hi"}}),
            ),
            "application/json, text/event-stream",
            &[],
        );
        assert_eq!(echo.status, 200);
        assert_eq!(echo.header("x-accel-buffering"), Some("no"), "{echo:?}");
        assert_eq!(echo.json()["id"], "e");
        assert_eq!(echo.json()["result"]["content"][0]["text"], "hi");
        // The program's own request is refused by the bridge.
        let ask = bridge.modern(
            &modern(
                json!(3),
                "tools/call",
                json!({"name": "ask", "arguments": {}}),
            ),
            "application/json",
            &[],
        );
        let text = ask.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let refusal: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(refusal["id"], "roots-1");
        assert_eq!(refusal["error"]["code"], -32601);
        // An unknown method is 404.
        let unknown = bridge.modern(
            &modern(json!(4), "nope/nope", json!({})),
            "application/json",
            &[],
        );
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.json()["error"]["code"], -32601);
        // A listen stream gets the program's change notification, tagged with its id.
        let listen = modern(
            json!("L"),
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true}}),
        );
        let mut listening = open_stream(&bridge.addr, &listen);
        let ack = read_until(&mut listening, "notifications/subscriptions/acknowledged");
        assert!(ack.contains("x-accel-buffering: no"), "{ack}");
        let change = bridge.modern(
            &modern(
                json!(6),
                "tools/call",
                json!({"name": "change", "arguments": {}}),
            ),
            "application/json",
            &[],
        );
        assert_eq!(change.json()["result"]["content"][0]["text"], "changed");
        let event = read_until(&mut listening, "notifications/tools/list_changed");
        assert!(
            event.contains(r#""io.modelcontextprotocol/subscriptionId":"L""#),
            "{event}"
        );
        // A client that leaves cancels its request, under the id the program was sent. The
        // program tells its start on the request's stream (progress) and its cancellation on
        // the listen stream (a list change), so each is waited for, not polled.
        let mut wait = modern(
            json!(5),
            "tools/call",
            json!({"name": "wait", "arguments": {}}),
        );
        wait["params"]["_meta"]["progressToken"] = json!("w");
        let mut stream = TcpStream::connect(&bridge.addr).unwrap();
        stream.set_read_timeout(Some(GUARD)).unwrap();
        let text = wait.to_string();
        write!(
            stream,
            "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             accept: text/event-stream\r\nmcp-protocol-version: {V}\r\n\
             mcp-method: tools/call\r\nmcp-name: wait\r\ncontent-length: {}\r\n\r\n{text}",
            bridge.addr,
            text.len()
        )
        .unwrap();
        let started = read_until(&mut stream, "notifications/progress");
        assert!(started.contains(r#""progressToken":"w""#), "{started}");
        let sent_wait = first_logged(&log, |m| m["params"]["name"] == "wait");
        drop(stream);
        read_until(&mut listening, "notifications/tools/list_changed");
        let cancel = first_logged(&log, |m| m["method"] == "notifications/cancelled");
        drop(listening);
        assert_eq!(cancel["params"]["requestId"], sent_wait["id"]);
        assert_ne!(
            sent_wait["id"],
            json!(5),
            "the program's own id, not the client's"
        );
        // The Python SDK's modern client works against it too, and in its auto mode stays
        // modern (the bridge's discover answer is a modern one).
        for mode in [V, "auto"] {
            check_client(&modern_client(&bridge.url(), mode));
        }
        let sent: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let count = |method: &str| sent.iter().filter(|m| m["method"] == method).count();
        assert_eq!(count("initialize"), 1, "{sent:?}");
        assert_eq!(count("notifications/initialized"), 1);
        assert_eq!(count("server/discover"), 1, "the probe only");
        // The modern `_meta` keys are stripped; a progress token, which the legacy revision
        // knows, goes on (as the bridge's own).
        for call in sent.iter().filter(|m| m["method"] == "tools/call") {
            let meta = call["params"].get("_meta");
            match call["params"]["name"] == "wait" {
                true => {
                    let meta = meta.and_then(Value::as_object).expect("a progress token");
                    assert_eq!(meta.keys().collect::<Vec<_>>(), ["progressToken"], "{call}");
                }
                false => assert!(meta.is_none(), "{call}"),
            }
        }
        bridge.stop();
        let _ = std::fs::remove_file(&log);
    }
}

#[test]
fn a_pool_program_that_crashes_fails_its_request_and_is_restarted() {
    for runtime in RUNTIMES {
        let log = temp_path(&format!("crash-{runtime}"));
        let program = legacy_server(&log);
        let flags = [
            "--restart",
            "on-failure",
            "--backoff",
            "50",
            "--max-restarts",
            "1",
        ];
        let bridge = Bridge::start(runtime, &flags, &program);
        let call = |name: &str| {
            modern(
                json!(1),
                "tools/call",
                json!({"name": name, "arguments": {"message": "m"}}),
            )
        };
        let crash = bridge.modern(&call("crash"), "application/json", &[]);
        assert_eq!(crash.status, 200, "{crash:?}");
        assert_eq!(crash.json()["error"]["code"], -32603, "{crash:?}");
        // Restarted after its delay (the request waits for it), initialized again.
        let echo = bridge.modern(&call("echo"), "application/json", &[]);
        assert_eq!(echo.json()["result"]["content"][0]["text"], "m", "{echo:?}");
        let initialized = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"initialize\""))
            .count();
        assert_eq!(initialized, 2);
        // A second crash inside the window is a crash loop: modern requests get 503.
        let crash = bridge.modern(&call("crash"), "application/json", &[]);
        assert_eq!(crash.json()["error"]["code"], -32603);
        let refused = bridge.modern(&call("echo"), "application/json", &[]);
        assert_eq!(refused.status, 503, "{refused:?}");
        bridge.stop();
        let _ = std::fs::remove_file(&log);
    }
}

#[test]
fn hostile_modern_input_gets_its_status_and_nothing_crosses_between_clients() {
    for runtime in RUNTIMES {
        let log = temp_path(&format!("hostile-{runtime}"));
        let bridge = Bridge::start(runtime, &["--pool", "2"], &python_server(&log));
        let call = |id: Value, message: &str| {
            modern(
                id,
                "tools/call",
                json!({"name": "echo", "arguments": {"message": message}}),
            )
        };
        let body = call(json!(1), "x");
        let mismatch = bridge.modern(&body, "application/json", &[("mcp-name", "other")]);
        assert_eq!(
            (mismatch.status, mismatch.json()["error"]["code"].clone()),
            (400, json!(-32020))
        );
        let missing = bridge.modern(&body, "application/json", &[("mcp-method", "")]);
        assert_eq!(missing.status, 400);
        let sentinel = bridge.modern(
            &body,
            "application/json",
            &[("mcp-name", "=?base64?ZWNobw?=")],
        );
        assert_eq!(sentinel.json()["error"]["code"], -32020);
        let big = "y".repeat(60_000);
        let oversized = bridge.modern(&body, "application/json", &[("mcp-name", &big)]);
        assert_eq!(oversized.status, 400, "{:?}", oversized.status);
        let mut bare = body.clone();
        bare["params"].as_object_mut().unwrap().remove("_meta");
        let no_meta = bridge.modern(&bare, "application/json", &[]);
        assert_eq!(no_meta.status, 400, "legacy without a session");
        let get = http(
            &bridge.addr,
            "GET",
            &[("accept".into(), "text/event-stream".into())],
            "",
        );
        assert_eq!(get.status, 405);
        let delete = http(&bridge.addr, "DELETE", &[], "");
        assert_eq!(delete.status, 405);
        assert!(
            !logged(&log).iter().any(|m| m == "tools/call"),
            "nothing refused reached the program"
        );
        // 50 clients, all with id 1, at once: each gets its own echo.
        let threads: Vec<_> = (0..50)
            .map(|n| {
                let addr = bridge.addr.clone();
                let body = call(json!(1), &format!("client {n}"));
                std::thread::spawn(move || {
                    let b = Bridge::modern_at(&addr, &body);
                    (n, b)
                })
            })
            .collect();
        for thread in threads {
            let (n, reply) = thread.join().unwrap();
            assert_eq!(reply.status, 200, "{reply:?}");
            let answer = reply.json();
            assert_eq!(answer["id"], 1);
            assert_eq!(
                answer["result"]["content"][0]["text"],
                format!("client {n}")
            );
        }
        bridge.stop();
        let _ = std::fs::remove_file(&log);
    }
}

impl Bridge {
    /// A well-formed modern POST to the bridge at `addr`, for threads.
    fn modern_at(addr: &str, body: &Value) -> Reply {
        let headers = vec![
            ("mcp-protocol-version".to_owned(), V.to_owned()),
            ("mcp-method".to_owned(), "tools/call".to_owned()),
            ("mcp-name".to_owned(), "echo".to_owned()),
            (
                "accept".to_owned(),
                "application/json, text/event-stream".to_owned(),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        http(addr, "POST", &headers, &body.to_string())
    }
}
