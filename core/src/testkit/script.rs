//! What a scripted peer does, step by step, and how it tells a frame it expected from one it
//! did not.

use std::fmt;

use serde_json::{json, Map, Value};

use crate::transcript::{self, Direction, Entry, TranscriptError};
use crate::{ErrorObject, ExitStatus};

/// How an expected frame is compared with the one the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// The same kind of message (request, notification, response, batch, raw text), and for
    /// requests and notifications the same method.
    Method,
    /// The same frame, member for member, except the ids of requests (the live client numbers
    /// them as it likes; the peer's answers follow).
    Exact,
}

/// A frame the peer waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// The frame as expected (a transcript's frame value; for a request written by hand, its
    /// id is `null`).
    pub frame: Value,
    /// How it is compared.
    pub matching: Matching,
}

/// One step of a [`Script`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Wait for the client to send this.
    Expect(Expect),
    /// Send this frame to the client (a transcript's frame value). The id of a response to a
    /// request expected earlier becomes the id the live client gave that request.
    Send(Value),
    /// Answer the request matched last.
    Reply(Result<Value, ErrorObject>),
    /// Wait for the client to close its side (the peer's stdin ends).
    AwaitClose,
    /// Close the peer's output (the client reads the end of the stream).
    Close,
    /// Exit with this status (which closes the peer's output too).
    Exit(ExitStatus),
    /// Stay until killed by this signal: a peer that ignores `SIGTERM` (9), or that lets the
    /// first signal end it (15).
    Killed(i32),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Expect(expect) => match expect.matching {
                Matching::Method => write!(f, "{} {}", kind(&expect.frame), brief(&expect.frame)),
                Matching::Exact => write!(f, "{}", expect.frame),
            },
            Step::Send(frame) => write!(f, "to send {frame}"),
            Step::Reply(_) => f.write_str("to reply"),
            Step::AwaitClose => f.write_str("the client to close its side"),
            Step::Close => f.write_str("to close its output"),
            Step::Exit(status) => write!(f, "to exit ({status})"),
            Step::Killed(signal) => write!(f, "to be killed by signal {signal}"),
        }
    }
}

/// What a scripted peer does, in order. Build one by hand, or read one from a recorded
/// transcript with [`Script::from_transcript`].
///
/// ```
/// use serde_json::json;
/// use tether_core::testkit::Script;
///
/// let script = Script::new()
///     .expect_request("initialize")
///     .reply(json!({"protocolVersion": "2025-06-18"}))
///     .expect_notification("notifications/initialized")
///     .send_notification("notifications/message", Some(json!({"level": "info"})))
///     .await_close()
///     .exit(0);
/// assert_eq!(script.steps().len(), 6);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    steps: Vec<Step>,
}

impl Script {
    /// An empty script: a peer that does nothing.
    pub fn new() -> Self {
        Script::default()
    }

    /// Appends a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Waits for a request for `method`, whatever its params.
    pub fn expect_request(self, method: &str) -> Self {
        self.step(Step::Expect(Expect {
            frame: json!({"jsonrpc": "2.0", "id": null, "method": method}),
            matching: Matching::Method,
        }))
    }

    /// Waits for a request for `method` with exactly these params.
    pub fn expect_request_with(self, method: &str, params: Value) -> Self {
        self.step(Step::Expect(Expect {
            frame: json!({"jsonrpc": "2.0", "id": null, "method": method, "params": params}),
            matching: Matching::Exact,
        }))
    }

    /// Waits for a notification for `method`, whatever its params.
    pub fn expect_notification(self, method: &str) -> Self {
        self.step(Step::Expect(Expect {
            frame: json!({"jsonrpc": "2.0", "method": method}),
            matching: Matching::Method,
        }))
    }

    /// Waits for exactly this frame (request ids aside).
    pub fn expect(self, frame: Value) -> Self {
        self.step(Step::Expect(Expect {
            frame,
            matching: Matching::Exact,
        }))
    }

    /// Answers the request matched last with `result`.
    pub fn reply(self, result: Value) -> Self {
        self.step(Step::Reply(Ok(result)))
    }

