//! The `tether` command driving language servers nobody here wrote over Content-Length
//! framing, under both runtimes: python-lsp-server (`pylsp`, from PyPI, in `.peers/venv`) and
//! pyright (from npm, in `.peers/node_modules`), installed by `scripts/install-peers`. The
//! user types JSON-RPC lines; tether frames them with Content-Length headers and prints each
//! answer as an event line.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

/// How long any one event may take before the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(60);

/// The event lines tether prints, read on a thread of their own so each wait is bounded.
struct Events(mpsc::Receiver<Value>);

impl Events {
    fn next(&self) -> Value {
        self.0
            .recv_timeout(GUARD)
            .expect("tether printed no event in time")
    }

    /// Events until the response to `id`; the server's own requests are answered with null
    /// on `stdin`. Returns the response's result.
    fn answer(&self, stdin: &mut ChildStdin, id: u64) -> Value {
        loop {
            let event = self.next();
            assert_eq!(event["event"], "message", "{event}");
            let message = &event["message"];
            if message["id"] == id && message.get("method").is_none() {
                assert!(message.get("error").is_none(), "{event}");
                return message["result"].clone();
            }
            if message.get("method").is_some() && message.get("id").is_some() {
                let reply = json!({"jsonrpc": "2.0", "id": message["id"], "result": null});
                send(stdin, &reply);
            }
        }
    }
}

/// `tether run EXTRA -- SERVER SERVER_ARGS`, its stdin, and its event lines.
fn start(
    runtime: &str,
    extra: &[&str],
    server: &Path,
    server_args: &[&str],
) -> (Child, ChildStdin, Events) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .env("RUST_LOG", "warn")
        .args(["run", "--runtime", runtime])
        .args(extra)
        .arg("--")
        .arg(server)
        .args(server_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let line = line.unwrap();
            let event = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    (child, stdin, Events(rx))
}

fn send(stdin: &mut ChildStdin, message: &Value) {
    writeln!(stdin, "{message}").unwrap();
}

#[test]
fn run_drives_pylsp_through_a_session_and_its_goodbye() {
    let pylsp = peer("venv/bin/pylsp");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-lsp");
    std::fs::create_dir_all(&dir).unwrap();
    let root = format!("file://{}", dir.display());
    let uri = format!("{root}/greet.py");
    let text = "def greet(name):\n    \"\"\"Say hello to someone.\"\"\"\n    return \"hello \" + name\n\n\ngreet(\"tether\")\n";

    for runtime in RUNTIMES {
        let (mut child, mut stdin, events) =
            start(runtime, &["--framing", "content-length"], &pylsp, &[]);

        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "processId": std::process::id(), "rootUri": root, "capabilities": {},
        }});
        send(&mut stdin, &initialize);
        let init = events.answer(&mut stdin, 1);
        assert!(
            !init["capabilities"]["hoverProvider"].is_null(),
            "{runtime}: {init}"
        );
        send(
            &mut stdin,
            &json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        );
        let document = json!({"uri": uri, "languageId": "python", "version": 1, "text": text});
        send(
            &mut stdin,
            &json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": document}}),
        );
        let hover = json!({"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover", "params": {
            "textDocument": {"uri": uri}, "position": {"line": 5, "character": 1},
        }});
        send(&mut stdin, &hover);
        let contents = events.answer(&mut stdin, 2)["contents"].to_string();
        assert!(contents.contains("greet"), "{runtime}: {contents}");
        assert!(
            contents.contains("Say hello to someone."),
            "{runtime}: {contents}"
        );

        // The LSP goodbye, typed by the user: shutdown, its answer, exit.
        send(
            &mut stdin,
            &json!({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}),
        );
        assert_eq!(events.answer(&mut stdin, 3), Value::Null, "{runtime}");
        send(&mut stdin, &json!({"jsonrpc": "2.0", "method": "exit"}));
        // The server exits by itself, with stdin still open: the session ends with its status.
        let mut event = events.next();
        while event["event"] == "message" {
            assert!(event["message"].get("id").is_none(), "{runtime}: {event}");
            event = events.next();
        }
        assert_eq!(
            event,
            json!({"event": "disconnected", "reason": null}),
            "{runtime}"
        );
        assert_eq!(
            status_of(&events.next()),
            json!({"event": "exit", "code": 0, "signal": null}),
            "{runtime}"
        );
        let status = child.wait().unwrap();
        drop(stdin);
        assert!(status.success(), "{runtime}: {status}");
    }
}

