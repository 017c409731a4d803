//! `adapters/cli/schema/events.schema.json` against what tether really prints: real `tether
//! run`, `tether connect` and `tether bridge` sessions, under both runtimes, make every kind of
//! line (each event, the summary, the bridge's `listening` line), and each line is validated
//! against the whole schema (it must match exactly one of its kinds).
//!
//! The validator is a small one of this file's own, for the keywords the schema uses (`type`,
//! `required`, `properties`, `additionalProperties`, `items`, `minItems`, `const`, `enum`,
//! `minimum`, `oneOf`, local `$ref`); it refuses a schema with any other keyword, so that none is silently ignored. The
//! `jsonschema` crate was not taken: its dependencies reach past the workspace's rust-version
//! on some targets. The same lines are then checked once more by a complete implementation,
//! Python's `jsonschema` (Draft 2020-12) from `.peers/venv`.

#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

mod support;

/// How long a tether run may take before the test kills it and fails.
const GUARD: Duration = Duration::from_secs(60);

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

const SCHEMA: &str = include_str!("../schema/events.schema.json");

/// Keywords that say something to a person and nothing to a validator.
const ANNOTATIONS: [&str; 5] = ["$schema", "$id", "title", "description", "$comment"];

/// Validates instances against a schema, within the keywords listed above.
struct Validator {
    root: Value,
}

impl Validator {
    fn new(root: Value) -> Self {
        Validator { root }
    }

    /// `Ok`, or what is wrong and where.
    fn validate(&self, instance: &Value) -> Result<(), String> {
        self.check(&self.root, instance, "$")
    }

    fn check(&self, schema: &Value, instance: &Value, at: &str) -> Result<(), String> {
        let schema = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(format!("{at}: nothing is allowed here")),
            Value::Object(schema) => schema,
            other => panic!("not a schema: {other}"),
        };
        for (keyword, value) in schema {
            match keyword.as_str() {
                "$ref" => {
                    let target = self.resolve(value.as_str().expect("$ref is a string"));
                    self.check(target, instance, at)?;
                }
                "type" => {
                    let types: Vec<&str> = match value {
                        Value::String(one) => vec![one.as_str()],
                        Value::Array(many) => many.iter().map(|t| t.as_str().unwrap()).collect(),
                        other => panic!("type: {other}"),
                    };
                    if !types.iter().any(|t| is_type(instance, t)) {
                        return Err(format!("{at}: {instance} is not of type {value}"));
                    }
                }
                "const" => {
                    if instance != value {
                        return Err(format!("{at}: {instance} is not {value}"));
                    }
                }
                "enum" => {
                    let allowed = value.as_array().expect("enum is an array");
                    if !allowed.contains(instance) {
                        return Err(format!("{at}: {instance} is not one of {value}"));
                    }
                }
                "minimum" => {
                    let minimum = value.as_f64().expect("minimum is a number");
                    if instance.as_f64().is_some_and(|n| n < minimum) {
                        return Err(format!("{at}: {instance} is under {minimum}"));
                    }
                }
                "items" => {
                    if let Some(items) = instance.as_array() {
                        for (n, item) in items.iter().enumerate() {
                            self.check(value, item, &format!("{at}[{n}]"))?;
                        }
                    }
                }
                "minItems" => {
                    let least = value.as_u64().expect("minItems is a count") as usize;
                    if instance.as_array().is_some_and(|a| a.len() < least) {
                        return Err(format!("{at}: fewer than {least} items"));
                    }
                }
                "required" => {
                    if let Some(object) = instance.as_object() {
                        for name in value.as_array().expect("required is an array") {
                            let name = name.as_str().unwrap();
                            if !object.contains_key(name) {
                                return Err(format!("{at}: no {name:?}"));
                            }
                        }
                    }
                }
                "properties" => {
                    if let Some(object) = instance.as_object() {
                        let properties = value.as_object().expect("properties is an object");
                        for (name, property) in properties {
                            if let Some(field) = object.get(name) {
                                self.check(property, field, &format!("{at}.{name}"))?;
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(object) = instance.as_object() {
                        let declared = schema.get("properties").and_then(Value::as_object);
                        for (name, field) in object {
                            if !declared.is_some_and(|d| d.contains_key(name)) {
                                self.check(value, field, &format!("{at}.{name}"))?;
                            }
                        }
                    }
                }
                "oneOf" => {
                    let branches = value.as_array().expect("oneOf is an array");
                    let results: Vec<Result<(), String>> = branches
                        .iter()
                        .map(|branch| self.check(branch, instance, at))
                        .collect();
                    let matched = results.iter().filter(|r| r.is_ok()).count();
                    if matched != 1 {
                        let why: Vec<String> =
                            results.into_iter().filter_map(Result::err).collect();
                        return Err(format!(
                            "{at}: matches {matched} of the kinds, not one: {why:?}"
                        ));
                    }
                }
                "$defs" => {}
                annotation if ANNOTATIONS.contains(&annotation) => {}
                unknown => panic!("the schema uses {unknown:?}, which this validator lacks"),
            }
        }
        Ok(())
    }

    /// A local reference, `#/$defs/NAME`.
    fn resolve(&self, reference: &str) -> &Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references: {reference}"));
        self.root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} leads nowhere"))
    }
}