    /// Answers the request matched last with an error.
    pub fn reply_error(self, code: i64, message: &str) -> Self {
        self.step(Step::Reply(Err(ErrorObject::new(code, message))))
    }

    /// Sends a notification.
    pub fn send_notification(self, method: &str, params: Option<Value>) -> Self {
        let mut frame = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            frame["params"] = params;
        }
        self.step(Step::Send(frame))
    }

    /// Sends any frame.
    pub fn send(self, frame: Value) -> Self {
        self.step(Step::Send(frame))
    }

    /// Waits for the client to close its side.
    pub fn await_close(self) -> Self {
        self.step(Step::AwaitClose)
    }

    /// Closes the peer's output.
    pub fn close(self) -> Self {
        self.step(Step::Close)
    }

    /// Exits with `code`.
    pub fn exit(self, code: i32) -> Self {
        self.step(Step::Exit(ExitStatus {
            code: Some(code),
            signal: None,
        }))
    }

    /// Stays until killed by `signal`.
    pub fn killed(self, signal: i32) -> Self {
        self.step(Step::Killed(signal))
    }

    /// The peer's side of a recorded session: each frame this side sent becomes an
    /// [`Expect`], each frame the peer sent a [`Step::Send`], a `close` line a
    /// [`Step::AwaitClose`], and the end an [`Step::Exit`] (a child that exited), a
    /// [`Step::Killed`] (a child ended by a signal) or a [`Step::Close`] (no child).
    pub fn from_transcript(text: &str, matching: Matching) -> Result<Self, TranscriptError> {
        Ok(Script::from_entries(&transcript::parse(text)?, matching))
    }

    /// [`from_transcript`](Self::from_transcript) for lines already read.
    pub fn from_entries(entries: &[Entry], matching: Matching) -> Self {
        let steps = entries.iter().map(|entry| match entry {
            Entry::Frame {
                dir: Direction::Out,
                frame,
                ..
            } => Step::Expect(Expect {
                frame: frame.clone(),
                matching,
            }),
            Entry::Frame {
                dir: Direction::In,
                frame,
                ..
            } => Step::Send(frame.clone()),
            Entry::Close { .. } => Step::AwaitClose,
            Entry::End { end, .. } => match end.exit {
                Some(exit) => match (exit.code, exit.signal) {
                    (None, Some(signal)) => Step::Killed(signal),
                    _ => Step::Exit(exit.into()),
                },
                None => Step::Close,
            },
        });
        Script {
            steps: steps.collect(),
        }
    }
}

