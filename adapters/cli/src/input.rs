//! Standard input and signals, turned into one ordered stream for the session loop.
//!
//! Both are read on threads of their own with plain blocking calls, so the same code serves
//! every runtime; the bounded channel holds stdin back while the connection cannot take more.

use std::io::{self, BufRead};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use smol::channel::{bounded, Receiver, Sender};

/// One thing from outside the connection.
#[derive(Debug)]
pub enum Input {
    /// A line of standard input, without its newline.
    Line(Vec<u8>),
    /// Standard input ended.
    End,
    /// `SIGINT` or `SIGTERM` arrived.
    Signal,
}

/// Starts catching `SIGINT`/`SIGTERM` and, if `stdin`, reading standard input; both arrive on
/// the returned channel.
pub fn start(stdin: bool) -> io::Result<Receiver<Input>> {
    let (tx, rx) = bounded(256);
    let signals = Signals::new([SIGINT, SIGTERM])?;
    let signal_tx = tx.clone();
    std::thread::Builder::new()
        .name("tether-signals".into())
        .spawn(move || forward_signals(signals, &signal_tx))?;
    if stdin {
        std::thread::Builder::new()
            .name("tether-stdin".into())
            .spawn(move || forward_stdin(&tx))?;
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

fn forward_stdin(tx: &Sender<Input>) {
    for line in io::stdin().lock().split(b'\n') {
        let Ok(mut line) = line else { break };
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if tx.send_blocking(Input::Line(line)).is_err() {
            return;
        }
    }
    let _ = tx.send_blocking(Input::End);
}
