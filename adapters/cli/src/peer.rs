//! `tether peer`: a small JSON-RPC server on its own stdin and stdout, for demos and tests.
//!
//! It is deliberately plain blocking code with no tether connection of its own, so that it
//! tests tether from the outside rather than agreeing with it by construction. Its methods
//! make it misbehave on request: flood, fork grandchildren, ignore `SIGTERM`, close its
//! stdout, write raw bytes, exit.

use std::io::{self, BufRead, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tether_core::{
    decode, ErrorObject, Id, Malformed, MalformedKind, Message, Notification, Request, Response,
};

/// A method the built-in peer answers, as `tether help peer` lists it.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    /// The method's name.
    pub name: &'static str,
    /// Its parameters, with their defaults.
    pub params: &'static str,
    /// What it does, and what it answers.
    pub does: &'static str,
}

/// Every method the peer answers. The peer answers no other (a method missing here gets
/// "method not found" even if it is handled), so that this list, and the help made from it,
/// cannot fall behind.
pub const METHODS: &[Method] = &[
    Method {
        name: "echo",
        params: "any",
        does: "answers with its params",
    },
    Method {
        name: "notify",
        params: r#"{"count":1,"size":0}"#,
        does: r#"sends `count` notifications `tick` {"n":N,"pad":"x" repeated `size` times}, then answers {"sent":count}"#,
    },
    Method {
        name: "spawn",
        params: r#"{"count":1,"ignore_term":false,"detach":false,"hold_stdout":false}"#,
        does: "starts `count` grandchildren that sleep for good (with `ignore_term`, ignoring \
               SIGTERM; `detach`, double-forked, so no longer its children; `hold_stdout`, \
               keeping its stdout open) and answers {\"pids\":[…]}",
    },
    Method {
        name: "ignore_term",
        params: r#"{"stay":false}"#,
        does:
            "ignores SIGTERM from then on (with `stay`, also outlives its stdin) and answers true",
    },
    Method {
        name: "exit",
        params: r#"{"code":0}"#,
        does: "exits at once with `code`, answering nothing",
    },
    Method {
        name: "close_stdout",
        params: "none",
        does: "closes its stdout and goes on reading, answering nothing",
    },
    Method {
        name: "stderr",
        params: r#"{"text":""}"#,
        does: "writes `text` and a newline on its stderr and answers true",
    },
    Method {
        name: "write",
        params: r#"{"text":"","repeat":1,"bytes":[]}"#,
        does: "writes `text` `repeat` times, then the raw `bytes` (0-255), on its stdout, \
               answering nothing",
    },
    Method {
        name: "env",
        params: r#"{"name":""}"#,
        does: "answers the environment variable's value, or null",
    },
    Method {
        name: "sleep",
        params: r#"{"ms":0}"#,
        does: "sleeps `ms` (reading nothing meanwhile) and answers {\"slept\":ms}",
    },
];

/// The methods for `tether help peer`, one paragraph each.
pub fn methods_help() -> String {
    let mut help = String::from(
        "Methods (requests, one JSON text per line; a parameter left out takes the default \
         shown):\n",
    );
    for method in METHODS {
        help.push_str(&format!(
            "\n  {}  params: {}\n      {}\n",
            method.name, method.params, method.does
        ));
    }
    help.push_str(
        "\nAny other method gets the error -32601 (method not found); a line that is not \
         JSON-RPC gets -32700 or -32600 with id null; notifications and responses are read and \
         ignored; a batch gets one answer per request in it. The peer exits 0 when its stdin \
         ends.\n",
    );
    help
}

/// The peer's state: its output, and the grandchildren started by `spawn` (kept so that they
/// are not waited for).
struct Peer {
    out: io::BufWriter<io::Stdout>,
    children: Vec<Child>,
    /// Set by `ignore_term {"stay": true}`: keep running after stdin ends.
    stay: bool,
}

/// Serves requests from stdin until it ends; returns the exit code (0).
pub fn run() -> i32 {
    let mut peer = Peer {
        out: io::BufWriter::new(io::stdout()),
        children: Vec::new(),
        stay: false,
    };
    let stdin = io::stdin();
    for line in stdin.lock().split(b'\n') {
        let Ok(line) = line else { break };
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let replies = match decode::<Message>(line) {
            Err(malformed) => vec![Response::error(Id::Null, parse_error(&malformed))],
            Ok(Message::Request(request)) => peer.handle(request).into_iter().collect(),
            Ok(Message::Batch(items)) => items
                .into_iter()
                .filter_map(|item| match item {
                    Message::Request(request) => peer.handle(request),
                    _ => None,
                })
                .collect(),
            Ok(_) => Vec::new(),
        };
        for reply in replies {
            peer.write(&Message::Response(reply));
        }
        let _ = peer.out.flush();
    }
    if peer.stay {
        // Asked to outlive its input: wait to be killed.
        loop {
            std::thread::park();
        }
    }
    0
}

fn parse_error(malformed: &Malformed) -> ErrorObject {
    match malformed.kind {
        MalformedKind::NotJsonRpc { .. } => {
            ErrorObject::new(ErrorObject::INVALID_REQUEST, malformed.kind.to_string())
        }
        _ => ErrorObject::new(ErrorObject::PARSE_ERROR, malformed.kind.to_string()),
    }
}

