//! Standard output: one JSON object per line per event, or one summary line at the end.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use smol::channel::{bounded, Sender};

use serde::Serialize;
use serde_json::json;
use tether_core::{ExitStatus, Message};
use tether_io::{EndReport, RestartReport};

/// What standard output carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One line per event.
    Events,
    /// One line at the end with the counts.
    Summary,
}

/// How the child ended, in the `exit` event, the `restart` event and the summary: the status,
/// then (added after the status, so the older fields keep their places) why it ended and the
/// tail of its standard error.
#[derive(Debug, Serialize)]
struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
    cause: Option<&'static str>,
    stderr_tail: Option<String>,
}

impl Exit {
    fn new(status: ExitStatus, end: Option<&EndReport>) -> Self {
        Exit {
            code: status.code,
            signal: status.signal,
            cause: end.map(|e| e.cause.name()),
            stderr_tail: end.and_then(|e| e.stderr_tail.clone()),
        }
    }
}

/// `{"event":"restart","attempt":K,"delay_ms":D,"exit":{…}}`.
#[derive(Debug, Serialize)]
struct RestartLine {
    event: &'static str,
    attempt: u32,
    delay_ms: u128,
    exit: Exit,
}

/// `{"event":"exit","code":…,"signal":…}`, in that order, then `"survivors":[…]` when some
/// of the child's descendants outlived the kill.
#[derive(Debug, Serialize)]
struct ExitLine<'a> {
    event: &'static str,
    #[serde(flatten)]
    exit: Exit,
    #[serde(skip_serializing_if = "<[u32]>::is_empty")]
    survivors: &'a [u32],
}

/// The one line of `--output summary`.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    messages: u64,
    malformed: u64,
    disconnected: Option<&'a str>,
    exit: Option<Exit>,
    /// Lines of standard input that were not sent; last, so that the older fields keep
    /// their places.
    invalid_input: u64,
    /// The child's descendants that outlived the kill, when there are any.
    #[serde(skip_serializing_if = "<[u32]>::is_empty")]
    survivors: &'a [u32],
}

/// How much output is gathered before it is handed to the writing thread.
const BATCH: usize = 64 * 1024;

/// The most written at once from the session's own task: a pipe that polls writable takes
/// this much without blocking.
const PIPE_BUF: usize = 4096;

/// Writes events in order, and counts them for the summary.
///
/// Lines are gathered on the session's task and written to standard output by a thread of
/// their own, through a short bounded queue: a slow or stalled reader of tether's output holds
/// back only the printing of events (and, once the queue is full, the reading of the peer),
/// never the session's task, its timers, its signals or its standard input. A small batch
/// that standard output can take at once, with nothing queued before it, is written from the
/// session's task instead, which spares a round trip the wake of the thread.
#[derive(Debug)]
pub struct Output {
    mode: Mode,
    state: RefCell<State>,
    queue: Sender<Vec<u8>>,
    /// Batches queued and not yet written by the thread.
    queued: Arc<AtomicUsize>,
    writer: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct State {
    /// Lines not yet handed to the writing thread.
    buf: Vec<u8>,
    messages: u64,
    malformed: u64,
    invalid_input: u64,
    disconnected: Option<String>,
}

impl Output {
    /// Output in the given mode, written by a thread started here.
    pub fn new(mode: Mode) -> io::Result<Self> {
        let (queue, batches) = bounded::<Vec<u8>>(4);
        let queued = Arc::new(AtomicUsize::new(0));
        let written = Arc::clone(&queued);
        let writer = std::thread::Builder::new()
            .name("tether-stdout".into())
            .spawn(move || {
                while let Ok(batch) = batches.recv_blocking() {
                    let done = write_out(&batch);
                    written.fetch_sub(1, Ordering::AcqRel);
                    if done.is_err() {
                        // Nobody reads any more: the session goes on, its output dropped.
                        while batches.recv_blocking().is_ok() {
                            written.fetch_sub(1, Ordering::AcqRel);
                        }
                        return;
                    }
                }
            })?;
        Ok(Output {
            mode,
            state: RefCell::new(State::default()),
            queue,
            queued,
            writer: Some(writer),
        })
    }

    fn line(&self, value: &serde_json::Value) {
        if self.mode == Mode::Events {
            let buf = &mut self.state.borrow_mut().buf;
            let _ = serde_json::to_writer(&mut *buf, value);
            buf.push(b'\n');
        }
    }

    /// A message from the peer.
    pub async fn message(&self, message: &Message) {
        {
            let mut state = self.state.borrow_mut();
            state.messages += 1;
            if self.mode == Mode::Events {
                // Written around the message rather than through a `Value`, which would copy it.
                let buf = &mut state.buf;
                buf.extend_from_slice(b"{\"event\":\"message\",\"message\":");
                let _ = serde_json::to_writer(&mut *buf, message);
                buf.extend_from_slice(b"}\n");
            }
        }
        self.maybe_flush().await;
    }

    /// A frame from the peer that is not a message.
    pub async fn malformed(&self, reason: &str) {
        self.state.borrow_mut().malformed += 1;
        self.line(&json!({"event": "malformed", "reason": reason}));
        self.maybe_flush().await;
    }

