//! End-to-end tests of the `tether` binary, run as a user would, under both runtimes.

#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

mod support;

/// How long a tether run may take before the test kills it and fails.
const GUARD: Duration = Duration::from_secs(60);

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

fn tether() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command.env("RUST_LOG", "warn");
    command
}

/// Starts `tether ARGS` with piped stdin and stdout and writes `input`; hands back the process
/// with its stdin still open.
fn start(args: &[&str], input: &[u8]) -> (Child, ChildStdin) {
    let mut child = tether()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    (child, stdin)
}

/// Runs `tether ARGS` with `input` on stdin; returns its output after it exits.
fn run_with(args: &[&str], input: &str) -> Output {
    let mut child = tether()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    support::wait_output(child, GUARD)
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn gone(pid: u64) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn run_prints_each_event_exactly() {
    for runtime in RUNTIMES {
        let output = run_with(
            &["run", "--runtime", runtime],
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"hello\":\"world\"}}\n",
        );
        assert!(output.status.success(), "{runtime}: {output:?}");
        assert_eq!(
            text(&output),
            "{\"event\":\"message\",\"message\":{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"hello\":\"world\"}}}\n\
             {\"event\":\"disconnected\",\"reason\":null}\n\
             {\"event\":\"exit\",\"code\":0,\"signal\":null,\"cause\":\"requested\",\"stderr_tail\":\"\"}\n",
            "{runtime}"
        );
    }
}

#[test]
fn invalid_input_is_reported_and_not_sent() {
    for runtime in RUNTIMES {
        let input = "not json\n{\"id\":true,\"method\":\"echo\"}\n\n{\"id\":2,\"method\":\"echo\",\"params\":[2]}\n";
        let output = run_with(&["run", "--runtime", runtime], input);
        let events = lines(&output);
        assert_eq!(events[0]["event"], "invalid_input", "{runtime}");
        assert!(events[0]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"));
        assert_eq!(events[1]["event"], "invalid_input");
        assert!(events[1]["reason"]
            .as_str()
            .unwrap()
            .contains("not a JSON-RPC message"));
        // The peer saw only the valid request: its answer is the only message.
        assert_eq!(events[2]["message"]["result"], json!([2]));
        assert_eq!(events[3]["event"], "disconnected");
        assert_eq!(
            events[4],
            json!({"event": "exit", "code": 0, "signal": null, "cause": "requested", "stderr_tail": ""})
        );
        assert_eq!(events.len(), 5);
    }
}

#[test]
fn stdin_end_waits_for_responses_within_the_linger() {
    for runtime in RUNTIMES {
        // The response takes 300 ms; the linger lets it arrive before the ladder starts.
        let output = run_with(
            &["run", "--runtime", runtime, "--linger", "10000"],
            "{\"id\":1,\"method\":\"sleep\",\"params\":{\"ms\":300}}\n",
        );
        let events = lines(&output);
        assert_eq!(
            events[0]["message"]["result"],
            json!({"slept": 300}),
            "{runtime}"
        );
        // With no linger the ladder starts at once: the child exits on its closed stdin
        // after answering what it already read.
        let output = run_with(
            &[
                "run",
                "--runtime",
                runtime,
                "--linger",
                "0",
                "--output",
                "summary",
            ],
            "{\"id\":1,\"method\":\"echo\"}\n",
        );
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            summary["exit"],
            json!({"code": 0, "signal": null, "cause": "requested", "stderr_tail": ""}),
            "{runtime}"
        );
    }
}

#[test]
fn summary_output_is_one_line() {
    for runtime in RUNTIMES {
        let output = run_with(
            &["run", "--runtime", runtime, "--output", "summary"],
            "{\"id\":1,\"method\":\"notify\",\"params\":{\"count\":1000,\"size\":10}}\n{\"id\":2,\"method\":\"write\",\"params\":{\"text\":\"oops\\n\"}}\n{\"id\":3,\"method\":\"echo\"}\n",
        );
        assert_eq!(
            text(&output),
            // The `write` request is never answered by the peer: tether answers it -32603 at
            // the end, one message more.
            "{\"messages\":1003,\"malformed\":1,\"disconnected\":null,\"exit\":{\"code\":0,\"signal\":null,\"cause\":\"requested\",\"stderr_tail\":\"\"},\"invalid_input\":0}\n",
            "{runtime}"
        );
    }
}

#[test]
fn the_child_exiting_ends_the_session_with_stdin_still_open() {
    for runtime in RUNTIMES {
        let (child, stdin) = start(
            &["run", "--runtime", runtime],
            b"{\"id\":1,\"method\":\"exit\",\"params\":{\"code\":5}}\n",
        );
        // stdin stays open (held here) while tether finishes.
        let output = support::wait_output(child, GUARD);
        drop(stdin);
        assert!(output.status.success());
        assert_eq!(
            lines(&output),
            [
                // The request the child never answered, answered by tether.
                json!({"event": "message", "message": {"jsonrpc": "2.0", "id": 1, "error": {
                    "code": -32603,
                    "message": "the program ended (failed, exit code 5) before answering"
                }}}),
                json!({"event": "disconnected", "reason": null}),
                json!({"event": "exit", "code": 5, "signal": null, "cause": "failed", "stderr_tail": ""})
            ],
            "{runtime}"
        );
    }
}

#[test]
fn sigterm_runs_the_ladder_and_leaves_no_process_behind() {
    for runtime in RUNTIMES {
        let mut child = tether()
            .args(["run", "--runtime", runtime, "--grace", "200"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdin
            .write_all(b"{\"id\":1,\"method\":\"spawn\",\"params\":{\"count\":2,\"ignore_term\":true}}\n{\"id\":2,\"method\":\"spawn\",\"params\":{\"count\":2,\"ignore_term\":true,\"detach\":true}}\n{\"id\":3,\"method\":\"ignore_term\",\"params\":{\"stay\":true}}\n")
            .unwrap();
        let mut pids = Vec::new();
        for _ in 0..3 {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let event: Value = serde_json::from_str(&line).unwrap();
            if let Some(list) = event["message"]["result"]["pids"].as_array() {
                pids.extend(list.iter().map(|p| p.as_u64().unwrap()));
            }
        }
        assert_eq!(pids.len(), 4);
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let status = child.wait().unwrap();
        drop(stdin);
        assert!(status.success(), "{runtime}");
        let events: Vec<Value> = rest
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            events,
            [
                json!({"event": "disconnected", "reason": null}),
                // The child ignored SIGTERM: killed after the second grace.
                json!({"event": "exit", "code": null, "signal": 9, "cause": "requested", "stderr_tail": ""})
            ],
            "{runtime}"
        );
        // tether adopted and reaped the grandchildren: not even zombies remain.
        for pid in pids {
            assert!(gone(pid), "{runtime}: grandchild {pid} is still there");
        }
    }
}

#[test]
fn exit_statuses() {
    let output = run_with(&["run", "--", "/nonexistent/program"], "");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot start /nonexistent/program"),
        "{stderr}"
    );

    let output = run_with(&["run", "--runtime", "threads"], "");
    assert_eq!(output.status.code(), Some(2));
    let output = run_with(&["bridge", "--listen", "127.0.0.1:0"], "");
    assert_eq!(output.status.code(), Some(2));
    // A token file that is missing, empty, or blank on its first line.
    let empty = std::env::temp_dir().join(format!("tether-cli-{}-empty", std::process::id()));
    for (path, content) in [
        ("/nonexistent/token", None),
        (empty.to_str().unwrap(), Some("")),
        (empty.to_str().unwrap(), Some("\nlater\n")),
    ] {
        if let Some(content) = content {
            std::fs::write(path, content).unwrap();
        }
        for args in [
            ["bridge", "--token-file", path, "--", "true"].as_slice(),
            ["connect", "--token-file", path, "ws://127.0.0.1:1/"].as_slice(),
        ] {
            let output = run_with(args, "");
            assert_eq!(output.status.code(), Some(2), "{args:?}");
            assert!(String::from_utf8_lossy(&output.stderr).contains(path));
        }
    }
    let _ = std::fs::remove_file(&empty);
    for args in [
        ["bridge", "--auth", "basic", "--", "true"].as_slice(),
        ["connect", "--header", "no colon", "ws://127.0.0.1:1/"].as_slice(),
        ["connect", "--header", "bad name: v", "ws://127.0.0.1:1/"].as_slice(),
        // Headers go with a websocket handshake only.
        ["connect", "--header", "X-A: b", "tcp://127.0.0.1:1"].as_slice(),
    ] {
        assert_eq!(run_with(args, "").status.code(), Some(2), "{args:?}");
    }

    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("tcp://127.0.0.1:{port}"),
        format!("ws://127.0.0.1:{port}/"),
    ] {
        let output = run_with(&["connect", &url], "");
        assert_eq!(output.status.code(), Some(1), "{url}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
    }
    let output = run_with(&["connect", "http://example.invalid/"], "");
    assert_eq!(output.status.code(), Some(1));
}

/// Every usage error exits 2 with clap's `error:` line, before anything is started or
/// connected: a URL `connect` cannot speak to, an address `bridge` cannot listen on.
#[test]
fn usage_errors_exit_2_at_parse_time() {
    for (args, says) in [
        (["connect", "ftp://x"].as_slice(), "unsupported URL"),
        (["connect", "localhost:8080"].as_slice(), "unsupported URL"),
        (["connect", "tcp://127.0.0.1"].as_slice(), "no port"),
        (
            ["connect", "tcp://127.0.0.1:http"].as_slice(),
            "not a port number",
        ),
        (["connect", "unix:"].as_slice(), "no socket path"),
        (["connect", "wss://127.0.0.1:1/"].as_slice(), "no TLS"),
        (["connect", "ws:///path"].as_slice(), "invalid URL"),
        (
            ["connect", "http://user@127.0.0.1:1/mcp"].as_slice(),
            "credentials",
        ),
        (
            ["bridge", "--listen", "nope", "--", "true"].as_slice(),
            "no port",
        ),
        (
            ["bridge", "--listen", "127.0.0.1:99999", "--", "true"].as_slice(),
            "not a port number",
        ),
        (
            ["bridge", "--listen", "bad host:80", "--", "true"].as_slice(),
            "neither an IP",
        ),
    ] {
        let output = run_with(args, "");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing started");
    }
    // What the checks let through: host names, IPv6, every scheme. A bridge on a host name
    // listens (the name is resolved when it is used), and says where.
    let mut child = tether()
        .args(["bridge", "--listen", "localhost:0", "--", "true"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("\"event\":\"listening\""), "{line}");
    stop(child);
}

/// `tether help bridge` says what the bridge serves and what its idle timeout does by
/// default for each kind of session.
#[test]
fn bridge_help_matches_what_it_serves() {
    let output = tether().args(["help", "bridge"]).output().unwrap();
    assert!(output.status.success());
    let help = text(&output);
    for says in [
        "websockets at ws://ADDR/",
        "MCP's Streamable HTTP at http://ADDR/mcp",
        "/healthz",
        "default: never",
        "default: 30 minutes",
    ] {
        assert!(help.contains(says), "{says:?} missing from:\n{help}");
    }
    assert!(!help.contains("Serve a websocket on ADDR"), "{help}");
}

#[test]
fn connect_over_tcp() {
    for runtime in RUNTIMES {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A server that answers the first line with a notification and a response, then
        // closes once its input ends.
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let request: Value = serde_json::from_str(&line).unwrap();
            writeln!(writer, "{{\"jsonrpc\":\"2.0\",\"method\":\"hi\"}}").unwrap();
            writeln!(
                writer,
                "{}",
                json!({"jsonrpc": "2.0", "id": request["id"], "result": "ok"})
            )
            .unwrap();
            let mut rest = String::new();
            reader.read_to_string(&mut rest).unwrap();
            rest
        });
        let output = run_with(
            &["connect", "--runtime", runtime, &format!("tcp://{addr}")],
            "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"m\"}\n",
        );
        assert!(output.status.success());
        assert_eq!(
            lines(&output),
            [
                json!({"event": "message", "message": {"jsonrpc": "2.0", "method": "hi"}}),
                json!({"event": "message", "message": {"jsonrpc": "2.0", "id": 7, "result": "ok"}}),
                json!({"event": "disconnected", "reason": null}),
            ],
            "{runtime}"
        );
        assert_eq!(server.join().unwrap(), "", "nothing after the request");
    }
}

