//! Standard input and signals, turned into one ordered stream for the session loop.
//!
//! Both are read on threads of their own with plain blocking calls, so the same code serves
//! every runtime; the bounded channel holds stdin back while the connection cannot take more.
//! Standard input is read in large chunks and every chunk's complete lines go over as one
//! batch, decoded on the reading thread: a burst reaches the session (and the child) in a few
//! hand-overs, while a line typed alone still goes at once.

use std::io::{self, Read};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use smol::channel::{bounded, Receiver, Sender};
use tether_core::{decode, Message};

/// How much of standard input is read at once.
const CHUNK: usize = 64 * 1024;

/// One thing from outside the connection.
#[derive(Debug)]
pub enum Input {
    /// The lines of standard input read together, in order; blank lines are left out.
    Lines(Vec<Line>),
    /// Standard input ended.
    End,
    /// `SIGINT` or `SIGTERM` arrived.
    Signal,
}

/// One non-blank line of standard input.
#[derive(Debug)]
pub enum Line {
    /// A message to send.
    Message(Message),
    /// A line that is not a message, and why.
    Invalid(String),
}

/// Starts catching `SIGINT`/`SIGTERM` and, if `stdin`, reading standard input; both arrive on
/// the returned channel.
pub fn start(stdin: bool) -> io::Result<Receiver<Input>> {
    let (tx, rx) = bounded(8);
    let signals = Signals::new([SIGINT, SIGTERM])?;
    let signal_tx = tx.clone();
    std::thread::Builder::new()
        .name("tether-signals".into())
        .spawn(move || forward_signals(signals, &signal_tx))?;
    if stdin {
        std::thread::Builder::new()
            .name("tether-stdin".into())
            .spawn(move || forward_stdin(&mut io::stdin().lock(), &tx))?;
    }
    Ok(rx)
}

fn forward_signals(mut signals: Signals, tx: &Sender<Input>) {
    for _ in signals.forever() {
        if tx.send_blocking(Input::Signal).is_err() {
            return;
        }
    }
}

fn forward_stdin(stdin: &mut impl Read, tx: &Sender<Input>) {
    let mut buf = vec![0; CHUNK];
    // The start of a line whose newline has not been read yet.
    let mut partial = Vec::new();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        let Some(last) = chunk.iter().rposition(|&b| b == b'\n') else {
            partial.extend_from_slice(chunk);
            continue;
        };
        let complete = match partial.is_empty() {
            true => &chunk[..last],
            false => {
                partial.extend_from_slice(&chunk[..last]);
                &partial[..]
            }
        };
        let mut lines = Vec::new();
        for line in complete.split(|&b| b == b'\n') {
            push_line(&mut lines, line);
        }
        partial.clear();
        partial.extend_from_slice(&chunk[last + 1..]);
        if !lines.is_empty() && tx.send_blocking(Input::Lines(lines)).is_err() {
            return;
        }
    }
    let mut lines = Vec::new();
    push_line(&mut lines, &partial);
    if !lines.is_empty() && tx.send_blocking(Input::Lines(lines)).is_err() {
        return;
    }
    let _ = tx.send_blocking(Input::End);
}

/// Decodes `line` (its `\r` and newline left off) into `lines`, unless it is blank.
fn push_line(lines: &mut Vec<Line>, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    lines.push(match decode::<Message>(line) {
        Ok(message) => Line::Message(message),
        Err(malformed) => Line::Invalid(malformed.to_string()),
    });
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
        let (tx, rx) = bounded(1024);
        forward_stdin(&mut Trickle(input), &tx);
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            match item {
                Input::Lines(lines) => out.extend(lines.into_iter().map(|line| match line {
                    Line::Message(Message::Notification(n)) => Ok(n.method),
                    Line::Message(_) => Ok(String::new()),
                    Line::Invalid(_) => Err(()),
                })),
                Input::End => out.push(Ok("END".to_owned())),
                Input::Signal => unreachable!("no signals here"),
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
}
