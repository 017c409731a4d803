//! The `tether` command against websocket peers nobody here wrote, under both runtimes: a
//! server and clients built on Python's `websockets` package (`tests/peers/`), installed into
//! `.peers/venv` by `scripts/install-peers` (which `scripts/test` runs).

#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

/// How long any process here may take before the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(120);

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

fn script(name: &str) -> PathBuf {
    root().join("tests/peers").join(name)
}

fn tether() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command.env("RUST_LOG", "warn");
    command
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

/// Everything the child wrote, once it has exited. Its output is read as it comes (a child
/// blocked on a full pipe would never exit); it is killed if it takes longer than [`GUARD`].
fn wait_output(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(GUARD) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // Not reaped yet (the waiting thread still waits): the pid is still the child's.
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            panic!("process {pid:?} did not exit within {GUARD:?}");
        }
    }
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn read_json(reader: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

/// The Python echo server: its process, its events, and its URL.
struct EchoServer {
    child: Child,
    events: BufReader<ChildStdout>,
    url: String,
}

impl EchoServer {
    fn start() -> Self {
        let mut child = python()
            .arg(script("ws_echo_server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut events = BufReader::new(child.stdout.take().unwrap());
        let listening = read_json(&mut events);
        assert_eq!(listening["event"], "listening", "{listening}");
        let url = format!("ws://127.0.0.1:{}/rpc", listening["port"]);
        EchoServer { child, events, url }
    }

    /// The server's account of the next connection that closed.
    fn closed(&mut self) -> Value {
        let event = read_json(&mut self.events);
        assert_eq!(event["event"], "closed", "{event}");
        event
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        assert!(wait_exit(&mut self.child).success());
    }
}

impl Drop for EchoServer {
    /// A failed test leaves no server behind.
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

fn connect(runtime: &str, url: &str, extra: &[&str]) -> Child {
    tether()
        .args(["connect", "--runtime", runtime, "--grace", "2000"])
        .args(extra)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn connect_to_a_python_server_text_binary_and_close_from_tether() {
    for runtime in RUNTIMES {
        let mut server = EchoServer::start();
        let mut client = connect(runtime, &server.url, &[]);
        let input = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":[1]}\n\
                     {\"jsonrpc\":\"2.0\",\"method\":\"note\",\"params\":{\"x\":\"é\"}}\n\
                     {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"binary\",\"params\":[2]}\n";
        client
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        // stdin is closed: once both responses are in, tether closes the websocket.
        let output = wait_output(client);
        assert!(output.status.success(), "{runtime}: {output:?}");
        assert_eq!(
            json_lines(&output.stdout),
            [
                json!({"event": "message", "message": {"jsonrpc": "2.0", "id": 1, "result": [1]}}),
                json!({"event": "message", "message": {"jsonrpc": "2.0", "method": "note", "params": {"x": "é"}}}),
                // The server answered in a binary frame.
                json!({"event": "message", "message": {"jsonrpc": "2.0", "id": 2, "result": [2]}}),
                json!({"event": "disconnected", "reason": null}),
            ],
            "{runtime}"
        );
        let closed = server.closed();
        assert_eq!(closed["received"], 3, "{runtime}: {closed}");
        assert_eq!(
            closed["code"], 1000,
            "{runtime}: an orderly close is a normal closure"
        );
        server.stop();
    }
}

#[test]
fn connect_to_a_python_server_that_closes_first() {
    for runtime in RUNTIMES {
        let mut server = EchoServer::start();
        let mut client = connect(runtime, &server.url, &[]);
        let mut stdin = client.stdin.take().unwrap();
        stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"close\",\"params\":[]}\n")
            .unwrap();
        // tether ends with its stdin still open: the server's Close ended the session.
        let output = wait_output(client);
        drop(stdin);
        assert!(output.status.success(), "{runtime}: {output:?}");
        assert_eq!(
            json_lines(&output.stdout),
            [
                json!({"event": "message", "message": {"jsonrpc": "2.0", "id": 1, "result": []}}),
                json!({"event": "disconnected", "reason": null}),
            ],
            "{runtime}"
        );
        let closed = server.closed();
        assert_eq!(
            (&closed["code"], &closed["reason"]),
            (&json!(1000), &json!("bye")),
            "{runtime}: tether answered the Close"
        );
        server.stop();
    }
}

#[test]
fn connect_refuses_a_message_over_the_limit() {
    for runtime in RUNTIMES {
        let mut server = EchoServer::start();
        let mut client = connect(runtime, &server.url, &["--max-frame", "1000"]);
        let mut stdin = client.stdin.take().unwrap();
        stdin
            .write_all(
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"big\",\"params\":{\"size\":900}}\n\
                  {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"big\",\"params\":{\"size\":5000}}\n",
            )
            .unwrap();
        let output = wait_output(client);
        drop(stdin);
        assert!(output.status.success(), "{runtime}: {output:?}");
        let events = json_lines(&output.stdout);
        assert_eq!(events.len(), 2, "{runtime}: {events:?}");
        // Under the limit (the frame is 938 bytes): delivered whole.
        assert_eq!(
            events[0]["message"]["result"],
            json!("x".repeat(900)),
            "{runtime}"
        );
        // Over it: the websocket layer refuses the frame and the connection ends, saying why.
        assert_eq!(events[1]["event"], "disconnected", "{runtime}");
        let reason = events[1]["reason"].as_str().expect("a reason");
        assert!(reason.contains("read failed"), "{runtime}: {reason}");
        assert!(reason.contains(&server.url), "{runtime}: {reason}");
        let closed = server.closed();
        assert_eq!(closed["received"], 2, "{runtime}: {closed}");
        assert_eq!(
            (&closed["code"], &closed["reason"]),
            (&json!(1009), &json!("message over the size limit")),
            "{runtime}: tether said why in its Close"
        );
        server.stop();
    }
}

/// `tether bridge` over the built-in peer, on a free loopback port.
struct Bridge {
    child: Child,
    url: String,
}

impl Bridge {
    fn start(runtime: &str, extra: &[&str]) -> Self {
        let mut child = tether()
            .args(["bridge", "--runtime", runtime, "--listen", "127.0.0.1:0"])
            .args(["--grace", "300"])
            .args(extra)
            .args(["--", env!("CARGO_BIN_EXE_tether"), "peer"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let listening = read_json(&mut BufReader::new(child.stdout.take().unwrap()));
        assert_eq!(listening["event"], "listening", "{listening}");
        let url = format!("ws://{}/", listening["addr"].as_str().unwrap());
        Bridge { child, url }
    }

    /// Runs `ws_clients.py` against the bridge; its one line per client.
    fn clients(&self, scenario: &str, clients: usize, arg: usize) -> Vec<Value> {
        let output = wait_output(
            python()
                .arg(script("ws_clients.py"))
                .args([&self.url, scenario, &clients.to_string(), &arg.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        assert!(output.status.success(), "{output:?}");
        let results = json_lines(&output.stdout);
        assert_eq!(results.len(), clients);
        results
    }

    /// The bridge's children: the peers of the connections still open (or not yet reaped).
    fn children(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let tasks = format!("/proc/{}/task", self.child.id());
        for task in std::fs::read_dir(tasks).unwrap().flatten() {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                pids.extend(
                    list.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        pids
    }

    /// Waits until every connection's child has been reaped.
    fn wait_no_children(&self) {
        let start = Instant::now();
        while !self.children().is_empty() {
            assert!(
                start.elapsed() < GUARD,
                "children left: {:?}",
                self.children()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The bridge's peak resident set size, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Stops the bridge with SIGINT; it must exit 0.
    fn stop(mut self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).unwrap(),
            rustix::process::Signal::INT,
        )
        .unwrap();
        assert!(wait_exit(&mut self.child).success());
    }
}

impl Drop for Bridge {
    /// A failed test leaves no bridge behind.
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Kills and reaps `child` unless it has exited already.
fn kill(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn bridge_serves_python_clients_at_once_text_and_binary() {
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, &[]);
        // 20 clients, 200 pipelined requests each, alternating text and binary frames; the
        // clients check every response in order, then close.
        for result in bridge.clients("exchange", 20, 200) {
            assert_eq!(result["responses"], 200, "{runtime}: {result}");
            assert_eq!(result["closed_by"], "client", "{runtime}: {result}");
            assert_eq!(result["close_code"], 1000, "{runtime}: {result}");
        }
        bridge.wait_no_children();
        bridge.stop();
    }
}

#[test]
fn bridge_closes_python_clients_when_their_program_exits() {
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, &[]);
        for result in bridge.clients("exit", 5, 0) {
            assert_eq!(result["closed_by"], "server", "{runtime}: {result}");
            assert_eq!(
                (&result["close_code"], &result["close_reason"]),
                (&json!(1000), &json!("the program exited")),
                "{runtime}"
            );
        }
        for result in bridge.clients("exit", 5, 3) {
            assert_eq!(result["closed_by"], "server", "{runtime}: {result}");
            assert_eq!(result["close_code"], 1011, "{runtime}: {result}");
            let reason = result["close_reason"].as_str().unwrap();
            assert_eq!(reason, "the program ended: exit code 3", "{runtime}");
        }
        bridge.wait_no_children();
        bridge.stop();
    }
}

#[test]
fn bridge_refuses_a_python_message_over_the_limit() {
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, &["--max-frame", "1000"]);
        for result in bridge.clients("too_big", 4, 5000) {
            assert_eq!(result["closed_by"], "server", "{runtime}: {result}");
            assert_eq!(
                (&result["close_code"], &result["close_reason"]),
                (&json!(1009), &json!("message over the size limit")),
                "{runtime}: {result}"
            );
        }
        // Under the limit, the same bridge still serves.
        for result in bridge.clients("exchange", 2, 10) {
            assert_eq!(result["responses"], 10, "{runtime}: {result}");
        }
        bridge.wait_no_children();
        bridge.stop();
    }
}

/// 1,000 Python clients at once through one bridge (1,000 children), 100 requests each.
#[test]
#[ignore = "load: run with --release --test real_peers -- --ignored --nocapture"]
fn bridge_load_a_thousand_clients_at_once() {
    const CLIENTS: usize = 1000;
    const REQUESTS: usize = 100;
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, &["--max-connections", "2000"]);
        let start = Instant::now();
        let results = bridge.clients("exchange", CLIENTS, REQUESTS);
        let took = start.elapsed();
        for result in &results {
            assert_eq!(result["responses"], REQUESTS, "{runtime}: {result}");
            assert_eq!(result["close_code"], 1000, "{runtime}: {result}");
        }
        bridge.wait_no_children();
        eprintln!(
            "{runtime}: {CLIENTS} websocket clients x {REQUESTS} requests through one bridge in \
             {took:.2?}; bridge peak RSS {} KiB",
            bridge.peak_rss_kib()
        );
        bridge.stop();
    }
}
