//! Standard input and signals, each on a thread of its own.
//!
//! Both are read with plain blocking calls, so the same code serves every runtime. Standard
//! input is read in large chunks and cut by the core's own line framer, under the same frame
//! limit as the peer's messages: a line over it becomes one invalid line and its bytes are
//! dropped as they arrive, so a gigabyte line costs no more memory than the limit. Each line
//! is checked as a JSON-RPC message by the core's rules and kept as written ([`Verbatim`]): it
//! goes to the peer as its own bytes, never decoded into values and encoded again.
//!
//! The thread hands a chunk's messages to the connection itself, in order, when standard
//! input has caught up (the read did not fill the buffer) and every line of the chunk is a
//! message (a line that is not goes to the session, which reports it before sending what
//! follows, as the lines came): a lone request then goes from here
//! straight to the peer's pipe when nobody else is writing, without waking the session's task
//! for it — a round trip's latency is its wakes. A chunk that filled the buffer means more is
//! waiting: it goes to the session's task to send, so that reading the next chunk goes on
//! beside the sending of this one, and so does every chunk after it until the session has
//! sent them all (order). While more is waiting, every other chunk goes over cut but
//! unchecked, and the session checks it: checking is most of the work, and two threads share
//! it. Either way the send budget holds standard input back while the connection cannot take
//! more. What only the session can do (print why a line was not sent, finish at the end) goes
//! to it over a channel. Signals never wait behind standard input: their channel is apart, and
//! the signal thread never blocks.

use std::cell::Cell;
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use smol::channel::{bounded, Receiver, Sender};
use tether_core::framing::Frames;
use tether_core::{Framing, Message, Verbatim};

mod chunk;

pub use chunk::{Checked, Lines, Unchecked};

/// How much of standard input is read at once.
const CHUNK: usize = 64 * 1024;

