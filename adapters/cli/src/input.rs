//! Standard input and signals, each on a channel of its own.
//!
//! Both are read on threads of their own with plain blocking calls, so the same code serves
//! every runtime. Standard input is read in large chunks and cut by the core's own line
//! framer, under the same frame limit as the peer's messages: a line over it becomes one
//! invalid line and its bytes are dropped as they arrive, so a gigabyte line costs no more
//! memory than the limit. Each line is checked as a JSON-RPC message by the core's rules and
//! kept as written ([`Verbatim`]): it goes to the peer as its own bytes, never decoded into
//! values and encoded again. Every chunk's complete lines go over as one batch; the bounded
//! channel holds standard input back while the connection cannot take more. Signals never
//! wait behind standard input: their channel is apart, and the signal thread never blocks.

use std::cell::Cell;
use std::io::{self, Read};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use smol::channel::{bounded, Receiver, Sender};
use tether_core::framing::Frames;
use tether_core::{Framing, Verbatim, VerbatimBatch};

/// How much of standard input is read at once.
const CHUNK: usize = 64 * 1024;

/// One thing from standard input.
#[derive(Debug)]
pub enum Input {
    /// The lines of standard input read together, in order; blank lines are left out.
    Lines(Vec<Line>),
    /// Standard input ended.
    End,
}

/// One non-blank line of standard input.
#[derive(Debug)]
pub enum Line {
    /// A message to send, as it was written.
    Message(Verbatim),
    /// A line that is not a message (or is over the frame limit), and why.
    Invalid(String),
}

/// A signal that asks tether to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `SIGINT`: a second one skips the remaining grace periods.
    Interrupt,
    /// `SIGTERM`.
    Terminate,
    /// `SIGHUP`.
    Hangup,
}

/// Where standard input's lines and the signals arrive.
#[derive(Debug)]
pub struct Inputs {
    /// Standard input, when it is read.
    pub lines: Receiver<Input>,
    /// `SIGINT`, `SIGTERM` and `SIGHUP`, as they come.
    pub signals: Receiver<Signal>,
    /// A signal has come after the one that stopped the session: what is left to print is
    /// given up.
    pub hurried: Cell<bool>,
}

/// Starts catching `SIGINT`, `SIGTERM` and `SIGHUP` and, if `stdin`, reading standard input
/// with lines of at most `max_frame` bytes.
pub fn start(stdin: bool, max_frame: usize) -> io::Result<Inputs> {
    let (signal_tx, signals) = bounded(16);
    let caught = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("tether-signals".into())
        .spawn(move || forward_signals(caught, &signal_tx))?;
    let (tx, lines) = bounded(8);
    if stdin {
        std::thread::Builder::new()
            .name("tether-stdin".into())
            .spawn(move || forward_stdin(&mut io::stdin().lock(), max_frame, &tx))?;
    }
    Ok(Inputs {
        lines,
        signals,
        hurried: Cell::new(false),
    })
}

fn forward_signals(mut caught: Signals, tx: &Sender<Signal>) {
    for number in caught.forever() {
        let signal = match number {
            SIGINT => Signal::Interrupt,
            SIGHUP => Signal::Hangup,
            _ => Signal::Terminate,
        };
        // Never waits: a session that has not taken sixteen signals yet needs no more.
        let _ = tx.try_send(signal);
    }
}

fn forward_stdin(stdin: &mut impl Read, max_frame: usize, tx: &Sender<Input>) {
    let mut buf = vec![0; CHUNK];
    // The core's framer: blank lines and `\r\n` as for the peer, and the frame limit.
    let Ok(mut frames) = Frames::new(Framing::Lines, max_frame.max(1)) else {
        return;
    };
    let mut checked = Checked::default();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        frames.handle_input(&buf[..n]);
        let lines = checked.drain(&mut frames);
        if !lines.is_empty() && tx.send_blocking(Input::Lines(lines)).is_err() {
            return;
        }
    }
    frames.handle_eof();
    let lines = checked.drain(&mut frames);
    if !lines.is_empty() && tx.send_blocking(Input::Lines(lines)).is_err() {
        return;
    }
    let _ = tx.send_blocking(Input::End);
}

/// Checks standard input's lines a chunk at a time, reusing its buffers from chunk to chunk.
#[derive(Default)]
struct Checked {
    /// The chunk's messages, their bytes in one buffer.
    batch: VerbatimBatch,
    /// The chunk's lines in order: `None` for the batch's next message, or why a line is not
    /// one.
    verdicts: Vec<Option<String>>,
}

impl Checked {
    /// Every line the framer has whole, each checked.
    fn drain(&mut self, frames: &mut Frames) -> Vec<Line> {
        while let Some(line) = frames.poll_frame(|frame| self.batch.push(frame)) {
            let verdict = line.and_then(|checked| checked).err();
            self.verdicts
                .push(verdict.map(|malformed| malformed.to_string()));
        }
        let mut lines = Vec::with_capacity(self.verdicts.len());
        let mut messages = self.batch.take();
        // The batch holds exactly one message per line that passed, in the lines' order.
        lines.extend(self.verdicts.drain(..).filter_map(|verdict| match verdict {
            None => messages.next().map(Line::Message),
            Some(reason) => Some(Line::Invalid(reason)),
        }));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, as a pipe may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// What `forward_stdin` sends for `input`: each line as `Ok(method)` or `Err(())`.
    fn lines(input: &[u8]) -> Vec<Result<String, ()>> {
        lines_within(input, 1 << 20)
    }

    fn lines_within(input: &[u8], max_frame: usize) -> Vec<Result<String, ()>> {
        let (tx, rx) = bounded(1024);
        forward_stdin(&mut Trickle(input), max_frame, &tx);
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            match item {
                Input::Lines(lines) => out.extend(lines.into_iter().map(|line| match line {
                    Line::Message(message) => match tether_core::decode(message.as_bytes()) {
                        Ok(tether_core::Message::Notification(n)) => Ok(n.method),
                        _ => Ok(String::new()),
                    },
                    Line::Invalid(_) => Err(()),
                })),
                Input::End => out.push(Ok("END".to_owned())),
            }
        }
        out
    }

    #[test]
    fn lines_split_across_reads_blank_lines_crlf_and_a_last_line_without_newline() {
        let input = b"{\"jsonrpc\":\"2.0\",\"method\":\"first\"}\r\n\n   \nnot json\n{\"jsonrpc\":\"2.0\",\"method\":\"second\"}\n{\"jsonrpc\":\"2.0\",\"method\":\"last\"}";
        assert_eq!(
            lines(input),
            vec![
                Ok("first".to_owned()),
                Err(()),
                Ok("second".to_owned()),
                Ok("last".to_owned()),
                Ok("END".to_owned()),
            ]
        );
    }

    #[test]
    fn a_line_over_the_frame_limit_is_one_invalid_line_and_the_next_one_goes() {
        let mut input = b"{\"jsonrpc\":\"2.0\",\"method\":\"before\"}\n".to_vec();
        input.extend(std::iter::repeat_n(b'z', 10_000));
        input.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"method\":\"after\"}\n");
        assert_eq!(
            lines_within(&input, 100),
            vec![
                Ok("before".to_owned()),
                Err(()),
                Ok("after".to_owned()),
                Ok("END".to_owned()),
            ]
        );
    }
}
