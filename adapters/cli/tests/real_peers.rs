//! The `tether` command against websocket peers nobody here wrote, under both runtimes: a
//! server and clients built on Python's `websockets` package (`tests/peers/`), installed into
//! `.peers/venv` by `scripts/install-peers` (which `scripts/test` runs).

#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
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
        Self::start_with(&[])
    }

    /// The server, with `ws_echo_server.py`'s options.
    fn start_with(args: &[&str]) -> Self {
        let mut child = python()
            .arg(script("ws_echo_server.py"))
            .args(args)
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
        self.next("closed")
    }

    /// The server's next event, which must be `kind`.
    fn next(&mut self, kind: &str) -> Value {
        let event = read_json(&mut self.events);
        assert_eq!(event["event"], kind, "{event}");
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
        let output = support::wait_output(client, GUARD);
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
        let output = support::wait_output(client, GUARD);
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
        let output = support::wait_output(client, GUARD);
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

/// `tether bridge` over the built-in peer (or another program), on a free loopback port.
struct Bridge {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// The URL from the `listening` line, with the token.
    url: String,
}

impl Bridge {
    fn start(runtime: &str, extra: &[&str]) -> Self {
        Self::start_with(runtime, extra, &[env!("CARGO_BIN_EXE_tether"), "peer"], &[])
    }

    /// `tether bridge EXTRA -- PROGRAM`, with `env` added to its environment.
    fn start_with(runtime: &str, extra: &[&str], program: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = tether()
            .args(["bridge", "--runtime", runtime, "--grace", "300"])
            .args(extra)
            .arg("--")
            .args(program)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let listening = read_json(&mut BufReader::new(child.stdout.take().unwrap()));
        assert_eq!(listening["event"], "listening", "{listening}");
        let addr = listening["addr"].as_str().unwrap().to_owned();
        let url = listening["url"].as_str().unwrap().to_owned();
        Bridge { child, addr, url }
    }

    /// Runs `ws_clients.py` against the bridge; its one line per client.
    fn clients(&self, scenario: &str, clients: usize, arg: usize) -> Vec<Value> {
        let output = support::wait_output(
            python()
                .arg(script("ws_clients.py"))
                .args([&self.url, scenario, &clients.to_string(), &arg.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            GUARD,
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

// The bridge's admission rules, against a client nobody here wrote (`ws_probe.py`, on Python's
// `websockets`). Whether a child was spawned is read from a file each child appends a line to
// before it becomes the built-in peer, so a refusal is seen to spawn nothing at all.

/// A temporary path for this test process, removed first if a previous run left it.
fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tether-security-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// A program that appends a line to `spawns`, then runs the built-in peer.
fn counted_peer(spawns: &Path) -> Vec<String> {
    let script = "echo spawned >> \"$0\"; exec \"$1\" peer";
    vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        spawns.display().to_string(),
        env!("CARGO_BIN_EXE_tether").into(),
    ]
}

/// How many children the bridge has spawned so far.
fn spawned(spawns: &Path) -> usize {
    std::fs::read_to_string(spawns).map_or(0, |text| text.lines().count())
}

/// Runs `ws_probe.py ARGS` to its end; its one line.
fn probe(args: &[&str]) -> Value {
    let output = support::wait_output(
        python()
            .arg(script("ws_probe.py"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        GUARD,
    );
    assert!(output.status.success(), "{args:?}: {output:?}");
    let mut lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
    lines.remove(0)
}

fn start_counted(runtime: &str, extra: &[&str], spawns: &Path) -> Bridge {
    let program = counted_peer(spawns);
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    Bridge::start_with(runtime, extra, &program, &[])
}

#[test]
fn bridge_refuses_a_missing_or_wrong_token_with_401_and_spawns_nothing() {
    for runtime in RUNTIMES {
        let spawns = temp_path(&format!("401-{runtime}"));
        let bridge = start_counted(runtime, &[], &spawns);
        let token = bridge.url.split_once("?token=").unwrap().1.to_owned();
        assert_eq!(token.len(), 64, "{runtime}: 256 bits in hex: {token}");
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        let bare = format!("ws://{}/", bridge.addr);
        // One digit changed: a token that starts with 0 gets a 1 instead.
        let other = if token.starts_with('0') { '1' } else { '0' };
        let wrong_query = format!("ws://{}/?token={other}{}", bridge.addr, &token[1..]);
        let wrong_header = format!("Authorization: Bearer {}", &token[..63]);
        for (args, says) in [
            (vec!["ws", bare.as_str()], "missing bearer token: "),
            (vec!["ws", wrong_query.as_str()], "wrong bearer token: "),
            (
                vec!["ws", bare.as_str(), "--header", wrong_header.as_str()],
                "wrong bearer token: ",
            ),
        ] {
            let refused = probe(&args);
            assert_eq!(refused["status"], 401, "{runtime} {args:?}: {refused}");
            // The body is a JSON-RPC error that says what is wrong and how to put it right.
            let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(says), "{runtime} {args:?}: {message}");
            assert!(message.contains("Authorization: Bearer TOKEN"), "{message}");
        }
        assert_eq!(bridge.children(), Vec::<u32>::new(), "{runtime}");
        // The same bridge serves the token; its child is the first and only one spawned.
        let served = probe(&["ws", &bridge.url, "--call", "echo", "[7]"]);
        assert_eq!(served["result"], json!([7]), "{runtime}: {served}");
        bridge.wait_no_children();
        assert_eq!(
            spawned(&spawns),
            1,
            "{runtime}: the refusals spawned nothing"
        );
        bridge.stop();
        let _ = std::fs::remove_file(&spawns);
    }
}

#[test]
fn bridge_takes_the_token_by_header_or_by_query_from_a_file_or_the_environment() {
    for runtime in RUNTIMES {
        let file = temp_path(&format!("token-{runtime}"));
        std::fs::write(&file, "from-the-file\nsecond line\n").unwrap();
        let program = [env!("CARGO_BIN_EXE_tether"), "peer"];
        let from_file = Bridge::start_with(
            runtime,
            &["--token-file", file.to_str().unwrap()],
            &program,
            // The file comes first.
            &[("TETHER_BRIDGE_TOKEN", "from-the-environment")],
        );
        let from_env = Bridge::start_with(
            runtime,
            &[],
            &program,
            &[("TETHER_BRIDGE_TOKEN", "from the environment/é")],
        );
        for (bridge, token) in [
            (&from_file, "from-the-file"),
            (&from_env, "from the environment/é"),
        ] {
            let by_query = probe(&["ws", &bridge.url, "--call", "echo", "[1]"]);
            assert_eq!(by_query["result"], json!([1]), "{runtime}: {by_query}");
            let bare = format!("ws://{}/", bridge.addr);
            let header = format!("Authorization: Bearer {token}");
            if token.is_ascii() {
                let by_header = probe(&["ws", &bare, "--header", &header, "--call", "echo", "[2]"]);
                assert_eq!(by_header["result"], json!([2]), "{runtime}: {by_header}");
            }
            assert_eq!(probe(&["ws", &bare])["status"], 401, "{runtime}");
        }
        assert_eq!(
            from_file.url,
            format!("ws://{}/?token=from-the-file", from_file.addr)
        );
        // The query is percent-encoded, and decoded again by the bridge.
        assert_eq!(
            from_env.url,
            format!(
                "ws://{}/?token=from%20the%20environment%2F%C3%A9",
                from_env.addr
            )
        );
        from_file.stop();
        from_env.stop();
        let _ = std::fs::remove_file(&file);
    }
}

#[test]
fn bridge_refuses_a_foreign_origin_with_403_and_serves_an_allowed_one() {
    for runtime in RUNTIMES {
        let spawns = temp_path(&format!("403-{runtime}"));
        let bridge = start_counted(runtime, &["--allow-origin", "https://app.example"], &spawns);
        for origin in ["https://evil.example", "https://app.example:8443", "null"] {
            let refused = probe(&["ws", &bridge.url, "--origin", origin]);
            assert_eq!(refused["status"], 403, "{runtime} {origin}: {refused}");
            let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("origin not allowed"), "{message}");
        }
        let allowed = probe(&[
            "ws",
            &bridge.url,
            "--origin",
            "https://app.example",
            "--call",
            "echo",
            "[3]",
        ]);
        assert_eq!(allowed["result"], json!([3]), "{runtime}: {allowed}");
        bridge.wait_no_children();
        assert_eq!(
            spawned(&spawns),
            1,
            "{runtime}: the refusals spawned nothing"
        );
        bridge.stop();
        let _ = std::fs::remove_file(&spawns);
    }
}

#[test]
fn bridge_answers_healthz_without_a_token() {
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, &[]);
        let health = format!("http://{}/healthz", bridge.addr);
        let idle = probe(&["get", &health]);
        assert_eq!(idle["status"], 200, "{runtime}: {idle}");
        assert_eq!(idle["body"], r#"{"status":"ok","connections":0}"#);
        // With one session open.
        let mut session = python()
            .arg(script("ws_probe.py"))
            .args(["ws", &bridge.url, "--call", "echo", "[1]", "--hold"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut events = BufReader::new(session.stdout.take().unwrap());
        let open = read_json(&mut events);
        assert_eq!(open["event"], "open", "{runtime}: {open}");
        let busy = probe(&["get", &health]);
        assert_eq!(
            busy["body"], r#"{"status":"ok","connections":1}"#,
            "{runtime}"
        );
        drop(session.stdin.take());
        assert!(wait_exit(&mut session).success());
        let closed = read_json(&mut events);
        assert_eq!(closed["close_code"], 1000, "{runtime}: {closed}");
        bridge.wait_no_children();
        bridge.stop();
    }
}

#[test]
fn bridge_closes_an_idle_session_and_ends_its_child() {
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, &["--idle-timeout", "300"]);
        let start = Instant::now();
        // One exchange, then silence until the bridge closes.
        let result = probe(&["ws", &bridge.url, "--call", "echo", "[1]", "--wait-close"]);
        assert!(start.elapsed() >= Duration::from_millis(300), "{runtime}");
        assert_eq!(result["result"], json!([1]), "{runtime}: {result}");
        assert_eq!(
            (&result["close_code"], &result["close_reason"]),
            (&json!(1000), &json!("idle timeout")),
            "{runtime}: {result}"
        );
        bridge.wait_no_children();
        bridge.stop();
    }
}

#[test]
fn bridge_tells_each_child_its_client_address() {
    for runtime in RUNTIMES {
        let bridge = Bridge::start(runtime, &[]);
        for _ in 0..2 {
            let result = probe(&[
                "ws",
                &bridge.url,
                "--call",
                "env",
                r#"{"name":"TETHER_CLIENT_ADDR"}"#,
            ]);
            assert_eq!(result["result"], result["local"], "{runtime}: {result}");
            assert!(
                result["local"].as_str().unwrap().starts_with("127.0.0.1:"),
                "{result}"
            );
        }
        bridge.wait_no_children();
        bridge.stop();
    }
}

/// Opens two connections to `addr`, one silent, one that stops mid-head; both must be closed by
/// the server without a byte of answer. Returns how long that took.
fn unfinished_handshakes(addr: &str) -> Duration {
    use std::io::Read;
    use std::net::TcpStream;

    let silent = TcpStream::connect(addr).unwrap();
    let mut partial = TcpStream::connect(addr).unwrap();
    partial.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let start = Instant::now();
    for mut stream in [silent, partial] {
        stream.set_read_timeout(Some(GUARD)).unwrap();
        let mut buf = [0; 64];
        assert_eq!(stream.read(&mut buf).unwrap(), 0, "closed, with no answer");
    }
    start.elapsed()
}

#[test]
fn bridge_drops_a_client_that_never_finishes_its_handshake() {
    for runtime in RUNTIMES {
        let spawns = temp_path(&format!("slow-{runtime}"));
        // The hidden flag shortens the 10 s limit for the test.
        let bridge = start_counted(runtime, &["--handshake-timeout", "500"], &spawns);
        let took = unfinished_handshakes(&bridge.addr);
        assert!(took >= Duration::from_millis(450), "{runtime}: {took:?}");
        // Still serving.
        let served = probe(&["ws", &bridge.url, "--call", "echo", "[1]"]);
        assert_eq!(served["result"], json!([1]), "{runtime}: {served}");
        bridge.wait_no_children();
        assert_eq!(
            spawned(&spawns),
            1,
            "{runtime}: no child for the unfinished ones"
        );
        bridge.stop();
        let _ = std::fs::remove_file(&spawns);
    }
}

#[test]
fn bridge_gives_a_handshake_ten_seconds_by_default() {
    // Both runtimes at once: the test waits out the real limit.
    let runs: Vec<_> = RUNTIMES
        .iter()
        .map(|runtime| {
            std::thread::spawn(move || {
                let bridge = Bridge::start(runtime, &[]);
                let took = unfinished_handshakes(&bridge.addr);
                bridge.stop();
                (runtime, took)
            })
        })
        .collect();
    for run in runs {
        let (runtime, took) = run.join().unwrap();
        assert!(
            took >= Duration::from_millis(9_900) && took < Duration::from_secs(30),
            "{runtime}: {took:?}"
        );
    }
}

#[test]
fn connect_sends_headers_and_a_token_to_a_python_server_that_checks_them() {
    for runtime in RUNTIMES {
        let mut server = EchoServer::start_with(&[
            "--require",
            "X-Api-Key: k1",
            "--require",
            "Authorization: Bearer t0k3n",
        ]);
        let file = temp_path(&format!("connect-token-{runtime}"));
        std::fs::write(&file, "t0k3n\n").unwrap();
        let token_file = file.to_str().unwrap();
        let input = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":[1]}\n";

        // Without the token: refused, and tether says so.
        let mut refused = tether()
            .args(["connect", "--runtime", runtime, "--header", "X-Api-Key: k1"])
            .arg(&server.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        refused.stdin.take().unwrap().write_all(input).unwrap();
        let output = support::wait_output(refused, GUARD);
        assert_eq!(output.status.code(), Some(1), "{runtime}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("401"), "{runtime}: {stderr}");
        assert_eq!(server.next("refused")["missing"], "Authorization");

        let mut client = connect(
            runtime,
            &server.url,
            &["--header", "X-Api-Key: k1", "--token-file", token_file],
        );
        client.stdin.take().unwrap().write_all(input).unwrap();
        let output = support::wait_output(client, GUARD);
        assert!(output.status.success(), "{runtime}: {output:?}");
        assert_eq!(
            json_lines(&output.stdout)[0],
            json!({"event": "message", "message": {"jsonrpc": "2.0", "id": 1, "result": [1]}}),
            "{runtime}"
        );
        assert_eq!(server.closed()["received"], 1, "{runtime}");
        server.stop();
        let _ = std::fs::remove_file(&file);
    }
}
