//! The session shared by `tether run` and `tether connect`: standard input to the peer, the
//! peer's events to standard output, and signals, each moving on its own. When to close, how
//! long to linger for answers and how long to wait for the peer's end are the endpoint's
//! decisions.
//!
//! The three go side by side, so none waits on another: standard input is sent from its own
//! thread, or from this task when it comes faster than one thread checks it (see `input`),
//! while events are printed and signals acted on here. A request that takes minutes to write
//! never stops events from being printed, a slow reader of the output never stops standard
//! input from being sent, and a signal is acted on at once in every state.

use std::future::pending;
use std::time::Duration;

use futures_lite::future;
use tether_core::Message;
use tether_io::{Connection, Event, Runtime, Sender};

use crate::input::{self, Input, Inputs, Lines, Signal};
use crate::output::Output;

/// Runs until the connection has ended (its `disconnected` event is written), standard input
/// being sent since [`read_stdin`]. After standard input ends, the session closes once every
/// request sent has been answered, or after `linger`. The first signal closes it (the goodbye
/// and ladder, for a child); a second `SIGINT` skips the grace periods left. Once a signal has
/// come and the peer's output has ended, what the peer said that is not printed yet is dropped
/// rather than left to wait for a slow reader of ours. Returns whether a signal ended the
/// session.
pub async fn run<R: Runtime>(
    conn: &mut Connection<Message, R>,
    inputs: &Inputs,
    output: &Output,
    linger: Duration,
) -> bool {
    let sender = conn.sender();
    let events = async {
        while let Some(event) = next_event(conn, output).await {
            match event {
                Event::Message(message) => output.message(&message).await,
                Event::Malformed(malformed) => output.malformed(&malformed.to_string()).await,
                Event::Disconnected(reason) => {
                    output.disconnected(reason.map(|r| r.to_string())).await;
                    return false;
                }
            }
        }
        false
    };
    let forward = forward(&sender, inputs, output, linger);
    let stopped = async {
        stopped(&sender, inputs).await;
        true
    };
    let signalled = future::or(events, future::or(forward, stopped)).await;
    if signalled {
        let mut dropped = 0_u64;
        while let Some(event) = conn.recv().await {
            match event {
                Event::Disconnected(reason) => {
                    let line = output.disconnected(reason.map(|r| r.to_string()));
                    until_signal(inputs, line).await;
                }
                _ => dropped += 1,
            }
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "messages not printed: tether was stopped by a signal"
            );
        }
    }
    // A child whose output ended is shut down; a socket is closed.
    conn.close();
    until_signal(inputs, output.flush()).await;
    signalled
}

/// Starts sending standard input to `conn`, with lines of at most `max_frame` bytes. Its
/// requests are tracked from the first, so that the end of input waits for their answers.
pub fn read_stdin<R: Runtime>(
    conn: &Connection<Message, R>,
    inputs: &mut Inputs,
    max_frame: usize,
) -> std::io::Result<()> {
    conn.track_requests();
    inputs.read_stdin(conn.sender(), max_frame)
}

/// Runs `work` unless a signal comes first (after the first one, which stopped the session):
/// a reader of our output that never reads cannot keep tether from ending. Once such a signal
/// has come, later work is not even started.
pub async fn until_signal(inputs: &Inputs, work: impl std::future::Future<Output = ()>) {
    if inputs.hurried.get() {
        return;
    }
    future::or(work, async {
        let _ = inputs.signals.recv().await;
        inputs.hurried.set(true);
    })
    .await;
}

/// The next event; what is gathered for standard output is handed over first whenever none
/// is ready at once, so that output goes out in batches yet never waits behind a quiet peer.
async fn next_event<R: Runtime>(
    conn: &mut Connection<Message, R>,
    output: &Output,
) -> Option<Event<Message>> {
    if let Some(event) = future::poll_once(conn.recv()).await {
        return event;
    }
    output.flush().await;
    conn.recv().await
}

/// What the standard-input thread leaves to the session: the chunks it hands over are sent
/// here, in order, and every line that did not go is reported; at the end of standard input
/// the session finishes. Never completes: the session ends with the connection.
async fn forward(
    sender: &Sender<Message>,
    inputs: &Inputs,
    output: &Output,
    linger: Duration,
) -> bool {
    // The buffers for the chunks the session checks itself.
    let mut checked = input::Checked::default();
    while let Ok(input) = inputs.lines.recv().await {
        match input {
            Input::Lines(lines) => {
                send_lines(sender, &lines, output).await;
                inputs.handed.done();
            }
            Input::Unchecked(unchecked) => {
                send_lines(sender, &unchecked.check(&mut checked), output).await;
                inputs.handed.done();
            }
            Input::Refused(refused) => {
                for _ in 0..refused {
                    output.invalid_input(input::CLOSING).await;
                }
            }
            Input::End => {
                sender.finish(linger);
                break;
            }
        }
        if inputs.lines.is_empty() {
            output.flush().await;
        }
    }
    pending().await
}

/// Sends a chunk's messages in order, reporting each line that did not go where it stood.
async fn send_lines(sender: &Sender<Message>, lines: &Lines, output: &Output) {
    for (run, invalid) in lines.runs() {
        for _ in 0..input::send_run(sender, run).await {
            output.invalid_input(input::CLOSING).await;
        }
        if let Some(why) = invalid {
            output.invalid_input(why).await;
        }
    }
}

/// Completes once a signal has come and the peer's output has ended. The first signal
/// closes the connection; a later one gives up what is left to print, and a later `SIGINT`
/// also skips the grace periods left.
async fn stopped(sender: &Sender<Message>, inputs: &Inputs) {
    let Ok(signal) = inputs.signals.recv().await else {
        return pending().await;
    };
    tracing::debug!(?signal, "closing on a signal");
    sender.close();
    let more = async {
        while let Ok(signal) = inputs.signals.recv().await {
            tracing::debug!(?signal, "another signal");
            // Whoever sends more than one will not wait for our last lines either.
            inputs.hurried.set(true);
            if signal == Signal::Interrupt {
                sender.kill();
            }
        }
        pending().await
    };
    future::or(sender.closed(), more).await;
}
