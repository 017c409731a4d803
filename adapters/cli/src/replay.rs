//! `tether replay FILE`: the peer's side of a recorded session, played back on standard input
//! and output (line framing).
//!
//! It waits for each frame the client sent in the recording and answers with what the peer
//! answered, the live client's request ids in place of the recorded ones; at the end it exits
//! as the recorded peer did (with its code; a peer that was killed waits for its signal).
//! By default requests and notifications match by method, in order: a request the recording
//! does not have next is answered with an error, anything else unexpected is dropped, each
//! with a warning on standard error. `--strict` compares whole frames (ids aside) and stops
//! at the first difference: exit status 1, what was expected and what came on standard error.
//!
//! Like the built-in peer it is plain blocking code with no tether connection of its own.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;
use serde_json::{json, Value};
use tether_core::testkit::{Matching, Mismatch, PeerOutput, Script, ScriptedPeer, Step};
use tether_core::{ErrorObject, ExitStatus};

/// `tether replay`.
#[derive(Debug, Args)]
pub struct Replay {
    /// The transcript, as written by `--record` (a file of `bridge --record`'s folder).
    pub file: PathBuf,
    /// Fail when the client sends anything but the recorded frames (ids aside), instead of
    /// matching requests and notifications by method and order.
    #[arg(long)]
    pub strict: bool,
}

/// Plays the recording; returns the exit code.
pub fn run(args: &Replay) -> i32 {
    let file = args.file.display();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("tether replay: cannot read {file}: {err}");
            return 1;
        }
    };
    let matching = match args.strict {
        true => Matching::Exact,
        false => Matching::Method,
    };
    let script = match Script::from_transcript(&text, matching) {
        Ok(script) => script,
        Err(err) => {
            eprintln!("tether replay: {file}: {err}");
            return 1;
        }
    };
    let last = script.steps().last().cloned();
    let mut peer = ScriptedPeer::new(script);
    let mut out = io::BufWriter::new(io::stdout());
    let mut lines = io::stdin().lock().split(b'\n');
    let complain = |mismatch: &Mismatch| {
        let severity = if args.strict { "error" } else { "warning" };
        eprintln!("tether replay: {severity}: the client departs from {file} at {mismatch}");
    };
    loop {
        while let Some(output) = peer.poll_output() {
            match output {
                PeerOutput::Frame(frame) => {
                    let _ = out.write_all(&frame);
                    let _ = out.write_all(b"\n");
                }
                PeerOutput::Close => {
                    let _ = out.flush();
                    crate::peer::close_stdout();
                }
                PeerOutput::Exit(status) => {
                    let _ = out.flush();
                    return exit_code(status);
                }
            }
        }
        let _ = out.flush();
        let line = match lines.next() {
            Some(Ok(line)) => line,
            // The client closed its side.
            Some(Err(_)) | None => {
                if let Err(mismatch) = peer.handle_close() {
                    complain(&mismatch);
                    if args.strict {
                        return 1;
                    }
                    // What the recorded peer would still have said is skipped.
                    return end_as(last.as_ref(), &mut lines);
                }
                if peer.current().is_none() || matches!(peer.current(), Some(Step::Killed(_))) {
                    return end_as(last.as_ref(), &mut lines);
                }
                continue;
            }
        };
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(mismatch) = peer.handle_frame(line) {
            complain(&mismatch);
            if args.strict {
                return 1;
            }
            if let Some(answer) = refusal(line, &mismatch) {
                let _ = out.write_all(answer.to_string().as_bytes());
                let _ = out.write_all(b"\n");
            }
        }
    }
}

/// The error a request the recording does not have next is answered with, so that the
/// client is not left waiting.
fn refusal(line: &[u8], mismatch: &Mismatch) -> Option<Value> {
    let request: Value = serde_json::from_slice(line).ok()?;
    let id = request
        .get("id")
        .filter(|_| request.get("method").is_some())?;
    let error = ErrorObject::new(
        ErrorObject::METHOD_NOT_FOUND,
        format!("not in the recording here: expected {}", mismatch.expected),
    );
    Some(json!({"jsonrpc": "2.0", "id": id, "error": error}))
}

/// Ends as the recorded peer did once the client has closed its side: its exit code, or
/// (killed in the recording) waiting for the signal, ignoring `SIGTERM` if `SIGKILL` ended it.
fn end_as(last: Option<&Step>, lines: &mut impl Iterator<Item = io::Result<Vec<u8>>>) -> i32 {
    match last {
        Some(Step::Exit(status)) => exit_code(*status),
        Some(Step::Killed(signal)) => {
            if *signal != 15 {
                let flag = Arc::new(AtomicBool::new(false));
                let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, flag);
            }
            // Whatever still comes is read and dropped, until the signal.
            for _ in lines.by_ref() {}
            loop {
                std::thread::park();
            }
        }
        _ => 0,
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code.unwrap_or(0)
}
