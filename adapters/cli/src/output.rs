//! Standard output: one JSON object per line per event, or one summary line at the end.

use std::io::{self, BufWriter, Stdout, Write};

use serde::Serialize;
use serde_json::json;
use tether_core::{ExitStatus, Message};

/// What standard output carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One line per event.
    Events,
    /// One line at the end with the counts.
    Summary,
}

/// How the child ended, in the `exit` event and the summary.
#[derive(Debug, Serialize)]
struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
}

/// `{"event":"exit","code":…,"signal":…}`, in that order.
#[derive(Debug, Serialize)]
struct ExitLine {
    event: &'static str,
    #[serde(flatten)]
    exit: Exit,
}

/// The one line of `--output summary`.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    messages: u64,
    malformed: u64,
    disconnected: Option<&'a str>,
    exit: Option<Exit>,
}

/// Writes events in order, and counts them for the summary.
#[derive(Debug)]
pub struct Output {
    mode: Mode,
    out: BufWriter<Stdout>,
    messages: u64,
    malformed: u64,
    disconnected: Option<String>,
}

impl Output {
    /// Output in the given mode.
    pub fn new(mode: Mode) -> Self {
        Output {
            mode,
            out: BufWriter::with_capacity(64 * 1024, io::stdout()),
            messages: 0,
            malformed: 0,
            disconnected: None,
        }
    }

    fn line(&mut self, value: &serde_json::Value) {
        if self.mode == Mode::Events {
            let _ = serde_json::to_writer(&mut self.out, value);
            let _ = self.out.write_all(b"\n");
        }
    }

    /// A message from the peer.
    pub fn message(&mut self, message: &Message) {
        self.messages += 1;
        if self.mode == Mode::Events {
            // Written around the message rather than through a `Value`, which would copy it.
            let _ = self.out.write_all(b"{\"event\":\"message\",\"message\":");
            let _ = serde_json::to_writer(&mut self.out, message);
            let _ = self.out.write_all(b"}\n");
        }
    }

    /// A frame from the peer that is not a message.
    pub fn malformed(&mut self, reason: &str) {
        self.malformed += 1;
        self.line(&json!({"event": "malformed", "reason": reason}));
    }

    /// The connection ended: `None` cleanly, or why not.
    pub fn disconnected(&mut self, reason: Option<String>) {
        self.line(&json!({"event": "disconnected", "reason": reason}));
        self.disconnected = reason;
    }

    /// A line of our own input that is not a JSON-RPC message; it was not sent.
    pub fn invalid_input(&mut self, reason: &str) {
        self.line(&json!({"event": "invalid_input", "reason": reason}));
    }

    /// A line that is not an event of the connection (the bridge's `listening`), written at
    /// once; its fields keep their declared order.
    pub fn notice(&mut self, value: &impl Serialize) {
        let _ = serde_json::to_writer(&mut self.out, value);
        let _ = self.out.write_all(b"\n");
        self.flush();
    }

    /// The child was reaped and its group is gone; in summary mode, the summary line.
    pub fn exit(&mut self, status: Option<ExitStatus>) {
        let exit = status.map(|s| Exit {
            code: s.code,
            signal: s.signal,
        });
        match (self.mode, exit) {
            (Mode::Events, Some(exit)) => {
                let line = ExitLine {
                    event: "exit",
                    exit,
                };
                let _ = serde_json::to_writer(&mut self.out, &line);
                let _ = self.out.write_all(b"\n");
            }
            (Mode::Events, None) => {}
            (Mode::Summary, exit) => {
                let summary = Summary {
                    messages: self.messages,
                    malformed: self.malformed,
                    disconnected: self.disconnected.as_deref(),
                    exit,
                };
                let _ = serde_json::to_writer(&mut self.out, &summary);
                let _ = self.out.write_all(b"\n");
            }
        }
        self.flush();
    }

    /// Pushes buffered lines out.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}