fn is_type(instance: &Value, name: &str) -> bool {
    match name {
        "object" => instance.is_object(),
        "array" => instance.is_array(),
        "string" => instance.is_string(),
        "integer" => instance.is_i64() || instance.is_u64(),
        "number" => instance.is_number(),
        "boolean" => instance.is_boolean(),
        "null" => instance.is_null(),
        other => panic!("unknown type {other:?}"),
    }
}

fn validator() -> Validator {
    Validator::new(serde_json::from_str(SCHEMA).expect("the schema is JSON"))
}

/// The kind of a line: its `event`, or `summary` for the line of counts.
fn kind(line: &Value) -> String {
    line["event"].as_str().unwrap_or("summary").to_owned()
}

fn tether() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command.env("RUST_LOG", "off");
    command
}

/// `tether ARGS` with `input` on its standard input; its standard output, line by line.
fn session(args: &[&str], input: &str) -> Vec<String> {
    let mut child = tether()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = support::wait_output(child, GUARD);
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A TCP server for one connection that waits for the first bytes and then closes without
/// reading them: the unread bytes make the close a reset, and the connection ends in error.
fn resetting_server() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut first = [0; 1];
        stream.peek(&mut first).unwrap();
        drop(stream);
    });
    (addr, server)
}

/// The first line of a bridge, then the bridge stopped.
fn listening(runtime: &str, extra: &[&str]) -> String {
    let mut child = tether()
        .args(["bridge", "--runtime", runtime])
        .args(extra)
        .args(["--", "true"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let mut rest = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rest, "", "the listening line is the bridge's only one");
    line.trim_end().to_owned()
}

/// A child that fails at once, under `--restart on-failure --max-restarts 1`, with standard
/// input left open: a `restart`, then the crash loop ends the session by itself.
fn restarted(runtime: &str) -> Vec<String> {
    let mut child = tether()
        .args(["run", "--runtime", runtime, "--restart", "on-failure"])
        .args(["--backoff", "10", "--max-restarts", "1"])
        .args(["--", "sh", "-c", "echo oops >&2; exit 3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let output = support::wait_output(child, GUARD);
    drop(stdin);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Lines of every kind from real sessions under `runtime`.
fn lines_of_every_kind(runtime: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let rt = ["--runtime", runtime];
    // message (a notification, a response, a batch the peer writes raw), malformed,
    // invalid_input, disconnected (clean), exit (by its code).
    let input = r#"{"jsonrpc":"2.0","id":1,"method":"notify","params":{"count":1}}
{"jsonrpc":"2.0","id":2,"method":"write","params":{"text":"[{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":9}]\n"}}
{"jsonrpc":"2.0","id":3,"method":"write","params":{"text":"oops\n"}}
not json
{"jsonrpc":"2.0","id":4,"method":"exit","params":{"code":3}}
"#;
    lines.extend(session(&["run", rt[0], rt[1]], input));
    // exit by a signal: the child ignores SIGTERM and outlives its input, so the ladder kills
    // it.
    lines.extend(session(
        &["run", rt[0], rt[1], "--grace", "100"],
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ignore_term\",\"params\":{\"stay\":true}}\n",
    ));
    // A restart, then a crash loop: a child that fails at once, restarted once.
    lines.extend(restarted(runtime));
    // The summary of a child's session.
    lines.extend(session(
        &["run", rt[0], rt[1], "--output", "summary"],
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}\nnot json\n",
    ));
    // disconnected with a reason, and the summary of a connection without a child.
    for output in ["events", "summary"] {
        let (addr, server) = resetting_server();
        let url = format!("tcp://{addr}");
        lines.extend(session(
            &["connect", rt[0], rt[1], "--output", output, &url],
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\"}\n",
        ));
        server.join().unwrap();
    }
    // The bridge's first line, with the token in its URL and without.
    lines.push(listening(runtime, &[]));
    lines.push(listening(runtime, &["--auth", "none"]));
    lines
}

#[test]
fn every_line_tether_prints_fits_the_schema() {
    let validator = validator();
    let mut all = Vec::new();
    for runtime in RUNTIMES {
        let lines = lines_of_every_kind(runtime);
        let mut kinds = BTreeSet::new();
        let mut reasons = BTreeSet::new();
        let mut exits = BTreeSet::new();
        for line in &lines {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{runtime}: {line}: {e}"));
            if let Err(why) = validator.validate(&value) {
                panic!("{runtime}: {line}\ndoes not fit the schema: {why}");
            }
            kinds.insert(kind(&value));
            if value["message"].is_array() {
                kinds.insert("message (a batch)".to_owned());
            }
            if value["event"] == "disconnected" {
                reasons.insert(value["reason"].is_null());
            }
            if value["event"] == "exit" {
                exits.insert((value["code"].is_null(), value["signal"].is_null()));
            }
            if kind(&value) == "summary" {
                exits.insert((value["exit"].is_null(), value["disconnected"].is_null()));
            }
            all.push(value);
        }
        let every: BTreeSet<String> = [
            "message",
            "message (a batch)",
            "malformed",
            "invalid_input",
            "disconnected",
            "exit",
            "restart",
            "summary",
            "listening",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(kinds, every, "{runtime}: {lines:#?}");
        // Both a clean end and one with a reason; an exit by its code and one by a signal.
        assert_eq!(
            reasons,
            BTreeSet::from([true, false]),
            "{runtime}: {lines:#?}"
        );
        assert!(
            exits.contains(&(false, true)),
            "{runtime}: exit code: {lines:#?}"
        );
        assert!(
            exits.contains(&(true, false)),
            "{runtime}: a signal: {lines:#?}"
        );
    }
    cross_check(&all);
}

/// The same lines through Python's `jsonschema`, a complete implementation of the draft the
/// schema names: the schema itself is valid, and so is every line.
fn cross_check(lines: &[Value]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".peers/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-peers (scripts/test does)",
        python.display()
    );
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/events.schema.json");
    let program = "import json, sys\n\
                   from jsonschema import Draft202012Validator as V\n\
                   schema = json.load(open(sys.argv[1]))\n\
                   V.check_schema(schema)\n\
                   v = V(schema)\n\
                   bad = [(l, e.message) for l in map(json.loads, sys.stdin) for e in v.iter_errors(l)]\n\
                   print(json.dumps(bad))\n";
    let mut child = Command::new(python)
        .arg("-c")
        .arg(program)
        .arg(schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let output = support::wait_output(child, GUARD);
    assert!(output.status.success(), "{output:?}");
    let bad: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(bad, json!([]), "Python's jsonschema disagrees");
}

/// The schema is not a sieve: lines that tether never prints do not fit it, and an `exit` line
/// with fields to come does.
#[test]
fn the_schema_refuses_what_tether_never_prints() {
    let validator = validator();
    for line in [
        json!({"event": "message"}),
        json!({"event": "message", "message": "text"}),
        json!({"event": "message", "message": {}, "extra": 1}),
        json!({"event": "malformed", "reason": null}),
        json!({"event": "invalid_input"}),
        json!({"event": "disconnected", "reason": 3}),
        json!({"event": "exit", "code": "0", "signal": null}),
        json!({"event": "exit", "code": 0}),
        json!({"event": "exit", "code": null, "signal": 0}),
        json!({"event": "listening", "addr": "127.0.0.1:1", "url": "ws://127.0.0.1:1/"}),
        json!({"event": "hello"}),
        json!({"messages": 1, "malformed": 0, "disconnected": null, "exit": null}),
        json!({"messages": -1, "malformed": 0, "disconnected": null, "exit": null, "invalid_input": 0}),
        json!({"messages": 1, "malformed": 0, "disconnected": null, "exit": {"code": 0}, "invalid_input": 0}),
        json!([]),
        json!({"event": "exit", "code": null, "signal": 9, "survivors": []}),
        json!({"event": "exit", "code": null, "signal": 9, "survivors": [0]}),
        json!({"event": "exit", "code": null, "signal": 9, "survivors": ["12"]}),
        json!({"event": "exit", "code": null, "signal": 9, "cause": "killed", "stderr_tail": null}),
        json!({"event": "exit", "code": null, "signal": 9, "cause": "failed", "stderr_tail": ["x"]}),
        json!({"event": "restart", "attempt": 0, "delay_ms": 10, "exit": {"code": 1, "signal": null, "cause": "failed", "stderr_tail": null}}),
        json!({"event": "restart", "attempt": 1, "delay_ms": 10, "exit": {"code": 1, "signal": null}}),
        json!({"event": "restart", "attempt": 1, "delay_ms": 10}),
        json!({"messages": 0, "malformed": 0, "disconnected": null, "exit": null, "invalid_input": 0, "survivors": 3}),
        json!({"messages": 0, "malformed": 0, "disconnected": null, "exit": null, "invalid_input": 0, "other": 3}),
    ] {
        assert!(validator.validate(&line).is_err(), "{line} fits");
    }
    // Fields that are coming: the pids that outlived the kill, and whatever else an `exit`
    // line gains.
    let coming = [
        json!({"event": "exit", "code": null, "signal": 9, "survivors": [4242, 4243]}),
        json!({"messages": 1, "malformed": 0, "disconnected": null, "exit": {"code": 0, "signal": null}, "invalid_input": 0, "survivors": [4242]}),
        json!({"event": "exit", "code": null, "signal": 9, "cause": "oom", "stderr_tail": "x", "survivors": [7], "later": 1}),
        json!({"messages": 0, "malformed": 0, "disconnected": "read failed: x", "exit": {"code": 1, "signal": null, "cause": "exited"}, "invalid_input": 2}),
    ];
    for line in &coming {
        if let Err(why) = validator.validate(line) {
            panic!("{line} does not fit: {why}");
        }
    }
    cross_check(&coming);
}