    /// The connection ended: `None` cleanly, or why not.
    pub async fn disconnected(&self, reason: Option<String>) {
        self.line(&json!({"event": "disconnected", "reason": reason}));
        self.state.borrow_mut().disconnected = reason;
        self.maybe_flush().await;
    }

    /// A line of our own input that is not a JSON-RPC message; it was not sent.
    pub async fn invalid_input(&self, reason: &str) {
        self.state.borrow_mut().invalid_input += 1;
        self.line(&json!({"event": "invalid_input", "reason": reason}));
        self.maybe_flush().await;
    }

    /// A restart is scheduled: the end of the child it replaces, and the delay.
    pub async fn restart(&self, report: &RestartReport) {
        if self.mode == Mode::Events {
            let line = RestartLine {
                event: "restart",
                attempt: report.attempt,
                delay_ms: report.delay.as_millis(),
                exit: Exit::new(report.end.status, Some(&report.end)),
            };
            let mut state = self.state.borrow_mut();
            let _ = serde_json::to_writer(&mut state.buf, &line);
            state.buf.push(b'\n');
        }
        self.maybe_flush().await;
    }

    /// The child was reaped and its group is gone (but for `survivors`, its descendants that
    /// outlived the kill); in summary mode, the summary line. Then everything is written
    /// out, and the writing thread ends.
    pub async fn exit(
        mut self,
        status: Option<ExitStatus>,
        end: Option<&EndReport>,
        survivors: &[u32],
    ) {
        let exit = status.map(|s| Exit::new(s, end));
        {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            match (self.mode, exit) {
                (Mode::Events, Some(exit)) => {
                    let line = ExitLine {
                        event: "exit",
                        exit,
                        survivors,
                    };
                    let _ = serde_json::to_writer(&mut state.buf, &line);
                    state.buf.push(b'\n');
                }
                (Mode::Events, None) => {}
                (Mode::Summary, exit) => {
                    let summary = Summary {
                        messages: state.messages,
                        malformed: state.malformed,
                        invalid_input: state.invalid_input,
                        disconnected: state.disconnected.as_deref(),
                        exit,
                        survivors,
                    };
                    let _ = serde_json::to_writer(&mut state.buf, &summary);
                    state.buf.push(b'\n');
                }
            }
        }
        self.flush().await;
        self.queue.close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }

    /// Hands a full batch to the writing thread.
    async fn maybe_flush(&self) {
        if self.state.borrow().buf.len() >= BATCH {
            self.flush().await;
        }
    }

    /// Hands what is gathered to the writing thread, waiting while its queue is full; or
    /// writes it at once, when it is small, nothing is queued before it and standard output
    /// can take it without blocking.
    pub async fn flush(&self) {
        let batch = {
            let mut state = self.state.borrow_mut();
            let buf = &mut state.buf;
            if buf.is_empty() {
                return;
            }
            if buf.len() <= PIPE_BUF
                && self.queued.load(Ordering::Acquire) == 0
                && writable_now()
                && write_out(buf).is_ok()
            {
                // Written from here: the buffer is kept, so the next line is gathered without
                // growing a new one a few bytes at a time.
                buf.clear();
                return;
            }
            // Handed over whole; the next batch starts as large as this one was, up to a
            // batch.
            let next = Vec::with_capacity(buf.len().min(BATCH));
            std::mem::replace(buf, next)
        };
        self.queued.fetch_add(1, Ordering::AcqRel);
        // The thread ends only once the queue is closed, which `exit` does last.
        if self.queue.send(batch).await.is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Writes a batch to standard output and flushes it.
fn write_out(batch: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(batch)?;
    out.flush()
}

/// Whether standard output can take a small write now without blocking.
fn writable_now() -> bool {
    let stdout = rustix::stdio::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(1)) && fds[0].revents().contains(PollFlags::OUT)
}

/// A line that is not an event of a session (the bridge's `listening`), written at once; its
/// fields keep their declared order.
pub fn notice(value: &impl Serialize) {
    let mut out = io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, value);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit line names survivors only when there are some, after the older fields.
    #[test]
    fn the_exit_line_lists_survivors_only_when_there_are_some() {
        let line = |survivors: &[u32]| {
            serde_json::to_string(&ExitLine {
                event: "exit",
                exit: Exit {
                    code: None,
                    signal: Some(15),
                    cause: Some("requested"),
                    stderr_tail: None,
                },
                survivors,
            })
            .unwrap()
        };
        assert_eq!(
            line(&[]),
            r#"{"event":"exit","code":null,"signal":15,"cause":"requested","stderr_tail":null}"#
        );
        assert_eq!(
            line(&[41, 42]),
            r#"{"event":"exit","code":null,"signal":15,"cause":"requested","stderr_tail":null,"survivors":[41,42]}"#
        );
    }

    /// The restart line: attempt, delay, then the exit it follows with every field of the
    /// exit event.
    #[test]
    fn the_restart_line_carries_the_exit_it_follows() {
        let line = serde_json::to_string(&RestartLine {
            event: "restart",
            attempt: 2,
            delay_ms: 400,
            exit: Exit {
                code: Some(3),
                signal: None,
                cause: Some("failed"),
                stderr_tail: Some("boom\n".to_owned()),
            },
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"event":"restart","attempt":2,"delay_ms":400,"exit":{"code":3,"signal":null,"cause":"failed","stderr_tail":"boom\n"}}"#
        );
    }
}