/// The path of a peer that `scripts/install-peers` puts into `.peers/`, checked to be there.
fn peer(path: &str) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.peers")
        .join(path);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-peers (scripts/test does)",
        path.display()
    );
    path
}

/// `--goodbye lsp` alone, no `--framing`: the goodbye brings its framing (Content-Length), as
/// the README's example runs it. The user only closes standard input; tether says the LSP
/// goodbye itself (`shutdown`, its answer printed like any other message, then `exit`) before
/// any signal, and the server exits by itself with status 0. Against pylsp and pyright.
#[test]
fn run_says_the_lsp_goodbye_itself() {
    let servers = [
        (peer("venv/bin/pylsp"), &[][..]),
        (
            peer("node_modules/.bin/pyright-langserver"),
            &["--stdio"][..],
        ),
    ];
    for (server, server_args) in &servers {
        for runtime in RUNTIMES {
            let what = format!("{runtime} {}", server.display());
            let (mut child, mut stdin, events) =
                start(runtime, &["--goodbye", "lsp"], server, server_args);
            let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "processId": std::process::id(), "rootUri": null, "capabilities": {},
            }});
            send(&mut stdin, &initialize);
            let init = events.answer(&mut stdin, 1);
            assert!(init["capabilities"].is_object(), "{what}: {init}");
            send(
                &mut stdin,
                &json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
            );
            drop(stdin);
            // Every line is a message: no Content-Length header came back as `malformed`.
            let mut event = events.next();
            while event["event"] == "message" && event["message"]["id"] != "tether:goodbye" {
                event = events.next();
            }
            assert_eq!(
                event,
                json!({"event": "message", "message": {"jsonrpc": "2.0", "id": "tether:goodbye", "result": null}}),
                "{what}"
            );
            let mut event = events.next();
            while event["event"] == "message" {
                assert!(event["message"].get("id").is_none(), "{what}: {event}");
                event = events.next();
            }
            assert_eq!(
                event,
                json!({"event": "disconnected", "reason": null}),
                "{what}"
            );
            // Exit code 0: the server left by itself after `exit`, before any signal.
            assert_eq!(
                status_of(&events.next()),
                json!({"event": "exit", "code": 0, "signal": null}),
                "{what}"
            );
            assert!(child.wait().unwrap().success(), "{what}");
        }
    }
}

/// An explicit `--framing` wins over the goodbye's: the built-in peer speaks lines, and with
/// `--framing lines --goodbye lsp` its answers are messages, and the goodbye's `shutdown`
/// reaches it as a line (it answers that it has no such method).
#[test]
fn an_explicit_framing_wins_over_the_goodbye() {
    for runtime in RUNTIMES {
        let (mut child, mut stdin, events) = start(
            runtime,
            &["--framing", "lines", "--goodbye", "lsp"],
            Path::new(env!("CARGO_BIN_EXE_tether")),
            &["peer"],
        );
        send(
            &mut stdin,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [1]}),
        );
        assert_eq!(events.answer(&mut stdin, 1), json!([1]), "{runtime}");
        drop(stdin);
        let goodbye = events.next();
        assert_eq!(
            goodbye["message"]["id"], "tether:goodbye",
            "{runtime}: {goodbye}"
        );
        assert_eq!(
            goodbye["message"]["error"]["code"], -32601,
            "{runtime}: {goodbye}"
        );
        assert_eq!(
            events.next(),
            json!({"event": "disconnected", "reason": null}),
            "{runtime}"
        );
        assert_eq!(
            status_of(&events.next()),
            json!({"event": "exit", "code": 0, "signal": null}),
            "{runtime}"
        );
        assert!(child.wait().unwrap().success(), "{runtime}");
    }
}

/// The exit line's status fields alone (it also says why the child ended, and its stderr's
/// tail, which vary).
fn status_of(line: &Value) -> Value {
    json!({"event": line["event"], "code": line["code"], "signal": line["signal"]})
}
