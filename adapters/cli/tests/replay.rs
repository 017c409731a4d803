//! `--record` and `tether replay`: a session recorded with a real peer, played back without
//! it, gives the same events.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

fn tether() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command.env("RUST_LOG", "warn");
    command
}

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_tether")
}

/// A fresh folder for this test's files.
fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("replay-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits for `child` to exit on a thread of its own; fails the test after a minute instead
/// of hanging it.
fn finish(child: Child) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    rx.recv_timeout(Duration::from_secs(60))
        .expect("tether did not exit within a minute")
        .unwrap()
}

/// Runs `tether ARGS` with `lines` on stdin (then its end).
fn run(args: &[&str], lines: &[Value]) -> Output {
    let mut child = tether()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    finish(child)
}

fn events(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn transcript(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Each event with the ids of its message taken out: what must match between a live session
/// and its replay driven with other ids.
fn without_ids(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .cloned()
        .map(|mut event| {
            if let Some(message) = event.get_mut("message").and_then(Value::as_object_mut) {
                message.remove("id");
            }
            event
        })
        .collect()
}

/// The same requests with other ids.
fn renumbered(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .cloned()
        .map(|mut line| {
            if let Some(id) = line.get("id").and_then(Value::as_i64) {
                line["id"] = json!(format!("live-{id}"));
            }
            line
        })
        .collect()
}

fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A session with the built-in peer: answers, notifications, a line that is not JSON, bytes
/// that are not UTF-8, an error; `write` is never answered, so the session lingers.
fn peer_session() -> Vec<Value> {
    vec![
        request(1, "echo", json!({"hello": "world"})),
        request(2, "notify", json!({"count": 2})),
        json!({"jsonrpc": "2.0", "method": "note"}),
        request(
            3,
            "write",
            json!({"text": "garbage\n", "bytes": [255, 254, 10]}),
        ),
        request(4, "no/such/method", json!({})),
    ]
}

#[test]
fn a_session_with_the_built_in_peer_replays_with_the_same_events() {
    let dir = folder("peer");
    let file = dir.join("session.jsonl");
    let file = file.to_str().unwrap();
    for runtime in ["tokio", "smol"] {
        let live = run(
            &[
                "run",
                "--runtime",
                runtime,
                "--linger",
                "300",
                "--record",
                file,
            ],
            &peer_session(),
        );
        assert!(live.status.success(), "{}", stderr(&live));
        let recorded = transcript(Path::new(file));
        let outgoing: Vec<&Value> = recorded.iter().filter(|l| l["dir"] == "out").collect();
        assert_eq!(outgoing.len(), 5, "{recorded:?}");
        assert_eq!(outgoing[0]["frame"], peer_session()[0]);
        let incoming: Vec<&Value> = recorded.iter().filter(|l| l["dir"] == "in").collect();
        assert!(incoming
            .iter()
            .any(|l| l["frame"] == json!({"raw": "garbage"})));
        assert!(incoming
            .iter()
            .any(|l| l["frame"] == json!({"raw": "//4=", "base64": true})));
        let n = recorded.len();
        assert_eq!(recorded[n - 2]["close"], "out", "{recorded:?}");
        assert_eq!(
            recorded[n - 1]["end"],
            json!({"reason": null, "exit": {"code": 0, "signal": null}})
        );
        let times: Vec<u64> = recorded
            .iter()
            .map(|l| l["t_ms"].as_u64().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

        let replayed = run(
            &[
                "run",
                "--runtime",
                runtime,
                "--linger",
                "300",
                "--",
                exe(),
                "replay",
                file,
            ],
            &renumbered(&peer_session()),
        );
        assert!(replayed.status.success(), "{}", stderr(&replayed));
        let (live, replayed) = (events(&live), events(&replayed));
        assert_eq!(without_ids(&live), without_ids(&replayed));
        // The live client's ids came back on the recorded answers.
        assert_eq!(replayed[0]["message"]["id"], "live-1", "{replayed:?}");
        assert_eq!(
            live.last().map(status_of),
            Some(json!({"event": "exit", "code": 0, "signal": null}))
        );
    }
}

fn server_everything() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-peers (scripts/test does)",
        path.display()
    );
    path
}

#[test]
fn a_session_with_server_everything_replays_without_it() {
    let file = folder("everything").join("session.jsonl");
    let file = file.to_str().unwrap();
    let server = server_everything();
    let session = vec![
        request(
            1,
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "tether-tests", "version": "0.1.0"},
            }),
        ),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        request(2, "tools/list", json!({})),
        request(
            3,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        ),
        request(4, "no/such/method", json!({})),
    ];
    // Node takes its time to exit: the grace must not cut a clean exit short.
    let live = run(
        &[
            "run",
            "--grace",
            "10000",
            "--record",
            file,
            "--",
            "node",
            server.to_str().unwrap(),
            "stdio",
        ],
        &session,
    );
    assert!(live.status.success(), "{}", stderr(&live));
    let live = events(&live);
    let called = live
        .iter()
        .find(|e| e["message"]["id"] == 3)
        .expect("the tool call's answer");
    assert_eq!(
        called["message"]["result"]["content"][0]["text"],
        "Echo: hi"
    );
    assert_eq!(
        live.last().map(status_of),
        Some(json!({"event": "exit", "code": 0, "signal": null}))
    );

    let replayed = run(&["run", "--", exe(), "replay", file], &renumbered(&session));
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    // The exits compared by their status: the replay says nothing on its stderr.
    let statuses = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .map(|e| match e["event"] == "exit" {
                true => status_of(&e),
                false => e,
            })
            .collect()
    };
    assert_eq!(
        without_ids(&statuses(live)),
        without_ids(&statuses(events(&replayed)))
    );
}