/// The client did something the script did not say it would: what the peer expected and
/// what it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The step the peer was at (1-based).
    pub step: usize,
    /// What it expected.
    pub expected: String,
    /// What it received.
    pub received: String,
    /// Where the two differ, one line per member (`params.name: expected "a", received "b"`).
    pub differences: Vec<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "step {} of the script:", self.step)?;
        writeln!(f, "  expected: {}", self.expected)?;
        write!(f, "  received: {}", self.received)?;
        for difference in &self.differences {
            write!(f, "\n    {difference}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Mismatch {}

/// The kinds of frame [`Matching::Method`] tells apart.
fn kind(frame: &Value) -> &'static str {
    if transcript::raw_bytes(frame).is_some() {
        return "raw text";
    }
    match frame {
        Value::Array(_) => "a batch",
        Value::Object(o) if o.contains_key("method") && o.contains_key("id") => "a request",
        Value::Object(o) if o.contains_key("method") => "a notification",
        Value::Object(o) if o.contains_key("result") || o.contains_key("error") => "a response",
        _ => "JSON that is not JSON-RPC",
    }
}

/// The method, quoted, if there is one.
fn brief(frame: &Value) -> String {
    match frame.get("method") {
        Some(method) => format!("for {method}"),
        None => String::new(),
    }
}

/// Whether `received` is what `expect` waits for; if not, where they differ.
pub(crate) fn compare(expect: &Expect, received: &Value) -> Result<(), Vec<String>> {
    match expect.matching {
        Matching::Method => compare_method(&expect.frame, received, ""),
        Matching::Exact => {
            let mut differences = Vec::new();
            diff(
                &without_request_ids(&expect.frame),
                &without_request_ids(received),
                "",
                &mut differences,
            );
            match differences.is_empty() {
                true => Ok(()),
                false => Err(differences),
            }
        }
    }
}

fn compare_method(expected: &Value, received: &Value, at: &str) -> Result<(), Vec<String>> {
    let (want, got) = (kind(expected), kind(received));
    if want != got {
        return Err(vec![format!(
            "{}expected {want}, received {got}",
            prefix(at)
        )]);
    }
    if let (Value::Array(want), Value::Array(got)) = (expected, received) {
        if want.len() != got.len() {
            return Err(vec![format!(
                "{}expected a batch of {}, received {}",
                prefix(at),
                want.len(),
                got.len()
            )]);
        }
        for (i, (want, got)) in want.iter().zip(got).enumerate() {
            compare_method(want, got, &format!("{at}[{i}]"))?;
        }
        return Ok(());
    }
    match (expected.get("method"), received.get("method")) {
        (Some(want), Some(got)) if want != got => Err(vec![format!(
            "{}: expected {want}, received {got}",
            join(at, "method")
        )]),
        _ => Ok(()),
    }
}

/// The frame with the id of every request in it removed.
fn without_request_ids(frame: &Value) -> Value {
    match frame {
        Value::Array(items) => Value::Array(items.iter().map(without_request_ids).collect()),
        Value::Object(o) if o.contains_key("method") && o.contains_key("id") => {
            let mut o: Map<String, Value> = o.clone();
            o.remove("id");
            Value::Object(o)
        }
        other => other.clone(),
    }
}

/// Every member where `received` differs from `expected`, by path.
fn diff(expected: &Value, received: &Value, at: &str, out: &mut Vec<String>) {
    match (expected, received) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, want) in want {
                match got.get(key) {
                    Some(got) => diff(want, got, &join(at, key), out),
                    None => out.push(format!("{}: missing (expected {want})", join(at, key))),
                }
            }
            for (key, got) in got {
                if !want.contains_key(key) {
                    out.push(format!("{}: not expected (received {got})", join(at, key)));
                }
            }
        }
        (Value::Array(want), Value::Array(got)) if want.len() == got.len() => {
            for (i, (want, got)) in want.iter().zip(got).enumerate() {
                diff(want, got, &format!("{at}[{i}]"), out);
            }
        }
        (want, got) if want != got => {
            let at = if at.is_empty() { "the frame" } else { at };
            out.push(format!("{at}: expected {want}, received {got}"));
        }
        _ => {}
    }
}

fn join(at: &str, key: &str) -> String {
    match at {
        "" => key.to_owned(),
        at => format!("{at}.{key}"),
    }
}

fn prefix(at: &str) -> String {
    match at {
        "" => String::new(),
        at => format!("{at}: "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_matching_names_each_member_that_differs() {
        let expect = Expect {
            frame: json!({"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1,"b":[1,2]}}),
            matching: Matching::Exact,
        };
        let same = json!({"jsonrpc":"2.0","id":9,"method":"m","params":{"a":1,"b":[1,2]}});
        assert_eq!(compare(&expect, &same), Ok(()));
        let other = json!({"jsonrpc":"2.0","id":1,"method":"m","params":{"a":2,"c":true}});
        assert_eq!(
            compare(&expect, &other),
            Err(vec![
                "params.a: expected 1, received 2".to_owned(),
                "params.b: missing (expected [1,2])".to_owned(),
                "params.c: not expected (received true)".to_owned(),
            ])
        );
    }

    #[test]
    fn method_matching_looks_at_kind_and_method_only() {
        let expect = Expect {
            frame: json!({"jsonrpc":"2.0","id":1,"method":"m","params":{"a":1}}),
            matching: Matching::Method,
        };
        assert_eq!(
            compare(&expect, &json!({"id":"x","method":"m","params":[]})),
            Ok(())
        );
        assert_eq!(
            compare(&expect, &json!({"id":1,"method":"n"})),
            Err(vec![r#"method: expected "m", received "n""#.to_owned()])
        );
        assert_eq!(
            compare(&expect, &json!({"method":"m"})),
            Err(vec![
                "expected a request, received a notification".to_owned()
            ])
        );
    }
}