impl Peer {
    fn write(&mut self, message: &Message) {
        // A closed stdout is one of the peer's own tricks; keep serving regardless.
        let _ = serde_json::to_writer(&mut self.out, message);
        let _ = self.out.write_all(b"\n");
    }

    /// Answers one request; `None` for the methods that answer nothing.
    fn handle(&mut self, request: Request) -> Option<Response> {
        let params = request.params.unwrap_or(Value::Null);
        let id = request.id;
        let listed = METHODS.iter().any(|m| m.name == request.method);
        let result = match request.method.as_str() {
            _ if !listed => Err(method_not_found(&request.method)),
            "echo" => Ok(params),
            "notify" => {
                let count = params["count"].as_u64().unwrap_or(1);
                let pad = "x".repeat(params["size"].as_u64().unwrap_or(0) as usize);
                for n in 0..count {
                    let tick = Notification::new("tick", Some(json!({"n": n, "pad": pad})));
                    self.write(&tick.into());
                }
                Ok(json!({ "sent": count }))
            }
            "spawn" => self.spawn(&params).map(|pids| json!({ "pids": pids })),
            "ignore_term" => {
                self.stay = params["stay"].as_bool().unwrap_or(false);
                // A handler that only sets a flag makes SIGTERM harmless to this process.
                let flag = Arc::new(AtomicBool::new(false));
                signal_hook::flag::register(signal_hook::consts::SIGTERM, flag)
                    .map(|_| json!(true))
                    .map_err(|e| ErrorObject::new(ErrorObject::INTERNAL_ERROR, e.to_string()))
            }
            "exit" => {
                let _ = self.out.flush();
                std::process::exit(params["code"].as_i64().unwrap_or(0) as i32);
            }
            "close_stdout" => {
                let _ = self.out.flush();
                close_stdout();
                return None;
            }
            "stderr" => {
                let text = params["text"].as_str().unwrap_or_default();
                let _ = writeln!(io::stderr(), "{text}");
                Ok(json!(true))
            }
            "write" => {
                // Raw output: `text` repeated `repeat` times, then `bytes` (numbers 0-255).
                let text = params["text"].as_str().unwrap_or_default();
                for _ in 0..params["repeat"].as_u64().unwrap_or(1) {
                    let _ = self.out.write_all(text.as_bytes());
                }
                let bytes: Vec<u8> = params["bytes"]
                    .as_array()
                    .map(|b| {
                        b.iter()
                            .filter_map(|v| v.as_u64())
                            .map(|v| v as u8)
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = self.out.write_all(&bytes);
                let _ = self.out.flush();
                return None;
            }
            "env" => {
                // The value of the environment variable `name`, or null.
                let name = params["name"].as_str().unwrap_or_default();
                Ok(std::env::var(name).map_or(Value::Null, Value::from))
            }
            "sleep" => {
                let ms = params["ms"].as_u64().unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                Ok(json!({ "slept": ms }))
            }
            _ => Err(method_not_found(&request.method)),
        };
        Some(Response { id, result })
    }

    /// Starts `count` grandchildren that sleep "forever", in this process's group.
    /// `ignore_term`: they ignore `SIGTERM`. `detach`: each is double-forked, so its parent
    /// is no longer this peer. `hold_stdout`: each keeps this peer's stdout open.
    fn spawn(&mut self, params: &Value) -> Result<Vec<u32>, ErrorObject> {
        let count = params["count"].as_u64().unwrap_or(1);
        let ignore_term = params["ignore_term"].as_bool().unwrap_or(false);
        let detach = params["detach"].as_bool().unwrap_or(false);
        let hold_stdout = params["hold_stdout"].as_bool().unwrap_or(false);
        let trap = if ignore_term { "trap '' TERM; " } else { "" };
        let internal = |e: io::Error| ErrorObject::new(ErrorObject::INTERNAL_ERROR, e.to_string());
        let mut pids = Vec::new();
        for _ in 0..count {
            let mut command = Command::new("sh");
            command.stdin(Stdio::null()).stderr(Stdio::null());
            if detach {
                let script = format!("{trap}sleep 100000 >/dev/null 2>&1 & echo $!");
                let output = command
                    .arg("-c")
                    .arg(script)
                    .stdout(Stdio::piped())
                    .output()
                    .map_err(internal)?;
                let pid = String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .parse()
                    .map_err(|_| {
                        ErrorObject::new(ErrorObject::INTERNAL_ERROR, "no pid from the shell")
                    })?;
                pids.push(pid);
            } else {
                let stdout = if hold_stdout {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                };
                let child = command
                    .arg("-c")
                    .arg(format!("{trap}exec sleep 100000"))
                    .stdout(stdout)
                    .spawn()
                    .map_err(internal)?;
                pids.push(child.id());
                self.children.push(child);
            }
        }
        Ok(pids)
    }
}

fn method_not_found(method: &str) -> ErrorObject {
    ErrorObject::new(
        ErrorObject::METHOD_NOT_FOUND,
        format!("method not found: {method}"),
    )
}

/// Replaces stdout with `/dev/null`, so the pipe's write end closes (the reader sees the end of
/// the stream) while fd 1 stays taken.
pub(crate) fn close_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}