#[test]
fn strict_replay_catches_a_changed_request_and_the_default_does_not() {
    let file = folder("strict").join("session.jsonl");
    let file = file.to_str().unwrap();
    let session = vec![request(1, "echo", json!({"hello": "world"}))];
    let live = run(&["run", "--record", file], &session);
    assert!(live.status.success(), "{}", stderr(&live));
    let changed = vec![request(1, "echo", json!({"hello": "there"}))];

    let strict = run(&["replay", "--strict", file], &changed);
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(events(&strict), Vec::<Value>::new());
    let diff = stderr(&strict);
    assert!(diff.contains("step 1 of the script"), "{diff}");
    assert!(
        diff.contains(
            r#"expected: {"id":1,"jsonrpc":"2.0","method":"echo","params":{"hello":"world"}}"#
        ),
        "{diff}"
    );
    assert!(
        diff.contains(r#"params.hello: expected "world", received "there""#),
        "{diff}"
    );

    // Through `tether run`, the replay's failure is the child's exit status.
    let through = run(
        &[
            "run",
            "--stderr",
            "inherit",
            "--",
            exe(),
            "replay",
            "--strict",
            file,
        ],
        &changed,
    );
    assert_eq!(
        events(&through).last().map(status_of),
        Some(json!({"event": "exit", "code": 1, "signal": null}))
    );
    assert!(stderr(&through).contains(r#"params.hello: expected "world", received "there""#));

    // By default the method and the order are what count: the recorded answer comes back.
    let lenient = run(&["run", "--", exe(), "replay", file], &changed);
    assert_eq!(without_ids(&events(&lenient)), without_ids(&events(&live)));
}

#[test]
fn the_bridge_records_one_file_per_session() {
    let dir = folder("bridge");
    let mut bridge = tether()
        .args(["bridge", "--listen", "127.0.0.1:0", "--record"])
        .arg(&dir)
        .args(["--", exe(), "peer"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut listening = String::new();
    BufReader::new(bridge.stdout.take().unwrap())
        .read_line(&mut listening)
        .unwrap();
    let listening: Value = serde_json::from_str(&listening).unwrap();
    // The bridge's own URL carries its token.
    let url = listening["url"].as_str().unwrap().to_owned();
    let sessions: Vec<Vec<Value>> = (1..=2)
        .map(|n| {
            vec![
                request(1, "echo", json!({"session": n})),
                request(2, "notify", json!({"count": 1})),
            ]
        })
        .collect();
    // The client's side is recorded too: a connection with no child ends without an exit.
    let client_file = dir.join("client.jsonl");
    let clients: Vec<Output> = sessions
        .iter()
        .enumerate()
        .map(|(n, session)| match n {
            0 => run(
                &["connect", "--record", client_file.to_str().unwrap(), &url],
                session,
            ),
            _ => run(&["connect", &url], session),
        })
        .collect();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&bridge),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(finish(bridge).status.success());

    for (n, (session, client)) in sessions.iter().zip(&clients).enumerate() {
        let file = dir.join(format!("session-{}.jsonl", n + 1));
        let recorded = transcript(&file);
        assert_eq!(recorded[0]["dir"], "out", "{recorded:?}");
        assert_eq!(recorded[0]["frame"], session[0]);
        assert_eq!(
            recorded.last().unwrap()["end"],
            json!({"reason": null, "exit": {"code": 0, "signal": null}})
        );
        let replayed = run(
            &["run", "--", exe(), "replay", file.to_str().unwrap()],
            session,
        );
        let messages = |output: &Output| -> Vec<Value> {
            events(output)
                .into_iter()
                .filter(|e| e["event"] == "message")
                .collect()
        };
        assert_eq!(messages(client), messages(&replayed));
        assert_eq!(messages(client).len(), 3, "{:?}", events(client));
    }

    let recorded = transcript(&client_file);
    assert_eq!(recorded[0]["frame"], sessions[0][0]);
    let end = recorded.last().unwrap();
    assert_eq!(
        end["end"],
        json!({"reason": null, "exit": null}),
        "{recorded:?}"
    );
    let replayed = run(
        &["run", "--", exe(), "replay", client_file.to_str().unwrap()],
        &sessions[0],
    );
    let replayed: Vec<Value> = events(&replayed)
        .into_iter()
        .filter(|e| e["event"] != "exit")
        .collect();
    assert_eq!(events(&clients[0]), replayed);
}

/// The exit line's status fields alone (it also says why the child ended, and its stderr's
/// tail, which vary).
fn status_of(line: &Value) -> Value {
    json!({"event": line["event"], "code": line["code"], "signal": line["signal"]})
}