#[test]
fn connect_over_a_unix_socket() {
    for runtime in RUNTIMES {
        let path =
            std::env::temp_dir().join(format!("tether-cli-{}-{runtime}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let request: Value = serde_json::from_str(&line).unwrap();
            let mut writer = stream;
            writeln!(
                writer,
                "{}",
                json!({"jsonrpc": "2.0", "id": request["id"], "result": "unix"})
            )
            .unwrap();
            // The peer closes first: tether reports it and exits 0 with its stdin still open.
        });
        let (child, stdin) = start(
            &[
                "connect",
                "--runtime",
                runtime,
                &format!("unix:{}", path.display()),
            ],
            b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"m\"}\n",
        );
        let output = support::wait_output(child, GUARD);
        drop(stdin);
        server.join().unwrap();
        assert!(output.status.success());
        assert_eq!(
            lines(&output),
            [
                json!({"event": "message", "message": {"jsonrpc": "2.0", "id": 3, "result": "unix"}}),
                json!({"event": "disconnected", "reason": null}),
            ],
            "{runtime}"
        );
        let _ = std::fs::remove_file(&path);
    }
}

/// Starts `tether bridge` over the built-in peer, on the default address; returns it, its
/// address and its URL (with the token).
fn bridge(runtime: &str, extra: &[&str]) -> (Child, String, String) {
    let mut child = tether()
        .args(["bridge", "--runtime", runtime, "--grace", "300"])
        .args(extra)
        .args(["--", env!("CARGO_BIN_EXE_tether"), "peer"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let listening = support::listening(&mut child);
    let addr = listening["addr"].as_str().unwrap().to_owned();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "loopback by default: {addr}"
    );
    let url = listening["url"].as_str().unwrap().to_owned();
    (child, addr, url)
}

fn stop(mut bridge: Child) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(bridge.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = bridge.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the bridge did not stop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn bridge_serves_several_clients_at_once() {
    for runtime in RUNTIMES {
        let (server, _, url) = bridge(runtime, &[]);
        let clients: Vec<Child> = (0..8)
            .map(|i| {
                let mut client = tether()
                    .args(["connect", "--runtime", runtime, &url])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let input = format!(
                    "{{\"id\":1,\"method\":\"echo\",\"params\":[{i}]}}\n{{\"id\":2,\"method\":\"notify\",\"params\":{{\"count\":100}}}}\n"
                );
                client.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
                client
            })
            .collect();
        for (i, client) in clients.into_iter().enumerate() {
            let output = support::wait_output(client, GUARD);
            assert!(output.status.success());
            let events = lines(&output);
            assert_eq!(events[0]["message"]["result"], json!([i]), "{runtime}");
            assert_eq!(events.len(), 1 + 100 + 1 + 1, "{runtime}");
            assert_eq!(events[101]["message"]["result"], json!({"sent": 100}));
            assert_eq!(
                events[102],
                json!({"event": "disconnected", "reason": null})
            );
        }
        stop(server);
    }
}

#[test]
fn bridge_closes_the_websocket_when_the_child_exits() {
    for runtime in RUNTIMES {
        let (server, _, url) = bridge(runtime, &[]);
        // The child exits with 3 while the client's stdin is still open.
        let (client, stdin) = start(
            &["connect", "--runtime", runtime, &url],
            b"{\"id\":1,\"method\":\"exit\",\"params\":{\"code\":3}}\n",
        );
        let output = support::wait_output(client, GUARD);
        drop(stdin);
        assert_eq!(
            lines(&output),
            [json!({"event": "disconnected", "reason": null})],
            "{runtime}"
        );
        stop(server);
    }
}

#[test]
fn bridge_answers_bad_messages_and_closes_with_the_exit_code() {
    use std::net::TcpStream;
    use tether_io::async_tungstenite::tungstenite::{
        self, protocol::frame::coding::CloseCode, Message as Ws,
    };

    for runtime in RUNTIMES {
        let (server, addr, url) = bridge(runtime, &["--max-connections", "1"]);
        let (mut ws, _) =
            tungstenite::client(url.as_str(), TcpStream::connect(&addr).unwrap()).unwrap();
        let read_json = |ws: &mut tungstenite::WebSocket<TcpStream>| -> Value {
            match ws.read().unwrap() {
                Ws::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        ws.send(Ws::text("garbage")).unwrap();
        let reply = read_json(&mut ws);
        assert_eq!(reply["id"], Value::Null, "{runtime}");
        assert_eq!(reply["error"]["code"], -32700);
        ws.send(Ws::text(
            "{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"echo\"}",
        ))
        .unwrap();
        assert_eq!(read_json(&mut ws)["error"]["code"], -32600);
        ws.send(Ws::Binary(
            b"{\"id\":1,\"method\":\"echo\",\"params\":[1]}"
                .to_vec()
                .into(),
        ))
        .unwrap();
        assert_eq!(read_json(&mut ws)["result"], json!([1]));

        // One connection is the limit: a second handshake is refused.
        let second = tungstenite::client(url.as_str(), TcpStream::connect(&addr).unwrap());
        match second {
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                assert_eq!(response.status(), 503)
            }
            other => panic!("{runtime}: {other:?}"),
        }

        ws.send(Ws::text(
            "{\"id\":2,\"method\":\"exit\",\"params\":{\"code\":3}}",
        ))
        .unwrap();
        match ws.read().unwrap() {
            Ws::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Error, "{runtime}"),
            other => panic!("{other:?}"),
        }
        stop(server);
    }
}

#[test]
fn bridge_listening_line_gives_the_url_with_its_token() {
    let (server, addr, url) = bridge("tokio", &[]);
    let token = url
        .strip_prefix(&format!("ws://{addr}/?token="))
        .unwrap_or_else(|| panic!("{url}"));
    assert_eq!(token.len(), 64, "{token}");
    stop(server);
    // Each start makes a new token.
    let (server, _, again) = bridge("tokio", &[]);
    assert_ne!(url, again);
    stop(server);

    // The line itself, keys in order; no query without auth, and no warning on loopback.
    let mut child = tether()
        .args(["bridge", "--auth", "none", "--", "true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = serde_json::from_str::<Value>(&line).unwrap()["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        line,
        format!(
            "{{\"event\":\"listening\",\"addr\":\"{addr}\",\"url\":\"ws://{addr}/\",\
             \"mcp_url\":\"http://{addr}/mcp\"}}\n"
        )
    );
    let mut stderr = child.stderr.take().unwrap();
    stop(child);
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    assert_eq!(text, "");
}

#[test]
fn bridge_warns_when_it_listens_beyond_loopback_without_auth() {
    for (auth, warned) in [("none", true), ("token", false)] {
        let mut child = tether()
            .args([
                "bridge",
                "--listen",
                "0.0.0.0:0",
                "--auth",
                auth,
                "--",
                "true",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("\"addr\":\"0.0.0.0:"), "{line}");
        let mut stderr = child.stderr.take().unwrap();
        stop(child);
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        assert_eq!(
            text.contains("warning: listening on 0.0.0.0:"),
            warned,
            "--auth {auth}: {text}"
        );
    }
}

/// `tether help peer` names every method the peer answers: each name it lists is answered
/// (no "method not found"), the list is the peer's own, and a name it does not list is not
/// answered (the peer answers only listed methods, so nothing answered goes unlisted).
#[test]
fn peer_help_names_every_method_it_answers() {
    let output = tether().args(["help", "peer"]).output().unwrap();
    assert!(output.status.success());
    let help = text(&output);
    let listed: Vec<&str> = help
        .lines()
        .filter_map(|line| line.strip_prefix("  ")?.split_once("  params: "))
        .map(|(name, _)| name)
        .collect();
    let methods: Vec<&str> = tether_cli::peer::METHODS.iter().map(|m| m.name).collect();
    assert_eq!(listed, methods, "{help}");
    for name in [
        "echo",
        "notify",
        "spawn",
        "sleep",
        "exit",
        "write",
        "close_stdout",
    ] {
        assert!(listed.contains(&name), "{name} missing from:\n{help}");
    }

    // Each method on a peer of its own, with harmless parameters, then the end of its input.
    let not_found = |method: &str| -> bool {
        let params = match method {
            "notify" | "spawn" => json!({"count": 0}),
            "write" | "stderr" => json!({"text": ""}),
            _ => json!({}),
        };
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut child = tether()
            .arg("peer")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{request}").unwrap();
        let output = support::wait_output(child, GUARD);
        assert!(output.status.success(), "{method}: {output:?}");
        lines(&output)
            .iter()
            .any(|reply| reply["error"]["code"] == -32601)
    };
    for name in &listed {
        assert!(!not_found(name), "{name} is listed but not answered");
    }
    assert!(not_found("no_such_method"));
}

/// `tether completions SHELL` prints a script for each shell; bash's, loaded into a real bash,
/// completes `tether br` to `bridge`.
#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = tether().args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = text(&output);
        assert!(!script.trim().is_empty(), "{shell}");
        for subcommand in ["run", "connect", "bridge", "peer", "replay", "man"] {
            assert!(script.contains(subcommand), "{shell}: no {subcommand}");
        }
    }
    let script = std::env::temp_dir().join(format!("tether-cli-{}.bash", std::process::id()));
    let output = tether().args(["completions", "bash"]).output().unwrap();
    std::fs::write(&script, &output.stdout).unwrap();
    let completed = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(tether br); COMP_CWORD=1; COMP_LINE='tether br'; \
             COMP_POINT=9; _tether tether br tether; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&script);
    assert_eq!(text(&completed).trim(), "bridge", "{completed:?}");
    assert_eq!(
        tether()
            .args(["completions", "tcsh"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

/// `tether man` prints tether(1), a roff page that names every subcommand; `tether man SUB`
/// prints that subcommand's own page; an unknown one is a usage error.
#[test]
fn man_pages() {
    use clap::CommandFactory;

    let output = tether().arg("man").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let page = text(&output);
    assert!(page.starts_with(".TH tether 1 "), "{page}");
    let command = tether_cli::args::Cli::command();
    let subcommands: Vec<&str> = command.get_subcommands().map(|s| s.get_name()).collect();
    assert!(subcommands.len() >= 7, "{subcommands:?}");
    for name in &subcommands {
        assert!(
            page.contains(&format!("tether\\-{name}(1)")),
            "{name} missing from:\n{page}"
        );
        let output = tether().args(["man", name]).output().unwrap();
        assert!(output.status.success(), "{name}: {output:?}");
        let own = text(&output);
        assert!(own.starts_with(&format!(".TH tether-{name} 1 ")), "{own}");
        assert!(own.contains(".SH SYNOPSIS"), "{own}");
    }
    let bridge = text(&tether().args(["man", "bridge"]).output().unwrap());
    assert!(bridge.contains("\\-\\-idle\\-timeout"), "{bridge}");
    assert_eq!(
        tether()
            .args(["man", "nope"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}