/// What the standard-input thread leaves to the session.
#[derive(Debug)]
pub enum Input {
    /// A chunk's lines, for the session to send (and to report those that are not messages);
    /// it says [`Handed::done`] once they are sent.
    Lines(Lines),
    /// A chunk's frames, for the session to check ([`Unchecked::check`]) and then send as
    /// [`Input::Lines`].
    Unchecked(Unchecked),
    /// This many messages sent from the thread were refused: the connection was closing.
    Refused(usize),
    /// Standard input ended; every message in it has been handed to the connection or to the
    /// session.
    End,
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

/// How many chunks of lines the thread has handed to the session that the session has not
/// sent yet. Only the thread adds to it, so once it reads zero everything before is queued
/// in the connection, and the thread may send after it without passing it.
#[derive(Debug, Default)]
pub struct Handed(AtomicUsize);

impl Handed {
    fn add(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    /// The session has sent a chunk it was handed.
    pub fn done(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a message was not sent when the connection refused it.
pub const CLOSING: &str = "the connection is closing";

/// Where the standard-input thread's lines and notes and the signals arrive.
#[derive(Debug)]
pub struct Inputs {
    /// What standard input left to the session, once it is read.
    pub lines: Receiver<Input>,
    /// The chunks of [`lines`](Self::lines) not sent yet.
    pub handed: Arc<Handed>,
    /// `SIGINT`, `SIGTERM` and `SIGHUP`, as they come.
    pub signals: Receiver<Signal>,
    /// A signal has come after the one that stopped the session: what is left to print is
    /// given up.
    pub hurried: Cell<bool>,
    /// The lines' sending end, until [`read_stdin`](Self::read_stdin) hands it to the thread.
    notes: Option<Sender<Input>>,
}

/// Starts catching `SIGINT`, `SIGTERM` and `SIGHUP`; if `stdin`, standard input is to be read
/// once there is a connection to send it to ([`Inputs::read_stdin`]).
pub fn start(stdin: bool) -> io::Result<Inputs> {
    let (signal_tx, signals) = bounded(16);
    let caught = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("tether-signals".into())
        .spawn(move || forward_signals(caught, &signal_tx))?;
    let (tx, lines) = bounded(8);
    Ok(Inputs {
        lines,
        handed: Arc::default(),
        signals,
        hurried: Cell::new(false),
        notes: stdin.then_some(tx),
    })
}

impl Inputs {
    /// Starts reading standard input, with lines of at most `max_frame` bytes, into
    /// `sender`'s connection. Does nothing if standard input is not read, or already is.
    pub fn read_stdin(
        &mut self,
        sender: tether_io::Sender<Message>,
        max_frame: usize,
    ) -> io::Result<()> {
        let Some(notes) = self.notes.take() else {
            return Ok(());
        };
        let handed = Arc::clone(&self.handed);
        std::thread::Builder::new()
            .name("tether-stdin".into())
            .spawn(move || {
                let mut send =
                    |run: &[Verbatim]| futures_lite::future::block_on(send_run(&sender, run));
                let mut stdin = io::stdin().lock();
                forward_stdin(&mut stdin, max_frame, &mut send, &notes, &handed);
            })?;
        Ok(())
    }
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

/// Sends `run` in order, as many at a time as the send budget takes, waiting for room;
/// returns how many a close kept from going. Those refused because the connection has ended
/// are not counted: the `disconnected` event says why.
pub async fn send_run(sender: &tether_io::Sender<Message>, run: &[Verbatim]) -> usize {
    if run.is_empty() {
        return 0;
    }
    if sender.is_closing() {
        return run.len();
    }
    match sender.send_verbatim_all(run).await {
        Ok(()) => 0,
        Err((sent, _)) if sender.is_closing() => run.len() - sent,
        Err(_) => 0,
    }
}

/// Reads `stdin` to its end. Each chunk's messages are sent from here through `send` (which
/// returns how many it could not send because the connection was closing), with a note to
/// the session for each that did not go; or, if the chunk filled the buffer, holds a line
/// that is not a message, or chunks handed over are still unsent, the chunk is handed to the
/// session whole, every other one of those that filled the buffer unchecked. Returns early once the session has gone.
fn forward_stdin(
    stdin: &mut impl Read,
    max_frame: usize,
    send: &mut impl FnMut(&[Verbatim]) -> usize,
    notes: &Sender<Input>,
    handed: &Handed,
) {
    let mut buf = vec![0; CHUNK];
    // The core's framer: blank lines and `\r\n` as for the peer, and the frame limit.
    let Ok(mut frames) = Frames::new(Framing::Lines, max_frame.max(1)) else {
        return;
    };
    let mut checked = Checked::default();
    // Whether the session checks the next chunk that fills the buffer.
    let mut share = true;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        frames.handle_input(&buf[..n]);
        let more_waiting = n == buf.len();
        let delivered = match more_waiting && share {
            true => hand_over(Unchecked::drain(&mut frames), notes, handed),
            false => deliver(
                checked.drain(&mut frames),
                more_waiting,
                send,
                notes,
                handed,
            ),
        };
        if delivered.is_err() {
            return;
        }
        share ^= more_waiting;
    }
    frames.handle_eof();
    if deliver(checked.drain(&mut frames), false, send, notes, handed).is_err() {
        return;
    }
    let _ = notes.send_blocking(Input::End);
}

/// Hands a chunk's frames to the session to check and send. Fails once the session has gone.
fn hand_over(unchecked: Unchecked, notes: &Sender<Input>, handed: &Handed) -> Result<(), ()> {
    if unchecked.is_empty() {
        return Ok(());
    }
    handed.add();
    notes
        .send_blocking(Input::Unchecked(unchecked))
        .map_err(drop)
}

/// Sends a chunk's `lines` from here, or hands them to the session: when more input is
/// waiting, when chunks handed over are still unsent, or when a line is not a message — the
/// session reports such a line before it sends what follows, so that the report comes out
/// before any answer to a later line. Fails once the session has gone.
fn deliver(
    lines: Lines,
    more_waiting: bool,
    send: &mut impl FnMut(&[Verbatim]) -> usize,
    notes: &Sender<Input>,
    handed: &Handed,
) -> Result<(), ()> {
    if lines.is_empty() {
        return Ok(());
    }
    let messages = match lines.only_messages() {
        Some(messages) if !more_waiting && !handed.any() => messages,
        _ => {
            handed.add();
            return notes.send_blocking(Input::Lines(lines)).map_err(drop);
        }
    };
    match send(messages) {
        0 => Ok(()),
        refused => notes.send_blocking(Input::Refused(refused)).map_err(drop),
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

    /// Why a line was not sent, without the excerpt of the line.
    fn why(why: &str) -> Result<String, String> {
        Err(why
            .split(" (frame starts")
            .next()
            .unwrap_or_default()
            .to_owned())
    }

    /// Each line of a chunk handed to the session, in order, as the session would say it:
    /// `Ok(method)` for a message sent, `Err(why)` for a line that is not one or a message
    /// the connection refused (when `closing`).
    fn lines_of(lines: &Lines, closing: bool, out: &mut Vec<Result<String, String>>) {
        for (run, invalid) in lines.runs() {
            out.extend(run.iter().map(|message| match closing {
                true => Err(CLOSING.to_owned()),
                false => Ok(method(message)),
            }));
            out.extend(invalid.map(why));
        }
    }

    /// A message's method, or "" for any other message.
    fn method(message: &Verbatim) -> String {
        match tether_core::decode(message.as_bytes()) {
            Ok(Message::Notification(n)) => n.method,
            _ => String::new(),
        }
    }

    /// What `forward_stdin` does with `input` read through `stdin`, in order: each message
    /// sent from the thread as `Ok(method)` (or `Err(CLOSING)` if refused, when `closing`),
    /// each chunk handed to the session as `Ok("HANDED")` (or `Ok("UNCHECKED")`, checked
    /// here) followed by its lines as the session would say them (see [`lines_of`]), and the
    /// end as `Ok("END")`.
    fn forwarded(
        stdin: &mut impl Read,
        max_frame: usize,
        closing: bool,
    ) -> Vec<Result<String, String>> {
        // Unbounded: the notes are only looked at between sends, and at the end.
        let (tx, rx) = smol::channel::unbounded();
        let mut out = Vec::new();
        let noted = |out: &mut Vec<Result<String, String>>| {
            while let Ok(note) = rx.try_recv() {
                match note {
                    Input::Lines(lines) => {
                        out.push(Ok("HANDED".to_owned()));
                        lines_of(&lines, closing, out);
                    }
                    Input::Unchecked(unchecked) => {
                        out.push(Ok("UNCHECKED".to_owned()));
                        let lines = unchecked.check(&mut Checked::default());
                        lines_of(&lines, closing, out);
                    }
                    Input::Refused(refused) => {
                        out.extend(std::iter::repeat_n(Err(CLOSING.to_owned()), refused));
                    }
                    Input::End => out.push(Ok("END".to_owned())),
                }
            }
        };
        let mut send = |run: &[Verbatim]| {
            // Notes sent before this run come before it.
            noted(&mut out);
            if closing {
                return run.len();
            }
            out.extend(run.iter().map(|message| Ok(method(message))));
            0
        };
        forward_stdin(stdin, max_frame, &mut send, &tx, &Handed::default());
        noted(&mut out);
        out
    }

    /// Only the lines and the end: which thread sent them left out.
    fn without_markers(out: Vec<Result<String, String>>) -> Vec<Result<String, String>> {
        let marker =
            |line: &Result<String, String>| matches!(line.as_deref(), Ok("HANDED" | "UNCHECKED"));
        out.into_iter().filter(|line| !marker(line)).collect()
    }

    fn lines(input: &[u8]) -> Vec<Result<String, String>> {
        without_markers(forwarded(&mut Trickle(input), 1 << 20, false))
    }

    #[test]
    fn lines_split_across_reads_blank_lines_crlf_and_a_last_line_without_newline() {
        let input = b"{\"jsonrpc\":\"2.0\",\"method\":\"first\"}\r\n\n   \nnot json\n{\"jsonrpc\":\"2.0\",\"method\":\"second\"}\n{\"jsonrpc\":\"2.0\",\"method\":\"last\"}";
        assert_eq!(
            lines(input),
            vec![
                Ok("first".to_owned()),
                Err("invalid JSON: expected ident at line 1 column 2".to_owned()),
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
            without_markers(forwarded(&mut Trickle(&input), 100, false)),
            vec![
                Ok("before".to_owned()),
                Err("frame over the limit of 100 bytes".to_owned()),
                Ok("after".to_owned()),
                Ok("END".to_owned()),
            ]
        );
    }

    #[test]
    fn messages_a_close_kept_from_going_are_noted_in_their_place() {
        let input = b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\nnot json\n{\"jsonrpc\":\"2.0\",\"method\":\"b\"}\n";
        let closing = || Err(CLOSING.to_owned());
        let out = without_markers(forwarded(&mut Trickle(input), 1 << 20, true));
        assert_eq!(out.len(), 4, "{out:?}");
        assert_eq!(out[0], closing());
        assert!(matches!(&out[1], Err(why) if why != CLOSING));
        assert_eq!(out[2..], [closing(), Ok("END".to_owned())]);
    }

    #[test]
    fn a_chunk_with_a_line_that_is_not_a_message_goes_to_the_session() {
        // Read whole (one short read): only the line that is not a message sends the chunk
        // to the session, which reports it before it sends what follows.
        let clean =
            b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\n{\"jsonrpc\":\"2.0\",\"method\":\"b\"}\n";
        assert_eq!(
            forwarded(&mut &clean[..], 1 << 20, false),
            ["a", "b", "END"].map(|s| Ok(s.to_owned()))
        );
        let mixed = b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\nnot json\n{\"jsonrpc\":\"2.0\",\"method\":\"b\"}\n";
        let out = forwarded(&mut &mixed[..], 1 << 20, false);
        assert_eq!(
            out[..2],
            [Ok("HANDED".to_owned()), Ok("a".to_owned())],
            "{out:?}"
        );
        assert!(out[2]
            .as_ref()
            .is_err_and(|why| why.starts_with("invalid JSON")));
        assert_eq!(out[3..], [Ok("b".to_owned()), Ok("END".to_owned())]);
    }

    #[test]
    fn chunks_that_fill_the_buffer_go_to_the_session_every_other_one_unchecked() {
        // Exactly three buffers of lines, then a short chunk behind them.
        let line = |method: &str| format!("{{\"jsonrpc\":\"2.0\",\"method\":\"{method}\"}}\n");
        let filler = line("full");
        let mut chunk = filler.repeat(CHUNK / filler.len()).into_bytes();
        chunk.extend(std::iter::repeat_n(b' ', CHUNK - chunk.len() - 1));
        chunk.push(b'\n');
        assert_eq!(chunk.len(), CHUNK);
        let mut input = chunk.repeat(3);
        input.extend(line("after").into_bytes());
        let out = forwarded(&mut &input[..], 1 << 20, false);
        let full = CHUNK / filler.len();
        let mut expected = Vec::new();
        for kind in ["UNCHECKED", "HANDED", "UNCHECKED"] {
            expected.push(Ok(kind.to_owned()));
            expected.extend(std::iter::repeat_n(Ok("full".to_owned()), full));
        }
        // Sent by the session in order: not passed by the thread meanwhile.
        expected.extend(["HANDED", "after", "END"].map(|s| Ok(s.to_owned())));
        assert_eq!(out, expected);
    }

    #[test]
    fn the_same_lines_whichever_thread_checks_them() {
        let mut input = Vec::new();
        for i in 0..6000 {
            let line = match i % 7 {
                0 => "not json\n".to_owned(),
                1 => "\r\n   \n".to_owned(),
                2 => format!("{{\"jsonrpc\":\"2.0\",\"method\":\"crlf-{i}\"}}\r\n"),
                3 => format!("{}\n", "z".repeat(300)),
                4 => format!("{{\"id\":{i},\"method\":\"lite\"}}\n"),
                _ => format!("{{\"jsonrpc\":\"2.0\",\"method\":\"m-{i}\",\"params\":[{i}]}}\n"),
            };
            input.extend(line.into_bytes());
        }
        assert!(input.len() > 3 * CHUNK);
        let read_whole = forwarded(&mut &input[..], 200, false);
        assert!(read_whole.contains(&Ok("UNCHECKED".to_owned())));
        let read_in_pieces = forwarded(&mut Trickle(&input), 200, false);
        assert!(!read_in_pieces.contains(&Ok("UNCHECKED".to_owned())));
        assert_eq!(without_markers(read_whole), without_markers(read_in_pieces));
    }
}
